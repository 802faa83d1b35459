"""Two groups of encoders compared task by task with every default probe of `audiorank.evaluate`.

Each `--encoder GROUP:SEED=SPEC` names an encoder (a checkpoint, `random:PRESET`, `hear:MODULE`) in
a group, with the seed `evaluate` is given (for `random:` it seeds the weights; for all, the probe
seeds). Every encoder is evaluated on every task folder under `--tasks` with `evaluate`'s protocol
and its default probes; one row per (encoder, task) goes to `<out>/rows.jsonl` (each probe's test
score at its best valid layer, that layer, the spread over probe seeds, and every layer's clip
RankMe; an (group, seed, task) already there is skipped, so a killed run resumes; rows written
before RankMe was recorded lack it) and the comparison to `<out>/table.md`:
per probe and task, each group's mean ± sd over seeds of the test score at the best valid layer,
the difference (first group minus second), and whether it exceeds twice the larger sd. Example
(the command behind a committed table is in its folder's README):

    OMP_NUM_THREADS=1 python scripts/probe_encoders.py --tasks /tmp/f8_tasks --out /tmp/cmp \
        --encoder pretrained:0=runs/s0/step_0016000.pt --encoder init:0=random:vit-tiny-p16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audiorank.audio import read_hear_task
from audiorank.evaluate import evaluate
from audiorank.probes import PROBES
from audiorank.study import compare_groups, load_group_rows


def parse_encoder(text: str) -> tuple[str, int, str]:
    """'GROUP:SEED=SPEC' → (group, seed, spec), with a clear error otherwise."""
    head, sep, spec = text.partition("=")
    group, colon, seed = head.partition(":")
    if not (sep and colon and group and spec and seed.lstrip("-").isdigit()):
        raise argparse.ArgumentTypeError(f"--encoder {text!r}: expected GROUP:SEED=SPEC, e.g. init:0=random:vit-tiny-p16")
    return group, int(seed), spec


def table(rows: list[dict]) -> str:
    """Markdown of `study.compare_groups`: a row per probe and task, and per probe how many tasks clear."""
    result = compare_groups(rows)
    first, second = result.columns[0], result.columns[2]
    lines = [f"| probe | task | {first} | {second} | difference | > 2σ |", "|---|---|---|---|---|---|"]
    for (probe, task), r in result.iterrows():
        lines.append(f"| {probe} | {task} | {r[first]:.3f} ± {r[first + '_sd']:.3f} | "
                     f"{r[second]:.3f} ± {r[second + '_sd']:.3f} | {r['difference']:+.3f} | {'yes' if r['clear'] else 'no'} |")
    lines += ["", "| probe | tasks clear (> 2σ) | tasks ahead |", "|---|---|---|"]
    for probe, r in result.groupby(level="probe"):
        lines.append(f"| {probe} | {int(r['clear'].sum())}/{len(r)} | {int((r['difference'] > 0).sum())}/{len(r)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True, help="folder of HEAR task folders (audiorank corpus --out)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--encoder", action="append", type=parse_encoder, default=[], required=True,
                        help="GROUP:SEED=SPEC (repeat; in rows.jsonl, the first group is compared with the second)")
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=PROBES)
    parser.add_argument("--pooling", default="mean")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "rows.jsonl"
    rows = load_group_rows(path) if path.exists() else []
    done = {(r["group"], r["seed"], r["task"]) for r in rows}
    tasks = sorted(p for p in Path(args.tasks).iterdir() if p.is_dir())
    for group, seed, spec in args.encoder:
        for folder in tasks:
            if (group, seed, folder.name) in done:
                continue
            t0 = time.perf_counter()
            r = evaluate(spec, read_hear_task(folder), probes=args.probes, seed=seed, pooling=args.pooling)
            row = {"group": group, "seed": seed, "encoder": spec, "task": folder.name,
                   "scores": {p: r["scores"][p]["best"] for p in args.probes},
                   "layers": {p: r["best_layer"][p] for p in args.probes},
                   "seed_scores": {p: r["seed_scores"][p] for p in args.probes if p in r.get("seed_scores", {})},
                   "rankme": r["rankme"],  # clip-level RankMe per layer, on the same clips for every layer
                   "wall_s": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            with path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("group", "seed", "task", "scores", "wall_s")}), flush=True)
    groups = list(dict.fromkeys(r["group"] for r in rows))
    if len(groups) != 2:  # rows of one group (a study split over processes) wait for the other
        print(f"{path}: rows of {groups}; the table compares exactly two groups")
        return
    text = table(rows)
    (out / "table.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
