"""Instruments and music rendered from sampled recordings in a General MIDI SoundFont.

The default SoundFont is TimGM6mb.sf2 (128 GM programs and a drum kit, 6 MB), shipped inside the
`pretty_midi` package, so results are reproducible everywhere; a larger one (e.g. FluidR3_GM.sf2)
is used when named explicitly, by a ``soundfont=`` argument or the ``AUDIORANK_SOUNDFONT``
environment variable. Notes are rendered by TinySoundFont (`tinysoundfont`, no system library) at
16 kHz mono float32 on a fresh synthesizer per clip (TinySoundFont's voices keep state across
notes, so a clip is byte-identical only when its notes render in the same order on a fresh one);
notes of a chord are rendered one by one and summed (TinySoundFont is linear: no global reverb or
chorus). Rendering is fast enough to run on the fly without a note bank: see
``python -m audiorank.audio`` (clip-seconds per CPU-second).

Tasks in the NSynth manner (Engel et al. 2017) use :func:`gm_note_clip`; the pretraining pool's
polyphonic music (chords, melodies, bass, GM drum kit) uses :func:`gm_music_clip`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
from pathlib import Path

import numpy as np

from .dsp import SAMPLE_RATE, _channel, _finish, _place

SOUNDFONT_ENV = "AUDIORANK_SOUNDFONT"

#: the 16 General MIDI families of 8 programs each (program p belongs to family p // 8)
GM_FAMILIES = (
    "piano", "chromatic_percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth_lead", "synth_pad", "synth_effects", "ethnic", "percussive", "sound_effects",
)
#: families of the gm_family task: all but percussive (woodblock, taiko, ...) and sound effects
#: (seashore, helicopter, gunshot, ...), which are not pitched notes
GM_TASK_FAMILIES = GM_FAMILIES[:14]
#: families of the gm_pitch task: clearly pitched, harmonic sounds (no bells, synth effects, drums)
GM_PITCHED_FAMILIES = tuple(f for f in GM_TASK_FAMILIES if f not in ("chromatic_percussion", "synth_effects"))
#: MIDI range (inclusive) that sounds sensible for every program of a family
GM_RANGES = {
    "piano": (36, 84), "chromatic_percussion": (55, 88), "organ": (36, 84), "guitar": (40, 76),
    "bass": (28, 55), "strings": (43, 79), "ensemble": (43, 79), "brass": (43, 76), "reed": (48, 79),
    "pipe": (60, 91), "synth_lead": (48, 84), "synth_pad": (43, 79), "synth_effects": (48, 79),
    "ethnic": (48, 79), "percussive": (48, 72), "sound_effects": (48, 72),
}
#: GM percussion keys (channel 10 / bank 128): kick, snare, closed/open hi-hat, toms, crash, ride
KICK, SNARE, HAT_CLOSED, HAT_OPEN, TOMS, CYMBALS = 36, 38, 42, 46, (41, 45, 48), (49, 51)


def bundled_soundfont() -> Path:
    """The SoundFont shipped inside pretty_midi: TimGM6mb.sf2 (General MIDI)."""
    return Path(str(importlib.resources.files("pretty_midi") / "TimGM6mb.sf2"))


def soundfont_path(soundfont: str | Path | None = None) -> Path:
    """The SoundFont to use: the argument, else $AUDIORANK_SOUNDFONT, else the bundled TimGM6mb.
    A missing or non-SoundFont file raises ValueError naming it."""
    if soundfont is None:
        soundfont = os.environ.get(SOUNDFONT_ENV) or bundled_soundfont()
    path = Path(soundfont).expanduser()
    if not path.is_file():
        raise ValueError(f"SoundFont {str(path)!r} does not exist (from the soundfont argument or ${SOUNDFONT_ENV})")
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise ValueError(f"SoundFont {str(path)!r} is not a SoundFont 2 file (expected a RIFF 'sfbk' header)")
    return path.resolve()


@functools.lru_cache(maxsize=8)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def soundfont_id(soundfont: str | Path | None = None) -> str:
    """The sha256 of the SoundFont's bytes: it keys the disk cache of rendered tasks."""
    path = soundfont_path(soundfont)
    st = path.stat()
    return _digest(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _parsed(path: str, size: int, mtime_ns: int):
    """The SoundFont parsed once per process (size and mtime key the cache, so a changed file is
    parsed again). Never rendered from: `new_synth` clones it."""
    import tinysoundfont._tinysoundfont as tsf

    try:
        return tsf.SoundFont(Path(path).read_bytes())
    except Exception as error:  # the C loader's message says little: name the file
        raise ValueError(f"SoundFont {path!r} could not be loaded: {error}") from error


def new_synth(soundfont: str | Path | None = None):
    """A fresh TinySoundFont synthesizer (mono float32 at SAMPLE_RATE): a clone of the SoundFont
    parsed once per process, sharing its samples (tsf_copy: new voices and channels). Fresh per clip
    because TinySoundFont's voices keep state across notes that reset() does not clear: a reused
    synthesizer renders a note differently after other notes. Cloning instead of parsing per clip
    matters for large SoundFonts (FluidR3_GM, 148 MB: about 0.8 s a parse)."""
    import tinysoundfont._tinysoundfont as tsf

    path = soundfont_path(soundfont)
    st = path.stat()
    synth = tsf.SoundFont(_parsed(str(path), st.st_size, st.st_mtime_ns))
    synth.set_output(tsf.OutputMode.Mono, SAMPLE_RATE, 0.0)
    synth.set_max_voices(64)
    return synth


def render_note(program: int, pitch: int, velocity: int, n: int, note_off: int,
                soundfont: str | Path | None = None, drum: bool = False, synth=None) -> np.ndarray:
    """One note of GM `program` (0-127; with drum=True the kit of bank 128) at MIDI `pitch` and
    `velocity` (1-127): note-on at sample 0, note-off at `note_off`, n samples, float32 mono.
    Deterministic on a fresh synthesizer (the default), or for a fixed sequence of notes on the
    `synth` of :func:`new_synth`."""
    if not 0 <= program <= 127 or not 0 <= pitch <= 127 or not 1 <= velocity <= 127:
        raise ValueError(f"note (program {program}, pitch {pitch}, velocity {velocity}): expected 0-127, 0-127, 1-127")
    if not 0 < note_off <= n:
        raise ValueError(f"note_off {note_off}: expected in (0, n={n}]")
    if synth is None:
        synth = new_synth(soundfont)
    synth.channel_sounds_off(0)  # kill the previous note's voices (reset() alone lets them release)
    synth.reset()
    synth.channel_set_bank(0, 128 if drum else 0)
    synth.channel_set_preset_number(0, int(program), bool(drum))
    synth.channel_note_on(0, int(pitch), velocity / 127.0)
    out = np.zeros(n, dtype=np.float32)
    synth.render(memoryview(out[:note_off]).cast("B"))
    synth.channel_note_off(0, int(pitch))
    if note_off < n:
        synth.render(memoryview(out[note_off:]).cast("B"))
    return out


def family_programs(family: str) -> range:
    """The 8 GM programs of a family."""
    k = GM_FAMILIES.index(family)
    return range(8 * k, 8 * k + 8)


def gm_note_clip(rng: np.random.Generator, program: int, pitch: int, n: int,
                 soundfont: str | Path | None = None, channel: bool = True) -> np.ndarray:
    """One sampled note (NSynth-like): onset in the first 0.1 s, note-off at 55-80 % of the clip so
    the release is heard, velocity 50-120, then the recording channel and a random level."""
    start = int(rng.uniform(0, 0.1) * n)
    off = max(1, int(rng.uniform(0.55, 0.8) * n) - start)
    out = np.zeros(n, dtype=np.float32)
    _place(out, render_note(program, pitch, int(rng.integers(50, 121)), n - start, off, soundfont), start)
    if channel:
        out = _channel(out, rng, (15, 40))
    return _finish(out, rng)


_CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 4, 7, 10), (0, 5, 7), (0, 3, 6))
_SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 4, 7, 9), (0, 3, 5, 7, 10))


def _play(out: np.ndarray, program: int, pitch: int, velocity: int, start: int, dur: int, synth,
          drum: bool = False, gain: float = 1.0) -> None:
    """Add a note held for `dur` samples at `start`, with up to 1 s of release after its note-off."""
    m = min(out.shape[0] - start, dur + SAMPLE_RATE)
    if m > 0:
        note = render_note(program, min(pitch, 108), velocity, m, max(1, min(m, dur)), drum=drum, synth=synth)
        _place(out, note * np.float32(gain), start)


def _drum_pattern(rng: np.random.Generator, out: np.ndarray, beat: int, synth) -> None:
    """A GM-kit groove on eighth notes: kick on 1 and 3, snare on 2 and 4, (open) hi-hat, fills."""
    eighth = beat // 2
    hat = HAT_OPEN if rng.uniform() < 0.2 else HAT_CLOSED
    for i, t in enumerate(range(int(rng.integers(0, eighth)), out.shape[0], eighth)):
        hits = [hat] if rng.uniform() < 0.9 else []
        if i % 4 == 0 and rng.uniform() < 0.9:
            hits.append(KICK)
        if i % 4 == 2 and rng.uniform() < 0.9:
            hits.append(SNARE)
        if rng.uniform() < 0.06:
            hits.append(int(rng.choice(TOMS + CYMBALS)))
        for key in hits:
            _play(out, 0, key, int(rng.integers(60, 121)), t, eighth, synth, drum=True)


def gm_music_clip(rng: np.random.Generator, n: int, soundfont: str | Path | None = None) -> np.ndarray:
    """Polyphonic music from the SoundFont: a chord progression (block or arpeggiated) or a melody
    in a random key and scale on one GM program, with a bass line (50 %) and the GM drum kit
    (50 %), at a tempo of 70-180 bpm."""
    out = np.zeros(n, dtype=np.float32)
    synth = new_synth(soundfont)  # one per clip: its notes render in the clip's (seeded) order
    beat = int(SAMPLE_RATE * 60 / rng.uniform(70, 180))
    family = GM_TASK_FAMILIES[rng.integers(len(GM_TASK_FAMILIES))]
    program = int(rng.choice(family_programs(family)))
    lo, hi = GM_RANGES[family]
    key = int(rng.integers(lo, max(lo + 1, hi - 11)))
    scale = _SCALES[rng.integers(len(_SCALES))]
    vel = int(rng.integers(60, 111))
    if rng.uniform() < 0.5:  # chords, each held for 1-2 beats, block or broken into eighths
        arpeggio = rng.uniform() < 0.4
        hold = beat * int(rng.integers(1, 3))
        for t in range(0, n, hold):
            root = key + scale[rng.integers(len(scale))]
            for j, iv in enumerate(_CHORDS[rng.integers(len(_CHORDS))]):
                lag = j * beat // 2 if arpeggio else 0
                if t + lag < n:
                    _play(out, program, root + iv, vel, t + lag, max(hold - lag, beat // 2), synth)
    else:  # melody: a walk on the scale, eighths to half notes
        t, degree = 0, int(rng.integers(len(scale)))
        while t < n:
            dur = beat * int(rng.choice([1, 1, 2, 2, 2, 4])) // 2
            degree = int(np.clip(degree + rng.integers(-2, 3), 0, 2 * len(scale) - 1))
            _play(out, program, key + scale[degree % len(scale)] + 12 * (degree // len(scale)), vel, t, dur, synth)
            t += dur
    if rng.uniform() < 0.5:  # bass line: the key's root or fifth every beat or two
        bass = int(rng.choice(family_programs("bass")))
        root = 28 + (key - 28) % 12
        step = beat * int(rng.integers(1, 3))
        for t in range(0, n, step):
            _play(out, bass, root + (7 if rng.uniform() < 0.3 else 0), vel, t, step, synth, gain=0.8)
    if rng.uniform() < 0.5:
        _drum_pattern(rng, out, beat, synth)
    out = _channel(out, rng, (15, 40))
    return _finish(out, rng)
