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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .audio import HearTask, LogMel, read_hear_task
from .probes import DEFAULT_GRID, DEFAULT_PATIENCE, PROBES, make_probe
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


POOLINGS = ("mean", "time")


def _our_embedder(name: str, encoder: torch.nn.Module, frontend: LogMel, device: str,
                  pooling: str = "mean") -> Embedder:
    encoder = encoder.to(device).eval()
    frontend = frontend.to(device)

    @torch.no_grad()
    def embed_batch(waves: torch.Tensor) -> list[torch.Tensor]:
        layers = encoder(frontend(waves.to(device)))  # [(B, tokens, D_l)] for every layer
        if pooling == "time":
            layers = [encoder.time_tokens(tokens) for tokens in layers]  # [(B, time steps, D_l')]
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
                  device: str = "cpu", pooling: str = "mean") -> Embedder:
    """The encoder a spec names (see the module docstring), behind its log-mel front end.

    The front end is the one input normalisation: a checkpoint's own (extra["frontend"], fitted on
    its pretraining pool, so the encoder sees the features it was trained on); for a `random:`
    encoder (and a checkpoint that carries none) it is fitted on `fit_waves` (N, samples) at
    16 kHz, which must be the task's train split only. `seed` fixes a `random:` encoder's weights
    without touching the global RNG. `pooling="time"` gives one token per time step (see
    `evaluate`); a HEAR module's tokens are time steps already.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    from .models import PRESETS, build_encoder, load_checkpoint

    if spec.startswith("hear:"):
        return _hear_embedder(spec[len("hear:"):], device)
    if spec.startswith("random:"):
        preset = spec[len("random:"):]
        if preset not in PRESETS:
            raise ValueError(f"encoder {spec!r}: unknown preset {preset!r}; presets: {sorted(PRESETS)}")
        encoder, frontend_state = build_encoder(preset, seed=seed), None
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
    else:
        raise ValueError(f"encoder {spec!r} carries no front-end statistics: pass fit_waves (the task's train "
                         "split) to fit them")
    return _our_embedder(spec, encoder, frontend, device, pooling)


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


class RankMeCappedWarning(UserWarning):
    """RankMe was computed on fewer samples than the embedding dimension: RankMe ≤ min(N, D), so
    the value is capped by the sample count, not measured."""


def _frame_rows(n_clips: int, n_tokens: Sequence[int], limit: int,
                rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
    """The same frames for every layer: (clip index, token index per layer), drawn once.

    Frames are drawn without replacement on the grid of the layer with the fewest tokens T_min;
    position t there maps to token ⌊(t + ½)·T_l / T_min⌋ of layer l (the same relative time), so
    every layer gets the same clips, the same times and the same count min(limit, N·T_min)."""
    t_min = min(n_tokens)
    flat = np.arange(n_clips * t_min) if n_clips * t_min <= limit else np.sort(
        rng.choice(n_clips * t_min, size=limit, replace=False))
    clips, t = np.divmod(flat, t_min)
    return clips, [((t + 0.5) * t_l / t_min).astype(np.int64) for t_l in n_tokens]


def _rankme_per_layer(tokens: dict[str, list[torch.Tensor]], chosen: Sequence[int], names: Sequence[str],
                      limit: int, seed: int) -> dict[str, Any]:
    """Clip- and frame-level RankMe of every chosen layer on the same clips and frames (one draw).

    Only the drawn rows of one layer are gathered at a time: no concatenated copy of all layers."""
    rng = np.random.default_rng(seed)
    roles = ("train", "valid", "test")
    sizes = [len(tokens[r][chosen[0]]) for r in roles]
    starts = np.cumsum([0, *sizes])  # clip index ranges of the splits in the concatenated order
    n_clips = int(starts[-1])
    clip_rows = np.arange(n_clips) if n_clips <= limit else np.sort(rng.choice(n_clips, size=limit, replace=False))
    frame_clips, frame_times = _frame_rows(n_clips, [tokens["train"][i].shape[1] for i in chosen], limit, rng)

    def gather(i: int, rows: np.ndarray, times: np.ndarray | None) -> torch.Tensor:  # (n, D)
        parts = []
        for k, role in enumerate(roles):
            sel = (rows >= starts[k]) & (rows < starts[k + 1])
            layer = tokens[role][i]  # (N_split, T, D): a view, never concatenated
            local = torch.from_numpy(rows[sel] - starts[k])
            parts.append(layer[local].mean(dim=1) if times is None else layer[local, torch.from_numpy(times[sel])])
        return torch.cat(parts)

    out: dict[str, Any] = {"rankme": {}, "rankme_frame": {}, "rankme_dim": {}, "rankme_n_samples_per_layer": {},
                           "rankme_frame_n_samples_per_layer": {}, "rankme_capped": {}, "rankme_frame_capped": {}}
    for i, t_i, name in zip(chosen, frame_times, names):
        clips, frames = gather(i, clip_rows, None), gather(i, frame_clips, t_i)
        dim = int(clips.shape[1])
        out["rankme"][name] = rankme(clips)
        out["rankme_frame"][name] = rankme(frames)
        out["rankme_dim"][name] = dim
        out["rankme_n_samples_per_layer"][name] = int(len(clips))
        out["rankme_frame_n_samples_per_layer"][name] = int(len(frames))
        out["rankme_capped"][name] = bool(len(clips) < dim)
        out["rankme_frame_capped"][name] = bool(len(frames) < dim)
    for level, key, n in (("clip", "rankme_capped", len(clip_rows)),
                          ("frame", "rankme_frame_capped", len(frame_clips))):
        capped = [name for name in names if out[key][name]]
        if capped:
            warnings.warn(f"{level}-level RankMe of layers {capped} uses {n} samples, fewer than their embedding "
                          f"dimension ({[out['rankme_dim'][c] for c in capped]}): RankMe ≤ min(N, D), so these "
                          f"values are capped by the sample count, not measured", RankMeCappedWarning, stacklevel=3)
    out["rankme_n_samples"] = int(len(clip_rows))
    out["rankme_frame_n_samples"] = int(len(frame_clips))
    return out


def _probe_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The protocol's options for one probe: its default grid and patience, then the caller's."""
    defaults: dict[str, Any] = {**DEFAULT_GRID[name], "patience": DEFAULT_PATIENCE}
    # a fixed lr (weight decay) given without a grid means: no search over it
    for fixed, grid in (("lr", "lr_grid"), ("weight_decay", "weight_decay_grid")):
        if fixed in options and grid not in options:
            defaults.pop(grid)
    return {**defaults, **options}


def evaluate(
    encoder: str,
    task: str | Path | HearTask,
    *,
    probes: Sequence[str] = PROBES,
    layers: Sequence[int] | None = None,
    max_rank_samples: int = RANKME_SAMPLES,
    probe_options: dict[str, Any] | None = None,
    n_probe_seeds: int = 3,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 32,
    skip_bad: bool = False,
    progress: bool = False,
    pooling: str = "mean",
) -> dict[str, Any]:
    """RankMe per layer and probe scores per layer for one encoder on one HEAR task (JSON-ready).

    The protocol, the same for every encoder (after hear-eval-kit): a random-init encoder fits its
    front-end statistics on train; every probe standardises its features with train statistics; per
    probe and layer the learning rate and weight decay are chosen on valid from the grid
    `probes.DEFAULT_GRID[probe]` (early stopping on valid, patience `DEFAULT_PATIENCE`; both
    overridable through `probe_options`); the best layer is the argmax of the valid scores (first on
    ties) and its test score is `scores[probe]["best"]`; at that layer the probe is refitted with
    `n_probe_seeds` seeds (seed, seed+1, …) at the chosen hyper-parameters and the test scores' mean
    and std are reported (`seed_scores`). Test labels are only ever used to score. RankMe is
    computed for every layer on the same clips and the same frames (counts recorded; a count below
    the embedding dimension is flagged in `rankme_capped` and warned with `RankMeCappedWarning`).

    `pooling` says what a clip embedding averages: "mean", every token of the layer (the default);
    "time", one token per time step with a square-patch ViT's frequency rows concatenated
    (`Encoder.time_tokens`), so that where in frequency a feature sits survives the pooling (pitch,
    formants). Frames, RankMe and the token probes then see those time-step tokens too. Encoders
    whose tokens are time steps already (CNN, Conformer, frame-patch ViT, HEAR modules) are the
    same under both.
    """
    started = time.perf_counter()
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f"unknown probes {sorted(unknown)}; available: {list(PROBES)}")
    if not (isinstance(n_probe_seeds, (int, np.integer)) and n_probe_seeds >= 1):
        raise ValueError(f"n_probe_seeds must be a positive integer, got {n_probe_seeds!r}")
    if not (isinstance(max_rank_samples, (int, np.integer)) and max_rank_samples >= 1):
        raise ValueError(f"max_rank_samples must be a positive integer, got {max_rank_samples!r}")
    # a HEAR module says its sample rate; our encoders take 16 kHz and fit their front end on train
    embedder = load_embedder(encoder, device=device, pooling=pooling) if encoder.startswith("hear:") else None
    if isinstance(task, (str, Path)):
        rate = embedder.sample_rate if embedder else 16000
        task = read_hear_task(task, sample_rate=rate, skip_bad=skip_bad, progress=progress)
    train, valid, test = task_splits(task)
    arrays = {role: _split_arrays(task, split) for role, split in (("train", train), ("valid", valid), ("test", test))}
    embedder = embedder or load_embedder(encoder, fit_waves=arrays["train"][0], seed=seed, device=device,
                                         pooling=pooling)
    if embedder.sample_rate != task.sample_rate:
        raise ValueError(f"encoder {encoder!r} expects {embedder.sample_rate} Hz audio, the task was read at "
                         f"{task.sample_rate} Hz")
    tokens = {role: embed(embedder, waves, batch_size, progress, f"embedding {role}")
              for role, (waves, _) in arrays.items()}
    chosen = list(range(len(embedder.layer_names))) if layers is None else [
        range(len(embedder.layer_names))[i] for i in layers]
    names = [embedder.layer_names[i] for i in chosen]
    ranks = _rankme_per_layer(tokens, chosen, names, max_rank_samples, seed)

    # probes: fit on train (train statistics), select hyper-parameters, epoch and layer on valid, score on test
    (_, y_train), (_, y_valid), (_, y_test) = arrays["train"], arrays["valid"], arrays["test"]
    multilabel = task.prediction_type == "multilabel"
    common = {"seed": seed, "device": device, "n_classes": None if multilabel else task.n_labels,
              **(probe_options or {})}
    scores: dict[str, dict[str, float]] = {}
    valid_scores: dict[str, dict[str, float]] = {}
    hyper: dict[str, dict[str, dict[str, Any]]] = {}
    jobs = [(p, i, n) for p in probes for i, n in zip(chosen, names)]
    for probe_name, i, name in tqdm(jobs, desc="probes", disable=not progress, leave=False):
        probe = make_probe(probe_name, **_probe_options(probe_name, common))
        probe.fit(tokens["train"][i], y_train, tokens["valid"][i], y_valid)
        scores.setdefault(probe_name, {})[name] = float(probe.score(tokens["test"][i], y_test))
        valid_scores.setdefault(probe_name, {})[name] = float(probe.best_score_)
        hyper.setdefault(probe_name, {})[name] = {"lr": float(probe.lr_), "weight_decay": float(probe.weight_decay_),
                                                  "best_epoch": int(probe.best_epoch_)}
    best_layer: dict[str, str] = {}
    seed_scores: dict[str, dict[str, Any]] = {}
    for probe_name in probes:
        best = max(names, key=lambda n: valid_scores[probe_name][n])  # first on ties
        best_layer[probe_name] = best
        scores[probe_name]["best"] = scores[probe_name][best]
        # the spread over probe seeds at the chosen layer and hyper-parameters (no new search)
        i, chosen_hp = chosen[names.index(best)], hyper[probe_name][best]
        tests, valids = [scores[probe_name][best]], [valid_scores[probe_name][best]]
        for s in range(seed + 1, seed + n_probe_seeds):
            options = {**_probe_options(probe_name, common), "seed": s, "lr": chosen_hp["lr"],
                       "weight_decay": chosen_hp["weight_decay"], "lr_grid": None, "weight_decay_grid": None}
            probe = make_probe(probe_name, **options).fit(tokens["train"][i], y_train, tokens["valid"][i], y_valid)
            tests.append(float(probe.score(tokens["test"][i], y_test)))
            valids.append(float(probe.best_score_))
        seed_scores[probe_name] = {"layer": best, "seeds": list(range(seed, seed + n_probe_seeds)), "test": tests,
                                   "valid": valids, "mean": float(np.mean(tests)), "std": float(np.std(tests))}

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
        **ranks,
        "scores": scores,
        "valid_scores": valid_scores,
        "best_layer": best_layer,
        "seed_scores": seed_scores,
        "hyperparameters": hyper,
        "protocol": {"standardise": "train", "select": "valid", "n_probe_seeds": n_probe_seeds, "pooling": pooling,
                     "probe_options": {p: {k: v for k, v in _probe_options(p, probe_options or {}).items()
                                           if k in ("lr_grid", "weight_decay_grid", "patience", "max_epochs")}
                                       for p in probes}},
        "seed": seed,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
