"""Encoders: presets build, per-layer token shapes, parameter counts, checkpoints, determinism."""

import dataclasses

import pytest
import torch

from audiorank.audio import LogMel
from audiorank.models import (
    PRESETS,
    EncoderConfig,
    build_encoder,
    load_checkpoint,
    patchify,
    save_checkpoint,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = {
    "vit": EncoderConfig(arch="vit", width=16, depth=2, heads=2, patch=(64, 4), max_frames=128),
    "vit-square": EncoderConfig(arch="vit", width=16, depth=2, heads=2, patch=(16, 16), max_frames=64),
    "cnn": EncoderConfig(arch="cnn", width=24, depth=3, cnn_channels=4),
    "conformer": EncoderConfig(arch="conformer", width=16, depth=2, heads=2, conv_kernel=3),
}


def expected_shapes(config: EncoderConfig, B: int, T: int) -> list[tuple[int, int, int]]:
    """The documented convention: n_layers + 1 entries, layer 0 the input embedding."""
    if config.arch == "cnn":
        m, c = config.n_mels, config.cnn_channels
        return [(B, T, m)] + [(B, T >> i, c * (m >> i)) for i in range(1, config.depth + 1)] + [
            (B, T >> config.depth, config.width)
        ]
    pf, pt = config.patch
    n = (config.n_mels // pf) * (T // pt)
    return [(B, n, config.width)] * (config.depth + 1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_returns_documented_per_layer_shapes(name):
    config = PRESETS[name]
    with torch.device("meta"):  # shapes and counts without paying for 85M-parameter inits
        encoder = build_encoder(name).eval()
        layers = encoder(torch.empty(2, 64, 96))
    assert [tuple(t.shape) for t in layers] == expected_shapes(config, 2, 96)
    assert len(layers) == encoder.n_layers + 1
    assert [t.shape[-1] for t in layers] == encoder.layer_dims
    assert layers[-1].shape[1] == encoder.n_tokens(96)


@pytest.mark.parametrize("kind", list(TINY))
def test_tiny_encoders_run_for_real(kind):
    config = TINY[kind]
    encoder = build_encoder(config).eval()
    x = torch.randn(3, 64, 70)  # 70 frames: not a multiple of the patch, trailing frames dropped
    with torch.no_grad():
        layers = encoder(x)
    T = 64 if kind == "vit-square" else 68 if kind != "cnn" else 70
    assert [tuple(t.shape) for t in layers] == expected_shapes(config, 3, T)
    assert all(torch.isfinite(t).all() for t in layers)


def test_parameter_counts_span_two_orders_of_magnitude_per_family():
    for family in ("vit", "cnn", "conformer"):
        counts = []
        for name in PRESETS:
            if name.startswith(family + "-"):
                with torch.device("meta"):
                    counts.append(build_encoder(name).num_parameters())
        assert max(counts) / min(counts) >= 100, (family, counts)


def test_num_parameters_matches_a_hand_count():
    D, M = 8, 16  # width, MLP hidden (mlp_ratio 2)
    config = EncoderConfig(arch="vit", width=D, depth=1, heads=2, mlp_ratio=2.0, patch=(64, 4), max_frames=16)
    encoder = build_encoder(config)
    block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * M + M) + (M * D + D)
    final_norm = 2 * D
    embeddings = (64 * 4 * D + D) + (1 * 4 * D)  # patch projection (conv) + positional table (1 x 4 x D)
    assert encoder.num_parameters() == block + final_norm
    assert encoder.num_parameters(exclude_embeddings=False) == block + final_norm + embeddings

    cnn = build_encoder(EncoderConfig(arch="cnn", width=5, depth=2, cnn_channels=3, n_mels=8))
    convs = (1 * 3 * 9 + 3 + 2 * 3) + (3 * 3 * 9 + 3 + 2 * 3)  # conv + bias + BN affine
    fc = (3 * 2 * 5 + 5) + (5 * 5 + 5)  # (channels x 8/4 mel) -> 5 -> 5
    assert cnn.num_parameters() == cnn.num_parameters(False) == convs + fc


def test_patchify_uses_the_encoder_token_order():
    """MAE targets (patchify) and ViT tokens (conv patch embedding) must index the same patches."""
    config = TINY["vit-square"]
    encoder = build_encoder(config)  # no normalisation of its own: tokens are affine in x
    x = torch.randn(2, 64, 48)
    w = encoder.patch_embed.weight.reshape(config.width, -1)  # (D, pf*pt)
    expected = patchify(x, config.patch) @ w.T + encoder.patch_embed.bias  # (B, N, D)
    nt = 48 // 16
    expected = expected + encoder.pos_embed[:, :, :nt].reshape(1, -1, config.width)
    torch.testing.assert_close(encoder.embed(x), expected, atol=1e-5, rtol=1e-5)


def test_keep_selects_visible_patches_and_is_vit_only():
    encoder = build_encoder(TINY["vit"]).eval()
    keep = torch.tensor([[0, 3, 5], [1, 2, 15]])  # of 16 patches
    layers = encoder(torch.randn(2, 64, 64), keep=keep)
    assert all(t.shape == (2, 3, 16) for t in layers)
    with pytest.raises(ValueError, match="ViT-only"):
        build_encoder(TINY["cnn"])(torch.randn(2, 64, 64), keep=keep)


def test_bad_input_and_config_raise_clear_errors():
    encoder = build_encoder(TINY["vit"])
    with pytest.raises(ValueError, match=r"\(B, 64, T\)"):
        encoder(torch.randn(2, 40, 64))
    with pytest.raises(ValueError, match="max_frames"):
        encoder(torch.randn(2, 64, 256))
    with pytest.raises(ValueError, match="unknown encoder preset.*vit-nano"):
        build_encoder("vit-huge")
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig(width=10, heads=3)


def test_seeded_build_is_reproducible_and_leaves_the_global_rng_alone():
    x = torch.randn(2, 64, 64)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    seeded = [build_encoder(TINY["conformer"], seed=s).eval() for s in (7, 7, 8)]
    assert torch.equal(torch.get_rng_state(), rng)
    torch.manual_seed(7)  # the reference: the same build after seeding the global RNG itself
    reference = build_encoder(TINY["conformer"]).eval()
    with torch.no_grad():
        outs = [encoder(x) for encoder in (*seeded, reference)]
    assert all(torch.equal(a, b) and torch.equal(a, r) for a, b, r in zip(outs[0], outs[1], outs[3]))
    assert not torch.equal(outs[0][-1], outs[2][-1])


@pytest.mark.parametrize("kind", ["vit", "cnn", "conformer"])
def test_checkpoint_round_trip_is_exact_with_weights_only(tmp_path, kind):
    encoder = build_encoder(TINY[kind]).eval()
    path = save_checkpoint(tmp_path / "ckpt.pt", encoder, step=12, extra={"loss": 0.5, "tags": ["a", "b"]})
    torch.load(path, weights_only=True)  # nothing but tensors and plain Python values
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 12 and meta["extra"] == {"loss": 0.5, "tags": ["a", "b"]}
    assert meta["config"] == dataclasses.asdict(encoder.config)
    assert {"input_mean", "input_std"}.isdisjoint(torch.load(path, weights_only=True)["state_dict"])
    x = torch.randn(2, 64, 64)
    with torch.no_grad():
        for a, b in zip(encoder(x), loaded(x)):
            assert torch.equal(a, b)


def test_v1_checkpoint_input_standardisation_is_folded_into_its_front_end(tmp_path):
    """A v1 encoder computed enc((frontend(w) - m) / s); loaded now, frontend'(w) -> enc must give
    the same tokens, with the obsolete keys gone; without a front end to fold into it is an error."""
    encoder = build_encoder(TINY["vit"], seed=0).eval()
    frontend = LogMel().fit_stats(torch.randn(4, 4000, generator=torch.Generator().manual_seed(1)))
    m, s = -0.7, 2.5
    v1 = {
        "format": "audiorank-encoder-v1",
        "config": {**dataclasses.asdict(encoder.config), "normalize_input": True},
        "state_dict": {**encoder.state_dict(), "input_mean": torch.tensor(m), "input_std": torch.tensor(s)},
        "step": 3,
        "extra": {"frontend": frontend.state_dict()},
    }
    torch.save(v1, tmp_path / "v1.pt")
    loaded, meta = load_checkpoint(tmp_path / "v1.pt")
    upgraded = LogMel()
    upgraded.load_state_dict(meta["extra"]["frontend"])
    waves = torch.randn(2, 6400, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        old = encoder((frontend(waves) - m) / s)
        new = loaded(upgraded(waves))
    for a, b in zip(old, new):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    torch.save({**v1, "extra": {}}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="no front end to fold"):
        load_checkpoint(tmp_path / "bare.pt")
    identity = {**v1, "state_dict": encoder.state_dict(), "extra": {}}  # v1 defaults: nothing to fold
    torch.save(identity, tmp_path / "identity.pt")
    assert load_checkpoint(tmp_path / "identity.pt")[1]["step"] == 3
