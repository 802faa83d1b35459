"""Audio encoders over log-mel spectrograms, with size presets, all returning per-layer tokens.

Three families, one contract. Each encoder maps a log-mel batch x of shape (B, n_mels, T) (10 ms
frames) to a list with the token sequence of every layer, each (B, tokens, D_layer):

    layers = encoder(x)            # len(layers) == encoder.n_layers + 1
    layers[0]                      # the input embedding (before the first block)
    layers[i], i = 1..n_layers     # the output of block i; layers[-1] is after the final norm

- `ViTEncoder`: a plain pre-norm Transformer over spectrogram patches (ViT, Dosovitskiy et al.
  2021; AST, Gong et al. 2021; SSAST, Gong et al. 2022). Patches either span all mel bins and a few
  frames ("frame patches", Dasheng, Dinkel et al. 2024, e.g. (64, 4)) or are square (AST/SSAST/
  Audio-MAE, e.g. (16, 16)). It accepts `keep` indices so a masked autoencoder (MAE, He et al.
  2022; Audio-MAE, Huang et al. 2022) encodes only the visible patches.
- `CNNEncoder`: BYOL-A's AudioNTT2020 network (Niizumi et al. 2021): conv3x3-BN-ReLU-maxpool blocks,
  then an MLP applied per time step. Its "tokens" are time steps; a conv layer's token features
  are its channels x remaining frequency bins, so D differs from layer to layer.
- `ConformerEncoder`: torchaudio's Conformer (Gulati et al. 2020) over stacked mel frames. The
  convolution module supplies relative position, so there is no positional table.

Parameter counts (`num_parameters`) are the model-size axis of the scaling plots; `PRESETS` spans
more than two orders of magnitude for every family. Checkpoints hold only tensors and plain Python
values and load with `torch.load(..., weights_only=True)`.

Encoders do not normalise their input: the log-mel front end (`audio.LogMel`, per-mel-bin statistics
fitted on the training data) is the one normalisation, and checkpoints carry it in extra["frontend"].
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRESETS",
    "CNNEncoder",
    "ConformerEncoder",
    "CHECKPOINT_FORMAT",
    "Encoder",
    "EncoderConfig",
    "ViTEncoder",
    "atomic_save",
    "build_encoder",
    "encoder_config",
    "init_weights",
    "load_checkpoint",
    "patchify",
    "save_checkpoint",
    "seeded_rng",
]


@dataclass
class EncoderConfig:
    arch: str = "vit"  # "vit" | "cnn" | "conformer"
    n_mels: int = 64  # mel bins of the input log-mel (B, n_mels, T)
    width: int = 192  # token dimension D of the blocks (CNN: output dim of its per-frame MLP)
    depth: int = 4  # Transformer / Conformer blocks (CNN: conv blocks)
    heads: int = 3  # attention heads (vit, conformer); width must be divisible by it
    mlp_ratio: float = 4.0  # hidden size of MLP / feed-forward modules as a multiple of width
    patch: tuple[int, int] = (64, 4)  # (mel bins, frames) per patch; (n_mels, k) = frame patches,
    #                                   (16, 16) = square patches. Conformer stacks patch[1] frames.
    max_frames: int = 1024  # longest input in frames (10.24 s); sizes the positional table
    dropout: float = 0.0  # dropout in attention output, MLPs and after the embedding
    bias: bool = True  # biases in Linear layers and LayerNorms
    norm_eps: float = 1e-6  # LayerNorm epsilon
    conv_kernel: int = 31  # Conformer depthwise convolution kernel (odd)
    cnn_channels: int = 64  # CNN channels of every conv block (BYOL-A: 64)

    def __post_init__(self) -> None:
        self.patch = tuple(int(p) for p in self.patch)  # lists from JSON/YAML become tuples
        if self.arch not in ("vit", "cnn", "conformer"):
            raise ValueError(f"EncoderConfig.arch must be 'vit', 'cnn' or 'conformer', got {self.arch!r}")
        if len(self.patch) != 2 or min(self.patch) < 1:
            raise ValueError(f"EncoderConfig.patch must be two positive ints, got {self.patch!r}")
        if self.arch in ("vit", "conformer"):
            if self.width % self.heads:
                raise ValueError(f"EncoderConfig.width={self.width} must be divisible by heads={self.heads}")
            if self.n_mels % self.patch[0]:
                raise ValueError(f"EncoderConfig.n_mels={self.n_mels} must be divisible by patch[0]={self.patch[0]}")
        if self.arch == "conformer" and self.patch[0] != self.n_mels:
            raise ValueError(f"conformer stacks whole frames: patch[0] must equal n_mels={self.n_mels}, got {self.patch[0]}")
        if self.arch == "cnn" and self.n_mels % 2**self.depth:
            raise ValueError(f"cnn: n_mels={self.n_mels} must be divisible by 2**depth={2**self.depth}")


# ----------------------------------------------------------------------------- building blocks


class SelfAttention(nn.Module):
    """Multi-head self-attention through F.scaled_dot_product_attention (flash/efficient on GPU)."""

    def __init__(self, config: EncoderConfig, width: int | None = None, heads: int | None = None):
        super().__init__()
        width, self.heads = width or config.width, heads or config.heads
        self.qkv = nn.Linear(width, 3 * width, bias=config.bias)
        self.proj = nn.Linear(width, width, bias=config.bias)
        self.proj.residual = True  # scaled init, see init_weights
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)  # 3 x (B, N, D)
        q = q.view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, N, head_dim)
        k = k.view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, N, head_dim)
        v = v.view(B, N, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, N, head_dim)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, N, D)  # (B, N, D)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: EncoderConfig, width: int | None = None):
        super().__init__()
        width = width or config.width
        hidden = int(config.mlp_ratio * width)
        self.fc = nn.Linear(width, hidden, bias=config.bias)
        self.proj = nn.Linear(hidden, width, bias=config.bias)
        self.proj.residual = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: EncoderConfig, width: int | None = None, heads: int | None = None):
        super().__init__()
        width = width or config.width
        self.ln_1 = nn.LayerNorm(width, eps=config.norm_eps, bias=config.bias)
        self.attn = SelfAttention(config, width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=config.norm_eps, bias=config.bias)
        self.mlp = MLP(config, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def patchify(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """(B, F, T) log-mel → (B, n_patches, pf*pt) patches in the encoders' token order (mel-band
    major: token index = band * n_time_patches + time). Trailing frames that do not fill a patch
    are dropped."""
    B, Fq, T = x.shape
    pf, pt = patch
    nf, nt = Fq // pf, T // pt
    x = x[:, : nf * pf, : nt * pt].reshape(B, nf, pf, nt, pt)  # (B, nf, pf, nt, pt)
    x = x.permute(0, 1, 3, 2, 4)  # (B, nf, nt, pf, pt)
    return x.reshape(B, nf * nt, pf * pt)  # (B, nf*nt, pf*pt)


def init_weights(model: nn.Module, depth: int, std: float = 0.02) -> None:
    """All weight init lives here (encoders and pretraining heads call it): truncated normal(std)
    for Linear layers and for parameters owned directly by `model` (positional tables, mask
    tokens); Linear layers marked `.residual` (output projections of residual branches) get
    std / sqrt(2 * depth) (GPT-2); Kaiming for convolutions; unit norms, zero biases. Modules it
    does not know (torchaudio's attention input projection) keep their own init."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            s = std / math.sqrt(2 * max(1, depth)) if getattr(m, "residual", False) else std
            nn.init.trunc_normal_(m.weight, std=s, a=-2 * s, b=2 * s)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for p in model.parameters(recurse=False):
        nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)


# ----------------------------------------------------------------------------- encoders


class Encoder(nn.Module):
    """What the three encoders share: input checks, weight init, parameter counting."""

    # names (prefixes) of the parameters that embed the input; excluded by num_parameters(True)
    embedding_names: tuple[str, ...] = ()

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config

    @property
    def n_layers(self) -> int:
        """Number of blocks; forward returns n_layers + 1 token sequences (embedding first)."""
        return self.config.depth

    @property
    def layer_dims(self) -> list[int]:
        """Token dimension D of each entry of forward's output list (all `width` unless overridden)."""
        return [self.config.width] * (self.config.depth + 1)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        """x itself, after checking it is (B, n_mels, T): the front end already normalised it."""
        if x.dim() != 3 or x.shape[1] != self.config.n_mels:
            raise ValueError(f"encoder input must be (B, {self.config.n_mels}, T) log-mels, got shape {tuple(x.shape)}")
        return x

    def _init_weights(self) -> None:
        init_weights(self, self.config.depth)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x (B, n_mels, T) log-mels → [layer 0 (input embedding), block 1, ..., block n_layers],
        each (B, tokens, layer_dims[i]); the last entry is after the final norm. `keep` (B, K)
        patch indices: encode only those patches (ViT only; others raise ValueError)."""
        raise NotImplementedError

    def num_parameters(self, exclude_embeddings: bool = True) -> int:
        """Number of parameters (trainable or not). With exclude_embeddings=True (the model-size axis of
        our plots, as in Kaplan et al. 2020) the parameters named in `embedding_names` are left
        out: ViT's patch projection and positional table, Conformer's frame projection. The CNN
        has no embedding and always counts everything. Buffers (BN running statistics) are never
        counted."""
        return sum(
            p.numel()
            for n, p in self.named_parameters()
            if not (exclude_embeddings and n.startswith(self.embedding_names))
        )

    def n_tokens(self, frames: int) -> int:
        """Tokens in the last layer's output for an input of `frames` frames (ViT, Conformer:
        every layer; CNN: layer i has frames >> i tokens)."""
        raise NotImplementedError

    def time_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """One layer's tokens (B, N, D) as one token per time step: already so here (CNN frames,
        Conformer frame stacks, frame-patch ViT); a square-patch ViT concatenates its frequency rows."""
        return tokens


class ViTEncoder(Encoder):
    """Patch embedding → learned positional table → pre-norm blocks → final LayerNorm.

    Tokens are patches in mel-band-major order (see `patchify`); with frame patches (patch[0] ==
    n_mels) the tokens are simply time steps. Inputs are cropped to whole patches. `keep` (B, K)
    long indices of patches selects the visible patches (MAE); all layers then have K tokens.
    """

    embedding_names = ("patch_embed.", "pos_embed")

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        pf, pt = config.patch
        self.grid_f, self.max_t = config.n_mels // pf, config.max_frames // pt  # patch grid
        self.patch_embed = nn.Conv2d(1, config.width, kernel_size=(pf, pt), stride=(pf, pt))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid_f, self.max_t, config.width))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.ln_f = nn.LayerNorm(config.width, eps=config.norm_eps, bias=config.bias)
        self._init_weights()

    def n_tokens(self, frames: int) -> int:
        return self.grid_f * (frames // self.config.patch[1])

    def time_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, grid_f·nt, D) patch tokens in `embed`'s mel-band-major order → (B, nt, grid_f·D): one
        token per time step, its frequency rows side by side (lowest band first). Averaged over
        time, this keeps where in frequency a feature was, which a mean over all patches loses
        (M2D and BYOL-A pool this way)."""
        B, N, D = tokens.shape
        if N % self.grid_f:
            raise ValueError(f"time_tokens needs the full patch grid ({self.grid_f} frequency rows), got {N} tokens")
        nt = N // self.grid_f
        return tokens.reshape(B, self.grid_f, nt, D).transpose(1, 2).reshape(B, nt, self.grid_f * D)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) → (B, n_patches, D) patch tokens plus positions (no dropout)."""
        x = self._check_input(x)
        B, _, T = x.shape
        nt = T // self.config.patch[1]
        if nt < 1 or nt > self.max_t:
            raise ValueError(
                f"input has {T} frames: need between {self.config.patch[1]} and {self.config.max_frames} (config.max_frames)"
            )
        x = self.patch_embed(x.unsqueeze(1))  # (B, D, grid_f, nt)
        x = x.permute(0, 2, 3, 1)  # (B, grid_f, nt, D)
        x = x + self.pos_embed[:, :, :nt]  # (B, grid_f, nt, D)
        return x.reshape(B, self.grid_f * nt, -1)  # (B, n_patches, D)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        x = self.embed(x)  # (B, N, D)
        if keep is not None:
            x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, K, D)
        x = self.drop(x)
        layers = [x]
        for i, block in enumerate(self.blocks):
            x = block(x)
            layers.append(self.ln_f(x) if i == len(self.blocks) - 1 else x)  # (B, N or K, D)
        return layers


class CNNEncoder(Encoder):
    """BYOL-A's AudioNTT2020: `depth` blocks of conv3x3-BN-ReLU-maxpool(2x2), then a 2-layer MLP
    per time step. layers[0] is the input as frame tokens (B, T, n_mels); layers[i]
    for a conv block is (B, T / 2^i, cnn_channels * n_mels / 2^i); the last entry is the MLP
    output (B, T / 2^depth, width). n_layers = depth + 1."""

    embedding_names = ()

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        c = config.cnn_channels
        self.convs = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1 if i == 0 else c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)
            )
            for i in range(config.depth)
        )
        self.fc = nn.Sequential(
            nn.Linear(c * (config.n_mels >> config.depth), config.width),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.width, config.width),
            nn.ReLU(),
        )
        self._init_weights()

    @property
    def n_layers(self) -> int:
        return self.config.depth + 1

    @property
    def layer_dims(self) -> list[int]:
        c, m = self.config.cnn_channels, self.config.n_mels
        return [m] + [c * (m >> i) for i in range(1, self.config.depth + 1)] + [self.config.width]

    def n_tokens(self, frames: int) -> int:
        return frames >> self.config.depth

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        if keep is not None:
            raise ValueError("CNNEncoder does not support `keep` (masked encoding is ViT-only)")
        x = self._check_input(x)
        if x.shape[-1] < 2**self.config.depth:
            raise ValueError(f"cnn needs at least {2**self.config.depth} frames, got {x.shape[-1]}")
        layers = [x.transpose(1, 2)]  # (B, T, n_mels)
        x = x.unsqueeze(1)  # (B, 1, F, T)
        for conv in self.convs:
            x = conv(x)  # (B, C, F/2, T/2)
            B, C, Fq, T = x.shape
            layers.append(x.permute(0, 3, 1, 2).reshape(B, T, C * Fq))  # (B, T, C*F)
        layers.append(self.fc(layers[-1]))  # (B, T, width)
        return layers


class ConformerEncoder(Encoder):
    """Stacks patch[1] mel frames into one token, projects to width, then torchaudio's Conformer
    layers (each ends in its own LayerNorm). torchaudio's `Conformer.forward` returns only the last
    layer, so we iterate `conformer.conformer_layers` to collect every layer."""

    embedding_names = ("input_proj.",)

    def __init__(self, config: EncoderConfig):
        super().__init__(config)
        from torchaudio.models import Conformer

        self.input_proj = nn.Linear(config.n_mels * config.patch[1], config.width, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)
        self.conformer = Conformer(
            input_dim=config.width,
            num_heads=config.heads,
            ffn_dim=int(config.mlp_ratio * config.width),
            num_layers=config.depth,
            depthwise_conv_kernel_size=config.conv_kernel,
            dropout=config.dropout,
        )
        self._init_weights()

    def n_tokens(self, frames: int) -> int:
        return frames // self.config.patch[1]

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        if keep is not None:
            raise ValueError("ConformerEncoder does not support `keep` (masked encoding is ViT-only)")
        x = self._check_input(x)
        x = patchify(x, (self.config.n_mels, self.config.patch[1]))  # (B, T/pt, n_mels*pt)
        if x.shape[1] < 1:
            raise ValueError(f"conformer needs at least patch[1]={self.config.patch[1]} frames")
        x = self.drop(self.input_proj(x))  # (B, N, D)
        layers = [x]
        x = x.transpose(0, 1)  # (N, B, D), torchaudio's layer layout
        for layer in self.conformer.conformer_layers:
            x = layer(x, None)  # (N, B, D)
            layers.append(x.transpose(0, 1))  # (B, N, D)
        return layers


# ----------------------------------------------------------------------------- presets

_ENCODERS = {"vit": ViTEncoder, "cnn": CNNEncoder, "conformer": ConformerEncoder}


def _vit(width: int, depth: int, heads: int, patch=(64, 4)) -> EncoderConfig:
    return EncoderConfig(arch="vit", width=width, depth=depth, heads=heads, patch=patch)


def _cnn(channels: int, depth: int, width: int) -> EncoderConfig:
    return EncoderConfig(arch="cnn", cnn_channels=channels, depth=depth, width=width, dropout=0.0)


def _conformer(width: int, depth: int, heads: int) -> EncoderConfig:
    return EncoderConfig(arch="conformer", width=width, depth=depth, heads=heads, patch=(64, 4), conv_kernel=15)


PRESETS: dict[str, EncoderConfig] = {
    # ViT with Dasheng-style frame patches (64 mel x 40 ms); ~0.1M to ~85M non-embedding params
    "vit-nano": _vit(64, 2, 2),
    "vit-tiny": _vit(128, 4, 2),
    "vit-mini": _vit(256, 6, 4),
    "vit-small": _vit(384, 12, 6),  # ViT-S
    "vit-base": _vit(768, 12, 12),  # ViT-B (AST, Audio-MAE, Dasheng-base width)
    # square 16x16 patches (AST / SSAST / Audio-MAE): the default family; femto..mini is the laptop
    # model-size axis (~6k to ~4.7M non-embedding params), nano..base the reference one (~0.1M to ~85M)
    "vit-femto-p16": _vit(16, 2, 1, patch=(16, 16)),
    "vit-pico-p16": _vit(32, 2, 2, patch=(16, 16)),
    "vit-nano-p16": _vit(64, 2, 2, patch=(16, 16)),
    "vit-micro-p16": _vit(96, 3, 3, patch=(16, 16)),
    "vit-tiny-p16": _vit(128, 4, 2, patch=(16, 16)),
    "vit-mini-p16": _vit(256, 6, 4, patch=(16, 16)),
    "vit-small-p16": _vit(384, 12, 6, patch=(16, 16)),
    "vit-base-p16": _vit(768, 12, 12, patch=(16, 16)),
    # BYOL-A CNN; "cnn-small" is the original AudioNTT2020 (64 channels, 3 blocks, 2048-d)
    "cnn-nano": _cnn(16, 3, 128),
    "cnn-tiny": _cnn(32, 3, 512),
    "cnn-small": _cnn(64, 3, 2048),
    "cnn-base": _cnn(128, 3, 4096),
    # torchaudio Conformer over 40 ms stacked frames
    "conformer-nano": _conformer(64, 2, 2),
    "conformer-tiny": _conformer(128, 4, 2),
    "conformer-small": _conformer(256, 8, 4),
    "conformer-base": _conformer(512, 12, 8),
}


def encoder_config(spec: EncoderConfig | str | dict) -> EncoderConfig:
    """The full EncoderConfig a preset name, a config dict (as stored in checkpoints) or a config names."""
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown encoder preset {spec!r}; available: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[spec])  # a copy: presets stay untouched
    if isinstance(spec, dict):
        return EncoderConfig(**spec)
    if isinstance(spec, EncoderConfig):
        return spec
    raise TypeError(f"expected an EncoderConfig, dict or preset name, got {type(spec).__name__}")


@contextlib.contextmanager
def seeded_rng(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """torch's global RNG (CPU, and `device`'s if CUDA) seeded inside the block and restored on exit.
    Module constructors (nn.Linear, torchaudio's Conformer) and dropout draw from the global RNG and
    take no generator, so seeding it locally is how a build is reproducible without side effects."""
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def build_encoder(config: EncoderConfig | str | dict, seed: int | None = None) -> Encoder:
    """An encoder from a config, a config dict or a preset name; with `seed`, its initial weights
    are a function of the seed alone and the global RNG is left as it was."""
    config = encoder_config(config)
    if seed is None:
        return _ENCODERS[config.arch](config)
    with seeded_rng(seed):
        return _ENCODERS[config.arch](config)


# ----------------------------------------------------------------------------- checkpoints


CHECKPOINT_FORMAT = "audiorank-encoder-v2"  # v1 encoders also standardised their input (see below)


def atomic_save(obj: object, path: str | os.PathLike) -> Path:
    """torch.save to a temp file beside `path`, then os.replace: a killed writer leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(path: str | os.PathLike, encoder: Encoder, step: int, extra: dict | None = None) -> Path:
    """Write {"config": asdict(config), "state_dict", "step", "extra"} atomically (temp + rename).
    `extra` must hold only tensors and plain Python values so the file loads with weights_only."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": dataclasses.asdict(encoder.config),
        "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()},
        "step": int(step),
        "extra": dict(extra or {}),
    }
    return atomic_save(payload, path)


def _upgrade_v1(payload: dict, path: str | os.PathLike) -> dict:
    """A v1 checkpoint's encoder standardised its input with scalar `input_mean`/`input_std`
    buffers on top of the front end. (x - m)/s after the front end's (lm - mu)/sigma is the front
    end with mean mu + m*sigma and std sigma*s, so the scalars are folded into extra["frontend"]
    exactly and the obsolete keys dropped. Without a front end to fold into, non-identity scalars
    cannot be kept: a clear error."""
    config, state = dict(payload["config"]), dict(payload["state_dict"])
    normalize = config.pop("normalize_input", True)
    mean, std = state.pop("input_mean", torch.zeros(())), state.pop("input_std", torch.ones(()))
    extra = dict(payload["extra"])
    if normalize and (float(mean) != 0.0 or float(std) != 1.0):
        frontend = extra.get("frontend")
        if frontend is None:
            raise ValueError(
                f"{path}: a v1 checkpoint whose encoder standardised its input (input_mean={float(mean):.4g}, "
                f"input_std={float(std):.4g}) but which carries no front end to fold that into; retrain it"
            )
        frontend = dict(frontend)
        frontend["mean"] = frontend["mean"] + mean * frontend["std"]
        frontend["std"] = frontend["std"] * std
        extra["frontend"] = frontend
    return {**payload, "config": config, "state_dict": state, "extra": extra}


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Encoder, dict]:
    """(encoder in eval mode, meta) from `save_checkpoint`'s file, loaded with weights_only=True.
    meta = {"step": int, "config": dict, "extra": dict}. v1 files are upgraded (`_upgrade_v1`)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    fmt = payload.get("format") if isinstance(payload, dict) else None
    if fmt == "audiorank-encoder-v1":
        payload = _upgrade_v1(payload, path)
    elif fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an audiorank encoder checkpoint (format {fmt!r})")
    encoder = build_encoder(payload["config"])
    encoder.load_state_dict(payload["state_dict"])
    encoder.eval()
    return encoder, {"step": payload["step"], "config": payload["config"], "extra": payload["extra"]}
