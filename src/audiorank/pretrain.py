"""Self-supervised pretraining of the encoders in `models.py`, in the spirit of nanoGPT's train.py
but importable: one config dataclass, two objectives, one training loop.

- "mae": masked-patch reconstruction (MAE, He et al. 2022; Audio-MAE, Huang et al. 2022;
  Dasheng, Dinkel et al. 2024). ViT only. A random `mask_ratio` of the patches is hidden, the
  encoder sees only the visible ones, a light decoder (a few narrow blocks) reconstructs every
  patch, and the loss is the MSE on the masked patches against per-patch normalised targets.
- "byol": BYOL-A (Niizumi et al. 2021; BYOL, Grill et al. 2020): an online encoder + projector +
  predictor regresses an EMA target encoder + projector across two augmented views (mixup with
  another clip of the batch, random resize crop in time/frequency, gain). Works with every
  encoder (the clip embedding is the mean over the last layer's tokens). Turning the predictor
  off and the EMA momentum to 0 gives the known collapse-prone setup (SimSiam, Chen & He 2021).

`pretrain(config, data)` trains with AdamW and a warmup + cosine schedule, bf16 autocast on CUDA
(fp32 on CPU), saves checkpoints with `models.save_checkpoint`, counts the FLOPs of one real step
(forward + backward) with torch.utils.flop_counter, and ends a run whose loss turns NaN/Inf with
status "diverged" (returned, never raised).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .models import (
    Block,
    Encoder,
    EncoderConfig,
    ViTEncoder,
    build_encoder,
    init_weights,
    patchify,
    save_checkpoint,
)

__all__ = ["BYOL", "MAE", "PretrainConfig", "PretrainResult", "augment", "pretrain"]


@dataclass
class PretrainConfig:
    objective: str = "mae"  # "mae" (ViT only) | "byol" (any encoder)
    encoder: str | EncoderConfig | dict = "vit-tiny"  # preset name or config
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # clips per step
    crop_frames: int | None = None  # random crop of each clip to this many frames (None: as given)
    lr: float = 1e-3  # peak learning rate (after warmup)
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    warmup_steps: int = 100  # linear warmup from 0
    weight_decay: float = 0.05  # AdamW decay on matrices (dim >= 2) only, as nanoGPT
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas
    grad_clip: float = 1.0  # max global grad norm (0: off)
    # mae
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    decoder_depth: int = 2  # decoder blocks
    decoder_width: int | None = None  # decoder width (None: encoder width // 2)
    norm_targets: bool = True  # per-patch mean/var normalised reconstruction targets
    # byol
    ema_momentum: float = 0.99  # target EMA momentum at step 0 (cosine-increased to 1 as BYOL)
    ema_cosine: bool = True  # False: constant momentum
    use_predictor: bool = True  # False (with ema_momentum=0) is the collapse-prone setup
    proj_dim: int = 256  # projector output size
    proj_hidden: int = 1024  # projector / predictor hidden size
    mixup: float = 0.4  # max mixing weight of another clip of the batch (log-mel domain mixup)
    crop_scale: tuple[float, float] = (0.6, 1.0)  # random resize crop: kept fraction per axis
    gain: float = 0.5  # max additive offset in log-mel units (a gain change for natural-log mels)
    # run
    checkpoint_steps: tuple[int, ...] = ()  # save after these steps (0: before training); the
    #                                         final step is always saved when out_dir is given
    seed: int = 0  # seeds the weights (torch.manual_seed) and a generator for batches/masks/augs
    device: str = "auto"  # "auto" (cuda if available) | "cpu" | "cuda" | "cuda:1" ...
    dtype: str = "auto"  # "auto": bf16 autocast on CUDA, fp32 on CPU | "float32" | "bfloat16"
    input_stats: tuple[float, float] | None = None  # (mean, std) of log-mels; None: from 1st batch

    def __post_init__(self) -> None:
        if self.objective not in ("mae", "byol"):
            raise ValueError(f"PretrainConfig.objective must be 'mae' or 'byol', got {self.objective!r}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"PretrainConfig.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"PretrainConfig.dtype must be 'auto', 'float32' or 'bfloat16', got {self.dtype!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"PretrainConfig.steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        self.betas = tuple(self.betas)
        self.crop_scale = tuple(self.crop_scale)
        self.checkpoint_steps = tuple(int(s) for s in self.checkpoint_steps)
        if self.input_stats is not None:
            self.input_stats = tuple(float(s) for s in self.input_stats)


@dataclass
class PretrainResult:
    status: str  # "ok" | "diverged"
    losses: list[float]  # one per completed step (a diverged run ends with the non-finite value)
    steps: int  # steps completed
    flops_per_step: int  # forward + backward of one step, counted by FlopCounterMode
    params: int  # encoder.num_parameters(exclude_embeddings=True)
    params_total: int  # encoder.num_parameters(exclude_embeddings=False)
    wall_time_s: float  # whole call, setup included
    steps_per_second: float  # training throughput after the first (counted) step
    device: str
    checkpoints: list[str] = field(default_factory=list)
    input_stats: tuple[float, float] = (0.0, 1.0)
    config: dict = field(default_factory=dict)  # dataclasses.asdict(PretrainConfig)
    encoder: Encoder | None = field(default=None, repr=False)  # the trained encoder (eval mode)
    objective: nn.Module | None = field(default=None, repr=False)  # MAE/BYOL module: encoder + heads


# ----------------------------------------------------------------------------- objectives


class MAE(nn.Module):
    """Masked autoencoder around a ViTEncoder: encode visible patches, decode all, MSE on masked."""

    def __init__(self, encoder: Encoder, config: PretrainConfig):
        super().__init__()
        if not isinstance(encoder, ViTEncoder):
            raise ValueError(f"objective 'mae' needs a ViT encoder, got arch={encoder.config.arch!r}")  # noqa: TRY004 (a config value)
        ec = encoder.config
        self.encoder, self.mask_ratio, self.norm_targets = encoder, config.mask_ratio, config.norm_targets
        width = config.decoder_width or ec.width // 2
        heads = ec.heads if width % ec.heads == 0 else 1
        pf, pt = ec.patch
        self.decoder = nn.Module()  # light decoder: few narrow blocks; init in one call below
        self.decoder.embed = nn.Linear(ec.width, width)
        self.decoder.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder.pos = nn.Parameter(torch.zeros(1, encoder.grid_f, encoder.max_t, width))
        self.decoder.blocks = nn.ModuleList(Block(ec, width, heads) for _ in range(config.decoder_depth))
        self.decoder.norm = nn.LayerNorm(width, eps=ec.norm_eps)
        self.decoder.pred = nn.Linear(width, pf * pt)
        init_weights(self.decoder, config.decoder_depth)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        enc = self.encoder
        target = patchify(enc._normalize(x), enc.config.patch)  # (B, N, pf*pt)
        if self.norm_targets:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()  # (B, N, pf*pt)
        B, N, _ = target.shape
        K = max(1, round(N * (1 - self.mask_ratio)))  # visible patches
        noise = torch.rand(B, N, generator=generator).to(x.device)  # (B, N)
        shuffle = noise.argsort(dim=1)  # (B, N) patch ids, visible first
        restore = shuffle.argsort(dim=1)  # (B, N) position of each patch in `shuffle`
        latent = enc(x, keep=shuffle[:, :K])[-1]  # (B, K, D)
        dec = self.decoder
        y = dec.embed(latent)  # (B, K, Dd)
        y = torch.cat([y, dec.mask_token.expand(B, N - K, -1).to(y.dtype)], dim=1)  # (B, N, Dd)
        y = torch.gather(y, 1, restore.unsqueeze(-1).expand(-1, -1, y.shape[-1]))  # (B, N, Dd)
        nt = N // enc.grid_f
        y = y + dec.pos[:, :, :nt].reshape(1, N, -1)  # (B, N, Dd)
        for block in dec.blocks:
            y = block(y)
        pred = dec.pred(dec.norm(y)).float()  # (B, N, pf*pt)
        masked = (restore >= K).float()  # (B, N) 1 where hidden
        per_patch = ((pred - target) ** 2).mean(-1)  # (B, N)
        return (per_patch * masked).sum() / masked.sum()


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, d_out))


def augment(x: torch.Tensor, config: PretrainConfig, generator: torch.Generator) -> torch.Tensor:
    """BYOL-A view of a log-mel batch (B, F, T): mixup with another clip of the batch in the
    (natural-log) power domain, random resize crop in time and frequency, random gain."""
    B, Fq, T = x.shape
    dev = x.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:  # uniform from the seeded generator
        return (lo + (hi - lo) * torch.rand(*shape, generator=generator)).to(dev)

    if config.mixup > 0:
        lam = u(1e-6, config.mixup, B, 1, 1)  # (B, 1, 1)
        partner = x[torch.randperm(B, generator=generator).to(dev)]  # (B, F, T)
        x = torch.logaddexp(x + torch.log1p(-lam), partner + torch.log(lam))  # (B, F, T)
    lo, hi = config.crop_scale
    if (lo, hi) != (1.0, 1.0):
        sx, sy = u(lo, hi, B), u(lo, hi, B)  # kept fraction of time, frequency
        theta = torch.zeros(B, 2, 3, device=dev)  # (B, 2, 3) affine map output → input coords
        theta[:, 0, 0], theta[:, 1, 1] = sx, sy
        theta[:, 0, 2] = (torch.rand(B, generator=generator).to(dev) * 2 - 1) * (1 - sx)
        theta[:, 1, 2] = (torch.rand(B, generator=generator).to(dev) * 2 - 1) * (1 - sy)
        grid = F.affine_grid(theta, [B, 1, Fq, T], align_corners=False)  # (B, F, T, 2)
        x = F.grid_sample(x.unsqueeze(1), grid, mode="bilinear", padding_mode="border", align_corners=False)
        x = x.squeeze(1)  # (B, F, T)
    if config.gain > 0:
        x = x + u(-config.gain, config.gain, B, 1, 1)  # (B, F, T)
    return x


class BYOL(nn.Module):
    """BYOL-A: online encoder → projector → predictor regresses the EMA target's projection of the
    other view; symmetric loss 2 - 2 cos. The clip embedding is the token mean of the last layer."""

    def __init__(self, encoder: Encoder, config: PretrainConfig):
        super().__init__()
        self.config = config
        self.encoder = encoder
        dim = encoder.layer_dims[-1]
        self.projector = _mlp(dim, config.proj_hidden, config.proj_dim)
        self.predictor = _mlp(config.proj_dim, config.proj_hidden, config.proj_dim) if config.use_predictor else nn.Identity()
        init_weights(self.projector, 1)
        init_weights(self.predictor, 1)
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    @staticmethod
    def embed(encoder: Encoder, x: torch.Tensor) -> torch.Tensor:
        return encoder(x)[-1].mean(dim=1)  # (B, D)

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        B = x.shape[0]
        views = torch.cat([augment(x, self.config, generator), augment(x, self.config, generator)])  # (2B, F, T)
        p = self.predictor(self.projector(self.embed(self.encoder, views)))  # (2B, proj_dim)
        with torch.no_grad():
            z = self.target_projector(self.embed(self.target_encoder, views))  # (2B, proj_dim)
            z = torch.cat([z[B:], z[:B]])  # (2B, proj_dim): each view's target is the other view
        cos = F.cosine_similarity(p.float(), z.float(), dim=-1)  # (2B,)
        return (2 - 2 * cos).mean()

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        for online, target in ((self.encoder, self.target_encoder), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.lerp_(po.detach(), 1.0 - momentum)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)


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


def _batches(data: torch.Tensor | Iterable, config: PretrainConfig, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless stream of (B, n_mels, T) float batches. A tensor (N, n_mels, T) is sampled in
    seeded random order, epoch after epoch; an iterable is re-iterated in its own order and may
    yield batches (B, n_mels, T), single clips (n_mels, T) (stacked by batch_size) or (x, label)."""
    if isinstance(data, torch.Tensor):
        if data.dim() != 3:
            raise ValueError(f"data tensor must be (N, n_mels, T) log-mels, got shape {tuple(data.shape)}")
        order = torch.empty(0, dtype=torch.long)
        while True:
            while len(order) < config.batch_size:
                order = torch.cat([order, torch.randperm(len(data), generator=generator)])
            idx, order = order[: config.batch_size], order[config.batch_size :]
            yield data[idx].float()
    while True:
        produced, pending = False, []
        for item in data:
            if isinstance(item, (tuple, list)):
                item = item[0]
            item = torch.as_tensor(item).float()
            if item.dim() == 3:
                produced = True
                yield item
            elif item.dim() == 2:
                pending.append(item)
                if len(pending) == config.batch_size:
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


def _input_stats(x: torch.Tensor) -> tuple[float, float]:
    finite = x[torch.isfinite(x)]
    if finite.numel() < 2:
        raise ValueError("the first data batch has no finite values: cannot estimate log-mel statistics")
    return float(finite.mean()), float(finite.std().clamp_min(1e-5))


def pretrain(
    config: PretrainConfig,
    data: torch.Tensor | Iterable,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    checkpoint_extra: dict | None = None,
) -> PretrainResult:
    """Pretrain an encoder with `config.objective` on log-mels `data` ((N, n_mels, T) tensor or an
    iterable of batches); checkpoints go to out_dir/step_XXXXXXX.pt, each carrying
    `checkpoint_extra` (e.g. the front end's state, so that evaluation sees the same log-mels).
    Returns a PretrainResult whose status is "diverged" if a loss became NaN/Inf (training stops
    there)."""
    t0 = time.perf_counter()
    device = _device(config)
    bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    encoder = build_encoder(config.encoder)
    model = (MAE if config.objective == "mae" else BYOL)(encoder, config)

    batches = _batches(data, config, generator)
    first = next(batches)
    stats = config.input_stats or _input_stats(first)
    encoder.set_input_stats(*stats)
    if config.objective == "byol":
        model.target_encoder.set_input_stats(*stats)
    model.to(device).train()

    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=config.betas,
        fused=device.type == "cuda",
    )

    run_config = dataclasses.asdict(config)
    checkpoints: list[str] = []
    save_at = set(config.checkpoint_steps) | {config.steps}

    def checkpoint(step: int, loss: float) -> None:
        if out_dir is None or step not in save_at:
            return
        extra = {**(checkpoint_extra or {}), "objective": config.objective, "loss": float(loss),
                 "pretrain_config": run_config}
        path = save_checkpoint(Path(out_dir) / f"step_{step:07d}.pt", encoder, step, extra)
        checkpoints.append(str(path))

    checkpoint(0, float("nan"))
    quiet = not progress or bool(os.environ.get("CI"))
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc=f"pretrain {config.objective}", disable=quiet, leave=False)
    except ImportError:  # tqdm is a dependency; keep the loop usable without it anyway
        bar = None

    losses: list[float] = []
    status, flops, t_warm = "ok", 0, None
    x = first
    for step in range(config.steps):
        if step > 0:
            x = next(batches)
        x = _crop(x, config.crop_frames, generator).to(device, non_blocking=True)
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
            break
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if config.objective == "byol":
            model.update_target(_momentum(step, config))
        checkpoint(step + 1, value)
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4f}")
        if step == 0:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t_warm = time.perf_counter()
    if bar is not None:
        bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_end = time.perf_counter()
    timed_steps = len(losses) - 1 if status == "ok" else len(losses) - 2
    steps_per_second = timed_steps / (t_end - t_warm) if t_warm is not None and timed_steps > 0 else float("nan")

    model.eval()
    return PretrainResult(
        status=status,
        losses=losses,
        steps=len(losses) if status == "ok" else len(losses) - 1,
        flops_per_step=flops,
        params=encoder.num_parameters(exclude_embeddings=True),
        params_total=encoder.num_parameters(exclude_embeddings=False),
        wall_time_s=time.perf_counter() - t0,
        steps_per_second=steps_per_second,
        device=str(device),
        checkpoints=checkpoints,
        input_stats=tuple(stats),
        config=run_config,
        encoder=encoder,
        objective=model,
    )


def pretrain_on_pool(
    config: PretrainConfig,
    n_clips: int,
    seconds: float = 1.0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int = 256,
) -> PretrainResult:
    """Pretrain on `n_clips` clips of the embedded corpus's unlabeled pool (seeded by config.seed).

    The log-mel front end is fitted on the pool (the normalisation the issue asks for) and travels
    in every checkpoint (`extra["frontend"]`), so `audiorank evaluate` feeds the encoder the same
    features it was trained on.
    """
    from .audio import LogMel, pretraining_pool

    if n_clips < config.batch_size:
        raise ValueError(f"n_clips ({n_clips}) must be at least the batch size ({config.batch_size})")
    pool = pretraining_pool(n_clips, seconds=seconds, seed=config.seed)
    frontend = LogMel().fit_stats(pool, max_clips=min(n_clips, 2000))  # plenty for 64 means and stds
    with torch.no_grad():
        mels = torch.cat([frontend(torch.from_numpy(pool.batch(a, min(a + batch_size, n_clips))))
                          for a in range(0, n_clips, batch_size)])  # (n_clips, n_mels, frames)
    extra = {"frontend": frontend.state_dict(), "pool": {"n_clips": n_clips, "seconds": seconds}}
    return pretrain(config, mels, out_dir=out_dir, progress=progress, checkpoint_extra=extra)
