"""Speech-like clips by source-filter synthesis: Rosenberg glottal pulses with jitter and shimmer
through a Klatt-style cascade of five formant resonators, plus a frication branch, framewise (20 ms
hop, overlap-add); syllable sequences by speakers who differ in f0, vocal-tract length (formant
scaling), jitter, breathiness and rate."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft

from .dsp import _PURPOSE_WORLD, SAMPLE_RATE, _channel, _finish, _frac_cycles, _glottal, _noise, clip_rng

#: vowel formants F1-F3 (Hz) for an adult male voice, Peterson & Barney (1952), ARPAbet names
VOWELS = {
    "IY": (270, 2290, 3010), "IH": (390, 1990, 2550), "EH": (530, 1840, 2480),
    "AE": (660, 1720, 2410), "AA": (730, 1090, 2440), "AO": (570, 840, 2410),
    "UH": (440, 1020, 2240), "UW": (300, 870, 2240), "AH": (640, 1190, 2390),
    "ER": (490, 1350, 1690),
}
N_SPEAKERS = 16


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
