"""Two speech tasks from a synthesiser the project never uses, written as HEAR task folders.

The corpus's speech (vowels, speakers, and the pretraining pool's) comes from our own formant
generator (`audiorank.audio.speech`). A recipe tuned to that generator would show on speech made
another way. This script renders, with the system's eSpeak NG (Debian's `espeak-ng`; not a
dependency of the package, and nothing in it is used for pretraining), the two tasks on which the
original failure of issue 7 was measured on real recordings:

- `espeak_digits`: which digit (zero … nine) is spoken, by any of the `DIGIT_VOICES` variants;
- `espeak_voices`: which of the `SPEAKER_VOICES` variants speaks a random digit or word.

Each clip draws its voice, speaking rate, pitch, gain and onset from a generator seeded by
(seed, task, split, clip), is rendered at 22.05 kHz, resampled to 16 kHz and padded or cut to
`--seconds`. eSpeak NG is deterministic, so the same arguments give the same folders. Example:

    python scripts/espeak_tasks.py --out /tmp/espeak_tasks --n-train 400 --n-valid 100 --n-test 100
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from audiorank.audio.dsp import SAMPLE_RATE as RATE
from audiorank.audio.hear import HearTask, Split, scene_metadata, write_hear_task

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = DIGITS + ("hello", "yes", "no", "left", "right", "stop", "go", "up", "down", "on", "off")
#: eSpeak NG's voice variants (`-v en-us+VARIANT`): the speaker task's classes ...
SPEAKER_VOICES = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4", "f5")
#: ... and the digit task's speakers (more of them, so that digits are not told apart by voice)
DIGIT_VOICES = SPEAKER_VOICES + ("m6", "m7", "m8", "klatt", "klatt2", "klatt3", "klatt4", "croak", "whisper",
                                 "Andy", "Annie", "boris", "grandma", "john", "linda", "max", "paul")
TASKS = {  # name: (label vocabulary, description)
    "espeak_digits": (DIGITS, "spoken digit (eSpeak NG, 27 voice variants)"),
    "espeak_voices": (SPEAKER_VOICES, "eSpeak NG voice variant speaking a digit or word"),
}
SPLITS = ("train", "valid", "test")


def speak(text: str, voice: str, rate_wpm: int, pitch: int) -> np.ndarray:
    """eSpeak NG's rendering of `text` as float32 at 16 kHz (a clear error if it is missing or fails)."""
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not on PATH (Debian: apt-get install espeak-ng)")
    cmd = ["espeak-ng", "-v", f"en-us+{voice}", "-s", str(rate_wpm), "-p", str(pitch), "--stdout", text]
    out = subprocess.run(cmd, capture_output=True, check=True).stdout
    wave, rate = sf.read(io.BytesIO(out), dtype="float32")
    if wave.size == 0 or not np.any(wave):
        raise RuntimeError(f"espeak-ng rendered silence for {cmd}")
    g = gcd(RATE, rate)
    return resample_poly(wave, RATE // g, rate // g).astype(np.float32)


def clip(task: str, label: int, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """One clip of `task` with class `label`: voice, rate, pitch, gain and onset drawn from `rng`."""
    if task == "espeak_digits":
        text, voice = DIGITS[label], DIGIT_VOICES[rng.integers(len(DIGIT_VOICES))]
    else:
        text, voice = WORDS[rng.integers(len(WORDS))], SPEAKER_VOICES[label]
    wave = speak(text, voice, int(rng.integers(140, 221)), int(rng.integers(35, 66)))
    n = int(round(seconds * RATE))
    wave = wave[:n]  # a slow word longer than the clip is cut
    out = np.zeros(n, np.float32)
    start = int(rng.integers(0, n - wave.size + 1))
    out[start:start + wave.size] = wave * (rng.uniform(0.3, 0.9) / np.abs(wave).max())
    return out


def make_task(name: str, sizes: dict[str, int], seconds: float, seed: int) -> HearTask:
    """A balanced task (labels cycle through the vocabulary, shuffled) in memory."""
    vocabulary, description = TASKS[name]
    splits, task_id = {}, list(TASKS).index(name)
    for s, split in enumerate(SPLITS):
        labels = np.resize(np.arange(len(vocabulary)), sizes[split])
        np.random.default_rng([seed, task_id, s]).shuffle(labels)
        waves = np.stack([clip(name, int(y), np.random.default_rng([seed, task_id, s, i]), seconds)
                          for i, y in enumerate(labels)])
        splits[split] = Split(files=[f"{name}-{split}-{i:05d}.wav" for i in range(len(labels))], waves=waves,
                              labels=labels.astype(np.int64))
    metadata = scene_metadata(name, "multiclass", seconds, description, "espeak-ng-tasks-v1", seed)
    return HearTask(name=name, metadata=metadata, vocabulary=list(vocabulary), splits=splits, sample_rate=RATE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write <task>/ folders into")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-valid", type=int, default=100)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {"train": args.n_train, "valid": args.n_valid, "test": args.n_test}
    for name, n in sizes.items():
        if n < 1:
            parser.error(f"--n-{name} must be at least 1, got {n}")
    for name in args.tasks:
        print(write_hear_task(make_task(name, sizes, args.seconds, args.seed), args.out))


if __name__ == "__main__":
    main()
