"""The corpus's tasks, their on-disk cache, and the unlabeled pretraining pool.

Eight downstream tasks (:data:`TASKS`: events, instruments, chroma, vowels, speakers, scenes from
the procedural sources :mod:`.events`, :mod:`.instruments`, :mod:`.speech`, :mod:`.scenes`;
gm_family and gm_pitch from sampled recordings, :mod:`.soundfont`) are cached on disk by
generator version, seed, size (and the SoundFont's sha256), and an unlabeled pretraining
pool (:func:`pretraining_pool`) is generated on the fly, seeded per index. Task clips and pool
clips come from different SeedSequence streams (purpose word 0 vs 1), so they never share a stream.

Speed: ``python -m audiorank.audio [n_clips]`` reports clip-seconds generated per CPU-second
on one core, per source and for the pool's mixture.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from .dsp import (
    _PURPOSE_LABELS, _PURPOSE_POOL, _PURPOSE_TASK, _SPLIT_IDS, GENERATOR_VERSION, SAMPLE_RATE, _task_id, clip_rng,
)
from .events import ENV_CLASSES, environment_clip
from .instruments import CHROMA, INSTRUMENTS, MIDI_RANGE, music_clip
from .scenes import SCENE_LABELS, scene_clip
from .soundfont import (
    GM_PITCHED_FAMILIES, GM_RANGES, GM_TASK_FAMILIES, family_programs, gm_music_clip, gm_note_clip, soundfont_id,
    soundfont_path,
)
from .speech import N_SPEAKERS, VOWELS, random_speaker, speakers, speech_clip

#: the pretraining pool's source mix (shares sum to 1): music is 35 %, of which the SoundFont's
#: sampled recordings (chords, melodies, bass, drums) are 20 points and procedural notes 15
POOL_MIX = {"environment": 0.25, "music": 0.15, "soundfont_music": 0.20, "speech": 0.25, "scenes": 0.15}


def random_clip(rng: np.random.Generator, n: int, soundfont: str | Path | None = None) -> np.ndarray:
    """An unlabeled clip from the source mixture :data:`POOL_MIX`: what the pretraining pool holds."""
    u = rng.uniform()
    if u < 0.25:
        return environment_clip(rng, ENV_CLASSES[rng.integers(len(ENV_CLASSES))], n)
    if u < 0.40:
        return music_clip(rng, INSTRUMENTS[rng.integers(len(INSTRUMENTS))], n)
    if u < 0.60:
        return gm_music_clip(rng, n, soundfont)
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
    (rng, label index or multi-hot row, n samples, corpus seed, SoundFont path) -> float32 clip."""

    name: str
    vocabulary: tuple[str, ...]
    prediction_type: str  # "multiclass" | "multilabel"
    generate: Callable[[np.random.Generator, np.ndarray | int, int, int, str | None], np.ndarray]
    description: str
    soundfont: bool = False  # rendered from the SoundFont: its sha256 joins the cache key


def _gen_events(rng, y, n, seed, sf):
    return environment_clip(rng, ENV_CLASSES[y], n)


def _gen_instruments(rng, y, n, seed, sf):
    return music_clip(rng, INSTRUMENTS[y], n)


_CHROMA_INSTRUMENTS = tuple(i for i in INSTRUMENTS if i != "bell")  # bells have ambiguous pitch


def _gen_chroma(rng, y, n, seed, sf):
    octaves = [m for m in range(MIDI_RANGE[0], MIDI_RANGE[1] + 1) if m % 12 == y]
    midi = octaves[rng.integers(len(octaves))]
    return music_clip(rng, _CHROMA_INSTRUMENTS[rng.integers(len(_CHROMA_INSTRUMENTS))], n, midi=midi)


def _gen_vowels(rng, y, n, seed, sf):
    return speech_clip(rng, random_speaker(rng), n, vowel=list(VOWELS)[y])


def _gen_speakers(rng, y, n, seed, sf):
    return speech_clip(rng, speakers(seed)[y], n)


def _gen_scenes(rng, y, n, seed, sf):
    return scene_clip(rng, [SCENE_LABELS[i] for i in np.flatnonzero(y)], n)


def _gen_gm_family(rng, y, n, seed, sf):
    family = GM_TASK_FAMILIES[y]
    lo, hi = GM_RANGES[family]
    program = int(rng.choice(family_programs(family)))
    return gm_note_clip(rng, program, int(rng.integers(lo, hi + 1)), n, sf)


def _gen_gm_pitch(rng, y, n, seed, sf):
    family = GM_PITCHED_FAMILIES[rng.integers(len(GM_PITCHED_FAMILIES))]
    lo, hi = GM_RANGES[family]
    octaves = [m for m in range(lo, hi + 1) if m % 12 == y]
    program = int(rng.choice(family_programs(family)))
    return gm_note_clip(rng, program, octaves[rng.integers(len(octaves))], n, sf)


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
        TaskSpec("gm_family", GM_TASK_FAMILIES, "multiclass", _gen_gm_family,
                 "GM instrument family of a sampled note (SoundFont; percussive and sound effects excluded)",
                 soundfont=True),
        TaskSpec("gm_pitch", CHROMA, "multiclass", _gen_gm_pitch,
                 "pitch class of a sampled note from 10 pitched GM families (SoundFont)", soundfont=True),
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


def generate_clip(name: str, split: str, index: int, label, seconds: float, seed: int,
                  soundfont: str | Path | None = None) -> np.ndarray:
    """One task clip, from its own SeedSequence stream (seed, task, name, split, index)."""
    rng = clip_rng(seed, _PURPOSE_TASK, _task_id(name), _SPLIT_IDS.get(split, 99), index)
    sf = str(soundfont_path(soundfont)) if TASKS[name].soundfont else None
    return TASKS[name].generate(rng, label, round(seconds * SAMPLE_RATE), seed, sf)


def generate_split(name: str, split: str, n: int, seconds: float, seed: int, progress: bool = False,
                   soundfont: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All clips of one split: waves (n, samples) float32 and labels (see :func:`task_labels`)."""
    if name not in TASKS:
        raise ValueError(f"unknown corpus task {name!r}; expected one of {sorted(TASKS)}")
    if TASKS[name].soundfont:
        soundfont = str(soundfont_path(soundfont))  # resolve once, not per clip
    labels = task_labels(name, split, n, seed)
    waves = np.zeros((n, round(seconds * SAMPLE_RATE)), dtype=np.float32)
    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"{name}/{split}", leave=False)
    for i in it:
        waves[i] = generate_clip(name, split, i, labels[i], seconds, seed, soundfont)
    return waves, labels


def default_cache_dir() -> Path:
    """$AUDIORANK_CACHE, else ~/.cache/audiorank."""
    return Path(os.environ.get("AUDIORANK_CACHE", Path.home() / ".cache" / "audiorank"))


def cached_split(name: str, split: str, n: int, seconds: float, seed: int, cache_dir: str | Path | None = None,
                 progress: bool = False, soundfont: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """generate_split, cached on disk under cache_dir/corpus-v<version>/ keyed by task, split,
    seed, size and clip length (and the SoundFont's sha256 for tasks rendered from one): a second
    call reads instead of regenerating."""
    if name not in TASKS:
        raise ValueError(f"unknown corpus task {name!r}; expected one of {sorted(TASKS)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    sf_key = f"_sf{soundfont_id(soundfont)[:16]}" if TASKS[name].soundfont else ""
    path = root / f"corpus-v{GENERATOR_VERSION}" / f"{name}_seed{seed}_{seconds:g}s{sf_key}_{split}{n}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["waves"], z["labels"]
    waves, labels = generate_split(name, split, n, seconds, seed, progress=progress, soundfont=soundfont)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, waves=waves, labels=labels)
    os.replace(tmp, path)
    return waves, labels


def make_task(name: str, n_train: int = 120, n_valid: int = 40, n_test: int = 40, seconds: float = 1.0,
              seed: int = 0, cache_dir: str | Path | None = None, progress: bool = False,
              soundfont: str | Path | None = None):
    """One corpus task as a :class:`audiorank.audio.hear.HearTask` (train/valid/test, in memory,
    cached on disk), the same object :func:`audiorank.audio.hear.read_hear_task` returns.
    `soundfont` (default $AUDIORANK_SOUNDFONT, else the bundled TimGM6mb) renders the gm_* tasks."""
    from .hear import HearTask, Split, scene_metadata

    spec = TASKS.get(name)
    if spec is None:
        raise ValueError(f"unknown corpus task {name!r}; expected one of {sorted(TASKS)}")
    splits = {}
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        if n <= 0:
            raise ValueError(f"task {name!r}: split {split!r} needs at least one clip, got {n}")
        waves, labels = cached_split(name, split, n, seconds, seed, cache_dir, progress, soundfont)
        files = [f"{name}-{split}-{i:05d}.wav" for i in range(n)]
        splits[split] = Split(files=files, waves=waves, labels=labels)
    metadata = scene_metadata(name, spec.prediction_type, seconds, spec.description,
                              f"audiorank-corpus-v{GENERATOR_VERSION}", seed)
    if spec.soundfont:
        path = soundfont_path(soundfont)
        metadata["soundfont"] = {"file": path.name, "sha256": soundfont_id(path)}
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
    clip shares a stream with a task clip. Map-style: use with a DataLoader (shuffle, workers).
    Sources are mixed by :data:`POOL_MIX`; `soundfont` renders its sampled music (default
    $AUDIORANK_SOUNDFONT, else the bundled TimGM6mb), resolved once here so every worker agrees."""

    def __init__(self, n_clips: int, seconds: float = 1.0, seed: int = 0, soundfont: str | Path | None = None):
        if n_clips <= 0:
            raise ValueError(f"pretraining pool needs n_clips > 0, got {n_clips}")
        self.n_clips, self.seconds, self.seed = int(n_clips), float(seconds), int(seed)
        self.n_samples = round(self.seconds * SAMPLE_RATE)
        self.soundfont = str(soundfont_path(soundfont))

    def __len__(self) -> int:
        return self.n_clips

    def clip(self, i: int) -> np.ndarray:
        """Clip i as a float32 numpy array."""
        if not 0 <= i < self.n_clips:
            raise IndexError(f"pool index {i} out of range [0, {self.n_clips})")
        return random_clip(clip_rng(self.seed, _PURPOSE_POOL, i), self.n_samples, self.soundfont)

    def __getitem__(self, i: int):
        import torch

        return torch.from_numpy(self.clip(int(i)))

    def batch(self, start: int, stop: int) -> np.ndarray:
        """Clips start..stop-1 stacked (n, samples)."""
        return np.stack([self.clip(i) for i in range(start, stop)])


def pretraining_pool(n_clips: int, seconds: float = 1.0, seed: int = 0,
                     soundfont: str | Path | None = None) -> PretrainingPool:
    """The unlabeled pretraining pool: a torch Dataset of n_clips clips of `seconds` at 16 kHz."""
    return PretrainingPool(n_clips, seconds, seed, soundfont)


# ----------------------------------------------------------------------------------------------
# writing the corpus as HEAR task folders; the speed report
# ----------------------------------------------------------------------------------------------

CORPUS_DEFAULTS = {"n_train": 120, "n_valid": 40, "n_test": 40, "seconds": 1.0, "pool_clips": 2000, "pool_seconds": 1.0}


def write_corpus(out: str | Path, tasks: Sequence[str] | None = None, n_train: int = 120, n_valid: int = 40,
                 n_test: int = 40, seconds: float = 1.0, seed: int = 0, cache_dir: str | Path | None = None,
                 progress: bool = True, summary: dict | None = None,
                 soundfont: str | Path | None = None) -> dict[str, Path]:
    """Write corpus tasks (default: all) as HEAR task folders out/<task>/ and a summary out/corpus.json
    (with the entries of `summary` added). Returns {task name: folder}."""
    from .hear import write_hear_task

    names = list(tasks) if tasks is not None else list(TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown corpus tasks {unknown}; expected some of {sorted(TASKS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    t0 = time.perf_counter()
    for name in names:
        task = make_task(name, int(n_train), int(n_valid), int(n_test), float(seconds), seed, cache_dir, progress,
                         soundfont)
        written[name] = write_hear_task(task, out)
    info = {
        "generator_version": GENERATOR_VERSION, "seed": int(seed), "sample_rate": SAMPLE_RATE,
        "soundfont": str(soundfont_path(soundfont)), "soundfont_sha256": soundfont_id(soundfont),
        **(summary or {}), "tasks": {k: str(v.name) for k, v in written.items()},
        "seconds_elapsed": round(time.perf_counter() - t0, 2),
    }
    (out / "corpus.json").write_text(json.dumps(info, indent=2) + "\n")
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
        "soundfont_note": lambda r: gm_note_clip(r, int(r.integers(112)), int(r.integers(40, 80)), n),
        "soundfont_music": lambda r: gm_music_clip(r, n),
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
    """Print the speed report: ``python -m audiorank.audio [n_clips]``."""
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
