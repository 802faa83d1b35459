"""Multi-label scenes: 1-3 labelled events (environment classes, speech, music) over coloured
background noise at 0-20 dB event-to-background ratio."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .dsp import _coloured_noise, _finish, _frac_cycles, _partials, _place, _rms
from .events import ENV_CLASSES, ENV_GENERATORS, environment_clip
from .instruments import INSTRUMENTS, music_clip
from .speech import random_speaker, speech_clip

SCENE_LABELS = ENV_CLASSES + ("speech", "music")


def _event(rng, label: str, m: int) -> np.ndarray:
    if label in ENV_GENERATORS:
        return environment_clip(rng, label, m, channel=False)
    if label == "speech":
        return speech_clip(rng, random_speaker(rng), m, channel=False)
    return music_clip(rng, INSTRUMENTS[rng.integers(len(INSTRUMENTS))], m, channel=False)


def scene_clip(rng: np.random.Generator, labels: Sequence[str], n: int) -> np.ndarray:
    """Events `labels` (each 30-100 % of the clip, random onset) over background noise at an
    event-to-background ratio of 0-20 dB."""
    bg = _coloured_noise(rng, n)
    if rng.uniform() < 0.3:  # mains hum
        hum = _partials(_frac_cycles(rng.choice([50.0, 60.0]), n), (1, 2, 3), rng.uniform(0, 1, 3))
        bg += hum * np.float32(rng.uniform(0.2, 1))
    bg *= np.float32(1 / _rms(bg))
    out = bg
    for lab in labels:
        m = int(n * rng.uniform(0.3, 1.0))
        ev = _event(rng, lab, m)
        ev *= np.float32(10 ** (rng.uniform(0, 20) / 20) / _rms(ev))
        _place(out, ev, int(rng.integers(0, n - m + 1)))
    return _finish(out, rng)
