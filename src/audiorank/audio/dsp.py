"""Shared synthesis helpers of the embedded corpus: seeds, noise, filters, envelopes, levels.

Every random choice comes from a numpy Generator seeded per clip (:func:`clip_rng`), so the same
seed gives byte-identical samples. Filters are applied in the frequency domain (scipy.fft,
float32) with an exponential window so that long IIR decays (Karplus-Strong) do not wrap around;
partials are summed with float32 sines of reduced phase.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import numpy as np
import scipy.fft as sfft
from scipy.signal import lfilter

#: bump whenever any generator changes the samples it produces: it keys the on-disk cache
GENERATOR_VERSION = "2"  # 2: the pool mixes in SoundFont music; procedural tasks unchanged since 1
SAMPLE_RATE = 16000
TWO_PI = np.float32(2.0 * np.pi)

# seed-stream purposes (first word after the corpus seed in every SeedSequence)
_PURPOSE_TASK, _PURPOSE_POOL, _PURPOSE_WORLD, _PURPOSE_LABELS = 0, 1, 2, 3
_SPLIT_IDS = {"train": 0, "valid": 1, "test": 2}

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



def midi_to_hz(m: float) -> float:
    """Frequency (Hz) of a MIDI note number, A4 = 69 = 440 Hz."""
    return 440.0 * 2 ** ((m - 69) / 12)
