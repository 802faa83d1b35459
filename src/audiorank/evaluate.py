"""Evaluate one encoder on one HEAR task: RankMe of every layer and probe scores of every layer.

An encoder is named by a string, as on the command line:
- a checkpoint file of ours (`audiorank pretrain` writes them; loaded with weights_only=True);
- `random:PRESET`, a preset of `audiorank.models` at random initialisation (the baseline);
- `hear:MODULE` (or `hear:MODULE:MODEL_FILE`), any module with the HEAR model API
  (`load_model`, `get_scene_embeddings`, `get_timestamp_embeddings`; Turian et al. 2022).

For every layer the clip embedding is the mean over its tokens; RankMe (Garrido et al. 2023) is
computed on up to `max_rank_samples` clips of the task (all splits), and on as many frames
(tokens) for the frame-level variant; the counts are recorded because RankMe depends on them.
Probes (`audiorank.probes`) are fitted on train, selected on valid and scored on test; the
"best" score of a probe is its test score at the layer with the best *valid* score, never the
best test score.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import HearTask, LogMel, read_hear_task
from .probes import PROBES, make_probe
from .rank import rankme

RANKME_SAMPLES = 25_600  # the sample count of the RankMe paper


@dataclass
class Embedder:
    """An encoder ready to embed waveforms: per layer, tokens (N, T, D) as float32 on the CPU."""

    name: str
    sample_rate: int
    layer_names: list[str]
    embed_batch: Callable[[torch.Tensor], list[torch.Tensor]]
    n_parameters: int | None = None


def _our_embedder(name: str, encoder: torch.nn.Module, frontend: LogMel, device: str) -> Embedder:
    encoder = encoder.to(device).eval()
    frontend = frontend.to(device)

    @torch.no_grad()
    def embed_batch(waves: torch.Tensor) -> list[torch.Tensor]:
        layers = encoder(frontend(waves.to(device)))  # [(B, tokens, D_l)] for every layer
        return [tokens.float().cpu() for tokens in layers]

    return Embedder(name, frontend.sample_rate, [str(i) for i in range(len(encoder.layer_dims))],
                    embed_batch, encoder.num_parameters(exclude_embeddings=True))


def _hear_embedder(spec: str, device: str) -> Embedder:
    module_name, _, model_file = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"encoder 'hear:{spec}': cannot import module {module_name!r} ({error})") from error
    missing = [f for f in ("load_model", "get_scene_embeddings", "get_timestamp_embeddings") if not hasattr(module, f)]
    if missing:
        raise ValueError(f"encoder 'hear:{spec}': module {module_name!r} lacks the HEAR API functions {missing}")
    model = module.load_model(model_file) if model_file else module.load_model()
    if hasattr(model, "to"):
        model = model.to(device)
    if not hasattr(model, "sample_rate"):
        raise ValueError(f"encoder 'hear:{spec}': the model has no sample_rate attribute (HEAR API)")

    @torch.no_grad()
    def embed_batch(waves: torch.Tensor) -> list[torch.Tensor]:
        waves = waves.to(device)
        scene = module.get_scene_embeddings(waves, model)  # (B, D)
        frames, _timestamps = module.get_timestamp_embeddings(waves, model)  # (B, T, D)
        return [scene.float().cpu()[:, None, :], frames.float().cpu()]

    return Embedder(f"hear:{spec}", int(model.sample_rate), ["scene", "timestamp"], embed_batch)


def load_embedder(spec: str, fit_waves: np.ndarray | None = None, seed: int = 0,
                  device: str = "cpu") -> Embedder:
    """The encoder a spec names (see the module docstring).

    `fit_waves` (N, samples) at 16 kHz fits the log-mel statistics of a `random:` encoder (and of
    a checkpoint that carries none): normally the task's train split.
    """
    from .models import PRESETS, build_encoder, load_checkpoint

    if spec.startswith("hear:"):
        return _hear_embedder(spec[len("hear:"):], device)
    if spec.startswith("random:"):
        preset = spec[len("random:"):]
        if preset not in PRESETS:
            raise ValueError(f"encoder {spec!r}: unknown preset {preset!r}; presets: {sorted(PRESETS)}")
        torch.manual_seed(seed)
        encoder, frontend_state = build_encoder(preset), None
    else:
        path = Path(spec)
        if not path.is_file():
            raise ValueError(
                f"encoder {spec!r}: expected a checkpoint file, 'random:PRESET' or 'hear:MODULE'; no such file"
            )
        encoder, meta = load_checkpoint(path)
        frontend_state = (meta.get("extra") or {}).get("frontend")
    frontend = LogMel()
    if frontend_state is not None:
        frontend.load_state_dict(frontend_state)
    elif fit_waves is not None:
        frontend.fit_stats(fit_waves)
    return _our_embedder(spec, encoder, frontend, device)


def embed(embedder: Embedder, waves: np.ndarray, batch_size: int = 32, progress: bool = False,
          desc: str = "embedding") -> list[torch.Tensor]:
    """Tokens of every layer for every clip: [(N, T_l, D_l)]."""
    if waves.ndim != 2 or len(waves) == 0:
        raise ValueError(f"waves must be a non-empty (N, samples) array, got shape {waves.shape}")
    chunks: list[list[torch.Tensor]] = []
    for start in tqdm(range(0, len(waves), batch_size), desc=desc, disable=not progress, leave=False):
        chunks.append(embedder.embed_batch(torch.from_numpy(np.ascontiguousarray(waves[start:start + batch_size]))))
    return [torch.cat(layer) for layer in zip(*chunks)]


def task_splits(task: HearTask) -> tuple[str, str, str]:
    """(train, valid, test) split names. k-fold tasks: fold 0 tests, fold 1 selects, the rest train
    (one fold assignment, not full cross-validation)."""
    names = task.folds()
    if set(("train", "valid", "test")) <= set(names):
        return "train", "valid", "test"
    if len(names) < 3:
        raise ValueError(f"task {task.name!r}: need train/valid/test or >= 3 folds, got splits {names}")
    return "+".join(names[2:]), names[1], names[0]


def _split_arrays(task: HearTask, split: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [task.arrays(name) for name in split.split("+")]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(n) if n <= limit else np.sort(rng.choice(n, size=limit, replace=False))


def evaluate(
    encoder: str,
    task: str | Path | HearTask,
    *,
    probes: Sequence[str] = PROBES,
    layers: Sequence[int] | None = None,
    max_rank_samples: int = RANKME_SAMPLES,
    probe_options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 32,
    skip_bad: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """RankMe per layer and probe scores per layer for one encoder on one HEAR task (JSON-ready)."""
    started = time.perf_counter()
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probes {sorted(unknown)}; available: {list(PROBES)}")
    # a HEAR module says its sample rate; our encoders take 16 kHz and fit their front end on train
    embedder = load_embedder(encoder, device=device) if encoder.startswith("hear:") else None
    if isinstance(task, (str, Path)):
        rate = embedder.sample_rate if embedder else 16000
        task = read_hear_task(task, sample_rate=rate, skip_bad=skip_bad, progress=progress)
    train, valid, test = task_splits(task)
    arrays = {role: _split_arrays(task, split) for role, split in (("train", train), ("valid", valid), ("test", test))}
    embedder = embedder or load_embedder(encoder, fit_waves=arrays["train"][0], seed=seed, device=device)
    if embedder.sample_rate != task.sample_rate:
        raise ValueError(f"encoder {encoder!r} expects {embedder.sample_rate} Hz audio, the task was read at "
                         f"{task.sample_rate} Hz")
    tokens = {role: embed(embedder, waves, batch_size, progress, f"embedding {role}")
              for role, (waves, _) in arrays.items()}
    chosen = list(range(len(embedder.layer_names))) if layers is None else [
        range(len(embedder.layer_names))[i] for i in layers]
    names = [embedder.layer_names[i] for i in chosen]

    # RankMe over every clip of the task (all splits), seeded subsample above the cap
    rng = np.random.default_rng(seed)
    rank_clip, rank_frame, n_frames_used = {}, {}, 0
    all_tokens = {i: torch.cat([tokens[r][i] for r in ("train", "valid", "test")]) for i in chosen}
    n_clips = len(next(iter(all_tokens.values())))
    clip_rows = _subsample(n_clips, max_rank_samples, rng)
    for i, name in zip(chosen, names):
        layer = all_tokens[i]  # (N, T, D)
        rank_clip[name] = rankme(layer.mean(dim=1)[clip_rows])
        frames = layer.reshape(-1, layer.shape[-1])  # (N·T, D)
        frame_rows = _subsample(len(frames), max_rank_samples, rng)
        rank_frame[name] = rankme(frames[frame_rows])
        n_frames_used = len(frame_rows)

    # probes: fit on train, select on valid, score on test
    (_, y_train), (_, y_valid), (_, y_test) = arrays["train"], arrays["valid"], arrays["test"]
    multilabel = task.prediction_type == "multilabel"
    options = {"seed": seed, "device": device, "n_classes": None if multilabel else task.n_labels,
               **(probe_options or {})}
    scores: dict[str, dict[str, float]] = {}
    valid_scores: dict[str, dict[str, float]] = {}
    best_layer: dict[str, str] = {}
    jobs = [(p, i, n) for p in probes for i, n in zip(chosen, names)]
    for probe_name, i, name in tqdm(jobs, desc="probes", disable=not progress, leave=False):
        probe = make_probe(probe_name, **options)
        probe.fit(tokens["train"][i], y_train, tokens["valid"][i], y_valid)
        scores.setdefault(probe_name, {})[name] = probe.score(tokens["test"][i], y_test)
        valid_scores.setdefault(probe_name, {})[name] = float(probe.best_score_)
    for probe_name in probes:
        best = max(names, key=lambda n: valid_scores[probe_name][n])  # first on ties
        best_layer[probe_name] = best
        scores[probe_name]["best"] = scores[probe_name][best]

    return {
        "encoder": encoder,
        "task": task.name,
        "prediction_type": task.prediction_type,
        "metric": "mAP" if multilabel else "accuracy",
        "splits": {"train": train, "valid": valid, "test": test},
        "n_clips": {role: int(len(a[0])) for role, a in arrays.items()},
        "n_skipped": task.n_skipped,
        "n_parameters": embedder.n_parameters,
        "layers": names,
        "rankme": rank_clip,
        "rankme_n_samples": int(len(clip_rows)),
        "rankme_frame": rank_frame,
        "rankme_frame_n_samples": int(n_frames_used),
        "scores": scores,
        "valid_scores": valid_scores,
        "best_layer": best_layer,
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
