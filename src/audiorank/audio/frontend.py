"""The log-mel front end every encoder reads: 64 mel bins, 25 ms windows, 10 ms hop, log(x + 1e-6),
normalised per mel bin by mean/std statistics fitted on the training data (as AST and BEATs
normalise by dataset statistics): the pretraining pool for pretrained encoders, the task's train
split for random-init ones. It is the only input normalisation (the encoders add none); its
statistics are buffers, so they travel in the state_dict and in checkpoints (extra["frontend"]).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn
from torchaudio.transforms import MelSpectrogram


class LogMel(nn.Module):
    """(B, samples) or (samples,) waveform -> (B, n_mels, frames) normalised log-mel spectrogram,
    frames = 1 + samples // hop (about 100 per second at the default 10 ms hop).

    Until :meth:`fit_stats` runs, mean is 0 and std is 1 (``fitted`` is False).
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0,
                 n_fft: int = 512, f_min: float = 0.0, f_max: float | None = None, eps: float = 1e-6):
        super().__init__()
        win = round(sample_rate * win_ms / 1000)
        self.hop = round(sample_rate * hop_ms / 1000)
        self.sample_rate, self.n_mels, self.eps = sample_rate, n_mels, eps
        self.mel = MelSpectrogram(
            sample_rate=sample_rate, n_fft=max(n_fft, win), win_length=win, hop_length=self.hop,
            f_min=f_min, f_max=f_max, n_mels=n_mels, power=2.0, center=True, mel_scale="slaney", norm="slaney",
        )
        self.register_buffer("mean", torch.zeros(n_mels, 1))     # (n_mels, 1)
        self.register_buffer("std", torch.ones(n_mels, 1))       # (n_mels, 1)
        self.register_buffer("fitted", torch.tensor(False))

    def n_frames(self, n_samples: int) -> int:
        """Frames for a clip of n_samples."""
        return 1 + n_samples // self.hop

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log(mel + eps), (B, n_mels, frames)."""
        if x.dim() == 1:
            x = x.unsqueeze(0)                                   # (1, samples)
        if x.dim() != 2:
            raise ValueError(f"LogMel expects (batch, samples) or (samples,), got shape {tuple(x.shape)}")
        return torch.log(self.mel(x.float()) + self.eps)         # (B, n_mels, frames)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(x) - self.mean) / self.std          # (B, n_mels, frames)

    @torch.no_grad()
    def fit_stats(self, waves: torch.Tensor | np.ndarray | Iterable, batch_size: int = 64,
                  max_clips: int | None = None) -> LogMel:
        """Fit per-bin mean/std of log-mel over all frames of `waves`: an array (N, samples), or
        an iterable (a Dataset such as the pretraining pool, or a DataLoader) of clips (samples,)
        or batches (B, samples). Accumulates sums in float64; returns self."""
        total = torch.zeros(self.n_mels, dtype=torch.float64)
        total_sq = torch.zeros(self.n_mels, dtype=torch.float64)
        count = 0
        n_clips = 0

        def add(batch: torch.Tensor) -> None:
            nonlocal count, n_clips
            lm = self.log_mel(batch.to(self.mean.device)).double()  # (B, n_mels, frames)
            total.add_(lm.sum(dim=(0, 2)).cpu())
            total_sq.add_((lm * lm).sum(dim=(0, 2)).cpu())
            count += lm.shape[0] * lm.shape[2]
            n_clips += lm.shape[0]

        if isinstance(waves, (np.ndarray, torch.Tensor)):
            arr = torch.as_tensor(waves)
            if arr.dim() == 1:
                arr = arr.unsqueeze(0)
            if max_clips is not None:
                arr = arr[:max_clips]
            for i in range(0, arr.shape[0], batch_size):
                add(arr[i : i + batch_size])
        else:
            pending: list[torch.Tensor] = []
            for item in waves:
                item = torch.as_tensor(item)
                if item.dim() == 2:
                    if max_clips is not None:
                        item = item[: max(0, max_clips - n_clips)]
                    if item.shape[0]:
                        add(item)
                else:
                    pending.append(item)
                    if len(pending) == batch_size:
                        add(torch.stack(pending))
                        pending = []
                if max_clips is not None and n_clips + len(pending) >= max_clips:
                    break
            if pending:
                add(torch.stack(pending))
        if count == 0:
            raise ValueError("LogMel.fit_stats: no audio given (empty array or iterable)")
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(1e-12)
        self.mean.copy_(mean.float().unsqueeze(1))
        self.std.copy_(var.sqrt().float().unsqueeze(1))
        self.fitted.fill_(True)
        return self
