"""The embedded general-audio corpus: procedural, seeded, 16 kHz mono, nothing downloaded.

Four domains are synthesised from random parameters (every random choice comes from a numpy
Generator seeded per clip, so the same seed gives byte-identical samples):

- environment: 10 sound-event classes (siren, engine, rain, wind, bird chirp, knock, alarm beep,
  footsteps, drip, bark-like bursts), each over a wide parameter range plus a random channel
  (coloured background noise at 5-30 dB SNR, random level);
- music: 8 instrument families (Karplus-Strong plucked string, bowed string with vibrato, reed
  with odd harmonics, brass with loudness-dependent brightness, organ drawbars, inharmonic bell,
  mallet, piano-like two-stage decay) over MIDI 45-84 (A2-C6, 3.25 octaves);
- speech-like: source-filter synthesis (Rosenberg glottal pulses with jitter and shimmer through a
  Klatt-style cascade of five formant resonators, plus a frication branch) of syllable sequences
  by speakers who differ in f0, vocal-tract length (formant scaling), jitter, breathiness and rate;
- scenes: 1-3 labelled events (environment classes, speech, music) over background noise at
  0-20 dB event-to-background ratio.

From it come six downstream tasks (:data:`TASKS`: events, instruments, chroma, vowels, speakers,
scenes), cached on disk by generator version, seed and size, and an unlabeled pretraining pool
(:func:`pretraining_pool`) generated on the fly, seeded per index. Task clips and pool clips come
from different SeedSequence streams (purpose word 0 vs 1), so they never share a stream.

Speed: filters are applied in the frequency domain (scipy.fft, float32) with an exponential
window so that long IIR decays (Karplus-Strong) do not wrap around; partials are summed with
float32 sines of reduced phase. See the report of ``python -m audiorank.audio.corpus`` for clip-
seconds generated per second on one core.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy.signal import lfilter

#: bump whenever any generator changes the samples it produces: it keys the on-disk cache
GENERATOR_VERSION = "1"
SAMPLE_RATE = 16000
TWO_PI = np.float32(2.0 * np.pi)

# seed-stream purposes (first word after the corpus seed in every SeedSequence)
_PURPOSE_TASK, _PURPOSE_POOL, _PURPOSE_WORLD, _PURPOSE_LABELS = 0, 1, 2, 3
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}

ENV_CLASSES = (
    "siren", "engine", "rain", "wind", "bird_chirp",
    "knock", "alarm_beep", "footsteps", "drip", "bark",
)
INSTRUMENTS = ("pluck", "bowed", "reed", "brass", "organ", "bell", "mallet", "piano")
CHROMA = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MIDI_RANGE = (45, 84)  # inclusive: A2 (110 Hz) .. C6 (1047 Hz)
#: vowel formants F1-F3 (Hz) for an adult male voice, Peterson & Barney (1952), ARPAbet names
VOWELS = {
    "IY": (270, 2290, 3010), "IH": (390, 1990, 2550), "EH": (530, 1840, 2480),
    "AE": (660, 1720, 2410), "AA": (730, 1090, 2440), "AO": (570, 840, 2410),
    "UH": (440, 1020, 2240), "UW": (300, 870, 2240), "AH": (640, 1190, 2390),
    "ER": (490, 1350, 1690),
}
N_SPEAKERS = 16
SCENE_LABELS = ENV_CLASSES + ("speech", "music")


# ----------------------------------------------------------------------------------------------
# seeds
# ----------------------------------------------------------------------------------------------

def _task_id(name: str) -> int:
    """A stable integer for a task name (not Python's salted hash)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def clip_rng(seed: int, purpose: int, *words: int) -> np.random.Generator:
    """The Generator of one clip: SeedSequence over (corpus seed, purpose, *words)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(purpose), *map(int, words)]))


# ----------------------------------------------------------------------------------------------
# signal helpers (float32 throughout)
# ----------------------------------------------------------------------------------------------

def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise, unit variance, uniform distribution (4x cheaper than normal draws)."""
    x = rng.random(n, dtype=np.float32)
    x -= np.float32(0.5)
    x *= np.float32(3.4641016)
    return x


@functools.lru_cache(maxsize=64)
def _time(n: int) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / np.float32(SAMPLE_RATE)
    t.flags.writeable = False
    return t


def _frac_cycles(freq: np.ndarray | float, n: int) -> np.ndarray:
    """Phase in cycles, reduced to [0, 1), of a (time-varying) frequency in Hz; float32."""
    if np.ndim(freq) == 0:
        c = np.arange(n, dtype=np.float64) * (float(freq) / SAMPLE_RATE)
    else:
        c = np.cumsum(freq, dtype=np.float64)
        c *= 1.0 / SAMPLE_RATE
    c -= np.floor(c)
    return c.astype(np.float32)


def _partials(frac: np.ndarray, ratios: np.ndarray, amps: np.ndarray,
              decays: np.ndarray | None = None, phases: np.ndarray | None = None) -> np.ndarray:
    """Sum of sines at ratio * the phase `frac` (cycles in [0,1)), each with its amplitude and
    optional exponential decay rate (1/s). Ratios may be inharmonic."""
    n = frac.shape[0]
    out = np.zeros(n, dtype=np.float32)
    t = _time(n) if decays is not None else None
    for i, (r, a) in enumerate(zip(ratios, amps)):
        if a == 0:
            continue
        ph = frac * np.float32(r)
        if r != int(r):
            ph -= np.floor(ph)
        if phases is not None:
            ph += np.float32(phases[i])
        s = np.sin(TWO_PI * ph)
        if decays is not None and decays[i] > 0:
            s *= np.exp(t * np.float32(-decays[i]))
        s *= np.float32(a)
        out += s
    return out


@functools.lru_cache(maxsize=64)
def _weights(n: int, nfft: int, atten: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Exponential window (down, up), the z^-1 grid on the circle |z| = r, and log r."""
    lam = np.log(1.0 / atten) / nfft
    k = np.arange(n, dtype=np.float64)
    down = np.exp(-lam * k).astype(np.float32)
    up = np.exp(lam * k).astype(np.float32)
    w = 2 * np.pi * np.arange(nfft // 2 + 1) / nfft
    zinv = (np.exp(-lam) * np.exp(-1j * w)).astype(np.complex64)
    for a in (down, up, zinv):
        a.flags.writeable = False
    return down, up, zinv, lam


def _spectral(x: np.ndarray, response: Callable[[np.ndarray], np.ndarray], tail: int = 0,
              atten: float = 1e-4) -> np.ndarray:
    """Filter x by the transfer function `response(z^-1)` in the frequency domain.

    The signal is weighted by r^-n before the FFT and by r^n after it (the response is evaluated
    on |z| = r > 1), which attenuates circular wrap-around of long decays by `atten`. `tail`
    extra output samples hold the ringing after x ends.
    """
    n = x.shape[0]
    m = n + tail
    nfft = sfft.next_fast_len(max(2 * m, 256), real=True)
    while nfft % 2:  # even, so that the rfft grid ends at pi (the Karplus-Strong response relies on it)
        nfft = sfft.next_fast_len(nfft + 1, real=True)
    down, up, zinv, _ = _weights(m, nfft, atten)
    X = sfft.rfft(x * down[:n], nfft)
    X *= response(zinv)
    y = sfft.irfft(X, nfft)[:m]
    y *= up
    return y


def _resonator(zinv: np.ndarray, f: float, bw: float) -> np.ndarray:
    """Klatt resonator, unity gain at DC: A / (1 - B z^-1 - C z^-2) (complex64 arithmetic)."""
    T = 1.0 / SAMPLE_RATE
    C = -np.exp(-2 * np.pi * bw * T)
    B = 2 * np.exp(-np.pi * bw * T) * np.cos(2 * np.pi * f * T)
    A = 1 - B - C
    den = zinv * np.float32(-B)
    den += zinv * zinv * np.float32(-C)
    den += np.float32(1)
    return np.float32(A) / den


def _bandpass(zinv: np.ndarray, f: float, bw: float) -> np.ndarray:
    """Two-pole resonator normalised to unit peak gain (constant skirt)."""
    return _resonator(zinv, f, bw) * np.float32(0.5 * bw / max(f, bw))


def _onepole_lp(zinv: np.ndarray, fc: float) -> np.ndarray:
    a = np.exp(-2 * np.pi * fc / SAMPLE_RATE)
    return np.float32(1 - a) / (np.float32(1) - np.float32(a) * zinv)


def _onepole_hp(zinv: np.ndarray, fc: float) -> np.ndarray:
    a = np.exp(-2 * np.pi * fc / SAMPLE_RATE)
    return np.float32((1 + a) / 2) * (np.float32(1) - zinv) / (np.float32(1) - np.float32(a) * zinv)


def _coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise between white and brown: white plus a random-weight one-pole lowpassed copy."""
    w = _noise(rng, n)
    a = rng.uniform(0.9, 0.995)
    low = lfilter([1 - a], [1, -a], w).astype(np.float32)
    low *= np.float32(1 / np.sqrt((1 - a) / (1 + a)))  # back to unit variance
    mix = rng.uniform(0, 1)
    return (np.float32(1 - mix) * w + np.float32(mix) * low).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float32), dtype=np.float64)) + 1e-12)


def _place(out: np.ndarray, seg: np.ndarray, start: int) -> None:
    """Add seg into out at start, cropping at the end."""
    end = min(out.shape[0], start + seg.shape[0])
    if end > start:
        out[start:end] += seg[: end - start]


def _env_ar(n: int, attack: float, release: float) -> np.ndarray:
    """Envelope of n samples: linear attack over `attack` s, flat, linear release over the last
    `release` s."""
    t = _time(n)
    env = np.minimum(t / np.float32(max(attack, 1e-4)), np.float32(1.0))
    if release > 0:
        end = n / SAMPLE_RATE
        tail = np.clip((np.float32(end) - t) / np.float32(release), 0, 1)
        env *= tail
    return env


def _finish(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random level (-30..-16 dBFS RMS), peak limited to 0.99, float32."""
    level = 10 ** (rng.uniform(-30, -16) / 20)
    x = x * np.float32(level / _rms(x))
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:
        x *= np.float32(0.99 / peak)
    return x.astype(np.float32, copy=False)


def _channel(x: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float] = (5, 30)) -> np.ndarray:
    """Add coloured background noise at a random SNR (the recording channel)."""
    bg = _coloured_noise(rng, x.shape[0])
    snr = rng.uniform(*snr_db)
    bg *= np.float32(_rms(x) / _rms(bg) * 10 ** (-snr / 20))
    return x + bg


# ----------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------

def _siren(rng, n):
    t = _time(n)
    fc = rng.uniform(500, 1500)
    depth = fc * rng.uniform(0.15, 0.5)
    rate = rng.uniform(0.15, 4.0)
    ph = TWO_PI * (t * np.float32(rate) + np.float32(rng.uniform()))
    shape = np.sin(ph)
    if rng.uniform() < 0.5:  # triangle-ish sweep ("yelp")
        shape = np.float32(2 / np.pi) * np.arcsin(shape)
    f = np.float32(fc) + np.float32(depth) * shape
    frac = _frac_cycles(f, n)
    k = rng.integers(1, 5)
    amps = rng.uniform(0.1, 1.0, k) / np.arange(1, k + 1)
    amps[0] = 1.0
    x = _partials(frac, np.arange(1, k + 1), amps)
    x *= np.float32(1) + np.float32(rng.uniform(0, 0.3)) * np.sin(TWO_PI * t * np.float32(rng.uniform(0.1, 1)))
    return x


def _engine(rng, n):
    t = _time(n)
    fe = rng.uniform(25, 120)
    wob = np.float32(1) + np.float32(rng.uniform(0, 0.06)) * np.sin(TWO_PI * t * np.float32(rng.uniform(0.2, 2)))
    frac = _frac_cycles(np.float32(fe) * wob, n)
    duty = np.float32(rng.uniform(0.1, 0.5))
    pulse = (frac < duty).astype(np.float32) - duty
    src = pulse + np.float32(rng.uniform(0.05, 0.5)) * _noise(rng, n)
    f1, f2 = rng.uniform(80, 500), rng.uniform(400, 2000)
    b1, b2 = rng.uniform(40, 300), rng.uniform(100, 600)
    lp = rng.uniform(300, 3000)
    return _spectral(
        src, lambda z: _resonator(z, f1, b1) + np.float32(0.5) * _resonator(z, f2, b2) * _onepole_lp(z, lp)
    )


def _rain(rng, n):
    rate = rng.uniform(300, 4000)
    k = max(1, int(rate * n / SAMPLE_RATE))
    pos = rng.integers(0, n, k)
    amp = rng.lognormal(0, 0.8, k).astype(np.float32) * rng.choice(np.float32([-1, 1]), k)
    src = np.bincount(pos, weights=amp, minlength=n).astype(np.float32)
    src += np.float32(rng.uniform(0.01, 0.3) * np.sqrt(rate / SAMPLE_RATE) * 3) * _noise(rng, n)
    hp, fr, bw = rng.uniform(300, 2500), rng.uniform(1500, 6000), rng.uniform(1000, 5000)
    return _spectral(src, lambda z: _onepole_hp(z, hp) * (np.float32(0.3) + _bandpass(z, fr, bw)))


def _smooth_random(rng, n, step_s):
    """A slowly varying positive random curve, control points every ~step_s seconds."""
    k = int(n / SAMPLE_RATE / step_s) + 2
    pts = rng.uniform(0.1, 1.0, k)
    return np.interp(np.linspace(0, k - 1, n), np.arange(k), pts).astype(np.float32)


def _wind(rng, n):
    fc, bw = rng.uniform(150, 1200), rng.uniform(100, 800)
    lp = rng.uniform(200, 1500)
    src = _noise(rng, n)
    x = _spectral(src, lambda z: _bandpass(z, fc, bw) * np.float32(3) + _onepole_lp(z, lp))
    x *= _smooth_random(rng, n, rng.uniform(0.15, 0.8)) ** np.float32(rng.uniform(1, 3))
    if rng.uniform() < 0.4:  # whistle
        f = np.float32(rng.uniform(300, 1500)) * (np.float32(1) + np.float32(0.1) * _smooth_random(rng, n, 0.3))
        x += np.float32(rng.uniform(0.05, 0.3) * _rms(x) * 1.4) * np.sin(TWO_PI * _frac_cycles(f, n))
    return x


def _bird_chirp(rng, n):
    out = np.zeros(n, dtype=np.float32)
    rate = rng.uniform(2, 14)
    t0 = rng.uniform(0, 0.2)
    f_lo = rng.uniform(1800, 5000)
    while t0 < n / SAMPLE_RATE:
        d = rng.uniform(0.03, 0.2)
        m = int(d * SAMPLE_RATE)
        f0 = f_lo * rng.uniform(0.9, 1.3)
        sweep = rng.uniform(-3000, 3000)
        tt = _time(m)
        curve = (tt / np.float32(d)) ** np.float32(rng.uniform(0.5, 2))
        f = np.clip(np.float32(f0) + np.float32(sweep) * curve, 800, 7500)
        if rng.uniform() < 0.5:
            f = f + np.float32(rng.uniform(50, 400)) * np.sin(TWO_PI * tt * np.float32(rng.uniform(20, 80)))
        frac = _frac_cycles(f, m)
        seg = _partials(frac, (1, 2), (1.0, rng.uniform(0, 0.3)))
        seg *= np.sin(np.float32(np.pi) * tt / np.float32(d)) ** 2
        _place(out, seg * np.float32(rng.uniform(0.3, 1)), int(t0 * SAMPLE_RATE))
        t0 += d + rng.exponential(1 / rate)
    return out


def _knock(rng, n):
    src = np.zeros(n, dtype=np.float32)
    groups = rng.integers(1, 4)
    for _ in range(groups):
        t0 = rng.uniform(0, max(0.01, n / SAMPLE_RATE - 0.3))
        gap = rng.uniform(0.08, 0.3)
        for j in range(rng.integers(1, 6)):
            p = int((t0 + j * gap * rng.uniform(0.85, 1.15)) * SAMPLE_RATE)
            if p < n - 40:
                src[p : p + 40] += np.float32(rng.uniform(0.5, 1)) * np.hanning(40).astype(np.float32)
    src += np.float32(0.003) * _noise(rng, n)
    modes = [(rng.uniform(100, 900), rng.uniform(20, 150)) for _ in range(rng.integers(2, 4))]
    lp = rng.uniform(1000, 6000)
    def response(z):
        body = sum(_resonator(z, f, b) * np.float32(1 / (1 + i)) for i, (f, b) in enumerate(modes))
        return body * _onepole_lp(z, lp)

    return _spectral(src, response)


def _alarm_beep(rng, n):
    f = rng.uniform(800, 3500)
    period, duty = rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.7)
    gate_ph = _frac_cycles(1 / period, n)
    ramp = np.float32(0.005 / period)
    gate = np.clip(np.minimum(gate_ph / ramp, (np.float32(duty) - gate_ph) / ramp), 0, 1)
    if rng.uniform() < 0.3:  # two-tone alternation
        alt = (_frac_cycles(1 / (2 * period), n) < 0.5).astype(np.float32)
        freq = np.float32(f) * (np.float32(1) + np.float32(rng.uniform(0.1, 0.4)) * alt)
        frac = _frac_cycles(freq, n)
    else:
        frac = _frac_cycles(f, n)
    odd = rng.uniform() < 0.5
    amps = (1.0, 0.33 * odd, 0.2 * odd) if f < 2500 else (1.0,)
    return _partials(frac, (1, 3, 5)[: len(amps)], amps) * gate


def _footsteps(rng, n):
    out = np.zeros(n, dtype=np.float32)
    noise = _noise(rng, n)
    rate = rng.uniform(1.3, 2.8)
    tau = rng.uniform(0.01, 0.06)
    t = rng.uniform(0, 0.4)
    m = int(5 * tau * SAMPLE_RATE)
    decay = np.exp(-_time(m) / np.float32(tau))
    while t < n / SAMPLE_RATE:
        for off, a in ((0.0, 1.0), (rng.uniform(0.03, 0.09), rng.uniform(0.3, 0.8))):
            _place(out, decay * np.float32(a * rng.uniform(0.6, 1)), int((t + off) * SAMPLE_RATE))
        t += rng.uniform(0.85, 1.15) / rate
    src = out * noise
    lp, fr, bw = rng.uniform(300, 3000), rng.uniform(100, 600), rng.uniform(50, 300)
    return _spectral(src, lambda z: _onepole_lp(z, lp) * (np.float32(0.5) + _resonator(z, fr, bw)))


def _drip(rng, n):
    out = np.zeros(n, dtype=np.float32)
    rate = rng.uniform(0.8, 6)
    f_base = rng.uniform(400, 2500)
    t = rng.uniform(0, 0.3)
    while t < n / SAMPLE_RATE:
        tau = rng.uniform(0.005, 0.04)
        m = int(6 * tau * SAMPLE_RATE) + 1
        tt = _time(m)
        glide = np.float32(rng.uniform(1.3, 2.5))
        f = np.float32(f_base * rng.uniform(0.8, 1.25)) * glide ** np.minimum(tt / np.float32(tau * 2), 1)
        seg = np.sin(TWO_PI * _frac_cycles(f, m)) * np.exp(-tt / np.float32(tau))
        _place(out, seg * np.float32(rng.uniform(0.4, 1)), int(t * SAMPLE_RATE))
        t += rng.exponential(1 / rate) + 0.02
    rv = rng.uniform(0.05, 0.6)  # a touch of room: a damped low resonance
    fr, bw = rng.uniform(200, 1500), rng.uniform(20, 100)
    return _spectral(out, lambda z: np.float32(1) + np.float32(rv) * _resonator(z, fr, bw) * np.float32(bw / fr))


def _glottal(frac: np.ndarray, oq: float) -> np.ndarray:
    """Derivative of a Rosenberg glottal flow pulse at phase `frac` (cycles), open quotient oq."""
    a, c = np.float32(oq * 0.6), np.float32(oq * 0.4)
    pi = np.float32(np.pi)
    rise = np.float32(0.5) * (np.float32(1) - np.cos(pi * np.minimum(frac / a, 1)))
    fall = np.cos(pi * np.clip((frac - a) / (np.float32(2) * c), 0, 1))
    flow = np.where(frac < a, rise, fall)
    d = np.empty_like(flow)
    d[0] = 0
    np.subtract(flow[1:], flow[:-1], out=d[1:])
    return d


def _bark(rng, n):
    src = np.zeros(n, dtype=np.float32)
    rate = rng.uniform(0.8, 4)
    f1, f2 = rng.uniform(500, 1200), rng.uniform(1200, 2600)
    b1, b2 = rng.uniform(80, 250), rng.uniform(100, 400)
    f0b = rng.uniform(250, 900)
    t = rng.uniform(0, 0.2)
    while t < n / SAMPLE_RATE:
        d = rng.uniform(0.08, 0.25)
        m = int(d * SAMPLE_RATE)
        tt = _time(m) / np.float32(d)
        f0 = np.float32(f0b * rng.uniform(0.85, 1.2)) * (np.float32(1.2) - np.float32(rng.uniform(0.2, 0.6)) * tt)
        g = _glottal(_frac_cycles(f0, m), rng.uniform(0.3, 0.7)) * np.float32(30)
        g += np.float32(rng.uniform(0.05, 0.5)) * _noise(rng, m)
        g *= np.minimum(tt * np.float32(12), 1) * (np.float32(1) - tt) ** np.float32(rng.uniform(0.5, 2))
        _place(src, g, int(t * SAMPLE_RATE))
        t += d + rng.exponential(1 / rate) + 0.05
    return _spectral(src, lambda z: _resonator(z, f1, b1) * _resonator(z, f2, b2))


ENV_GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "siren": _siren, "engine": _engine, "rain": _rain, "wind": _wind, "bird_chirp": _bird_chirp,
    "knock": _knock, "alarm_beep": _alarm_beep, "footsteps": _footsteps, "drip": _drip, "bark": _bark,
}


def environment_clip(rng: np.random.Generator, cls: str, n: int, channel: bool = True) -> np.ndarray:
    """One environment-class clip of n samples (float32, normalised level)."""
    x = ENV_GENERATORS[cls](rng, n)
    if channel:
        x = _channel(x, rng)
    return _finish(x, rng)


# ----------------------------------------------------------------------------------------------
# music
# ----------------------------------------------------------------------------------------------

def midi_to_hz(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


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


# ----------------------------------------------------------------------------------------------
# speech-like: Klatt-style cascade formant synthesis, framewise (20 ms hop, overlap-add)
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speaker:
    """A synthetic voice: f0 (Hz), vocal-tract scale (formant multiplier), jitter/shimmer (relative),
    open quotient, breathiness, syllables per second, intonation range, per-formant offsets."""

    f0: float
    vtl: float
    jitter: float
    shimmer: float
    oq: float
    breath: float
    rate: float
    intonation: float
    offsets: tuple[float, float, float]


def random_speaker(rng: np.random.Generator) -> Speaker:
    """Draw a voice from the population (adult male / adult female / child-like)."""
    kind = rng.integers(0, 3)
    f0 = (rng.uniform(85, 150), rng.uniform(160, 260), rng.uniform(230, 330))[kind]
    vtl = (rng.uniform(0.86, 1.02), rng.uniform(1.02, 1.18), rng.uniform(1.15, 1.3))[kind]
    return Speaker(
        f0=float(f0), vtl=float(vtl), jitter=float(rng.uniform(0.003, 0.03)),
        shimmer=float(rng.uniform(0.01, 0.08)), oq=float(rng.uniform(0.4, 0.75)),
        breath=float(rng.uniform(0.0, 0.25)), rate=float(rng.uniform(2.5, 6.0)),
        intonation=float(rng.uniform(0.04, 0.25)), offsets=tuple(float(v) for v in rng.uniform(0.93, 1.07, 3)),
    )


@functools.lru_cache(maxsize=16)
def speakers(seed: int) -> tuple[Speaker, ...]:
    """The N_SPEAKERS voices of the speaker task, fixed by the corpus seed."""
    rng = clip_rng(seed, _PURPOSE_WORLD, 0)
    return tuple(random_speaker(rng) for _ in range(N_SPEAKERS))


# consonants: (kind, duration s, voiced, frication centre Hz, frication bandwidth, F2 locus Hz)
_CONSONANTS = {
    "p": ("stop", 0.09, False, 900, 1500, 800), "t": ("stop", 0.09, False, 4000, 2500, 1800),
    "k": ("stop", 0.10, False, 2000, 1200, 2300), "b": ("stop", 0.08, True, 900, 1500, 800),
    "d": ("stop", 0.08, True, 4000, 2500, 1800), "g": ("stop", 0.08, True, 2000, 1200, 2300),
    "s": ("fric", 0.12, False, 5500, 2000, 1700), "S": ("fric", 0.12, False, 3000, 1500, 2000),
    "f": ("fric", 0.10, False, 6000, 4000, 1000), "z": ("fric", 0.09, True, 5500, 2000, 1700),
    "v": ("fric", 0.08, True, 6000, 4000, 1000), "h": ("asp", 0.08, False, 0, 0, 0),
    "m": ("nasal", 0.08, True, 0, 0, 1000), "n": ("nasal", 0.08, True, 0, 0, 1600),
    "l": ("approx", 0.07, True, 0, 0, 1100), "r": ("approx", 0.07, True, 0, 0, 1300),
    "w": ("approx", 0.06, True, 0, 0, 700), "j": ("approx", 0.06, True, 0, 0, 2200),
}
_HOP = 320       # 20 ms
_FRAME = 640     # Hann window, 50 % overlap sums to one
_NFFT = 960      # room for 20 ms of formant ringing (-42 dB at the narrowest bandwidth)
_BW = np.array([80.0, 100.0, 140.0, 220.0, 300.0])


@functools.lru_cache(maxsize=2)
def _frame_window() -> np.ndarray:
    w = np.hanning(_FRAME + 1)[:-1].astype(np.float32)  # periodic Hann: 50 % overlap sums to 1
    w.flags.writeable = False
    return w


@functools.lru_cache(maxsize=2)
def _dft_matrix() -> np.ndarray:
    """(13, 2 * bins) float64: cos(w k), -sin(w k) interleaved, on the rfft grid of _NFFT, so
    that coefficients @ matrix[:k], viewed as complex, is the polynomial in z^-1 at each bin."""
    w = 2 * np.pi * np.arange(_NFFT // 2 + 1) / _NFFT
    k = np.arange(13)[:, None]
    m = np.stack([np.cos(w * k), -np.sin(w * k)], 2).reshape(13, -1)
    m.flags.writeable = False
    return m


def _static_cascade(f: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Frequency response (bins,) complex64 of a cascade of Klatt resonators on the _NFFT grid."""
    zinv = _frame_zinv()
    A, B, C = _biquad_den(np.asarray(f), np.asarray(bw))
    h = np.float32(np.prod(A)) * np.ones_like(zinv)
    for b, c in zip(B, C):
        h /= np.float32(1) - np.float32(b) * zinv - np.float32(c) * zinv * zinv
    return h


@functools.lru_cache(maxsize=2)
def _frame_zinv() -> np.ndarray:
    z = np.exp(-2j * np.pi * np.arange(_NFFT // 2 + 1) / _NFFT).astype(np.complex64)
    z.flags.writeable = False
    return z


def _biquad_den(f: np.ndarray, bw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Klatt resonator coefficients for arrays of (centre, bandwidth): A, B, C."""
    T = 1.0 / SAMPLE_RATE
    C = -np.exp(-2 * np.pi * bw * T)
    B = 2 * np.exp(-np.pi * bw * T) * np.cos(2 * np.pi * f * T)
    return 1 - B - C, B, C


def _syllables(rng, speaker: Speaker, n: int, vowel: str | None) -> list[tuple[str, float]]:
    """A phone sequence [(phone, seconds)] filling n samples: (C)V(C) syllables; with `vowel`
    every nucleus is that vowel."""
    total = n / SAMPLE_RATE
    phones: list[tuple[str, float]] = [("sil", rng.uniform(0.02, 0.15))]
    cons = list(_CONSONANTS)
    vowels = list(VOWELS)
    rate = speaker.rate * rng.uniform(0.85, 1.15)
    used = phones[0][1]
    while used < total:
        syl = 1 / rate
        v = vowel if vowel is not None else vowels[rng.integers(len(vowels))]
        parts: list[tuple[str, float]] = []
        if rng.uniform() < 0.8:
            c = cons[rng.integers(len(cons))]
            parts.append((c, _CONSONANTS[c][1] * rng.uniform(0.8, 1.2)))
        coda = cons[rng.integers(len(cons))] if rng.uniform() < 0.3 else None
        cdur = _CONSONANTS[coda][1] * rng.uniform(0.8, 1.2) if coda else 0.0
        vdur = max(0.08, syl - sum(d for _, d in parts) - cdur) * rng.uniform(0.9, 1.3)
        parts.append((v, vdur))
        if coda:
            parts.append((coda, cdur))
        if rng.uniform() < 0.15:
            parts.append(("sil", rng.uniform(0.05, 0.2)))
        phones.extend(parts)
        used += sum(d for _, d in parts)
    return phones


def speech_clip(rng: np.random.Generator, speaker: Speaker, n: int, vowel: str | None = None,
                channel: bool = True) -> np.ndarray:
    """Syllables spoken by `speaker` (source-filter synthesis); `vowel` fixes every nucleus."""
    phones = _syllables(rng, speaker, n, vowel)
    n_frames = n // _HOP + 2
    n_frames += 1 - n_frames % 2  # odd: filters are evaluated on even frames, odd ones interpolated
    # control points: rows (time, F1..F5, voicing, noise, formant-branch gain, frication gain,
    # frication centre, frication bandwidth), interpolated linearly at the frame centres
    rows: list[list[float]] = []
    scale = speaker.vtl * rng.uniform(0.97, 1.03)
    prev_f = [500 * scale, 1500 * scale, 2500 * scale, 3500 * scale, 4500 * scale]
    jit = rng.uniform(0.92, 1.08, (len(phones), 3))
    off, br = speaker.offsets, speaker.breath * 0.3
    t = 0.0
    for j, (ph, d) in enumerate(phones):
        if ph in VOWELS:
            v = VOWELS[ph]
            f = [v[i] * off[i] * jit[j, i] * scale for i in range(3)] + [3500 * scale, 4500 * scale]
            rows.append([t + 0.3 * d, *f, 1.0, br, 1.0, 0.0, 4000, 1000])
            rows.append([t + 0.7 * d, *f, 1.0, br, 1.0, 0.0, 4000, 1000])
            prev_f = f
        elif ph == "sil":
            rows.append([t + 0.5 * d, *prev_f, 0.0, 0.0, 0.0, 0.0, 4000, 1000])
        else:
            kind, _, voiced, fc, fbw, locus = _CONSONANTS[ph]
            f = list(prev_f)
            if locus:
                f[0], f[1] = 250 * scale, locus * scale
            if kind == "stop":
                rows.append([t + 0.3 * d, *f, 0.15 * voiced, 0.0, 0.0, 0.0, fc, fbw])
                rows.append([t + 0.75 * d, *f, 0.3 * voiced, 1.0, 0.2, 1.0, fc * scale, fbw])
                rows.append([t + 0.95 * d, *f, 0.5 * voiced, 0.5 * (not voiced), 1.0, 0.2, fc * scale, fbw])
            elif kind == "fric":
                rows.append([t + 0.5 * d, *f, 0.4 * voiced, 1.0, 0.1, 1.0, fc * scale, fbw])
            elif kind == "asp":
                rows.append([t + 0.5 * d, *f, 0.0, 1.0, 1.0, 0.0, 4000, 1000])
            else:  # nasal / approximant: voiced, weaker, low F1
                rows.append([t + 0.5 * d, *f, 0.5 if kind == "nasal" else 0.7, 0.0, 1.0, 0.0, 4000, 1000])
        t += d
    pts = np.asarray(rows)                                                                    # (points, 12)
    frame_t = np.arange(n_frames) * (_HOP / SAMPLE_RATE)  # frame f is centred on output sample f * HOP
    k = np.clip(np.searchsorted(pts[:, 0], frame_t), 1, len(pts) - 1)
    t0, t1 = pts[k - 1, 0], pts[k, 0]
    w = np.clip((frame_t - t0) / np.maximum(t1 - t0, 1e-9), 0, 1)[:, None]
    ctl = pts[k - 1, 1:] * (1 - w) + pts[k, 1:] * w                                           # (frames, 11)
    F, V, Nz, G, FG, FC, FB = ctl[:, :5], ctl[:, 5], ctl[:, 6], ctl[:, 7], ctl[:, 8], ctl[:, 9], ctl[:, 10]

    # source: jittered, shimmered glottal pulses + aspiration noise, per-sample gains
    total = n_frames * _HOP + _FRAME
    f0_frames = speaker.f0 * rng.uniform(0.9, 1.1) * (
        1 + speaker.intonation * (np.interp(frame_t, np.linspace(0, frame_t[-1], 4), rng.uniform(-1, 1, 4)))
        - 0.1 * frame_t / max(frame_t[-1], 1e-3))
    f0 = np.repeat(f0_frames.astype(np.float32), _HOP)[:total]
    f0 = np.pad(f0, (0, total - f0.shape[0]), mode="edge")
    c0 = np.cumsum(f0, dtype=np.float64) / SAMPLE_RATE
    n_per = int(c0[-1]) + 2
    idx = c0.astype(np.int64)
    jit = rng.uniform(-1, 1, n_per).astype(np.float32)[idx]
    frac = _frac_cycles(f0 * (np.float32(1) + np.float32(speaker.jitter) * jit), total)
    src = _glottal(frac, speaker.oq) * np.float32(40)
    src *= np.float32(1) + np.float32(speaker.shimmer) * rng.uniform(-1, 1, n_per).astype(np.float32)[idx]
    # frame f is centred on source sample (f + 1) * HOP: shift the gains by one frame
    src *= _upsample(np.r_[V[0], V], total)
    src += _noise(rng, total) * _upsample(np.r_[Nz[0], Nz], total) * np.float32(0.5)

    # framewise filtering: H = G * cascade(F1..F5) + FG * frication resonator
    win = _frame_window()
    frames = np.lib.stride_tricks.sliding_window_view(src, _FRAME)[::_HOP][:n_frames] * win  # (frames, FRAME)
    X = sfft.rfft(frames, _NFFT, axis=1)                                                      # (frames, bins)
    # cascade: F1-F3 move per frame, F4-F5 are fixed per utterance (one response vector);
    # filters are evaluated on the even frames and averaged for the odd ones (formants move slowly)
    Fe, Ge, FGe, FCe, FBe = F[::2], G[::2], FG[::2], FC[::2], FB[::2]
    ne = Fe.shape[0]
    A, Bc, Cc = _biquad_den(Fe[:, :3], _BW[None, :3] * (1 + 0.3 * (Fe[:, :3] / 3000)))      # (even frames, 3) each
    den = np.zeros((ne, 7))                                                                   # F1-F3 denominator
    den[:, 0] = 1
    for i in range(3):  # multiply in (1 - B z^-1 - C z^-2), degree 2i -> 2i + 2
        d = den[:, : 2 * i + 1].copy()
        den[:, 1 : 2 * i + 2] -= Bc[:, i : i + 1] * d
        den[:, 2 : 2 * i + 3] -= Cc[:, i : i + 1] * d
    gain = (np.prod(A, axis=1) * Ge).astype(np.float32)
    Af, Bf, Cf = _biquad_den(np.clip(FCe, 500, 7000), np.maximum(FBe, 200))
    fgain = (Af * FBe / np.maximum(FCe, FBe) * 0.5 * FGe).astype(np.float32)
    polys = np.zeros((2 * ne, 7))                                                             # (2 even frames, 7)
    polys[:ne] = den
    polys[ne:, 0], polys[ne:, 1], polys[ne:, 2] = 1, -Bf, -Cf
    # both polynomials on the rfft grid, in float64 (near DC the cascade's coefficients cancel
    # to ~1e-5 of their size); einsum without BLAS: deterministic, no thread contention
    P = np.einsum("fk,kb->fb", polys, _dft_matrix()[:7], optimize=False)                     # (2 even frames, 2 bins)
    Pc = P.astype(np.float32).view(np.complex64)                                              # (2 even frames, bins)
    f45 = F[:, 3:].mean(0)
    He = (gain[:, None] / Pc[:ne]) * _static_cascade(f45, _BW[3:] * (1 + 0.3 * f45 / 3000))
    He += fgain[:, None] / Pc[ne:]                                                            # (even frames, bins)
    H = np.empty((n_frames, He.shape[1]), dtype=np.complex64)                                 # (frames, bins)
    H[::2] = He
    H[1::2] = (He[:-1] + He[1:]) * np.float32(0.5)
    Y = sfft.irfft(X * H, _NFFT, axis=1).astype(np.float32)                                  # (frames, NFFT)
    # overlap-add: NFFT = 3 hops
    parts = Y.reshape(n_frames, _NFFT // _HOP, _HOP)
    acc = np.zeros((n_frames + _NFFT // _HOP, _HOP), dtype=np.float32)
    for j in range(_NFFT // _HOP):
        acc[j : j + n_frames] += parts[:, j]
    x = acc.reshape(-1)[_HOP : _HOP + n]  # frame_t places frame 0 one hop before t = 0
    if channel:
        x = _channel(x, rng, (10, 35))
    return _finish(x, rng)


def _upsample(v: np.ndarray, total: int) -> np.ndarray:
    """Frame values (20 ms hop) to per-sample gains by linear interpolation, float32."""
    v = np.asarray(v, dtype=np.float32)
    ramp = np.arange(_HOP, dtype=np.float32) / np.float32(_HOP)
    nxt = np.append(v[1:], v[-1])
    out = (v[:, None] + (nxt - v)[:, None] * ramp[None, :]).reshape(-1)                      # (frames * HOP,)
    if out.shape[0] < total:
        out = np.pad(out, (0, total - out.shape[0]), mode="edge")
    return out[:total]


# ----------------------------------------------------------------------------------------------
# scenes and the domain mixture
# ----------------------------------------------------------------------------------------------

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


def random_clip(rng: np.random.Generator, n: int) -> np.ndarray:
    """An unlabeled clip from the domain mixture (30 % environment, 30 % music, 25 % speech,
    15 % scenes): what the pretraining pool holds."""
    u = rng.uniform()
    if u < 0.30:
        return environment_clip(rng, ENV_CLASSES[rng.integers(len(ENV_CLASSES))], n)
    if u < 0.60:
        return music_clip(rng, INSTRUMENTS[rng.integers(len(INSTRUMENTS))], n)
    if u < 0.85:
        return speech_clip(rng, random_speaker(rng), n)
    k = int(rng.integers(1, 4))
    labels = [SCENE_LABELS[i] for i in rng.choice(len(SCENE_LABELS), k, replace=False)]
    return scene_clip(rng, labels, n)


# ----------------------------------------------------------------------------------------------
# tasks
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """A downstream task of the corpus: its vocabulary, prediction type and clip generator
    (rng, label index or multi-hot row, n samples, corpus seed) -> float32 clip."""

    name: str
    vocabulary: tuple[str, ...]
    prediction_type: str  # "multiclass" | "multilabel"
    generate: Callable[[np.random.Generator, np.ndarray | int, int, int], np.ndarray]
    description: str


def _gen_events(rng, y, n, seed):
    return environment_clip(rng, ENV_CLASSES[y], n)


def _gen_instruments(rng, y, n, seed):
    return music_clip(rng, INSTRUMENTS[y], n)


_CHROMA_INSTRUMENTS = tuple(i for i in INSTRUMENTS if i != "bell")  # bells have ambiguous pitch


def _gen_chroma(rng, y, n, seed):
    octaves = [m for m in range(MIDI_RANGE[0], MIDI_RANGE[1] + 1) if m % 12 == y]
    midi = octaves[rng.integers(len(octaves))]
    return music_clip(rng, _CHROMA_INSTRUMENTS[rng.integers(len(_CHROMA_INSTRUMENTS))], n, midi=midi)


def _gen_vowels(rng, y, n, seed):
    return speech_clip(rng, random_speaker(rng), n, vowel=list(VOWELS)[y])


def _gen_speakers(rng, y, n, seed):
    return speech_clip(rng, speakers(seed)[y], n)


def _gen_scenes(rng, y, n, seed):
    return scene_clip(rng, [SCENE_LABELS[i] for i in np.flatnonzero(y)], n)


TASKS: dict[str, TaskSpec] = {
    s.name: s
    for s in (
        TaskSpec("events", ENV_CLASSES, "multiclass", _gen_events, "environmental sound-event class"),
        TaskSpec("instruments", INSTRUMENTS, "multiclass", _gen_instruments, "instrument family"),
        TaskSpec("chroma", CHROMA, "multiclass", _gen_chroma, "pitch class of a note, MIDI 45-84"),
        TaskSpec("vowels", tuple(VOWELS), "multiclass", _gen_vowels, "vowel of CV syllables, random speakers"),
        TaskSpec("speakers", tuple(f"spk{i:02d}" for i in range(N_SPEAKERS)), "multiclass", _gen_speakers,
                 "which of 16 synthetic speakers"),
        TaskSpec("scenes", SCENE_LABELS, "multilabel", _gen_scenes, "1-3 events over background noise"),
    )
}


def task_labels(name: str, split: str, n: int, seed: int) -> np.ndarray:
    """Balanced labels of one split: class indices (n,) int64 cycling through the vocabulary in a
    seeded order, or multi-hot (n, C) float32 rows of 1-3 distinct labels (scenes)."""
    spec = TASKS[name]
    rng = clip_rng(seed, _PURPOSE_LABELS, _task_id(name), _SPLIT_IDS.get(split, 99))
    C = len(spec.vocabulary)
    if spec.prediction_type == "multiclass":
        return rng.permutation(np.arange(n) % C).astype(np.int64)
    y = np.zeros((n, C), dtype=np.float32)
    for i in range(n):
        k = 1 + i % 3
        y[i, rng.choice(C, k, replace=False)] = 1
    return y[rng.permutation(n)]


def generate_clip(name: str, split: str, index: int, label, seconds: float, seed: int) -> np.ndarray:
    """One task clip, from its own SeedSequence stream (seed, task, name, split, index)."""
    rng = clip_rng(seed, _PURPOSE_TASK, _task_id(name), _SPLIT_IDS.get(split, 99), index)
    return TASKS[name].generate(rng, label, round(seconds * SAMPLE_RATE), seed)


def generate_split(name: str, split: str, n: int, seconds: float, seed: int,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """All clips of one split: waves (n, samples) float32 and labels (see :func:`task_labels`)."""
    if name not in TASKS:
        raise ValueError(f"unknown corpus task {name!r}; expected one of {sorted(TASKS)}")
    labels = task_labels(name, split, n, seed)
    waves = np.zeros((n, round(seconds * SAMPLE_RATE)), dtype=np.float32)
    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{name}/{split}", leave=False)
    for i in it:
        waves[i] = generate_clip(name, split, i, labels[i], seconds, seed)
    return waves, labels


def default_cache_dir() -> Path:
    """$AUDIORANK_CACHE, else ~/.cache/audiorank."""
    return Path(os.environ.get("AUDIORANK_CACHE", Path.home() / ".cache" / "audiorank"))


def cached_split(name: str, split: str, n: int, seconds: float, seed: int,
                 cache_dir: str | Path | None = None, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """generate_split, cached on disk under cache_dir/corpus-v<version>/ keyed by task, split,
    seed, size and clip length: a second call reads instead of regenerating."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"corpus-v{GENERATOR_VERSION}" / f"{name}_seed{seed}_{seconds:g}s_{split}{n}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["waves"], z["labels"]
    waves, labels = generate_split(name, split, n, seconds, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, waves=waves, labels=labels)
    os.replace(tmp, path)
    return waves, labels


def make_task(name: str, n_train: int = 120, n_valid: int = 40, n_test: int = 40, seconds: float = 1.0,
              seed: int = 0, cache_dir: str | Path | None = None, progress: bool = False):
    """One corpus task as a :class:`audiorank.audio.hear.HearTask` (train/valid/test, in memory,
    cached on disk), the same object :func:`audiorank.audio.hear.read_hear_task` returns."""
    from .hear import HearTask, Split

    spec = TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown corpus task {name!r}; expected one of {sorted(TASKS)}")
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        if n <= 0:
            raise ValueError(f"task {name!r}: split {split!r} needs at least one clip, got {n}")
        waves, labels = cached_split(name, split, n, seconds, seed, cache_dir, progress)
        files = [f"{name}-{split}-{i:05d}.wav" for i in range(n)]
        splits[split] = Split(files=files, waves=waves, labels=labels)
    metadata = {
        "task_name": name,
        "version": f"audiorank-corpus-v{GENERATOR_VERSION}",
        "embedding_type": "scene",
        "prediction_type": spec.prediction_type,
        "split_mode": "trainvaltest",
        "sample_duration": float(seconds),
        "evaluation": ["top1_acc"] if spec.prediction_type == "multiclass" else ["mAP", "d_prime", "aucroc"],
        "download_urls": [],
        "default_mode": "full",
        "mode": "full",
        "description": spec.description,
        "corpus_seed": int(seed),
    }
    return HearTask(name=name, metadata=metadata, vocabulary=list(spec.vocabulary), splits=splits,
                    sample_rate=SAMPLE_RATE, path=None)


# ----------------------------------------------------------------------------------------------
# pretraining pool
# ----------------------------------------------------------------------------------------------

try:  # torch is a dependency, but keep the generator importable without it
    from torch.utils.data import Dataset as _Dataset
except ImportError:  # pragma: no cover
    _Dataset = object  # type: ignore[misc,assignment]


class PretrainingPool(_Dataset):
    """Unlabeled clips generated on the fly: item i is a float32 tensor (samples,) from the
    SeedSequence (seed, pool, i), so any worker, order or subset gives the same clip, and no
    clip shares a stream with a task clip. Map-style: use with a DataLoader (shuffle, workers)."""

    def __init__(self, n_clips: int, seconds: float = 1.0, seed: int = 0):
        if n_clips <= 0:
            raise ValueError(f"pretraining pool needs n_clips > 0, got {n_clips}")
        self.n_clips, self.seconds, self.seed = int(n_clips), float(seconds), int(seed)
        self.n_samples = round(self.seconds * SAMPLE_RATE)

    def __len__(self) -> int:
        return self.n_clips

    def clip(self, i: int) -> np.ndarray:
        """Clip i as a float32 numpy array."""
        if not 0 <= i < self.n_clips:
            raise IndexError(f"pool index {i} out of range [0, {self.n_clips})")
        return random_clip(clip_rng(self.seed, _PURPOSE_POOL, i), self.n_samples)

    def __getitem__(self, i: int):
        import torch

        return torch.from_numpy(self.clip(int(i)))

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Clips start..stop-1 stacked (n, samples)."""
        return np.stack([self.clip(i) for i in range(start, stop)])


def pretraining_pool(n_clips: int, seconds: float = 1.0, seed: int = 0) -> PretrainingPool:
    """The unlabeled pretraining pool: a torch Dataset of n_clips clips of `seconds` at 16 kHz."""
    return PretrainingPool(n_clips, seconds, seed)


# ----------------------------------------------------------------------------------------------
# the `audiorank corpus` command
# ----------------------------------------------------------------------------------------------

CORPUS_DEFAULTS = {"n_train": 120, "n_valid": 40, "n_test": 40, "seconds": 1.0, "pool_clips": 2000, "pool_seconds": 1.0}


def corpus_command(out: str | Path, profile: str | None = None, seed: int = 0, *,
                   tasks: Sequence[str] | None = None, n_train: int | None = None,
                   n_valid: int | None = None, n_test: int | None = None, seconds: float | None = None,
                   cache_dir: str | Path | None = None, progress: bool = True) -> dict[str, Path]:
    """Write the corpus tasks as HEAR task folders out/<task>/ and a summary out/corpus.json.

    Sizes come from the arguments, else the profile's `corpus:` section (when the profile has one),
    else CORPUS_DEFAULTS. Returns {task name: folder}.
    """
    from .hear import write_hear_task

    cfg = dict(CORPUS_DEFAULTS)
    if profile is not None:
        from ..profiles import load_profile

        section = load_profile(profile).get("corpus") or {}
        unknown = set(section) - set(CORPUS_DEFAULTS)
        if unknown:
            raise ValueError(
                f"profile {profile!r}: unknown corpus keys {sorted(unknown)}; "
                f"expected some of {sorted(CORPUS_DEFAULTS)}"
            )
        cfg.update(section)
    for key, val in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test), ("seconds", seconds)):
        if val is not None:
            cfg[key] = val
    names = list(tasks) if tasks is not None else list(TASKS)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    t0 = time.perf_counter()
    for name in names:
        task = make_task(name, int(cfg["n_train"]), int(cfg["n_valid"]), int(cfg["n_test"]), float(cfg["seconds"]),
                         seed, cache_dir, progress)
        written[name] = write_hear_task(task, out)
    summary = {
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "profile": profile,
        "sample_rate": SAMPLE_RATE, "config": cfg, "tasks": {k: str(v.name) for k, v in written.items()},
        "seconds_elapsed": round(time.perf_counter() - t0, 2),
    }
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    return written


def benchmark(n_clips: int = 200, seconds: float = 1.0, seed: int = 0) -> dict[str, float]:
    """Clip-seconds generated per CPU-second (process time of this single-threaded process, so
    other load on the machine counts less), per domain and for the pool's mixture, plus the same
    figure for a baseline measured in the same run: one biquad (scipy.signal.lfilter) over a clip
    of white noise, so that ratios compare across machines. Each figure is the best of 5 rounds
    of n_clips / 5 clips (the same clips each round), as timeit reports its minimum."""
    n = int(seconds * SAMPLE_RATE)
    res = {}
    makers = {
        "environment": lambda r: environment_clip(r, ENV_CLASSES[r.integers(10)], n),
        "music": lambda r: music_clip(r, INSTRUMENTS[r.integers(8)], n),
        "speech": lambda r: speech_clip(r, random_speaker(r), n),
        "scenes": lambda r: scene_clip(r, [SCENE_LABELS[i] for i in r.choice(12, r.integers(1, 4), replace=False)], n),
        "pool": lambda r: random_clip(r, n),
    }
    rounds = 5  # timeit-style: the best of several rounds, over the same clips, filters out load spikes
    per = max(1, n_clips // rounds)
    for name, fn in makers.items():
        fn(clip_rng(seed, 9, 2**31))  # warm caches
        best = np.inf
        for _ in range(rounds):
            t0 = time.process_time()
            for i in range(per):
                fn(clip_rng(seed, 9, i))
            best = min(best, time.process_time() - t0)
        res[name] = per * seconds / best
    x = np.random.default_rng(seed).standard_normal(n)
    best = np.inf
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(per):
            lfilter([0.02], [1.0, -1.8, 0.82], x)
        best = min(best, time.process_time() - t0)
    res["baseline_biquad"] = per * seconds / best
    return res


def main(argv: Sequence[str] | None = None) -> None:
    """Print the speed report: ``python -m audiorank.audio.corpus [n_clips]``."""
    import sys

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    argv = sys.argv[1:] if argv is None else argv
    nc = int(argv[0]) if argv else 200
    res = benchmark(nc)
    base = res["baseline_biquad"]
    for k, v in res.items():
        print(f"{k:16s} {v:8.0f} clip-seconds per CPU-second   ({v / base:.3f} x one biquad lfilter)")


if __name__ == "__main__":
    main()
