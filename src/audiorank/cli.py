"""The `audiorank` command.

corpus    write the embedded corpus's tasks as HEAR task folders
pretrain  pretrain an encoder on the embedded pretraining pool (checkpoints + a JSON summary)
evaluate  an encoder on a HEAR task folder: RankMe per layer and probe scores, as JSON
rank      RankMe of an embedding file
book      execute every notebook with papermill and build the Jupyter Book
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
    from .book import build_book, execute_notebooks

    if args.no_build:
        execute_notebooks(args.profile, only=args.only or None)
    elif args.only:
        raise SystemExit("--only executes a subset of notebooks; it needs --no-build")
    else:
        build_book(args.profile)
    return 0


def _corpus(args: argparse.Namespace) -> int:
    from .audio import corpus_command

    written = corpus_command(args.out, profile=args.profile, seed=args.seed, tasks=args.tasks,
                             n_train=args.n_train, n_valid=args.n_valid, n_test=args.n_test,
                             seconds=args.seconds, progress=not args.quiet)
    for name, folder in written.items():
        print(f"{name}\t{folder}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainConfig, pretrain_on_pool

    config = PretrainConfig(objective=args.objective, encoder=args.preset, steps=args.steps,
                            batch_size=args.batch_size, lr=args.lr, mask_ratio=args.mask_ratio,
                            warmup_steps=min(args.warmup_steps, args.steps),
                            checkpoint_steps=tuple(args.checkpoint_steps), seed=args.seed,
                            device=args.device)
    out = Path(args.out)
    result = pretrain_on_pool(config, args.clips, args.seconds, out_dir=out, progress=not args.quiet)
    summary = {"status": result.status, "steps": result.steps, "final_loss": result.losses[-1],
               "first_loss": result.losses[0], "params": result.params, "flops_per_step": result.flops_per_step,
               "steps_per_second": result.steps_per_second, "device": result.device,
               "wall_time_s": result.wall_time_s, "checkpoints": result.checkpoints, "losses": result.losses}
    (out / "pretrain.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "losses"}))
    return 0 if result.status == "ok" else 1


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    result = evaluate(args.encoder, args.task, probes=args.probes, layers=args.layers,
                      max_rank_samples=args.max_rank_samples, probe_options={"max_epochs": args.max_epochs},
                      seed=args.seed, device=args.device, skip_bad=args.skip_bad, progress=not args.quiet)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['encoder']} on {result['task']} ({result['metric']}, RankMe on {result['rankme_n_samples']} clips)")
        for layer in result["layers"]:
            probes = "  ".join(f"{p} {result['scores'][p][layer]:.3f}" for p in result["scores"])
            print(f"layer {layer}\tRankMe {result['rankme'][layer]:8.2f}  {probes}")
        print("best (layer chosen on valid): " + "  ".join(
            f"{p} {result['scores'][p]['best']:.3f} @ {result['best_layer'][p]}" for p in result["scores"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .probes import PROBES

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
    corpus.add_argument("--quiet", action="store_true", help="no progress bars")
    corpus.set_defaults(func=_corpus)

    pre = commands.add_parser("pretrain", help="pretrain an encoder on the embedded pretraining pool")
    pre.add_argument("--out", required=True, help="folder for step_*.pt checkpoints and pretrain.json")
    pre.add_argument("--preset", default="vit-tiny", help="an encoder preset of audiorank.models")
    pre.add_argument("--objective", choices=("mae", "byol"), default="mae")
    pre.add_argument("--steps", type=int, default=2000, help="optimizer steps (vit-tiny MAE needed ~2000 to beat its random init on the laptop corpus)")
    pre.add_argument("--batch-size", type=int, default=32)
    pre.add_argument("--lr", type=float, default=1e-3)
    pre.add_argument("--warmup-steps", type=int, default=100)
    pre.add_argument("--mask-ratio", type=float, default=0.75)
    pre.add_argument("--clips", type=int, default=2000, help="size of the pretraining pool")
    pre.add_argument("--seconds", type=float, default=1.0, help="clip length")
    pre.add_argument("--checkpoint-steps", type=int, nargs="*", default=[], help="extra checkpoints (0: init)")
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
    ev.add_argument("--max-epochs", type=int, default=50, help="probe training epochs")
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

    book = commands.add_parser("book", help="execute every notebook with papermill and build the book")
    book.add_argument("--profile", default="laptop", help="smoke, laptop, reference or a YAML path")
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
