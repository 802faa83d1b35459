"""The self-supervised objectives `pretrain.py` trains: each an `nn.Module` holding the encoder
and its heads whose forward(x, generator) returns the loss of one batch of log-mels (B, n_mels, T).

- "mae": masked-patch reconstruction (MAE, He et al. 2022; Audio-MAE, Huang et al. 2022;
  Dasheng, Dinkel et al. 2024). ViT only. A random `mask_ratio` of the patches is hidden, the
  encoder sees only the visible ones, a light decoder (a few narrow blocks) reconstructs every
  patch, and the loss is the MSE on the masked patches against per-patch normalised targets.
- "d2v" (the default): masked latent prediction as data2vec 2.0 (Baevski et al. 2023) and M2D
  (Niizumi et al. 2023): the MAE student and decoder, but the targets at masked patches are an EMA
  teacher's representation of the whole clip (top-K blocks, instance-normalised, averaged). ViT only.
  scripts/recipe_study.py chose it, with square patches, at fixed compute (results/recipe_study/).
  Both masked objectives can add VICReg's variance-covariance terms on the student's visible tokens
  (`vc_weight`; 0.1 by default for d2v): without them the first steps collapse the representation
  onto a few directions (results/default_vs_init/default_16k_vc01/).
- "byol": BYOL-A (Niizumi et al. 2021; BYOL, Grill et al. 2020): an online encoder + projector +
  predictor regresses an EMA target encoder + projector across two augmented views (mixup with
  another clip of the batch, random resize crop in time/frequency, gain). Works with every
  encoder (the clip embedding is the mean over the last layer's tokens). Turning the predictor
  off and the EMA momentum to 0 gives the known collapse-prone setup (SimSiam, Chen & He 2021).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .models import Block, Encoder, ViTEncoder, init_weights, patchify

if TYPE_CHECKING:  # the config is only read here; pretrain.py imports this module
    from .pretrain import PretrainConfig

__all__ = ["BYOL", "MAE", "OBJECTIVES", "Data2Vec", "augment", "variance_covariance"]

class MAE(nn.Module):
    """Masked autoencoder around a ViTEncoder: encode visible patches, decode all, MSE on masked."""

    def __init__(self, encoder: Encoder, config: PretrainConfig, out_dim: int | None = None):
        super().__init__()
        if not isinstance(encoder, ViTEncoder):
            raise ValueError(f"objective {config.objective!r} needs a ViT encoder, got arch={encoder.config.arch!r}")  # noqa: TRY004 (a config value)
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
        self.decoder.pred = nn.Linear(width, out_dim or pf * pt)  # out_dim: latent targets
        self.pixel_weight = config.pixel_weight if out_dim else 0.0  # only latent targets add pixels
        self.vc_weight = config.vc_weight
        if self.pixel_weight > 0:
            self.decoder.pixel_pred = nn.Linear(width, pf * pt)
        init_weights(self.decoder, config.decoder_depth)

    def _mask(self, B: int, N: int, device: torch.device, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(shuffle, restore, K): a random permutation of the N patches per clip (the first K are
        visible), its inverse, and the visible count."""
        K = max(1, round(N * (1 - self.mask_ratio)))  # visible patches
        noise = torch.rand(B, N, generator=generator).to(device)  # (B, N)
        shuffle = noise.argsort(dim=1)  # (B, N) patch ids, visible first
        return shuffle, shuffle.argsort(dim=1), K  # restore: (B, N) position of each patch in `shuffle`

    def _decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Visible latents (B, K, D) → the decoder's normed output at every patch (B, N, Dd), the
        masked ones from mask tokens; `decoder.pred` maps it to predictions."""
        dec, (B, N) = self.decoder, restore.shape
        y = dec.embed(latent)  # (B, K, Dd)
        y = torch.cat([y, dec.mask_token.expand(B, N - latent.shape[1], -1).to(y.dtype)], dim=1)  # (B, N, Dd)
        y = torch.gather(y, 1, restore.unsqueeze(-1).expand(-1, -1, y.shape[-1]))  # (B, N, Dd)
        y = y + dec.pos[:, :, : N // self.encoder.grid_f].reshape(1, N, -1)  # (B, N, Dd)
        for block in dec.blocks:
            y = block(y)
        return dec.norm(y)  # (B, N, Dd)

    def pixel_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, pf*pt) the input patches, per-patch normalised when `norm_targets`."""
        target = patchify(self.encoder._check_input(x), self.encoder.config.patch)  # (B, N, pf*pt)
        if self.norm_targets:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()  # (B, N, pf*pt)
        return target

    targets = pixel_targets  # MAE reconstructs pixels; Data2Vec overrides `targets`

    def forward(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        target = self.targets(x)  # (B, N, out)
        B, N, _ = target.shape
        shuffle, restore, K = self._mask(B, N, x.device, generator)
        latent = self.encoder(x, keep=shuffle[:, :K])[-1]  # (B, K, D) the visible tokens, last layer
        hidden = self._decode(latent, restore)  # (B, N, Dd)
        masked = (restore >= K).float()  # (B, N) 1 where hidden
        loss = _masked_mse(self.decoder.pred(hidden).float(), target, masked)
        if self.vc_weight > 0:  # keep the student's tokens spread over many dimensions
            loss = loss + self.vc_weight * variance_covariance(latent.reshape(-1, latent.shape[-1]))
        if self.pixel_weight > 0:  # Data2Vec's optional second head: reconstruct the masked patches too
            loss = loss + self.pixel_weight * _masked_mse(self.decoder.pixel_pred(hidden).float(),
                                                          self.pixel_targets(x), masked)
        return loss


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """Mean over the masked patches (masked: (B, N), 1 where hidden) of the per-patch MSE."""
    per_patch = ((pred - target.float()) ** 2).mean(-1)  # (B, N)
    return (per_patch * masked).sum() / masked.sum()


def variance_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg's (Bardes et al. 2022) variance and covariance terms, in its 25 : 1 proportion, of
    samples z (n, D): the mean hinge max(0, 1 - std) of each feature's standard deviation over the
    samples, plus 1/25 of the squared off-diagonal covariances summed and divided by D. Zero when
    every feature has unit spread and none are correlated; large when the samples collapse onto a
    few directions, which is what it is added to prevent."""
    z = z.float()
    z = z - z.mean(0)  # (n, D)
    std = (z.var(0) + 1e-4).sqrt()  # (D,)
    cov = z.T @ z / (z.shape[0] - 1)  # (D, D)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return F.relu(1 - std).mean() + off_diagonal.pow(2).sum() / z.shape[1] / 25


class Data2Vec(MAE):
    """data2vec 2.0 (Baevski et al. 2022, 2023) / M2D-style (Niizumi et al. 2023) masked latent
    prediction: the student encodes the visible patches, the MAE decoder predicts, at every masked
    patch, the EMA teacher's representation of the unmasked clip — the mean of its top
    `target_layers` block outputs, each instance-normalised over the tokens (data2vec's audio
    recipe). Representations are trained to be predictable features, not pixels; with
    `pixel_weight` > 0 a second linear head on the same decoder also reconstructs the masked
    patches (MAE's loss, that weight), meant to keep the fine spectral detail a latent target can
    let go of; at laptop scale it did not keep pitch (results/default_vs_init/frequency_detail/)."""

    def __init__(self, encoder: Encoder, config: PretrainConfig):
        super().__init__(encoder, config, out_dim=encoder.config.width)
        depth = encoder.config.depth
        if config.target_layers is not None and not 1 <= config.target_layers <= depth:
            raise ValueError(f"PretrainConfig.target_layers must be in [1, {depth}] (the encoder's depth), "
                             f"got {config.target_layers}")
        self.target_layers = config.target_layers or min(3, depth)
        self.target_norm = config.target_norm
        self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D): mean over the teacher's top-K blocks of normalised tokens: "instance" normalises
        each feature over the clip's tokens (data2vec; what is constant over a clip drops out),
        "layer" each token over its features (what is constant over a clip stays in the target)."""
        layers = self.target_encoder(x)[-self.target_layers:]  # K x (B, N, D)
        if self.target_norm == "layer":
            normed = [F.layer_norm(h.float(), h.shape[-1:]) for h in layers]  # (B, N, D) each
        else:
            normed = [F.instance_norm(h.float().transpose(1, 2)).transpose(1, 2) for h in layers]  # (B, N, D) each
        return torch.stack(normed).mean(0)  # (B, N, D)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        for po, pt in zip(self.encoder.parameters(), self.target_encoder.parameters()):
            pt.lerp_(po.detach(), 1.0 - momentum)


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
    (t_lo, t_hi), (f_lo, f_hi) = config.crop_ranges
    if (t_lo, t_hi, f_lo, f_hi) != (1.0, 1.0, 1.0, 1.0):
        sx, sy = u(t_lo, t_hi, B), u(f_lo, f_hi, B)  # kept fraction of time, frequency
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


OBJECTIVES: dict[str, type[nn.Module]] = {"mae": MAE, "d2v": Data2Vec, "byol": BYOL}

