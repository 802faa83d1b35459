"""Pretraining recipes compared at fixed compute on the laptop corpus tasks (linear probe).

Every recipe trains for the same single-thread CPU time (its step count is that budget times its
own step rate, measured on a short run first), then its final checkpoint is probed on every task;
the reference is the same preset at random initialisation, evaluated with the same probe and
seed. Rows go to `<out>/rows.jsonl` (a run already there is skipped, so a killed study resumes) and
the table to `<out>/table.md`. Example (the command the committed table came from is in
results/recipe_study/README.md):

    OMP_NUM_THREADS=1 python scripts/recipe_study.py --tasks /tmp/f_tasks --budget-s 240 \
        --recipes mae d2v --seeds 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from audiorank.audio import read_hear_task
from audiorank.evaluate import POOLINGS, evaluate
from audiorank.pretrain import PretrainConfig, pretrain_on_pool
from audiorank.study import recipe_rows, rise_with_compute, versus_init

# recipe name -> PretrainConfig overrides (the preset is one of them), vc_weight 0 unless named;
# "default" was PretrainConfig() at 8000 steps, "default-16k-vc01" is PretrainConfig() now
RECIPES: dict[str, dict] = {
    "default": {},
    "mae": {"objective": "mae", "encoder": "vit-tiny", "lr": 1e-3, "warmup_steps": 100},
    "mae-p16": {"objective": "mae", "encoder": "vit-tiny-p16", "lr": 1e-3, "warmup_steps": 100},
    "byol": {"objective": "byol", "encoder": "vit-tiny", "lr": 1e-3, "warmup_steps": 100},
    "d2v": {"objective": "d2v", "encoder": "vit-tiny", "lr": 1e-3, "warmup_steps": 100},
    "d2v-p16": {"objective": "d2v", "encoder": "vit-tiny-p16", "lr": 1e-3, "warmup_steps": 100},
    "cnn-byol": {"objective": "byol", "encoder": "cnn-nano", "lr": 1e-3, "warmup_steps": 100},  # BYOL-A's shape
    # the same with the random resize crop in time only (frequency rows kept: pitch, formants)
    "cnn-byol-tcrop": {"objective": "byol", "encoder": "cnn-nano", "lr": 1e-3, "warmup_steps": 100,
                       "crop_scale": ((0.6, 1.0), (1.0, 1.0))},
    # the default with a slower teacher: its first targets stay those of the random teacher longer
    # (at 0.99 the teacher follows the student within ~100 steps, as pitch scores dip below init)
    "default-ema999": {"ema_momentum": 0.999},
    "default-ema9999": {"ema_momentum": 0.9999},
    # the default with gentler first steps (pitch dips below init by step 500 whatever the teacher)
    "default-warm2000": {"warmup_steps": 2000},
    "default-lr3e-4": {"lr": 3e-4},
    # the default with a pixel-reconstruction head beside the latent one (keeps spectral detail?)
    "d2v-pix": {"pixel_weight": 1.0},
    # the default's schedule and preset with MAE's pixel loss alone
    "default-mae": {"objective": "mae"},
    # the default with its patch projection kept at random init (MoCo v3): layer 0 keeps the detail
    "default-frozen-patch": {"freeze_patch_embed": True},
    "d2v-pix-frozen-patch": {"pixel_weight": 1.0, "freeze_patch_embed": True},
    # targets normalised per token: clip-constant content (a held pitch, a voice) stays in them
    "d2v-layernorm": {"target_norm": "layer"},
    # the default run twice as long (does pitch come back above init with more compute?)
    "default-16k": {"steps": 16000},
    "default-16k-warm2000": {"steps": 16000, "warmup_steps": 2000},
    # the 16000-step default with VICReg's variance-covariance terms on the student's tokens, by weight
    # (the first 2000 steps of each: results/default_vs_init/vc_weight_screen/): does the early collapse,
    # and the pitch dip with it, go away?
    "default-16k-vc003": {"steps": 16000, "vc_weight": 0.03},
    "default-16k-vc01": {"steps": 16000, "vc_weight": 0.1},
    "default-16k-vc03": {"steps": 16000, "vc_weight": 0.3},
    "default-16k-vc1": {"steps": 16000, "vc_weight": 1.0},
}


def _config(recipe: str, seed: int, steps: int, checkpoint_steps: tuple[int, ...] = ()) -> PretrainConfig:
    overrides = {"vc_weight": 0.0, **RECIPES[recipe]}  # the recipes before vc_weight ran without it
    base = PretrainConfig(**overrides)
    return PretrainConfig(**{**overrides, "steps": steps, "seed": seed, "checkpoint_steps": checkpoint_steps,
                             "warmup_steps": min(base.warmup_steps, steps // 4), "device": "cpu"})


def steps_for_budget(recipe: str, budget_s: float, clips: int, probe_steps: int = 40) -> tuple[int, float]:
    """(steps, steps/s): the steps this recipe runs in budget_s seconds at its measured step rate."""
    rate = pretrain_on_pool(_config(recipe, 0, probe_steps), clips, progress=False).steps_per_second
    return max(50, int(round(budget_s * rate / 50.0)) * 50), rate


def probe_tasks(encoder: str, tasks: dict, seed: int, max_epochs: int | None,
                pooling: str = "mean") -> dict[str, dict]:
    """Linear-probe score (test, best valid layer; `evaluate`'s protocol, its epochs unless
    `max_epochs` is given), the spread over probe seeds, and per-layer clip RankMe on every task."""
    out = {}
    options = {"max_epochs": max_epochs} if max_epochs else None
    for name, task in tasks.items():
        r = evaluate(encoder, task, probes=("linear",), probe_options=options, max_rank_samples=2000, seed=seed,
                     pooling=pooling)
        out[name] = {"score": r["scores"]["linear"]["best"], "layer": r["best_layer"]["linear"],
                     "probe_seed_scores": r.get("seed_scores", {}).get("linear"),
                     "per_layer": {k: v for k, v in r["scores"]["linear"].items() if k != "best"},
                     "rankme": r["rankme"]}
    return out


def _done(rows_path: Path) -> list[dict]:
    return [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []


def run_study(args: argparse.Namespace) -> list[dict]:
    """Baselines once per (preset, seed), then every (recipe, seed) at the fixed budget. With several
    poolings, each checkpoint is evaluated under each, and each pooling's rows go to <out>/<pooling>/."""
    out = Path(args.out)
    outs = {p: out if len(args.pooling) == 1 else out / p for p in args.pooling}
    for folder in outs.values():
        folder.mkdir(parents=True, exist_ok=True)
    rows = {p: _done(folder / "rows.jsonl") for p, folder in outs.items()}
    first = args.pooling[0]  # what is done is read from the first pooling's rows
    have = {(r["kind"], r["name"], r["seed"], r.get("step")) for r in rows[first]}
    tasks = {p.name: read_hear_task(p) for p in sorted(Path(args.tasks).iterdir()) if p.is_dir()}
    if args.only_tasks:
        tasks = {k: v for k, v in tasks.items() if k in args.only_tasks}

    def emit(row: dict, encoder: str, t0: float) -> None:
        for pooling, folder in outs.items():
            done = row | {"tasks": probe_tasks(encoder, tasks, row["seed"], args.max_epochs, pooling),
                          "wall_s": round(time.perf_counter() - t0, 1)}
            rows[pooling].append(done)
            with (folder / "rows.jsonl").open("a") as f:
                f.write(json.dumps(done) + "\n")
            print(json.dumps({k: done[k] for k in ("kind", "name", "seed", "steps", "wall_s") if k in done}
                             | {"pooling": pooling} | {t: round(v["score"], 3) for t, v in done["tasks"].items()}),
                  flush=True)

    for recipe in args.recipes:
        preset = _config(recipe, 0, 1).encoder
        for seed in args.seeds:
            if ("random", preset, seed, None) not in have:
                emit({"kind": "random", "name": preset, "seed": seed}, f"random:{preset}", time.perf_counter())
                have.add(("random", preset, seed, None))
    for recipe in args.recipes:
        steps, rate = (args.steps, float("nan")) if args.steps else steps_for_budget(recipe, args.budget_s, args.clips)
        last = args.stop_after  # a run's last row: step None (its final step), or where it stops
        if all(("recipe", recipe, s, last) in have for s in args.seeds):
            continue
        fractions = tuple(args.checkpoint_fractions)
        ckpt_steps = tuple(sorted(({int(round(f * steps)) for f in fractions} | {last or 0}) - {steps}))
        for seed in args.seeds:
            if ("recipe", recipe, seed, last) in have:
                continue
            with TemporaryDirectory() as tmp:
                config = _config(recipe, seed, steps, ckpt_steps)
                t0 = time.perf_counter()
                result = pretrain_on_pool(config, args.clips, out_dir=tmp, progress=False, stop_after=args.stop_after)
                train_s = time.perf_counter() - t0
                for path in result.checkpoints:
                    step = int(Path(path).stem.split("_")[1])
                    emit({"kind": "recipe", "name": recipe, "seed": seed, "step": None if step == steps else step,
                          "steps": steps, "preset": config.encoder,
                          "steps_per_s_1thread": round(result.steps_per_second, 3),
                          "probe_steps_per_s": round(rate, 3), "train_s": round(train_s, 1),
                          "final_loss": result.losses[-1], "status": result.status}, path, t0)
    return rows[first]


def table(rows: list[dict]) -> str:
    """Markdown: per recipe, mean ± std over seeds of the test score per task, its difference to
    random init of the same preset and seeds, and `wins`: the tasks where that difference exceeds
    twice the larger of the two seed standard deviations (`study.versus_init`)."""
    frame = recipe_rows(rows)
    task_names = sorted(frame["task"].unique())
    lines = ["| recipe | preset | steps | steps/s (1 thread) | seeds | " + " | ".join(task_names) + " | wins (> 2σ) |",
             "|---" * (len(task_names) + 6) + "|"]
    random = frame[frame["kind"] == "random"]
    for preset, base in random.groupby("name"):
        by_task = base.groupby("task")["score"]
        mean, sd = by_task.mean(), by_task.std(ddof=1).fillna(0)
        cells = [f"{mean[t]:.3f} ± {sd[t]:.3f}" if t in mean else "" for t in task_names]
        lines.append(f"| random init | {preset} | 0 | | {base['seed'].nunique()} | " + " | ".join(cells) + " | |")
    finals = [r for r in rows if r["kind"] == "recipe" and r.get("step") is None]
    for name in dict.fromkeys(r["name"] for r in finals):
        first = next(r for r in finals if r["name"] == name)
        versus = versus_init(frame, name)
        cells = ["" if t not in versus.index else
                 f"{versus.at[t, 'pretrained']:.3f} ± {versus.at[t, 'pretrained_sd'] if versus.at[t, 'seeds'] > 1 else 0:.3f} "
                 f"({versus.at[t, 'difference']:+.3f})" for t in task_names]
        lines.append(f"| {name} | {first['preset']} | {first['steps']} | {first['steps_per_s_1thread']:.2f} | "
                     f"{versus['seeds'].max()} | " + " | ".join(cells) +
                     f" | {int(versus['clear'].sum())}/{len(task_names)} ({int((versus['difference'] > 0).sum())} ahead) |")
    return "\n".join(lines) + "\n"


def compute_table(rows: list[dict], recipe: str) -> str:
    """Markdown: a recipe's checkpoints (step 0 = init) × task, mean over seeds, and per task the
    Spearman correlations over the checkpoints, seeds pooled, of score with step and of the last
    layer's RankMe (the encoder's output, as the study measures it) with score."""
    frame = recipe_rows(rows)
    ckpts = frame[(frame["kind"] == "recipe") & (frame["name"] == recipe)]
    if ckpts.empty:
        return ""
    means = ckpts.pivot_table(index="step", columns="task", values="score", aggfunc="mean")
    seeds = ckpts.groupby("step")["seed"].nunique()
    task_names = list(means.columns)
    lines = ["| step | seeds | " + " | ".join(task_names) + " |", "|---" * (len(task_names) + 2) + "|"]
    for step, row in means.iterrows():
        lines.append(f"| {step} | {seeds[step]} | " + " | ".join(f"{row[t]:.3f}" for t in task_names) + " |")
    rho = rise_with_compute(ckpts)  # not versus_init: a stopped run (--stop-after) has no final row
    for column, label in (("rho_step", "score–step"), ("rho_rankme", "RankMe–score")):
        lines.append(f"| Spearman {label} (pooled) | | " + " | ".join(f"{rho.at[t, column]:.2f}" for t in task_names) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse arguments, run what is missing, write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True, help="folder of HEAR task folders (audiorank corpus --out)")
    parser.add_argument("--out", default="results/recipe_study")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--only-tasks", nargs="*", help="a subset of the task folders")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget-s", type=float, default=240.0, help="single-thread training seconds per recipe")
    parser.add_argument("--steps", type=int, help="fixed steps instead of a time budget")
    parser.add_argument("--clips", type=int, default=2000, help="pretraining pool size")
    parser.add_argument("--stop-after", type=int,
                        help="train only this many steps of each run's schedule (its first steps, cheaply; "
                             "the rows end there)")
    parser.add_argument("--checkpoint-fractions", type=float, nargs="*", default=[],
                        help="also probe checkpoints at these fractions of the run (0: init)")
    parser.add_argument("--max-epochs", type=int, help="linear-probe epochs (default: the protocol's)")
    parser.add_argument("--pooling", choices=POOLINGS, nargs="+", default=["mean"],
                        help="clip embedding (audiorank.evaluate): mean of all tokens, or over time with "
                             "a square-patch ViT's frequency rows concatenated; several: each checkpoint is "
                             "evaluated under each, into <out>/<pooling>/")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the tables from rows.jsonl")
    parser.add_argument("--curve", nargs="+", default=["default", "default-12k"],
                        help="recipes whose checkpoints form the compute tables")
    args = parser.parse_args()
    if not args.table_only:
        run_study(args)
    folders = [Path(args.out)] if len(args.pooling) == 1 else [Path(args.out) / p for p in args.pooling]
    for folder in folders:
        rows = _done(folder / "rows.jsonl")
        text = table(rows) + "".join(f"\n{name}:\n\n" + compute_table(rows, name) for name in args.curve)
        (folder / "table.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
