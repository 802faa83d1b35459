"""Pretraining: MAE learns, BYOL runs on every encoder, divergence is reported, FLOPs are counted,
runs are deterministic, checkpoints reload, and a collapse-prone BYOL setup collapses."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorank.models import EncoderConfig, load_checkpoint
from audiorank.pretrain import PretrainConfig, pretrain

try:
    from audiorank.rank import rankme
except ImportError:  # pragma: no cover - rank.py is written alongside this module

    def rankme(Z, eps=1e-7):
        s = torch.linalg.svdvals(torch.as_tensor(Z, dtype=torch.float64))
        p = s / s.sum() + eps
        return float(torch.exp(-(p * p.log()).sum()))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_logmels(n: int, frames: int = 64, n_mels: int = 64, seed: int = 0) -> torch.Tensor:
    """Structured log-mel-like clips (n, n_mels, frames): three harmonic tones with random pitch,
    onset and duration over a faint noise floor, in natural-log power."""
    g = torch.Generator().manual_seed(seed)
    bins = torch.arange(n_mels).float().view(1, -1, 1)
    t = torch.arange(frames).float()
    power = 1e-3 * torch.rand(n, n_mels, frames, generator=g)
    for _ in range(3):
        f0 = 2 + 10 * torch.rand(n, 1, 1, generator=g)
        onset = 0.7 * frames * torch.rand(n, 1, 1, generator=g)
        length = frames * (0.2 + 0.6 * torch.rand(n, 1, 1, generator=g))
        envelope = torch.sigmoid(t - onset) * torch.sigmoid(onset + length - t)  # (n, 1, frames)
        for h in range(1, 6):
            power = power + torch.exp(-0.5 * ((bins - f0 * h) / 0.8) ** 2) / h * envelope
    return power.log()


DATA = synthetic_logmels(256)
VIT = EncoderConfig(arch="vit", width=64, depth=2, heads=2, patch=(16, 4), max_frames=64)
VIT_FRAMES = EncoderConfig(arch="vit", width=64, depth=2, heads=2, patch=(64, 4), max_frames=64)
ENCODERS = {
    "vit": EncoderConfig(arch="vit", width=32, depth=1, heads=2, patch=(64, 4), max_frames=64),
    "cnn": EncoderConfig(arch="cnn", width=32, depth=3, cnn_channels=4),
    "conformer": EncoderConfig(arch="conformer", width=32, depth=1, heads=2, conv_kernel=3),
}


def small(**kw) -> PretrainConfig:
    base = {"encoder": VIT, "steps": 4, "batch_size": 8, "warmup_steps": 2, "lr": 1e-3, "proj_hidden": 64, "proj_dim": 32}
    return PretrainConfig(**{**base, **kw})


def test_mae_lowers_its_loss():
    config = small(objective="mae", steps=150, batch_size=16, lr=2e-3, warmup_steps=10)
    result = pretrain(config, DATA, progress=False)
    assert result.status == "ok" and result.steps == 150 and len(result.losses) == 150
    first, last = np.mean(result.losses[:10]), np.mean(result.losses[-10:])
    assert last < 0.92 * first, (first, last)


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_byol_runs_with_every_encoder(arch):
    result = pretrain(small(objective="byol", encoder=ENCODERS[arch], steps=3), DATA, progress=False)
    assert result.status == "ok" and len(result.losses) == 3
    assert all(math.isfinite(v) for v in result.losses)
    assert result.flops_per_step > 0 and result.params == result.encoder.num_parameters()


def test_mae_needs_a_vit():
    with pytest.raises(ValueError, match="mae.*ViT"):
        pretrain(small(objective="mae", encoder=ENCODERS["cnn"]), DATA, progress=False)


@pytest.mark.parametrize("objective", ["mae", "byol"])
def test_same_seed_same_losses(objective):
    runs = [pretrain(small(objective=objective, seed=s), DATA, progress=False).losses for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_huge_learning_rate_is_reported_as_diverged():
    result = pretrain(small(objective="mae", lr=1e30, warmup_steps=0, steps=20), DATA, progress=False)
    assert result.status == "diverged"
    assert not math.isfinite(result.losses[-1]) and result.steps == len(result.losses) - 1 < 20


def test_poisoned_batch_is_reported_as_diverged():
    batches = [DATA[i * 8 : (i + 1) * 8].clone() for i in range(4)]
    batches[2][0] = float("nan")  # one clip of the third batch
    result = pretrain(small(objective="byol", encoder=ENCODERS["cnn"], steps=10), batches, progress=False)
    assert result.status == "diverged" and len(result.losses) == 3 and result.steps == 2


def test_iterables_of_batches_or_clips_are_accepted():
    clips = list(DATA[:24])  # (64, T) items, stacked by batch_size
    result = pretrain(small(objective="mae", steps=5), clips, progress=False)
    assert result.status == "ok" and len(result.losses) == 5
    with pytest.raises(ValueError, match="no batch"):
        pretrain(small(objective="mae", steps=5), iter([DATA[:8]]), progress=False)


def test_flops_grow_with_model_size():
    flops, params = [], []
    for width in (32, 64, 128):
        enc = EncoderConfig(arch="vit", width=width, depth=2, heads=2, patch=(64, 4), max_frames=64)
        result = pretrain(small(objective="byol", encoder=enc, steps=1), DATA, progress=False)
        flops.append(result.flops_per_step)
        params.append(result.params)
    assert flops[0] > 0 and flops[0] < flops[1] < flops[2]
    # roughly proportional to the encoder size (heads and attention add a size-independent share)
    assert 0.25 * params[2] / params[0] < flops[2] / flops[0] < 2 * params[2] / params[0]


def test_checkpoints_at_configured_steps_reload(tmp_path):
    config = small(objective="mae", steps=4, checkpoint_steps=(0, 2))
    result = pretrain(config, DATA, out_dir=tmp_path, progress=False)
    assert [Path(p).name for p in result.checkpoints] == ["step_0000000.pt", "step_0000002.pt", "step_0000004.pt"]
    encoder, meta = load_checkpoint(result.checkpoints[-1])
    assert meta["step"] == 4 and meta["extra"]["pretrain_config"]["objective"] == "mae"
    x = DATA[:3]
    with torch.no_grad():
        assert torch.equal(encoder(x)[-1], result.encoder(x)[-1])


def test_byol_without_predictor_and_momentum_collapses():
    """SimSiam's ablation (Chen & He 2021): no predictor and a target equal to the online network
    collapses. The projector output (what the loss sees) drops to rank ~1; the encoder's pooled
    embedding loses rank too, less completely in 100 steps (its gradient vanishes once the
    projector has collapsed)."""
    held_out = synthetic_logmels(256, seed=1)
    ranks = {}
    for name, kw in {
        "normal": {},
        "collapse": {"use_predictor": False, "ema_momentum": 0.0, "ema_cosine": False},
    }.items():
        config = small(objective="byol", encoder=VIT_FRAMES, steps=100, batch_size=32, lr=3e-3, warmup_steps=5,
                       proj_hidden=256, proj_dim=64, **kw)
        result = pretrain(config, synthetic_logmels(512), progress=False)
        with torch.no_grad():
            embedding = result.encoder(held_out)[-1].mean(1)  # (N, D)
            projection = result.objective.projector(embedding)  # (N, proj_dim)
        ranks[name] = rankme(embedding), rankme(projection)
    assert ranks["collapse"][1] < 0.3 * ranks["normal"][1], ranks
    assert ranks["collapse"][0] < 0.85 * ranks["normal"][0], ranks


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_bf16_autocast_path_runs(arch):
    """The GPU policy (bf16 autocast) exercised on CPU: mixed dtypes must meet without errors."""
    objective = "mae" if arch == "vit" else "byol"
    config = small(objective=objective, encoder=ENCODERS[arch], steps=2, dtype="bfloat16")
    result = pretrain(config, DATA, progress=False)
    assert result.status == "ok" and all(math.isfinite(v) for v in result.losses)
