"""Self-supervised pretraining of the encoders in `models.py`, in the spirit of nanoGPT's train.py
but importable: one config dataclass and one training loop over the objectives of `objectives.py`.

- the objectives ("mae", "d2v" the default, "byol") live in `objectives.py`.

`pretrain(config, data)` trains with AdamW and a warmup + cosine schedule, bf16 autocast on CUDA
(fp32 on CPU), saves checkpoints with `models.save_checkpoint`, counts the FLOPs of one real step
(forward + backward) with torch.utils.flop_counter, and ends a run whose loss turns NaN/Inf with
status "diverged" (returned, never raised). `data` are the front end's output: log-mels already
normalised per mel bin (`audio.LogMel`); the encoders add no normalisation of their own.

A run is a compute axis: without `checkpoint_steps` it saves at log-spaced steps (0 and about 1/16,
1/8, 1/4, 1/2, 1 of the run). With `out_dir`, out_dir/train_state.pt (weights_only-loadable,
written atomically every `state_every` steps and at each checkpoint) holds everything the run
depends on: objective weights (BYOL's target network included), AdamW state, step (the schedule
is a function of it), the seeded generator of batches/masks/augmentations, the pending batch
permutation, the global RNG. `pretrain(..., resume=True)` continues from it to the same weights as
an uninterrupted run on CPU; with no state file it starts from scratch. Nothing process-wide is
left changed: TF32 flags and the global RNG are restored on exit, also on error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import (
    Encoder,
    EncoderConfig,
    atomic_save,
    build_encoder,
    encoder_config,
    save_checkpoint,
    seeded_rng,
)
from .objectives import BYOL, MAE, OBJECTIVES, Data2Vec, augment

__all__ = ["BYOL", "MAE", "OBJECTIVES", "Data2Vec", "STATE_FILE", "PretrainConfig", "PretrainResult", "augment", "log_spaced_steps",
           "pretrain", "pretrain_on_pool", "tf32_matmuls"]

STATE_FILE = "train_state.pt"  # the resumable training state, beside the step_XXXXXXX.pt checkpoints
STATE_FORMAT = "audiorank-train-state-v1"
# PretrainConfig fields added after results were first committed, with the value that trains as the
# code did before them: a sweep leaves them out of a run's config (and id) while they have it, and a
# training state saved before they existed resumes as if it had recorded that value
ADDED_FIELDS = {"target_norm": "instance", "pixel_weight": 0.0, "freeze_patch_embed": False, "vc_weight": 0.0}


def log_spaced_steps(steps: int) -> tuple[int, ...]:
    """0 (init) and round(steps / 2**k) for k = 4..0 (about 1/16, 1/8, 1/4, 1/2, 1), deduplicated."""
    return tuple(sorted({0} | {round(steps / 2**k) for k in range(5)}))


def _crop_scale(value: Any) -> tuple:
    """A crop scale as given, with tuples for lists (YAML and JSON give lists), checked: either
    (lo, hi) or ((time_lo, time_hi), (freq_lo, freq_hi)), each range 0 < lo <= hi <= 1."""
    value = tuple(tuple(v) if isinstance(v, (list, tuple)) else v for v in value)
    ranges = value if len(value) == 2 and all(isinstance(v, tuple) for v in value) else (value,)
    for r in ranges:
        if not (len(r) == 2 and all(isinstance(v, (int, float)) for v in r) and 0 < r[0] <= r[1] <= 1):
            raise ValueError("PretrainConfig.crop_scale must be (lo, hi) or ((time_lo, time_hi), (freq_lo, freq_hi)) "
                             f"with 0 < lo <= hi <= 1, got {value!r}")
    return value


@dataclass
class PretrainConfig:
    # defaults: the recipe chosen by scripts/recipe_study.py at fixed compute on the corpus tasks
    # (results/recipe_study/): data2vec-style targets with square patches; 16000 steps (~9.5 min on 2
    # CPU cores) because 8000 left gm_pitch tied with the random init (results/default_vs_init/default_16k/);
    # vc_weight 0.1 (below) because without it pitch fell below the init early (.../default_16k_vc01/)
    objective: str = "d2v"  # "mae" | "d2v" (ViT only) | "byol" (any encoder)
    encoder: str | EncoderConfig | dict = "vit-tiny-p16"  # preset name or config
    steps: int = 16000  # optimizer steps
    batch_size: int = 32  # clips per step
    crop_frames: int | None = None  # random crop of each clip to this many frames (None: as given)
    lr: float = 1e-3  # peak learning rate (after warmup)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    warmup_steps: int = 400  # linear warmup from 0
    weight_decay: float = 0.05  # AdamW decay on matrices (dim >= 2) only, as nanoGPT
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    grad_clip: float = 1.0  # max global grad norm (0: off)
    # mae
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    decoder_depth: int = 2  # decoder blocks
    decoder_width: int | None = None  # decoder width (None: encoder width // 2)
    norm_targets: bool = True  # per-patch mean/var normalised reconstruction targets
    # mae, d2v: > 0 adds VICReg's variance and covariance terms (Bardes et al. 2022) on the student's
    # visible last-layer tokens, with this weight. Without it the first ~1000 steps of d2v collapse the
    # clip embeddings onto a few dimensions (RankMe 28 -> 10) and the pitch tasks fall below the random
    # init (results/default_vs_init/default_16k_vc01/). None: 0.1 for d2v (measured there), 0 otherwise
    vc_weight: float | None = None
    # d2v (also uses the mae decoder knobs and the EMA knobs below)
    target_layers: int | None = None  # teacher blocks averaged into the target (top-K; None: min(3, depth))
    target_norm: str = "instance"  # teacher blocks normalised per feature over tokens ("instance") or per token ("layer")
    pixel_weight: float = 0.0  # > 0: also reconstruct the masked patches (MAE's loss) with this weight
    # ViT: keep the patch projection at its random init (MoCo v3's stabiliser, Chen et al. 2021): layer
    # 0 stays a random projection of every patch (its pitch scores stay those of the init; the blocks'
    # do not, results/default_vs_init/frequency_detail/)
    freeze_patch_embed: bool = False
    # byol, d2v
    ema_momentum: float = 0.99  # target EMA momentum at step 0 (cosine-increased to 1 as BYOL)
    ema_cosine: bool = True  # False: constant momentum
    use_predictor: bool = True  # False (with ema_momentum=0) is the collapse-prone setup
    proj_dim: int = 256  # projector output size
    proj_hidden: int = 1024  # projector / predictor hidden size
    mixup: float = 0.4  # max mixing weight of another clip of the batch (log-mel domain mixup)
    # random resize crop, kept fraction per axis: (lo, hi) for time and frequency alike, or
    #   ((time_lo, time_hi), (freq_lo, freq_hi)); ((0.6, 1.0), (1.0, 1.0)) crops time only and keeps
    #   pitch and formant positions (resizing frequency teaches invariance to exactly those)
    crop_scale: tuple = (0.6, 1.0)
    gain: float = 0.5  # max additive offset in log-mel units (a gain change for natural-log mels)
    # run
    checkpoint_steps: tuple[int, ...] | None = None  # save after these steps (0: before training);
    #   None: log_spaced_steps(steps). The final step is always saved when out_dir is given
    seed: int = 0  # seeds the weights (global RNG, restored after) and a generator for batches/masks/augs
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1" ...
    dtype: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU | "float32" | "bfloat16"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"PretrainConfig.objective must be one of {sorted(OBJECTIVES)}, got {self.objective!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"PretrainConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.target_norm not in ("instance", "layer"):
            raise ValueError(f"PretrainConfig.target_norm must be 'instance' or 'layer', got {self.target_norm!r}")
        if not self.pixel_weight >= 0:
            raise ValueError(f"PretrainConfig.pixel_weight must be >= 0, got {self.pixel_weight}")
        if self.vc_weight is None:
            self.vc_weight = 0.1 if self.objective == "d2v" else 0.0  # measured on d2v only
        if not self.vc_weight >= 0:
            raise ValueError(f"PretrainConfig.vc_weight must be >= 0, got {self.vc_weight}")
        if self.objective == "byol" and self.vc_weight:
            raise ValueError(f"PretrainConfig.vc_weight regularises the masked objectives' student tokens; "
                             f"objective 'byol' has none (got vc_weight={self.vc_weight})")
        if self.objective != "d2v" and (self.pixel_weight or self.target_norm != "instance"):
            raise ValueError(f"PretrainConfig.pixel_weight and target_norm shape d2v's targets; objective "
                             f"{self.objective!r} has none (got pixel_weight={self.pixel_weight}, "
                             f"target_norm={self.target_norm!r})")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"PretrainConfig.dtype must be 'auto', 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"PretrainConfig.steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        self.betas = tuple(self.betas)
        self.crop_scale = _crop_scale(self.crop_scale)
        if self.checkpoint_steps is not None:
            self.checkpoint_steps = tuple(int(s) for s in self.checkpoint_steps)
            bad = [s for s in self.checkpoint_steps if not 0 <= s <= self.steps]
            if bad:
                raise ValueError(f"PretrainConfig.checkpoint_steps must lie in [0, steps={self.steps}], got {bad}")

    @property
    def crop_ranges(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """`crop_scale` per axis: ((time_lo, time_hi), (freq_lo, freq_hi))."""
        scale = self.crop_scale
        return scale if isinstance(scale[0], tuple) else (scale, scale)

    def save_steps(self) -> tuple[int, ...]:
        """The steps a run with out_dir saves checkpoints at, sorted (the final step included)."""
        chosen = log_spaced_steps(self.steps) if self.checkpoint_steps is None else self.checkpoint_steps
        return tuple(sorted(set(chosen) | {self.steps}))

    def resolved(self) -> dict[str, Any]:
        """asdict(self) with the encoder as its full EncoderConfig dict and the checkpoint steps
        resolved: the record of what a run did (checkpoints, train_state.pt, pretrain.json)."""
        return {**dataclasses.asdict(self), "encoder": dataclasses.asdict(encoder_config(self.encoder)),
                "checkpoint_steps": list(self.save_steps())}


@dataclass
class PretrainResult:
    status: str  # "ok" | "diverged" | "stopped" (stop_after: a prefix of the run)
    losses: list[float]  # one per completed step (a diverged run ends with the non-finite value)
    steps: int  # steps completed
    flops_per_step: int  # forward + backward of one step, counted by FlopCounterMode
    params: int  # encoder.num_parameters(exclude_embeddings=True)
    params_total: int  # encoder.num_parameters(exclude_embeddings=False)
    wall_time_s: float  # whole call, setup included
    steps_per_second: float  # training throughput after the first (counted) step
    device: str
    checkpoints: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # PretrainConfig.resolved()
    resumed_from: int = 0  # the step a resume=True run continued from (0: a fresh run)
    encoder: Encoder | None = field(default=None, repr=False)  # the trained encoder (eval mode)
    objective: nn.Module | None = field(default=None, repr=False)  # MAE/BYOL module: encoder + heads


# ----------------------------------------------------------------------------- FLOPs on CPU

_flops = torch.utils.flop_counter
_cpu_sdpa = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
if _cpu_sdpa is not None and _cpu_sdpa not in _flops.flop_registry:
    # torch counts the CUDA attention kernels only; the CPU kernel has the same arithmetic
    _flops.register_flop_formula(_cpu_sdpa, get_raw=True)(_flops.sdpa_flop)  # already shape-wrapped
    _flops.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward, get_raw=True)(
        _flops.sdpa_backward_flop
    )


# ----------------------------------------------------------------------------- data


class _BatchStream:
    """Endless stream of (B, n_mels, T) float batches whose position is state (for resuming).

    A tensor (N, n_mels, T) is sampled in seeded random order, epoch after epoch: the position is
    the generator's state plus the pending part of the current permutation (`order`). An iterable
    is re-iterated in its own order and may yield batches (B, n_mels, T), single clips (n_mels, T)
    (stacked by batch_size) or (x, label); its position is the count of batches drawn, and resuming
    re-iterates past them (so it must yield the same sequence again, as a list or Dataset does)."""

    def __init__(self, data: torch.Tensor | Iterable, batch_size: int, generator: torch.Generator):
        if isinstance(data, torch.Tensor) and data.dim() != 3:
            raise ValueError(f"data tensor must be (N, n_mels, T) log-mels, got shape {tuple(data.shape)}")
        self.data, self.batch_size, self.generator = data, batch_size, generator
        self.order = torch.empty(0, dtype=torch.long)  # pending indices of the current permutation
        self.drawn = 0  # batches drawn so far
        self._items: Iterator[torch.Tensor] | None = None

    def __next__(self) -> torch.Tensor:
        self.drawn += 1
        if isinstance(self.data, torch.Tensor):
            while len(self.order) < self.batch_size:
                self.order = torch.cat([self.order, torch.randperm(len(self.data), generator=self.generator)])
            idx, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
            return self.data[idx].float()
        if self._items is None:
            self._items = self._iterate()
        return next(self._items)

    def _iterate(self) -> Iterator[torch.Tensor]:
        while True:
            produced, pending = False, []
            for item in self.data:
                if isinstance(item, (tuple, list)):
                    item = item[0]
                item = torch.as_tensor(item).float()
                if item.dim() == 3:
                    produced = True
                    yield item
                elif item.dim() == 2:
                    pending.append(item)
                    if len(pending) == self.batch_size:
                        produced = True
                        yield torch.stack(pending)  # (B, n_mels, T)
                        pending = []
                else:
                    raise ValueError(f"data items must be (B, n_mels, T) or (n_mels, T) log-mels, got shape {tuple(item.shape)}")
            if not produced:
                raise ValueError(
                    "data yielded no batch (an exhausted iterator?): pass a tensor or a re-iterable "
                    "(list, Dataset, DataLoader) of log-mel batches"
                )

    def state_dict(self) -> dict[str, Any]:
        return {"order": self.order.clone(), "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order = state["order"].clone()
        if not isinstance(self.data, torch.Tensor):
            for _ in range(state["drawn"]):  # re-iterate past what the interrupted run drew
                next(self)
        self.drawn = state["drawn"]


def _crop(x: torch.Tensor, frames: int | None, generator: torch.Generator) -> torch.Tensor:
    if frames is None or x.shape[-1] <= frames:
        return x
    start = torch.randint(x.shape[-1] - frames + 1, (x.shape[0], 1, 1), generator=generator)  # (B, 1, 1)
    idx = (start + torch.arange(frames)).expand(-1, x.shape[1], -1)  # (B, F, frames)
    return torch.gather(x, 2, idx)


# ----------------------------------------------------------------------------- training loop


def _lr(step: int, config: PretrainConfig) -> float:
    """Linear warmup to config.lr, then cosine decay to lr * min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    ratio = min(1.0, (step - config.warmup_steps) / span)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * ratio)))


def _momentum(step: int, config: PretrainConfig) -> float:
    """BYOL's target momentum: cosine from ema_momentum at step 0 to 1 at the last step."""
    if not config.ema_cosine:
        return config.ema_momentum
    return 1 - (1 - config.ema_momentum) * (math.cos(math.pi * step / config.steps) + 1) / 2


def _device(config: PretrainConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool = True) -> Iterator[None]:
    """TF32 matmuls and cuDNN convolutions allowed inside the block (when `enabled`); both
    process-wide flags are restored on exit, also on error."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if enabled:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _load_state(path: Path, run_config: dict) -> dict | None:
    """The saved training state of this run, or None when there is none (a fresh start)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not an audiorank training state ({STATE_FORMAT})")
    # the device may change between the two parts of a run; anything else changes the run itself
    differ = sorted(k for k in run_config.keys() | state["config"].keys()
                    if k != "device" and run_config.get(k) != state["config"].get(k, ADDED_FIELDS.get(k)))
    if differ:
        raise ValueError(f"cannot resume from {path}: its config differs in {differ}; use another out_dir")
    return state


def _optimizer(model: nn.Module, config: PretrainConfig, device: torch.device) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )


def pretrain(
    config: PretrainConfig,
    data: torch.Tensor | Iterable,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_extra: dict | None = None,
    resume: bool = False,
    state_every: int = 100,
    stop_after: int | None = None,
) -> PretrainResult:
    """Pretrain an encoder with `config.objective` on normalised log-mels `data` ((N, n_mels, T)
    tensor or an iterable of batches); checkpoints go to out_dir/step_XXXXXXX.pt, each carrying
    `checkpoint_extra` (e.g. the front end's state, so that evaluation sees the same log-mels), and
    the resumable state to out_dir/train_state.pt every `state_every` steps and at each checkpoint.
    `resume=True` continues from that state (from scratch if there is none; a finished or
    diverged run returns its result at once). `stop_after` ends training after that many steps of
    the run's schedule (its learning rate and EMA momentum are those of all `config.steps`; status
    "stopped", and the state in out_dir resumes it): the first steps of a long run, cheaply.
    Returns a PretrainResult whose status is "diverged" if a loss became NaN/Inf (training stops there)."""
    t0 = time.perf_counter()
    if state_every < 1:
        raise ValueError(f"state_every must be >= 1, got {state_every}")
    if stop_after is not None and not 0 <= stop_after <= config.steps:
        raise ValueError(f"stop_after must lie in [0, steps={config.steps}], got {stop_after}")
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to continue (its train_state.pt)")
    device = _device(config)
    run_config = config.resolved()
    state = _load_state(Path(out_dir) / STATE_FILE, run_config) if resume else None
    with tf32_matmuls(device.type == "cuda"), seeded_rng(config.seed, device):
        return _train(config, data, device, run_config, state, out_dir, progress, checkpoint_extra, state_every, t0,
                      config.steps if stop_after is None else stop_after)


def _train(config: PretrainConfig, data: torch.Tensor | Iterable, device: torch.device, run_config: dict,
           state: dict | None, out_dir: str | os.PathLike | None, progress: bool, checkpoint_extra: dict | None,
           state_every: int, t0: float, stop: int) -> PretrainResult:
    """pretrain's body, run with the global RNG seeded (weights, dropout) and TF32 set."""
    bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    generator = torch.Generator().manual_seed(config.seed)  # batches, crops, masks, augmentations
    encoder = build_encoder(config.encoder)
    if config.freeze_patch_embed:
        if not hasattr(encoder, "patch_embed"):
            raise ValueError(f"PretrainConfig.freeze_patch_embed needs a patch-embedding encoder (ViT), "
                             f"got arch={encoder.config.arch!r}")
        encoder.patch_embed.requires_grad_(False)  # the optimizer only sees parameters that need grad
    model = OBJECTIVES[config.objective](encoder, config).to(device).train()
    optimizer = _optimizer(model, config, device)
    batches = _BatchStream(data, config.batch_size, generator)
    losses: list[float] = []
    checkpoints: list[str] = []
    status, flops, start = "running", 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state["rng_cuda"] is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        losses, checkpoints, flops = list(state["losses"]), list(state["checkpoints"]), int(state["flops"])
        status, start = state["status"], int(state["step"])

    save_at = set(run_config["checkpoint_steps"])

    def save(step: int, loss: float) -> None:
        if out_dir is None:
            return
        if step in save_at and status != "diverged":  # a diverged step changed no weights
            extra = {**(checkpoint_extra or {}), "objective": config.objective, "loss": float(loss),
                     "pretrain_config": run_config}
            path = str(save_checkpoint(Path(out_dir) / f"step_{step:07d}.pt", encoder, step, extra))
            if path not in checkpoints:  # a resumed run may rewrite one it had written
                checkpoints.append(path)
        if step in save_at or step % state_every == 0 or status != "running":
            atomic_save({
                "format": STATE_FORMAT, "config": run_config, "step": step, "status": status,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                "batches": batches.state_dict(), "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "losses": losses, "flops": flops, "checkpoints": checkpoints,
            }, Path(out_dir) / STATE_FILE)

    if state is None:
        save(0, float("nan"))
    quiet = not progress or bool(os.environ.get("CI"))
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc=f"pretrain {config.objective}", disable=quiet, leave=False)
    except ImportError:  # tqdm is a dependency; keep the loop usable without it anyway
        bar = None

    t_warm, timed = None, 0
    for step in range(start, stop if status == "running" else start):
        x = _crop(next(batches), config.crop_frames, generator).to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, config)
        counter = FlopCounterMode(display=False) if step == 0 else contextlib.nullcontext()
        with counter:
            with autocast:
                loss = model(x, generator)
            loss.backward()
        if step == 0:
            flops = int(counter.get_total_flops())
        value = float(loss.detach())
        losses.append(value)
        if not math.isfinite(value):
            status = "diverged"
            save(step, value)  # the state of the last finite step, marked diverged
            break
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(model, "update_target"):  # EMA objectives (byol, d2v)
            model.update_target(_momentum(step, config))
        if step + 1 == config.steps:
            status = "ok"
        save(step + 1, value)
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if t_warm is None:  # the first step of this call (counted, and warming up) is not timed
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t_warm = time.perf_counter()
        else:
            timed += 1
    if bar is not None:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    steps_per_second = timed / (time.perf_counter() - t_warm) if t_warm is not None and timed > 0 else float("nan")

    model.eval()
    return PretrainResult(
        status="stopped" if status == "running" else status,  # running: stop_after came first
        losses=losses,
        steps=len(losses) if status != "diverged" else len(losses) - 1,
        flops_per_step=flops,
        params=encoder.num_parameters(exclude_embeddings=True),
        params_total=encoder.num_parameters(exclude_embeddings=False),
        wall_time_s=time.perf_counter() - t0,
        steps_per_second=steps_per_second,
        device=str(device),
        checkpoints=checkpoints,
        config=run_config,
        encoder=encoder,
        objective=model,
        resumed_from=start,
    )


def pretrain_on_pool(
    config: PretrainConfig,
    n_clips: int,
    seconds: float = 1.0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int = 256,
    resume: bool = False,
    state_every: int = 100,
    stop_after: int | None = None,
) -> PretrainResult:
    """Pretrain on `n_clips` clips of the embedded corpus's unlabeled pool (seeded by config.seed).

    The log-mel front end is fitted on the pool (the one input normalisation) and travels in every
    checkpoint (`extra["frontend"]`), so `audiorank evaluate` feeds the encoder the same features
    it was trained on. `resume`/`state_every`/`stop_after` as in `pretrain` (the pool is rebuilt identically).
    """
    if n_clips < config.batch_size:
        raise ValueError(f"n_clips ({n_clips}) must be at least the batch size ({config.batch_size})")
    frontend, mels = pool_log_mels(n_clips, seconds, config.seed, batch_size)
    extra = {"frontend": frontend.state_dict(), "pool": {"n_clips": n_clips, "seconds": seconds}}
    return pretrain(config, mels, out_dir=out_dir, progress=progress, checkpoint_extra=extra, resume=resume,
                    state_every=state_every, stop_after=stop_after)


# A sweep worker pretrains run after run on the same few pools (one per seed, mostly): the pool's
# clips are generated, fitted and turned into log-mels once per process, not once per run.
_POOL_CACHE: OrderedDict[tuple, tuple[dict, torch.Tensor]] = OrderedDict()
# log-mels kept per process: a laptop pool (2000 one-second clips) is 52 MB, the reference base pool
# (20,000 two-second clips) 1 GB; the pool just made is always kept
POOL_CACHE_BYTES = 2 * 2**30
_STATS_CLIPS = 2000  # clips the front end's statistics are fitted on: plenty for 64 means and stds


def pool_log_mels(n_clips: int, seconds: float = 1.0, seed: int = 0, batch_size: int = 256):
    """(front end fitted on the pool, its normalised log-mels (n_clips, n_mels, frames)) for the
    embedded corpus's unlabeled pool, kept for the next call with the same pool (LRU of
    `POOL_CACHE_BYTES`; the tensor is shared, so callers must not modify it in place)."""
    from .audio import LogMel, pretraining_pool

    pool = pretraining_pool(n_clips, seconds=seconds, seed=seed)
    sf = Path(pool.soundfont).stat()
    key = (n_clips, float(seconds), seed, batch_size, pool.soundfont, sf.st_size, sf.st_mtime_ns)
    if key in _POOL_CACHE:
        _POOL_CACHE.move_to_end(key)
        state, mels = _POOL_CACHE[key]
        frontend = LogMel()
        frontend.load_state_dict(state)
        return frontend, mels
    # each clip is generated once: the statistics' clips are kept for the log-mels
    head = pool.batch(0, min(n_clips, _STATS_CLIPS))
    frontend = LogMel().fit_stats(head)
    chunks = []
    with torch.no_grad():
        for a in range(0, n_clips, batch_size):
            stop = min(a + batch_size, n_clips)
            chunks.append(frontend(torch.from_numpy(head[a:stop] if stop <= len(head) else pool.batch(a, stop))))
    mels = torch.cat(chunks)  # (n_clips, n_mels, frames)
    _POOL_CACHE[key] = ({k: v.clone() for k, v in frontend.state_dict().items()}, mels)
    while len(_POOL_CACHE) > 1 and sum(m.nbytes for _, m in _POOL_CACHE.values()) > POOL_CACHE_BYTES:
        _POOL_CACHE.popitem(last=False)  # the least recently used
    return frontend, mels
