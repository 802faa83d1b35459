"""The data2vec-style objective: its targets, its EMA teacher, its config check, and that it learns."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorank.models import EncoderConfig, build_encoder
from audiorank.objectives import variance_covariance
from audiorank.pretrain import Data2Vec, PretrainConfig, pretrain

VIT = EncoderConfig(arch="vit", width=32, depth=3, heads=2, patch=(16, 4), max_frames=64)


def _config(**kw) -> PretrainConfig:
    return PretrainConfig(**{"objective": "d2v", "encoder": VIT, "batch_size": 8, "steps": 4,
                             "warmup_steps": 2, "target_layers": 2, "device": "cpu", "vc_weight": 0.0, **kw})


def test_targets_are_mean_of_instance_normalised_top_layers():
    torch.manual_seed(0)
    model = Data2Vec(build_encoder(VIT), _config())
    x = torch.randn(3, 64, 32)
    layers = [h.double().numpy() for h in model.target_encoder(x)[-2:]]  # (B, N, D) each
    ref = np.mean([(h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + 1e-5) for h in layers], axis=0)
    np.testing.assert_allclose(model.targets(x).numpy(), ref, atol=1e-4)


def test_update_target_is_an_ema_of_the_student():
    torch.manual_seed(0)
    model = Data2Vec(build_encoder(VIT), _config())
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.target_encoder.parameters()]
    model.update_target(0.9)
    for old, new, student in zip(before, model.target_encoder.parameters(), model.encoder.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * student)


def test_bad_target_layers_raise():
    with pytest.raises(ValueError, match="target_layers"):
        Data2Vec(build_encoder(VIT), _config(target_layers=4))


def test_d2v_learns_a_frozen_teachers_targets():
    # momentum 1 freezes the teacher, so the targets are fixed and the regression must improve
    g = torch.Generator().manual_seed(0)
    data = torch.randn(64, 64, 1, generator=g).expand(-1, -1, 32).contiguous()  # stationary: predictable
    config = _config(steps=300, lr=3e-3, warmup_steps=10, ema_momentum=1.0, ema_cosine=False)
    result = pretrain(config, data, progress=False)
    assert result.status == "ok"
    assert np.mean(result.losses[-20:]) < 0.95 * np.mean(result.losses[:5])  # slow: positions are learned first
    runs = [pretrain(_config(seed=s), data, progress=False).losses for s in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0] != runs[2]  # seeded


def test_pixel_weight_adds_the_masked_patch_reconstruction_loss():
    # the loss with a pixel head is the latent loss plus weight x MAE's loss on the same masked
    # patches, computed here from the decoder's output with plain tensor arithmetic
    torch.manual_seed(0)
    model = Data2Vec(build_encoder(VIT), _config(pixel_weight=0.5))
    x = torch.randn(4, 64, 32)
    loss = model(x, torch.Generator().manual_seed(7))
    shuffle, restore, K = model._mask(4, model.encoder.grid_f * (32 // 4), x.device, torch.Generator().manual_seed(7))
    hidden = model._decode(model.encoder(x, keep=shuffle[:, :K])[-1], restore)
    hidden_masked = hidden[restore >= K]  # (masked patches, Dd)
    latent = model.decoder.pred(hidden_masked) - model.targets(x)[restore >= K]
    patches = model.pixel_targets(x)[restore >= K]  # (masked patches, 16 * 4), each normalised
    assert torch.allclose(patches.mean(-1), torch.zeros(len(patches)), atol=1e-5)
    pixel = model.decoder.pixel_pred(hidden_masked) - patches
    expected = (latent**2).mean(-1).mean() + 0.5 * (pixel**2).mean(-1).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_pixel_weight_zero_builds_no_pixel_head_and_negative_is_refused():
    assert not hasattr(Data2Vec(build_encoder(VIT), _config()).decoder, "pixel_pred")
    with pytest.raises(ValueError, match="pixel_weight"):
        _config(pixel_weight=-1.0)


def test_frozen_patch_embed_stays_at_init_while_the_rest_trains(tmp_path):
    from audiorank.models import load_checkpoint
    data = torch.randn(16, 64, 32, generator=torch.Generator().manual_seed(0))
    pretrain(_config(freeze_patch_embed=True, checkpoint_steps=(0,)), data, out_dir=tmp_path, progress=False)
    first, last = (load_checkpoint(tmp_path / f"step_{s:07d}.pt")[0] for s in (0, 4))
    assert torch.equal(first.patch_embed.weight, last.patch_embed.weight)
    assert torch.equal(first.patch_embed.bias, last.patch_embed.bias)
    assert not torch.equal(first.pos_embed, last.pos_embed)  # everything else moves
    with pytest.raises(ValueError, match="freeze_patch_embed"):
        pretrain(_config(objective="byol", encoder="cnn-nano", freeze_patch_embed=True), data, progress=False)


def test_layer_norm_targets_normalise_each_token_over_its_features():
    torch.manual_seed(0)
    model = Data2Vec(build_encoder(VIT), _config(target_norm="layer"))
    x = torch.randn(3, 64, 32)
    layers = [h.double().numpy() for h in model.target_encoder(x)[-2:]]  # (B, N, D) each
    ref = np.mean([(h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5) for h in layers], axis=0)
    np.testing.assert_allclose(model.targets(x).numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError, match="target_norm"):
        _config(target_norm="batch")


def _vicreg_reference(z: np.ndarray) -> float:
    """VICReg's variance + covariance / 25 in float64 numpy (np.cov: the unbiased covariance)."""
    cov = np.cov(z, rowvar=False)
    std = np.sqrt(np.diag(cov) + 1e-4)
    off = cov - np.diag(np.diag(cov))
    return float(np.maximum(0.0, 1.0 - std).mean() + (off**2).sum() / z.shape[1] / 25)


@given(n=st.integers(3, 40), d=st.integers(2, 24), scale=st.floats(0.05, 5.0), seed=st.integers(0, 2**16))
@settings(max_examples=40, deadline=None)
def test_variance_covariance_matches_a_float64_reference(n, d, scale, seed):
    z = np.random.default_rng(seed).standard_normal((n, d)) * scale
    got = variance_covariance(torch.from_numpy(z).float()).item()
    assert got == pytest.approx(_vicreg_reference(z), rel=1e-4, abs=1e-5)


def test_variance_covariance_is_zero_when_spread_and_large_when_collapsed():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16))
    white = np.linalg.svd(x - x.mean(0), full_matrices=False)[0] * np.sqrt(63)  # covariance = identity
    assert variance_covariance(torch.from_numpy(white).float()).item() < 1e-5
    collapsed = rng.standard_normal((64, 1)) @ rng.standard_normal((1, 16))  # every sample on one line
    assert variance_covariance(torch.from_numpy(collapsed).float()).item() > 0.5


def test_vc_weight_adds_the_regulariser_of_the_visible_last_layer_tokens():
    torch.manual_seed(0)
    plain = Data2Vec(build_encoder(VIT), _config())
    torch.manual_seed(0)
    model = Data2Vec(build_encoder(VIT), _config(vc_weight=0.3))
    x = torch.randn(4, 64, 32)
    base = plain(x, torch.Generator().manual_seed(7))  # the same weights: the same latent loss
    loss = model(x, torch.Generator().manual_seed(7))
    shuffle, _, K = model._mask(4, model.encoder.grid_f * (32 // 4), x.device, torch.Generator().manual_seed(7))
    tokens = model.encoder(x, keep=shuffle[:, :K])[-1].reshape(-1, VIT.width).double().detach().numpy()
    assert tokens.shape == (4 * K, VIT.width)
    torch.testing.assert_close(loss, base + 0.3 * _vicreg_reference(tokens), rtol=1e-5, atol=1e-6,
                               check_dtype=False)


def test_vc_weight_defaults_to_the_measured_value_for_d2v_only():
    assert PretrainConfig().vc_weight == 0.1 and PretrainConfig(objective="d2v").vc_weight == 0.1
    assert PretrainConfig(objective="mae").vc_weight == 0.0
    assert PretrainConfig(objective="byol", encoder="cnn-nano").vc_weight == 0.0
    assert PretrainConfig(vc_weight=0.0).vc_weight == 0.0  # given: kept
    resolved = PretrainConfig().resolved()
    assert PretrainConfig(**resolved).vc_weight == 0.1  # the record names the value, not None


def test_vc_weight_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="vc_weight must be >= 0"):
        _config(vc_weight=-0.1)
    with pytest.raises(ValueError, match="vc_weight"):
        _config(objective="byol", encoder="cnn-nano", vc_weight=0.1)
