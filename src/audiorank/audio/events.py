"""Environmental sound events: 10 classes (siren, engine, rain, wind, bird chirp, knock, alarm
beep, footsteps, drip, bark-like bursts), each over a wide parameter range plus a random channel
(coloured background noise at 5-30 dB SNR, random level)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .dsp import (
    SAMPLE_RATE, TWO_PI, _bandpass, _channel, _finish, _frac_cycles, _glottal, _noise, _onepole_hp,
    _onepole_lp, _partials, _place, _resonator, _rms, _spectral, _time,
)

ENV_CLASSES = (
    "siren", "engine", "rain", "wind", "bird_chirp",
    "knock", "alarm_beep", "footsteps", "drip", "bark",
)


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
