"""Procedural instruments: 8 families (Karplus-Strong plucked string, bowed string with vibrato,
reed with odd harmonics, brass with loudness-dependent brightness, organ drawbars, inharmonic bell,
mallet, piano-like two-stage decay) over MIDI 45-84 (A2-C6, 3.25 octaves)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dsp import (
    SAMPLE_RATE, TWO_PI, _channel, _env_ar, _finish, _frac_cycles, _noise, _partials, _place,
    _spectral, _time, midi_to_hz,
)

INSTRUMENTS = ("pluck", "bowed", "reed", "brass", "organ", "bell", "mallet", "piano")
CHROMA = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MIDI_RANGE = (45, 84)  # inclusive: A2 (110 Hz) .. C6 (1047 Hz)


def _harmonic_count(f0: float, cap: int = 24, fmax: float = 7200) -> int:
    return max(1, min(cap, int(fmax / f0)))


def _vibrato(rng, m, f0, depth=(0.003, 0.015), rate=(4.5, 7)):
    t = _time(m)
    d = rng.uniform(*depth)
    onset = np.minimum(t / np.float32(0.25), 1)
    lfo = np.sin(TWO_PI * t * np.float32(rng.uniform(*rate)))
    return np.float32(f0) * (np.float32(1) + np.float32(d) * onset * lfo)


def _note_pluck(rng, f0, m):
    stretch = rng.uniform(0.3, 0.5)  # loss filter (1 - S) + S z^-1, delay S
    D = SAMPLE_RATE / f0 - stretch
    t60 = rng.uniform(0.4, 2.5) * (220 / f0) ** 0.3
    g = 10 ** (-3 / (t60 * f0))
    P = max(2, int(D))
    exc = _noise(rng, P)
    bright = rng.uniform(0.2, 1.0)
    exc = np.float32(bright) * exc + np.float32(1 - bright) * np.convolve(exc, np.float32([0.5, 0.5]), "same")
    beta = int(P * rng.uniform(0.05, 0.4))
    if beta > 0:
        exc[beta:] -= exc[:-beta] * np.float32(0.8)
    src = np.zeros(m, dtype=np.float32)
    src[: min(P, m)] = exc[: min(P, m)]

    def resp(z):
        lam = -np.log(np.abs(z[0]))  # |z^-1| = e^-lam on the weighted circle
        w = np.linspace(0, np.pi, z.shape[0])
        zD = np.exp((-lam * D) - 1j * (w * D)).astype(np.complex64)  # fractional delay z^-D
        loop = (np.float32(1 - stretch) + np.float32(stretch) * z) * zD
        loop *= np.float32(g)
        return np.float32(1) / (np.float32(1) - loop)

    x = _spectral(src, resp, atten=1e-4)
    return x * _env_ar(m, 0.001, 0.03)


def _note_bowed(rng, f0, m):
    K = _harmonic_count(f0)
    k = np.arange(1, K + 1)
    amps = k ** -rng.uniform(0.7, 1.4)
    body = [(rng.uniform(250, 600), rng.uniform(80, 200)), (rng.uniform(800, 3000), rng.uniform(200, 800))]
    kf = k * f0
    gain = 0.4 + sum(1 / (1 + ((kf - fb) / bw) ** 2) for fb, bw in body)
    frac = _frac_cycles(_vibrato(rng, m, f0), m)
    x = _partials(frac, k, amps * gain)
    x += np.float32(rng.uniform(0.005, 0.03)) * _noise(rng, m)  # bow noise
    return x * _env_ar(m, rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.2))


def _note_reed(rng, f0, m):
    K = _harmonic_count(f0)
    k = np.arange(1, K + 1)
    even = rng.uniform(0.03, 0.25)
    amps = np.where(k % 2 == 1, 1.0, even) * k ** -rng.uniform(0.5, 1.2)
    frac = _frac_cycles(_vibrato(rng, m, f0, depth=(0.0, 0.005)), m)
    x = _partials(frac, k, amps)
    x += np.float32(rng.uniform(0.005, 0.04)) * _noise(rng, m)  # breath
    return x * _env_ar(m, rng.uniform(0.02, 0.08), rng.uniform(0.03, 0.1))


def _note_brass(rng, f0, m):
    K = _harmonic_count(f0)
    t = _time(m)
    env = _env_ar(m, rng.uniform(0.03, 0.1), rng.uniform(0.05, 0.15))
    scoop = np.float32(1) - np.float32(rng.uniform(0.01, 0.05)) * np.exp(-t / np.float32(0.03))
    frac = _frac_cycles(np.float32(f0) * scoop, m)
    beta = rng.uniform(0.3, 0.9)
    log_env = np.log(np.maximum(env, np.float32(1e-4)))
    out = np.zeros(m, dtype=np.float32)
    for k in range(1, K + 1):
        a = np.exp(log_env * np.float32(1 + beta * (k - 1)))  # brighter when louder
        out += np.sin(TWO_PI * (frac * np.float32(k))) * a * np.float32(k ** -0.5)
    return out


def _note_organ(rng, f0, m):
    ratios = np.array([0.5, 1, 2, 3, 4, 5, 6, 8])
    amps = rng.uniform(0, 1, len(ratios)) * (rng.uniform(size=len(ratios)) < 0.7)
    amps[1] = max(amps[1], 0.5)
    keep = ratios * f0 < 7500
    x = _partials(_frac_cycles(f0, m), ratios[keep], amps[keep])
    if rng.uniform() < 0.4:  # tremolo
        depth, rate = np.float32(rng.uniform(0.1, 0.4)), np.float32(rng.uniform(5, 7))
        x *= np.float32(1) + depth * np.sin(TWO_PI * _time(m) * rate)
    return x * _env_ar(m, 0.01, 0.02)


def _note_bell(rng, f0, m):
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.5, 2.66, 3.01, 4.17, 5.43]) * rng.uniform(0.98, 1.02, 10)
    ratios[1] = 1.0
    keep = ratios * f0 < 7500
    amps = rng.uniform(0.2, 1.0, 10)
    t60 = rng.uniform(0.8, 4.0)
    decays = 6.9 / t60 * ratios ** rng.uniform(0.3, 1.0)
    return _partials(_frac_cycles(f0, m), ratios[keep], amps[keep], decays[keep], rng.uniform(0, 1, 10)[keep])


def _note_mallet(rng, f0, m):
    kind = rng.integers(0, 3)
    modes = [(1, 3.93, 9.54), (1, 3.0, 6.0), (1, 4.0, 10.0)][kind]  # marimba, xylophone, glockenspiel-ish
    ratios = np.array(modes) * np.array([1, *rng.uniform(0.98, 1.02, 2)])
    keep = ratios * f0 < 7500
    amps = np.array([1.0, rng.uniform(0.1, 0.6), rng.uniform(0.05, 0.3)])
    tau = rng.uniform(0.08, 0.8)
    decays = 1 / tau * ratios ** rng.uniform(0.5, 1.2)
    x = _partials(_frac_cycles(f0, m), ratios[keep], amps[keep], decays[keep])
    if rng.uniform() < 0.3:  # vibraphone-like tremolo
        x *= np.float32(1) + np.float32(0.3) * np.sin(TWO_PI * _time(m) * np.float32(rng.uniform(4, 8)))
    return x * _env_ar(m, 0.001, 0.01)


def _note_piano(rng, f0, m):
    K = _harmonic_count(f0, cap=20)
    k = np.arange(1, K + 1)
    B = rng.uniform(1e-4, 6e-4)
    ratios = k * np.sqrt(1 + B * k * k)
    hard = rng.uniform(0.8, 1.8)
    amps = k ** -hard
    fast, slow = rng.uniform(2, 8), rng.uniform(0.3, 1.5)
    decays = slow * (1 + 0.15 * (k - 1)) * (f0 / 220) ** 0.4
    frac = _frac_cycles(f0, m)
    x = _partials(frac, ratios, amps * 0.7, decays)
    x += _partials(frac, ratios[:4], amps[:4] * 0.5, decays[:4] * (fast / slow))
    detune = 1 + rng.uniform(0.0005, 0.003)
    x += _partials(_frac_cycles(f0 * detune, m), (1.0,), (0.4,), (decays[0],))
    thump = np.zeros(m, dtype=np.float32)
    L = min(m, 400)
    thump[:L] = _noise(rng, L) * np.exp(-_time(L) / np.float32(0.004)) * np.float32(0.2)
    return (x + thump) * _env_ar(m, 0.001, 0.03)


NOTE_GENERATORS: dict[str, Callable[[np.random.Generator, float, int], np.ndarray]] = {
    "pluck": _note_pluck, "bowed": _note_bowed, "reed": _note_reed, "brass": _note_brass,
    "organ": _note_organ, "bell": _note_bell, "mallet": _note_mallet, "piano": _note_piano,
}


def music_clip(rng: np.random.Generator, instrument: str, n: int, midi: int | None = None,
               channel: bool = True) -> np.ndarray:
    """1-3 notes of one instrument family; with `midi` given, 1-3 onsets of that one pitch."""
    gen = NOTE_GENERATORS[instrument]
    out = np.zeros(n, dtype=np.float32)
    n_notes = int(rng.integers(1, 4))
    starts = np.sort(rng.uniform(0, 0.6, n_notes)) * n
    starts[0] = rng.uniform(0, 0.1) * n
    for j in range(n_notes):
        s = int(starts[j])
        end = int(starts[j + 1]) + int(0.05 * SAMPLE_RATE) if j + 1 < n_notes else n
        m = max(int(0.08 * SAMPLE_RATE), min(n, end) - s)
        note = midi if midi is not None else int(rng.integers(MIDI_RANGE[0], MIDI_RANGE[1] + 1))
        f0 = midi_to_hz(note) * 2 ** (rng.uniform(-0.15, 0.15) / 12)  # up to 15 cents off
        _place(out, gen(rng, f0, m) * np.float32(rng.uniform(0.5, 1)), s)
    if channel:
        out = _channel(out, rng, (15, 40))
    return _finish(out, rng)
