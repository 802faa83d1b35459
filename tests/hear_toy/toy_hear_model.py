"""A model with the HEAR API (load_model, get_scene_embeddings, get_timestamp_embeddings), written
here so the tests can check that `audiorank evaluate` takes any HEAR module unchanged.

Features: a fixed random projection of 25 ms frame energies in 32 linear frequency bands.
"""

import torch
from torch import nn


class ToyModel(nn.Module):
    sample_rate = 16000
    scene_embedding_size = 48
    timestamp_embedding_size = 48

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(33, 48, generator=generator) / 6)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(audio, n_fft=64, hop_length=160, win_length=64, window=torch.hann_window(64),
                          return_complex=True).abs()  # (B, 33, T)
        return torch.log1p(spec).transpose(1, 2) @ self.projection  # (B, T, 48)


def load_model(model_file_path: str = "") -> ToyModel:
    return ToyModel()


def get_timestamp_embeddings(audio: torch.Tensor, model: ToyModel):
    embeddings = model.frames(audio)
    timestamps = torch.arange(embeddings.shape[1], dtype=torch.float32)[None].expand(len(audio), -1) * 10.0
    return embeddings, timestamps  # ms, as the HEAR API says


def get_scene_embeddings(audio: torch.Tensor, model: ToyModel) -> torch.Tensor:
    return model.frames(audio).mean(dim=1)
