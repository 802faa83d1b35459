"""The study as data: a profile's `sweep` section → a grid of runs → a results store → tidy tables.

A run is one pretraining of one encoder (`pretrain.pretrain_on_pool`), evaluated at each of its
checkpoints on every corpus task with every probe (`evaluate.evaluate`). Its id is the hash of its
full resolved config (the pretraining config with the encoder's every field, pool, corpus sizes and
generator version, tasks, probes), so a changed default is a new run, never a stale one.

The store (`ResultsStore`) holds one JSON file per finished run, written once by the driver
(temp file + rename): a sweep killed at any moment and started again finds every finished run
exactly once, never a torn file, and runs only the rest. Workers return records; only the driver
writes. Executors share the `concurrent.futures.Executor` interface: in-process (default), a local
process pool, or Dask (a `LocalCluster`, a running scheduler, or SLURM through dask-jobqueue).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

__all__ = [
    "AXES",
    "ResultsStore",
    "Run",
    "expand",
    "make_executor",
    "run_one",
    "runs_on_axis",
    "slurm_cluster",
    "sweep",
]

#: the studied variables; a profile's `axes` may name these and nothing else
AXES = ("model_size", "data", "compute", "architecture", "clip_length", "embedding_dim", "depth", "mask_ratio")
#: keys of a run config that are not PretrainConfig fields
_RUN_KEYS = ("pool_clips", "pool_seconds")
_SWEEP_KEYS = frozenset({"base", "axes", "seeds", "tasks", "probes", "evaluate"})


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of the grid: its resolved config, id, and the axis it was expanded for."""

    config: dict
    axis: str  # one of AXES, or "base" (the base run belongs to every axis)

    @property
    def id(self) -> str:
        return run_id(self.config)


def run_id(config: Mapping) -> str:
    """16 hex digits of the SHA-256 of the config as canonical JSON."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- the grid


def _override(base: dict, overrides: Mapping, where: str) -> dict:
    """base with `overrides` applied; "encoder.FIELD" keys change one field of the encoder config."""
    from .models import EncoderConfig, PRESETS
    from .pretrain import PretrainConfig

    out = copy.deepcopy(base)
    pretrain_fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    encoder_fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    for key, value in overrides.items():
        if key.startswith("encoder."):
            field = key.split(".", 1)[1]
            if field not in encoder_fields:
                raise ValueError(f"{where}: unknown encoder field {field!r} in {key!r}; "
                                 f"expected one of {sorted(encoder_fields)}")
            out.setdefault("encoder_overrides", {})[field] = value
        elif key == "encoder":
            if value not in PRESETS:
                raise ValueError(f"{where}: unknown encoder preset {value!r}; available: {', '.join(PRESETS)}")
            out["encoder"] = value
        elif key in pretrain_fields or key in _RUN_KEYS:
            out[key] = value
        else:
            raise ValueError(f"{where}: unknown run key {key!r}; expected a PretrainConfig field "
                             f"({', '.join(sorted(pretrain_fields))}), {', '.join(_RUN_KEYS)} or encoder.FIELD")
    return out


def _resolve(spec: dict, seed: int, corpus: Mapping, tasks: Sequence[str], probes: Sequence[str],
             evaluate_options: Mapping, where: str) -> dict:
    """The full config a run is identified by: every PretrainConfig and EncoderConfig field."""
    from .audio import GENERATOR_VERSION
    from .models import PRESETS
    from .pretrain import ADDED_FIELDS, PretrainConfig

    spec = dict(spec)
    preset = spec.pop("encoder", "vit-tiny")
    pool = {"pool_clips": int(spec.pop("pool_clips", corpus.get("pool_clips", 2000))),
            "pool_seconds": float(spec.pop("pool_seconds", corpus.get("pool_seconds", 1.0)))}
    try:  # both configs validate their values in __post_init__
        encoder = dataclasses.replace(PRESETS[preset], **spec.pop("encoder_overrides", {}))
        pretrain = PretrainConfig(**spec, encoder=dataclasses.asdict(encoder), seed=seed)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    if pool["pool_clips"] < pretrain.batch_size:
        raise ValueError(f"{where}: pool_clips={pool['pool_clips']} is below batch_size={pretrain.batch_size}")
    return {
        "preset": preset,
        "pretrain": {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(pretrain), default=list)).items()
                     if not (k in ADDED_FIELDS and v == ADDED_FIELDS[k])},
        **pool,
        "corpus": {k: corpus[k] for k in ("n_train", "n_valid", "n_test", "seconds")},
        "corpus_version": GENERATOR_VERSION,
        "tasks": list(tasks),
        "probes": list(probes),
        "evaluate": dict(evaluate_options),
    }


def _axis_points(name: str, values: Any) -> list[dict]:
    """An axis is {key: [v1, v2, ...]} (one key varied) or [{key: v, ...}, ...] (several together)."""
    if isinstance(values, Mapping):
        if len(values) != 1:
            raise ValueError(f"sweep axis {name!r}: a mapping axis varies one key, got {sorted(values)}; "
                             f"use a list of mappings to vary several keys together")
        (key, levels), = values.items()
        if not isinstance(levels, list) or not levels:
            raise ValueError(f"sweep axis {name!r}: {key!r} needs a non-empty list of values, got {levels!r}")
        return [{key: v} for v in levels]
    if isinstance(values, list) and values and all(isinstance(v, Mapping) for v in values):
        return [dict(v) for v in values]
    raise ValueError(f"sweep axis {name!r}: expected {{key: [values]}} or a list of mappings, got {values!r}")


def expand(profile: Mapping) -> list[Run]:
    """Every run of a profile's `sweep` section: the base, then each axis's points, times seeds.
    A point equal to the base is the base run (listed once, axis "base")."""
    sweep_spec = profile.get("sweep")
    name = profile.get("name", "profile")
    if not isinstance(sweep_spec, Mapping):
        raise ValueError(f"profile {name!r} has no 'sweep' section (a mapping with base, axes, seeds, tasks, probes)")
    unknown = set(sweep_spec) - _SWEEP_KEYS
    if unknown:
        raise ValueError(f"profile {name!r}: unknown sweep keys {sorted(unknown)}; expected some of {sorted(_SWEEP_KEYS)}")
    axes = sweep_spec.get("axes") or {}
    bad_axes = set(axes) - set(AXES)
    if bad_axes:
        raise ValueError(f"profile {name!r}: unknown sweep axes {sorted(bad_axes)}; expected some of {list(AXES)}")
    seeds = sweep_spec.get("seeds", [0])
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise ValueError(f"profile {name!r}: sweep.seeds must be a non-empty list of ints, got {seeds!r}")
    from .audio import TASKS
    from .probes import PROBES

    tasks = sweep_spec.get("tasks") or sorted(TASKS)
    probes = sweep_spec.get("probes") or ["linear"]
    if set(tasks) - set(TASKS):
        raise ValueError(f"profile {name!r}: unknown tasks {sorted(set(tasks) - set(TASKS))}; available: {sorted(TASKS)}")
    if set(probes) - set(PROBES):
        raise ValueError(f"profile {name!r}: unknown probes {sorted(set(probes) - set(PROBES))}; available: {list(PROBES)}")
    corpus = profile.get("corpus") or {}
    missing = {"n_train", "n_valid", "n_test", "seconds"} - set(corpus)
    if missing:
        raise ValueError(f"profile {name!r}: the corpus section lacks {sorted(missing)}")
    evaluate_options = sweep_spec.get("evaluate") or {}

    base = _override({}, sweep_spec.get("base") or {}, f"profile {name!r}, sweep.base")
    points = [("base", base)] + [
        (axis, _override(base, point, f"profile {name!r}, axis {axis!r}, point {point}"))
        for axis in AXES if axis in axes for point in _axis_points(axis, axes[axis])
    ]
    runs: dict[str, Run] = {}
    for (axis, spec), seed in itertools.product(points, seeds):
        where = f"profile {name!r}, axis {axis!r}, seed {seed}"
        config = _resolve(spec, seed, corpus, tasks, probes, evaluate_options, where)
        run = Run(config, axis)
        runs.setdefault(run.id, run)  # the base (listed first) keeps its axis when a point repeats it
    return list(runs.values())


def runs_on_axis(runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The rows of a runs table that belong to `axis`: its own runs and the base run."""
    return runs[runs["axis"].isin([axis, "base"])]


def estimate_flops(run: Run) -> float:
    """Training FLOPs ≈ the encoder's forward FLOPs on one clip (counted by FlopCounterMode) × the
    passes a step makes × clips seen: forward + backward (3 passes) over the unmasked fraction for
    MAE, plus the EMA teacher's forward over the whole clip for d2v, and forward + backward of two
    views plus the target's two forwards (8) for BYOL. Heads, decoder and evaluation are not
    counted: an estimate for --dry-run."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .models import build_encoder

    cfg = run.config["pretrain"]
    encoder = build_encoder(cfg["encoder"])
    frames = round(run.config["pool_seconds"] * 100)  # the front end's 10 ms hop
    frames -= frames % cfg["encoder"]["patch"][1]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, cfg["encoder"]["n_mels"], frames))
    visible = 1.0 - cfg["mask_ratio"]
    passes = {"mae": 3.0 * visible, "d2v": 3.0 * visible + 1.0}.get(cfg["objective"], 8.0)
    return passes * counter.get_total_flops() * cfg["batch_size"] * cfg["steps"]


# ----------------------------------------------------------------------------- one run


def run_one(config: Mapping, progress: bool = False) -> dict:
    """Pretrain one run and evaluate every checkpoint on every task with every probe; a record
    ready for the store. Never raises for a failed run: the status says "failed" with the error."""
    import torch

    from .audio import make_task
    from .evaluate import evaluate
    from .pretrain import PretrainConfig, pretrain_on_pool

    started = time.perf_counter()
    record: dict[str, Any] = {"id": run_id(config), "config": dict(config), "ranks": [], "probes": []}
    try:
        pretrain_config = PretrainConfig(**config["pretrain"])
        corpus = config["corpus"]
        tasks = {name: make_task(name, corpus["n_train"], corpus["n_valid"], corpus["n_test"],
                                 corpus["seconds"], seed=0) for name in config["tasks"]}
        with tempfile.TemporaryDirectory(prefix="audiorank-run-") as scratch:
            result = pretrain_on_pool(pretrain_config, config["pool_clips"], config["pool_seconds"],
                                      out_dir=scratch, progress=progress)
            record.update(status=result.status, params=result.params, params_total=result.params_total,
                          flops_per_step=result.flops_per_step, steps_done=result.steps, device=result.device,
                          final_loss=result.losses[-1] if result.losses else float("nan"))
            if result.status == "ok":
                for path in result.checkpoints:
                    step = torch.load(path, map_location="cpu", weights_only=True)["step"]
                    for name, task in tasks.items():
                        out = evaluate(path, task, probes=config["probes"], seed=pretrain_config.seed,
                                       **config.get("evaluate", {}))
                        _collect(record, out, step, name)
    except Exception as err:  # noqa: BLE001 — a failed run is a result, kept with its status
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["torch_threads"] = torch.get_num_threads()  # CPU reductions, so a seed's numbers, depend on it
    return record


def _collect(record: dict, out: Mapping, step: int, task: str) -> None:
    """Rows of the ranks and probes tables from one `evaluate` result."""
    for level, key, count_key, capped_key in (("clip", "rankme", "rankme_n_samples", "rankme_capped"),
                                              ("frame", "rankme_frame", "rankme_frame_n_samples", "rankme_frame_capped")):
        for layer, value in out[key].items():
            counts = out[count_key]
            n = counts[layer] if isinstance(counts, Mapping) else counts
            # capped: fewer samples than dimensions, so the value is bounded by N, not measured
            record["ranks"].append({"step": step, "task": task, "layer": layer, "level": level,
                                    "n_samples": int(n), "rankme": float(value), "capped": bool(out[capped_key][layer])})
    for split, key in (("test", "scores"), ("valid", "valid_scores")):
        for probe, per_layer in out[key].items():
            for layer, value in per_layer.items():
                if layer == "best":
                    continue
                record["probes"].append({"step": step, "task": task, "probe": probe, "layer": str(layer),
                                         "split": split, "metric": out["metric"], "value": float(value)})
    for probe, layer in out["best_layer"].items():
        record["probes"].append({"step": step, "task": task, "probe": probe, "layer": "best",
                                 "split": "test", "metric": out["metric"], "value": float(out["scores"][probe]["best"])})


# ----------------------------------------------------------------------------- the store


class ResultsStore:
    """One JSON file per finished run under `root/runs/`, written atomically by one writer;
    `export()` turns them into the tidy tables runs.csv, ranks.csv, probes.csv under `root`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs_dir = self.root / "runs"

    def _path(self, rid: str) -> Path:
        return self.runs_dir / f"{rid}.json"

    def has(self, rid: str) -> bool:
        return self._path(rid).is_file()

    def read(self, rid: str) -> dict:
        return json.loads(self._path(rid).read_text())

    def ids(self) -> set[str]:
        """Ids of the runs present (complete files only; temp files are never read)."""
        return {p.stem for p in self.runs_dir.glob("*.json")} if self.runs_dir.is_dir() else set()

    def write(self, record: Mapping) -> Path:
        """Write a run once: temp file in the same folder, fsync, rename over nothing."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        path = self._path(record["id"])
        fd, tmp = tempfile.mkstemp(prefix=f".{record['id']}.", suffix=".tmp", dir=self.runs_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def log_session(self, session: Mapping) -> Path:
        """Append one sweep invocation (when, how long, where, which code) to manifest.json."""
        path = self.root / "manifest.json"
        manifest = json.loads(path.read_text()) if path.is_file() else {"sessions": []}
        manifest["sessions"].append(dict(session))
        manifest["wall_time_s"] = round(sum(s["wall_time_s"] for s in manifest["sessions"]), 1)
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=self.root)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f, indent=1)
        os.replace(tmp, path)
        return path

    def clean(self) -> int:
        """Remove temp files a killed writer left behind; returns how many."""
        stale = list(self.runs_dir.glob(".*.tmp")) if self.runs_dir.is_dir() else []
        for p in stale:
            p.unlink()
        return len(stale)

    def export(self, axes: Mapping[str, str] | None = None) -> dict[str, pd.DataFrame]:
        """runs/ranks/probes tables, sorted so that identical records give identical files. With
        `axes` ({run id: axis}, a profile's runs), only those runs, each with that axis."""
        runs, ranks, probes = [], [], []
        for rid in sorted(self.ids() if axes is None else self.ids() & set(axes)):
            rec = self.read(rid)
            cfg = rec["config"]
            row = {"run": rid, "axis": (axes or {}).get(rid, rec.get("axis", "")), "status": rec["status"],
                   "preset": cfg["preset"], "pool_clips": cfg["pool_clips"], "pool_seconds": cfg["pool_seconds"]}
            row.update({k: v for k, v in cfg["pretrain"].items() if k != "encoder" and not isinstance(v, (list, dict))})
            row.update({f"encoder.{k}": v for k, v in cfg["pretrain"]["encoder"].items() if not isinstance(v, (list, dict))})
            row.update({k: rec.get(k) for k in ("params", "params_total", "flops_per_step", "steps_done",
                                                 "final_loss", "device", "torch_threads", "wall_time_s", "error")})
            runs.append(row)
            ranks += [{"run": rid, **r} for r in rec["ranks"]]
            probes += [{"run": rid, **p} for p in rec["probes"]]
        tables = {"runs": pd.DataFrame(runs), "ranks": pd.DataFrame(ranks), "probes": pd.DataFrame(probes)}
        for name, df in tables.items():
            df.to_csv(self.root / f"{name}.csv", index=False)
        return tables


# ----------------------------------------------------------------------------- executors


class InlineExecutor(cf.Executor):
    """Runs each submitted call at once in this process: the default, and the reference the other
    executors are compared with."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 — handed to the caller through the future
            future.set_exception(err)
        return future


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@contextlib.contextmanager
def make_executor(kind: str = "inline", workers: int = 1, scheduler: str | None = None) -> Iterator[cf.Executor]:
    """An Executor: "inline", "process" (a local pool of `workers` one-thread processes) or "dask"
    (a LocalCluster of `workers` one-thread processes, or the running scheduler at `scheduler`)."""
    if kind == "inline":
        yield InlineExecutor()
    elif kind == "process":
        import multiprocessing

        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_one_thread) as pool:
            yield pool
    elif kind == "dask":
        from distributed import Client, LocalCluster

        with contextlib.ExitStack() as stack:
            if scheduler:
                client = stack.enter_context(Client(scheduler))
            else:
                cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                           dashboard_address=None))
                client = stack.enter_context(Client(cluster))
            client.run(_one_thread)
            yield client.get_executor(pure=False)
    else:
        raise ValueError(f"unknown executor {kind!r}; expected 'inline', 'process' or 'dask'")


def slurm_cluster(queue: str | None = None, cores: int = 4, memory: str = "16GB", walltime: str = "01:00:00",
                  gpus: int = 0, **kwargs: Any):
    """A dask-jobqueue SLURMCluster whose workers run one sweep run per process. Scale it with
    `cluster.scale(jobs=N)`, then `audiorank sweep PROFILE --executor dask --scheduler
    cluster.scheduler_address`. `cluster.job_script()` shows the batch script without SLURM."""
    from dask_jobqueue import SLURMCluster

    extra = [f"--gres=gpu:{gpus}"] if gpus else []
    return SLURMCluster(queue=queue, cores=cores, processes=cores, memory=memory, walltime=walltime,
                        job_extra_directives=extra, worker_extra_args=["--nthreads", "1"], **kwargs)


# ----------------------------------------------------------------------------- the driver


def sweep(
    profile: Mapping,
    results: str | os.PathLike,
    *,
    executor: str = "inline",
    workers: int = 1,
    scheduler: str | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    progress: bool = True,
    run_fn: Callable[[Mapping], dict] = run_one,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run every run of the profile missing from the store at `results`, write each as it finishes,
    export the tables. Returns counts: planned, present, ran, failed."""
    runs = expand(profile)
    store = ResultsStore(results)
    if not dry_run:
        removed = store.clean()
        if removed:
            log(f"removed {removed} temp file(s) left by an interrupted sweep")
    present = store.ids()
    if retry_failed:
        present = {rid for rid in present if store.read(rid)["status"] != "failed"}
    todo = [r for r in runs if r.id not in present]
    axes = {r.id: r.axis for r in runs}
    if dry_run:
        total = 0.0
        for r in runs:
            flops = estimate_flops(r)
            total += flops if r.id not in present else 0.0
            c = r.config["pretrain"]
            state = "done" if r.id in present else "todo"
            log(f"{r.id}  {state}  {r.axis:<13} {r.config['preset']:<16} {c['objective']:<5} steps={c['steps']:<6} "
                f"pool={r.config['pool_clips']:<7} seed={c['seed']}  ≈{flops / 1e12:.2f} TFLOP")
        log(f"{len(runs)} runs, {len(present & set(axes))} present, {len(todo)} to run, "
            f"≈{total / 1e12:.1f} TFLOP of training to do")
        return {"planned": len(runs), "present": len(runs) - len(todo), "ran": 0, "failed": 0}
    if not todo:
        log(f"nothing to run: all {len(runs)} runs of profile {profile.get('name', '?')!r} are in {store.root}")
    failed = 0
    started, started_at = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    where = environment() if todo else {}  # at the start: the commit the runs are made with
    # at most a few runs in flight, so each is written as soon as it ends (the inline executor
    # runs at submit time: submitting everything first would write nothing before the last run)
    in_flight_limit = 1 if executor == "inline" else 2 * workers
    queue = iter(todo)
    with make_executor(executor, workers, scheduler) as pool:
        bar = tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress or bool(os.environ.get("CI")))
        futures: dict[cf.Future, Run] = {}
        while True:
            while len(futures) < in_flight_limit and (run := next(queue, None)) is not None:
                futures[pool.submit(run_fn, run.config)] = run
            if not futures:
                break
            done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
            for future in done:
                run = futures.pop(future)
                try:
                    record = future.result()
                except Exception as err:  # noqa: BLE001 — a worker that died is a failed run, recorded
                    record = {"id": run.id, "config": run.config, "status": "failed", "ranks": [], "probes": [],
                              "error": f"{type(err).__name__}: {err}"}
                record["axis"] = run.axis
                failed += record["status"] == "failed"
                store.write(record)
                bar.update(1)
        bar.close()
    store.export(axes)
    counts = {"planned": len(runs), "present": len(runs) - len(todo), "ran": len(todo), "failed": failed}
    if todo:
        store.log_session({"started": started_at, "wall_time_s": round(time.perf_counter() - started, 1),
                           "executor": executor, "workers": workers, **counts, **where})
    return counts


def environment() -> dict[str, Any]:
    """Where a sweep ran: machine, library versions, the code's commit (for the manifest)."""
    import platform
    import subprocess

    import numpy
    import torch

    from . import __version__

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).parent).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "configs"], capture_output=True,
                                    text=True, cwd=Path(__file__).parent).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        models = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")]
        cpu = models[0] if models else cpu
    return {"machine": f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
            "device": "cuda: " + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "audiorank": __version__, "commit": commit + ("+dirty" if dirty else "")}
