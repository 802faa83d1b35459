"""Pretraining: MAE learns, BYOL runs on every encoder, divergence is reported, FLOPs equal an
analytic count, runs are deterministic and resumable to identical weights, checkpoints land at
log-spaced steps and reload, nothing process-wide is changed, a collapse-prone BYOL setup collapses."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import audiorank
import audiorank.pretrain as pretrain_module
from audiorank.cli import main as cli_main
from audiorank.models import PRESETS, EncoderConfig, build_encoder, load_checkpoint
from audiorank.pretrain import STATE_FILE, PretrainConfig, log_spaced_steps, pretrain, tf32_matmuls
from audiorank.rank import rankme


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
    return standardise(power.log())


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-mel-bin standardisation over clips and frames: what the log-mel front end hands over."""
    return (x - x.mean(dim=(0, 2), keepdim=True)) / x.std(dim=(0, 2), keepdim=True)


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
    assert all(0.0 <= v <= 4.0 for v in result.losses)  # 2 - 2 cos lies in [0, 4]
    init = build_encoder(ENCODERS[arch], seed=0).state_dict()  # the run's seeded initial weights
    trained, target = result.encoder.state_dict(), result.objective.target_encoder.state_dict()
    moved = [k for k, v in trained.items() if v.is_floating_point() and not torch.equal(v, init[k])]
    assert moved and set(trained) == set(init)
    # the EMA target trails the online encoder: neither at init nor at the trained weights
    k = next(k for k in moved if k.endswith("weight"))
    assert not torch.equal(target[k], trained[k]) and not torch.equal(target[k], init[k])


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


def block_flops(tokens: int, width: int, hidden: int) -> tuple[int, int]:
    """Forward FLOPs of one pre-norm block on one clip, (matmuls of the linear layers: QKV, output
    projection, two MLP layers; the two attention matmuls QKᵀ and AV), at 2·m·n·k a matmul."""
    linear = 2 * tokens * (width * 3 * width + width * width + 2 * width * hidden)
    return linear, 2 * (2 * tokens * tokens * width)


def test_encoder_forward_flops_equal_the_analytic_count():
    B, T, (pf, pt) = 3, 64, VIT.patch
    N, H = (64 // pf) * (T // pt), int(VIT.mlp_ratio * VIT.width)
    encoder = build_encoder(VIT)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(DATA[:B, :, :T])
    expected = B * (2 * N * VIT.width * pf * pt + VIT.depth * sum(block_flops(N, VIT.width, H)))
    assert counter.get_total_flops() == expected


def test_mae_step_flops_equal_the_analytic_count():
    """pretrain's flops_per_step (forward + backward of step 0). Backward is 2x forward for every
    linear layer; 1x for the patch embedding, whose input needs no gradient (weight gradient
    only); 2.5x for attention, whose fused backward torch counts as five matmuls (it recomputes
    QKᵀ besides the four gradient matmuls)."""
    config = small(objective="mae", steps=1, decoder_depth=1, decoder_width=32, mask_ratio=0.75)
    B, D, (pf, pt), T = config.batch_size, VIT.width, VIT.patch, DATA.shape[-1]
    N = (64 // pf) * (T // pt)
    K = round(N * (1 - config.mask_ratio))  # visible patches
    Dd = config.decoder_width
    enc_linear, enc_attention = block_flops(K, D, 4 * D)  # the encoder sees the K visible patches
    dec_linear, dec_attention = block_flops(N, Dd, 4 * Dd)  # the decoder sees all N
    patch_embed = 2 * N * D * pf * pt
    linear = VIT.depth * enc_linear + 2 * K * D * Dd + config.decoder_depth * dec_linear + 2 * N * Dd * pf * pt
    attention = VIT.depth * enc_attention + config.decoder_depth * dec_attention
    result = pretrain(config, DATA, progress=False)
    assert result.flops_per_step == B * (2 * patch_embed + 3 * linear + 3.5 * attention)


def test_checkpoints_are_log_spaced_by_default_and_reload(tmp_path):
    assert log_spaced_steps(1000) == (0, 62, 125, 250, 500, 1000)
    assert log_spaced_steps(4) == (0, 1, 2, 4)  # round(0.25) = round(0.5) = 0: deduplicated
    config = small(objective="mae", steps=16, seed=5)
    result = pretrain(config, DATA, out_dir=tmp_path, progress=False)
    names = [Path(p).name for p in result.checkpoints]
    assert names == [f"step_{s:07d}.pt" for s in (0, 1, 2, 4, 8, 16)]
    initial, meta0 = load_checkpoint(result.checkpoints[0])
    reference = build_encoder(VIT, seed=5).state_dict()  # the run's seeded initialisation
    assert meta0["step"] == 0 and all(torch.equal(v, reference[k]) for k, v in initial.state_dict().items())
    encoder, meta = load_checkpoint(result.checkpoints[-1])
    assert meta["step"] == 16 and meta["extra"]["pretrain_config"] == config.resolved()
    x = DATA[:3]
    with torch.no_grad():
        assert torch.equal(encoder(x)[-1], result.encoder(x)[-1])
    explicit = pretrain(small(objective="mae", steps=4, checkpoint_steps=(3,)), DATA, out_dir=tmp_path / "e",
                        progress=False)
    assert [Path(p).name for p in explicit.checkpoints] == ["step_0000003.pt", "step_0000004.pt"]
    with pytest.raises(ValueError, match="checkpoint_steps"):
        small(steps=4, checkpoint_steps=(5,))


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, different


CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
import audiorank.pretrain as P
lr = P._lr
P._lr = lambda step, config: (time.sleep(0.15), lr(step, config))[1]  # slow, so it is killed mid-run
config = P.PretrainConfig(**json.loads(sys.argv[1]))
P.pretrain(config, torch.load(sys.argv[2]), out_dir=sys.argv[3], progress=False, state_every=2)
"""


def test_sigkilled_run_resumes_to_identical_weights(tmp_path):
    config = small(objective="mae", steps=12, crop_frames=48)
    reference = pretrain(config, DATA[:64], out_dir=tmp_path / "whole", progress=False, state_every=2)
    torch.save(DATA[:64].clone(), tmp_path / "data.pt")
    out = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(dataclasses.asdict(config)),
                              str(tmp_path / "data.pt"), str(out)],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE)
    deadline, state = time.monotonic() + 120, None
    while time.monotonic() < deadline and child.poll() is None:
        if (out / STATE_FILE).is_file():
            state = torch.load(out / STATE_FILE, weights_only=True)
            if state["step"] >= 4:
                break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["status"] == "running" and 4 <= state["step"] < 12
    resumed = pretrain(config, DATA[:64], out_dir=out, progress=False, state_every=2, resume=True)
    assert resumed.resumed_from == state["step"] and resumed.losses == reference.losses
    assert_same_weights(resumed.objective, reference.objective)
    assert [Path(p).name for p in resumed.checkpoints] == [Path(p).name for p in reference.checkpoints]
    final, _ = load_checkpoint(out / "step_0000012.pt")
    assert_same_weights(final, reference.encoder)


class Interrupted(Exception):
    pass


def test_interrupted_byol_resumes_to_identical_weights_and_flags_are_restored(tmp_path, monkeypatch):
    """BYOL on the CNN (BatchNorm buffers, EMA target, augmentation draws, random crops): a run
    stopped by an exception at step 7 and resumed from its step-6 state equals an uninterrupted run."""
    config = small(objective="byol", encoder=ENCODERS["cnn"], steps=10, crop_frames=48)
    reference = pretrain(config, DATA[:64], progress=False)
    lr = pretrain_module._lr

    def stop_at_7(step, cfg):
        if step == 7:
            raise Interrupted
        return lr(step, cfg)

    monkeypatch.setattr(pretrain_module, "_lr", stop_at_7)
    rng, flags = torch.get_rng_state(), (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with pytest.raises(Interrupted):
        pretrain(config, DATA[:64], out_dir=tmp_path, progress=False, state_every=3)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    monkeypatch.setattr(pretrain_module, "_lr", lr)
    resumed = pretrain(config, DATA[:64], out_dir=tmp_path, progress=False, state_every=3, resume=True)
    assert resumed.resumed_from == 6 and resumed.losses == reference.losses
    assert_same_weights(resumed.objective, reference.objective)  # online, heads and target networks
    again = pretrain(config, DATA[:64], out_dir=tmp_path, progress=False, resume=True)  # finished: no training
    assert again.resumed_from == 10 and again.losses == reference.losses and again.steps == 10


def test_stop_after_trains_a_prefix_of_the_schedule_and_resumes_to_the_whole_run(tmp_path):
    """stop_after=k runs the first k steps of the full run (its lr and EMA schedules, not a
    k-step run's), saves the checkpoints up to k, and resuming finishes the identical run."""
    config = small(objective="d2v", steps=8, checkpoint_steps=(0, 2, 4, 6))
    reference = pretrain(config, DATA[:64], progress=False)
    short = pretrain(dataclasses.replace(config, steps=4, checkpoint_steps=()), DATA[:64], progress=False)
    prefix = pretrain(config, DATA[:64], out_dir=tmp_path, progress=False, stop_after=4)
    assert prefix.status == "stopped" and prefix.steps == 4 and prefix.losses == reference.losses[:4]
    assert prefix.losses != short.losses  # a 4-step run warms up and decays on its own schedule
    assert sorted(Path(c).name for c in prefix.checkpoints) == [f"step_{s:07d}.pt" for s in (0, 2, 4)]
    finished = pretrain(config, DATA[:64], out_dir=tmp_path, progress=False, resume=True)
    assert finished.status == "ok" and finished.losses == reference.losses
    with pytest.raises(ValueError, match=r"stop_after must lie in \[0, steps=8\]"):
        pretrain(config, DATA[:64], progress=False, stop_after=9)


def test_resume_without_state_starts_from_scratch_and_a_changed_config_is_refused(tmp_path):
    config = small(objective="mae", steps=3)
    fresh = pretrain(config, DATA, progress=False)
    resumed = pretrain(config, DATA, out_dir=tmp_path, progress=False, resume=True)  # no train_state.pt yet
    assert resumed.resumed_from == 0 and resumed.losses == fresh.losses
    with pytest.raises(ValueError, match=r"differs in \['lr'\]"):
        pretrain(small(objective="mae", steps=3, lr=5e-4), DATA, out_dir=tmp_path, progress=False, resume=True)
    with pytest.raises(ValueError, match="needs the out_dir"):
        pretrain(config, DATA, progress=False, resume=True)


def test_pretraining_changes_no_process_wide_setting():
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    pretrain(small(objective="mae", steps=2), DATA, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    # the CUDA path's context manager, driven directly (the flags exist without a GPU)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, False
    try:
        with pytest.raises(Interrupted), tf32_matmuls(True):
            assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
            raise Interrupted
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags


def test_cli_records_the_resolved_config_and_resumes(tmp_path, capsys):
    args = ["pretrain", "--out", str(tmp_path), "--preset", "vit-nano", "--steps", "8", "--batch-size", "8",
            "--clips", "16", "--seconds", "0.5", "--warmup-steps", "1", "--seed", "3", "--quiet"]
    assert cli_main(args) == 0
    record = json.loads((tmp_path / "pretrain.json").read_text())
    config = record["config"]
    assert config["encoder"] == json.loads(json.dumps(dataclasses.asdict(PRESETS["vit-nano"])))
    assert config["pool"] == {"n_clips": 16, "seconds": 0.5} and config["seed"] == 3
    assert config["audiorank_version"] == audiorank.__version__ and config["checkpoint_steps"] == [0, 1, 2, 4, 8]
    assert config["torch_threads"] == torch.get_num_threads()
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == [f"step_{s:07d}.pt" for s in (0, 1, 2, 4, 8)]
    assert cli_main([*args, "--resume"]) == 0  # a finished run: its result again, nothing retrained
    again = json.loads((tmp_path / "pretrain.json").read_text())
    assert again["resumed_from"] == 8 and again["losses"] == record["losses"]


def test_byol_without_predictor_and_momentum_collapses():
    """SimSiam's ablation (Chen & He 2021): no predictor and a target equal to the online network
    collapses: the projector output (what the loss sees) drops to rank ~1. (The encoder's pooled
    embedding barely moves in 100 steps on per-bin-normalised inputs, measured 11.6 vs 11.8: its
    gradient vanishes once the projector has collapsed, so it is not asserted on.)"""
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
    assert ranks["collapse"][1] < 2.0 and ranks["collapse"][1] < 0.3 * ranks["normal"][1], ranks


@pytest.mark.parametrize("arch", list(ENCODERS))
def test_bf16_autocast_path_runs(arch):
    """The GPU policy (bf16 autocast) exercised on CPU: mixed dtypes must meet without errors."""
    objective = "mae" if arch == "vit" else "byol"
    config = small(objective=objective, encoder=ENCODERS[arch], steps=2, dtype="bfloat16")
    result = pretrain(config, DATA, progress=False)
    assert result.status == "ok" and all(math.isfinite(v) for v in result.losses)


def test_time_only_crop_keeps_every_frequency_row_and_full_crop_does_not():
    """crop_scale ((lo, hi), (1, 1)) resamples time only: a spectrum that is constant in time comes
    back unchanged (pitch and formants stay where they were); the default crop moves frequency rows."""
    from audiorank.objectives import augment

    spectrum = torch.linspace(-3, 3, 64)[None, :, None].expand(8, 64, 50).contiguous()  # (B, F, T), constant in time
    plain = dict(mixup=0.0, gain=0.0)
    time_only = augment(spectrum, PretrainConfig(objective="byol", crop_scale=((0.6, 1.0), (1.0, 1.0)), **plain),
                        torch.Generator().manual_seed(0))
    assert torch.allclose(time_only, spectrum, atol=1e-5)
    both = augment(spectrum, PretrainConfig(objective="byol", **plain), torch.Generator().manual_seed(0))
    assert not torch.allclose(both, spectrum, atol=1e-3)


@pytest.mark.parametrize("bad", [(0.0, 1.0), (0.8, 0.6), ((0.6, 1.0),), ((0.6, 1.0), (1.0, 1.2)), ("a", 1.0)])
def test_bad_crop_scale_is_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="crop_scale"):
        PretrainConfig(objective="byol", crop_scale=bad)


def test_crop_scale_from_yaml_lists_equals_tuples():
    assert PretrainConfig(crop_scale=[[0.6, 1.0], [1.0, 1.0]]).crop_scale == ((0.6, 1.0), (1.0, 1.0))
    assert PretrainConfig(crop_scale=[0.6, 1.0]).crop_scale == (0.6, 1.0)


@pytest.mark.parametrize("n_clips", [40, 130])  # fewer and more clips than the statistics use
def test_pool_log_mels_equal_the_plain_computation_and_are_generated_once(monkeypatch, n_clips):
    from audiorank.audio import LogMel, pretraining_pool
    from audiorank.audio.tasks import PretrainingPool

    monkeypatch.setattr(pretrain_module, "_STATS_CLIPS", 100)
    monkeypatch.setattr(pretrain_module, "_POOL_CACHE", type(pretrain_module._POOL_CACHE)())
    pool = pretraining_pool(n_clips, seconds=0.25, seed=3)
    plain = LogMel().fit_stats(pool, max_clips=min(n_clips, 100))
    with torch.no_grad():
        expected = torch.cat([plain(torch.from_numpy(pool.batch(a, min(a + 32, n_clips))))
                              for a in range(0, n_clips, 32)])

    generated = []
    clip = PretrainingPool.clip
    monkeypatch.setattr(PretrainingPool, "clip", lambda self, i: generated.append(i) or clip(self, i))
    frontend, mels = pretrain_module.pool_log_mels(n_clips, 0.25, 3, batch_size=32)
    assert torch.equal(mels, expected)
    assert all(torch.equal(frontend.state_dict()[k], v) for k, v in plain.state_dict().items())
    # every clip once; only the batch straddling the statistics' clips (96..127) is generated again
    assert sorted(generated) == sorted([*range(n_clips), *range(96, min(n_clips, 100))])
    generated.clear()
    again, mels_again = pretrain_module.pool_log_mels(n_clips, 0.25, 3, batch_size=32)
    assert generated == [] and mels_again is mels  # from the cache: nothing generated
    assert all(torch.equal(again.state_dict()[k], v) for k, v in plain.state_dict().items())
    other_seed = pretrain_module.pool_log_mels(n_clips, 0.25, 4, batch_size=32)[1]
    assert not torch.equal(other_seed, mels)


def test_pool_cache_keeps_recent_pools_within_its_byte_budget(monkeypatch):
    monkeypatch.setattr(pretrain_module, "_POOL_CACHE", type(pretrain_module._POOL_CACHE)())
    one_pool = pretrain_module.pool_log_mels(16, 0.25, 0)[1].nbytes
    monkeypatch.setattr(pretrain_module, "POOL_CACHE_BYTES", 2 * one_pool)
    for seed in (1, 2, 0):  # seed 0 used again: it becomes the most recent
        pretrain_module.pool_log_mels(16, 0.25, seed)
    assert [key[2] for key in pretrain_module._POOL_CACHE] == [2, 0]  # seed 1, least recent, evicted
    monkeypatch.setattr(pretrain_module, "POOL_CACHE_BYTES", 0)
    pretrain_module.pool_log_mels(16, 0.25, 5)
    assert [key[2] for key in pretrain_module._POOL_CACHE] == [5]  # the pool just made is kept


def test_a_state_saved_before_a_field_existed_resumes_and_a_different_value_is_refused(tmp_path):
    from audiorank.pretrain import ADDED_FIELDS, STATE_FILE
    config = small(objective="mae", steps=3)
    pretrain(config, DATA, out_dir=tmp_path, progress=False)
    path = tmp_path / STATE_FILE
    state = torch.load(path, weights_only=True)
    for key in ADDED_FIELDS:  # as the code before those fields wrote it
        del state["config"][key]
    torch.save(state, path)
    assert pretrain(config, DATA, out_dir=tmp_path, progress=False, resume=True).status == "ok"
    with pytest.raises(ValueError, match=r"differs in \['freeze_patch_embed'\]"):
        pretrain(small(objective="mae", steps=3, freeze_patch_embed=True), DATA, out_dir=tmp_path, progress=False,
                 resume=True)
    with pytest.raises(ValueError, match="pixel_weight and target_norm"):
        small(objective="mae", pixel_weight=1.0)
