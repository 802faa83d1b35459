"""The `audiorank` command.

corpus    write the embedded corpus's tasks as HEAR task folders
pretrain  pretrain an encoder on the embedded pretraining pool (checkpoints + a JSON summary)
evaluate  an encoder on a HEAR task folder: RankMe per layer and probe scores, as JSON
rank      RankMe of an embedding file
book      sweep up to date → notebooks whose inputs changed (papermill) → Jupyter Book
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load_embeddings(path: Path, key: str | None = None) -> np.ndarray:
    """Read an embedding matrix from .npy, .npz (`key` or its only array), .pt/.pth or .csv."""
    if not path.is_file():
        raise ValueError(f"embedding file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(f"{path} holds arrays {names}: choose one with --key")
                key = names[0]
            if key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {names}")
            return archive[key]
    if suffix in {".pt", ".pth"}:
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict):
            if key is None or key not in obj:
                raise ValueError(f"{path} holds a dict with keys {sorted(obj)}: choose one with --key")
            obj = obj[key]
        if not isinstance(obj, torch.Tensor):
            raise ValueError(f"{path}: expected a tensor, got {type(obj).__name__}")
        return obj
    if suffix == ".csv":
        return np.loadtxt(path, delimiter=",", ndmin=2)
    raise ValueError(f"embedding file {path}: expected .npy, .npz, .pt/.pth or .csv, got {suffix or 'no suffix'}")


def _rank(args: argparse.Namespace) -> int:
    from .rank import rankme

    Z = load_embeddings(Path(args.file), args.key)
    value = rankme(Z, eps=args.eps, center=args.center, squared=args.squared)
    values = np.atleast_1d(np.asarray(value, dtype=np.float64))
    shape = tuple(int(s) for s in Z.shape)
    if args.json:
        result = {"file": args.file, "shape": shape, "eps": args.eps, "center": args.center,
                  "squared": args.squared}
        result["rankme"] = float(values[0]) if len(shape) == 2 else [float(v) for v in values]
        print(json.dumps(result))
    elif len(shape) == 2:
        print(f"{values[0]:.6f}")
    else:
        for layer, v in enumerate(values):
            print(f"layer {layer}\t{v:.6f}")
    return 0


def _book(args: argparse.Namespace) -> int:
    from .book import build_book

    if args.only and not args.no_build:
        raise SystemExit("--only executes a subset of notebooks; it needs --no-build")
    build_book(args.profile, results=args.results, force=args.force or (), sweep=not args.no_sweep,
               only=args.only or None, html=not args.no_build, workers=args.workers)
    return 0


def corpus_command(out: str | Path, profile: str | None = None, seed: int = 0, *,
                   tasks: list[str] | None = None, n_train: int | None = None, n_valid: int | None = None,
                   n_test: int | None = None, seconds: float | None = None, cache_dir: str | Path | None = None,
                   progress: bool = True, soundfont: str | Path | None = None) -> dict[str, Path]:
    """Write the corpus tasks as HEAR task folders out/<task>/ and a summary out/corpus.json.

    Sizes come from the arguments, else the profile's `corpus:` section (when the profile has one),
    else CORPUS_DEFAULTS. Returns {task name: folder}.
    """
    from .audio import CORPUS_DEFAULTS, write_corpus
    from .profiles import load_profile

    cfg = dict(CORPUS_DEFAULTS)
    if profile is not None:
        section = load_profile(profile).get("corpus") or {}
        unknown = set(section) - set(CORPUS_DEFAULTS)
        if unknown:
            raise ValueError(f"profile {profile!r}: unknown corpus keys {sorted(unknown)}; "
                             f"expected some of {sorted(CORPUS_DEFAULTS)}")
        cfg.update(section)
    for key, val in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test), ("seconds", seconds)):
        if val is not None:
            cfg[key] = val
    return write_corpus(out, tasks, cfg["n_train"], cfg["n_valid"], cfg["n_test"], cfg["seconds"], seed,
                        cache_dir, progress, summary={"profile": profile, "config": cfg}, soundfont=soundfont)


def _corpus(args: argparse.Namespace) -> int:
    written = corpus_command(args.out, profile=args.profile, seed=args.seed, tasks=args.tasks,
                             n_train=args.n_train, n_valid=args.n_valid, n_test=args.n_test,
                             seconds=args.seconds, progress=not args.quiet, soundfont=args.soundfont)
    for name, folder in written.items():
        print(f"{name}\t{folder}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    import torch

    from . import __version__
    from .pretrain import PretrainConfig, pretrain_on_pool

    config = PretrainConfig(objective=args.objective, encoder=args.preset, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, mask_ratio=args.mask_ratio, vc_weight=args.vc_weight,
                            warmup_steps=min(args.warmup_steps, args.steps),
                            checkpoint_steps=None if args.checkpoint_steps is None else tuple(args.checkpoint_steps),
                            seed=args.seed, device=args.device)
    out = Path(args.out)
    result = pretrain_on_pool(config, args.clips, args.seconds, out_dir=out, progress=not args.quiet,
                              resume=args.resume, state_every=args.state_every)
    summary = {"status": result.status, "steps": result.steps, "final_loss": result.losses[-1],
               "first_loss": result.losses[0], "params": result.params, "flops_per_step": result.flops_per_step,
               "steps_per_second": result.steps_per_second, "device": result.device,
               "wall_time_s": result.wall_time_s, "resumed_from": result.resumed_from,
               "checkpoints": result.checkpoints, "losses": result.losses}
    # the full resolved config beside the summary: what this run was, without reading the code
    # torch_threads: CPU float reductions depend on it, so the same seed on 1 and 2 threads trains
    # different (equally valid) weights
    record = {**summary, "config": {**result.config, "pool": {"n_clips": args.clips, "seconds": args.seconds},
                                    "audiorank_version": __version__, "torch_threads": torch.get_num_threads()}}
    (out / "pretrain.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "losses"}))
    return 0 if result.status == "ok" else 1


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    options = {"max_epochs": args.max_epochs}
    for key in ("patience", "lr_grid", "weight_decay_grid"):  # given: replaces the protocol's default
        if getattr(args, key) is not None:
            options[key] = tuple(getattr(args, key)) if key != "patience" else args.patience
    result = evaluate(args.encoder, args.task, probes=args.probes, layers=args.layers,
                      max_rank_samples=args.max_rank_samples, probe_options=options, n_probe_seeds=args.probe_seeds,
                      seed=args.seed, device=args.device, skip_bad=args.skip_bad, progress=not args.quiet,
                      pooling=args.pooling)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['encoder']} on {result['task']} ({result['metric']}; RankMe on {result['rankme_n_samples']} "
              f"clips and {result['rankme_frame_n_samples']} frames, the same for every layer; * = capped, N < D)")
        for layer in result["layers"]:
            probes = "  ".join(f"{p} {result['scores'][p][layer]:.3f} (lr {hp[layer]['lr']:g}, wd {hp[layer]['weight_decay']:g})"
                               for p, hp in result["hyperparameters"].items())
            mark = "*" if result["rankme_capped"][layer] else " "
            print(f"layer {layer}\tRankMe {result['rankme'][layer]:8.2f}{mark} frame {result['rankme_frame'][layer]:8.2f}  {probes}")
        print("best (layer chosen on valid; test mean ± std over probe seeds): " + "  ".join(
            f"{p} {result['scores'][p]['best']:.3f} @ {result['best_layer'][p]} ({s['mean']:.3f} ± {s['std']:.3f})"
            for p, s in result["seed_scores"].items()))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from .profiles import load_profile, project_root
    from .sweep import sweep

    profile = load_profile(args.profile)
    results = Path(args.results) if args.results else project_root() / "results" / profile["name"]
    out = sweep(profile, results, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                dry_run=args.dry_run, retry_failed=args.retry_failed, progress=not args.quiet)
    if not args.dry_run:
        print(f"{out['ran']} run(s) done ({out['failed']} failed), {out['present']} already present; "
              f"tables in {results}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .probes import PROBES
    from .evaluate import POOLINGS

    parser = argparse.ArgumentParser(prog="audiorank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    corpus = commands.add_parser("corpus", help="write the embedded corpus as HEAR task folders")
    corpus.add_argument("--out", required=True, help="folder to write <task>/ folders into")
    corpus.add_argument("--profile", help="take the sizes from this profile's corpus: section")
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--tasks", nargs="*", help="a subset of the tasks (default: all)")
    corpus.add_argument("--n-train", type=int)
    corpus.add_argument("--n-valid", type=int)
    corpus.add_argument("--n-test", type=int)
    corpus.add_argument("--seconds", type=float, help="clip length")
    corpus.add_argument("--soundfont", help="SoundFont (.sf2) for the gm_* tasks (default: "
                        "$AUDIORANK_SOUNDFONT, else the TimGM6mb bundled with pretty_midi)")
    corpus.add_argument("--quiet", action="store_true", help="no progress bars")
    corpus.set_defaults(func=_corpus)

    pre = commands.add_parser("pretrain", help="pretrain an encoder on the embedded pretraining pool")
    pre.add_argument("--out", required=True, help="folder for step_*.pt checkpoints and pretrain.json")
    from .pretrain import PretrainConfig

    default = PretrainConfig()  # the CLI's defaults are the library's (the recipe study's choice)
    pre.add_argument("--preset", default=default.encoder, help="an encoder preset of audiorank.models")
    pre.add_argument("--objective", choices=("mae", "d2v", "byol"), default=default.objective)
    pre.add_argument("--steps", type=int, default=default.steps, help="optimizer steps (see results/default_vs_init/default_16k_vc01/)")
    pre.add_argument("--batch-size", type=int, default=default.batch_size)
    pre.add_argument("--lr", type=float, default=default.lr)
    pre.add_argument("--warmup-steps", type=int, default=default.warmup_steps)
    pre.add_argument("--mask-ratio", type=float, default=default.mask_ratio)
    pre.add_argument("--vc-weight", type=float, help="VICReg variance-covariance weight on the student's tokens "
                     "(mae, d2v; default: 0.1 for d2v, 0 otherwise)")
    pre.add_argument("--clips", type=int, default=2000, help="size of the pretraining pool")
    pre.add_argument("--seconds", type=float, default=1.0, help="clip length")
    pre.add_argument("--checkpoint-steps", type=int, nargs="*", default=None,
                     help="checkpoint after these steps (0: init; the last step always); default: log-spaced, "
                          "0 and about 1/16, 1/8, 1/4, 1/2, 1 of the run")
    pre.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its train_state.pt (from scratch if there is none)")
    pre.add_argument("--state-every", type=int, default=100,
                     help="write the resumable train_state.pt every this many steps (and at each checkpoint)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--device", default="auto")
    pre.add_argument("--quiet", action="store_true")
    pre.set_defaults(func=_pretrain)

    ev = commands.add_parser("evaluate", help="RankMe per layer and probe scores of an encoder on a HEAR task")
    ev.add_argument("--task", required=True, help="a HEAR task folder (task_metadata.json inside)")
    ev.add_argument("--encoder", required=True, help="CHECKPOINT.pt | random:PRESET | hear:MODULE[:MODEL_FILE]")
    ev.add_argument("--probes", nargs="*", default=list(PROBES), choices=PROBES)
    ev.add_argument("--layers", type=int, nargs="*", help="layer indices (negative from the end; default all)")
    ev.add_argument("--max-rank-samples", type=int, default=25_600, help="clips (and frames) for RankMe")
    ev.add_argument("--max-epochs", type=int, default=50, help="probe training epochs (at most)")
    ev.add_argument("--patience", type=int, help="early-stopping patience on valid (default: the protocol's)")
    ev.add_argument("--lr-grid", type=float, nargs="+", help="learning rates chosen from on valid (default: per probe)")
    ev.add_argument("--weight-decay-grid", type=float, nargs="+", help="weight decays chosen from on valid")
    ev.add_argument("--probe-seeds", type=int, default=3, help="probe seeds at the best layer (mean and std)")
    ev.add_argument("--pooling", choices=POOLINGS, default="mean",
                    help="clip embedding: mean of all tokens, or over time with a square-patch ViT's "
                         "frequency rows concatenated")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--skip-bad", action="store_true", help="skip (and count) unreadable or silent files")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=_evaluate)

    rank = commands.add_parser("rank", help="RankMe of an embedding file, (N, D) or (L, N, D)")
    rank.add_argument("file", help=".npy, .npz, .pt/.pth or .csv")
    rank.add_argument("--key", help="array name inside an .npz or a saved dict")
    rank.add_argument("--eps", type=float, default=1e-7, help="ε added to each p_k (default 1e-7)")
    rank.add_argument("--center", action="store_true", help="subtract the column mean first")
    rank.add_argument("--squared", action="store_true", help="use σ² (covariance eigenvalues)")
    rank.add_argument("--json", action="store_true", help="print a JSON object")
    rank.set_defaults(func=_rank)

    p = commands.add_parser("sweep", help="run a profile's grid of pretraining runs into a results store (resumable)",
                       description="Expand PROFILE's sweep (base run + one axis per studied variable, x seeds), "
                                   "run the runs missing from the store, write each once, export runs/ranks/probes.csv.")
    p.add_argument("profile", help="a profile name in configs/ (smoke, laptop, reference) or a YAML file")
    p.add_argument("--results", help="results store (default: results/<profile>/)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their estimated cost; run nothing")
    p.add_argument("--executor", choices=("inline", "process", "dask"), default="inline")
    p.add_argument("--workers", type=int, default=1, help="processes for --executor process|dask (one thread each)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler (e.g. a SLURMCluster's) to join")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs stored with status 'failed'")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_sweep)

    book = commands.add_parser(
        "book", help="bring the sweep up to date, execute the notebooks whose inputs changed, build the book",
        description="Bring PROFILE's sweep up to date in the results folder, execute with papermill each notebook "
                    "of _toc.yml whose inputs changed (source, parameters, results tables, library code) into "
                    "book/executed/, check the glue references, then `jupyter-book build` with warnings as errors. "
                    "The rendered book is _build/html/index.html.")
    book.add_argument("--profile", default="laptop", help="smoke, laptop, reference or a YAML path (default laptop)")
    book.add_argument("--results", help="results folder the sweep fills and the notebooks read "
                                        "(default results/<profile>/; a fresh folder trains from scratch)")
    book.add_argument("--force", nargs="+", metavar="NAME", help="re-run these notebooks even if their inputs are unchanged")
    book.add_argument("--no-sweep", action="store_true", help="use the results folder as it is; train nothing")
    book.add_argument("--workers", type=int, default=1, help="sweep processes (one thread each; default 1, in-process)")
    book.add_argument("--no-build", action="store_true", help="only execute the notebooks")
    book.add_argument("--only", nargs="*", help="with --no-build: these notebooks only")
    book.set_defaults(func=_book)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as error:
        print(f"audiorank {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
