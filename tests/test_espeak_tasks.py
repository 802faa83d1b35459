"""scripts/espeak_tasks.py: balanced, seeded HEAR task folders from a speech synthesiser. CI has no
espeak-ng, so `speak` is replaced by a stand-in that encodes its arguments in the waveform; the
real synthesiser's determinism was checked where it is installed (results/.../unseen/README.md)."""

import importlib.util

import numpy as np
import pytest

from audiorank.audio import read_hear_task
from audiorank.profiles import project_root

_spec = importlib.util.spec_from_file_location("espeak_tasks", project_root() / "scripts" / "espeak_tasks.py")
espeak_tasks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(espeak_tasks)


def _fake_speak(text, voice, rate_wpm, pitch):
    """A tone whose length says the word, frequency the voice, level the rate and pitch."""
    n = 1600 * (1 + espeak_tasks.WORDS.index(text) % 5)
    f = 100 + 10 * espeak_tasks.DIGIT_VOICES.index(voice)
    return (np.sin(2 * np.pi * f * np.arange(n) / espeak_tasks.RATE) * (rate_wpm + pitch) / 300).astype(np.float32)


@pytest.fixture
def fake_speech(monkeypatch):
    monkeypatch.setattr(espeak_tasks, "speak", _fake_speak)


def test_tasks_are_balanced_seeded_and_read_back_as_hear_folders(fake_speech, tmp_path):
    sizes = {"train": 20, "valid": 10, "test": 10}
    for name, (vocabulary, _) in espeak_tasks.TASKS.items():
        task = espeak_tasks.make_task(name, sizes, 0.5, seed=3)
        again = espeak_tasks.make_task(name, sizes, 0.5, seed=3)
        other = espeak_tasks.make_task(name, sizes, 0.5, seed=4)
        for split, n in sizes.items():
            waves, labels = task.arrays(split)
            assert waves.shape == (n, 8000) and waves.dtype == np.float32
            assert np.bincount(labels, minlength=len(vocabulary)).tolist() == [n // len(vocabulary)] * len(vocabulary)
            assert np.abs(waves).max() <= 0.9 + 1e-6 and (np.abs(waves).max(axis=1) >= 0.3 - 1e-6).all()
            assert np.array_equal(waves, again.arrays(split)[0]) and np.array_equal(labels, again.arrays(split)[1])
            assert not np.array_equal(waves, other.arrays(split)[0])
        folder = espeak_tasks.write_hear_task(task, tmp_path)
        back = read_hear_task(folder)
        assert back.vocabulary == list(vocabulary) and back.prediction_type == "multiclass"
        assert np.array_equal(back.arrays("test")[1], task.arrays("test")[1])
        assert np.abs(back.arrays("test")[0] - task.arrays("test")[0]).max() < 1e-4  # 16-bit PCM


def test_the_speaker_task_label_is_the_voice_and_the_digit_task_label_the_word(fake_speech, monkeypatch):
    said = []
    monkeypatch.setattr(espeak_tasks, "speak", lambda text, voice, *a: said.append((text, voice)) or _fake_speak(text, voice, *a))
    task = espeak_tasks.make_task("espeak_voices", {"train": 10, "valid": 10, "test": 10}, 0.5, seed=0)
    assert [espeak_tasks.SPEAKER_VOICES[y] for y in task.arrays("train")[1]] == [v for _, v in said[:10]]
    said.clear()
    task = espeak_tasks.make_task("espeak_digits", {"train": 10, "valid": 10, "test": 10}, 0.5, seed=0)
    assert [espeak_tasks.DIGITS[y] for y in task.arrays("train")[1]] == [t for t, _ in said[:10]]
    assert len({v for _, v in said}) > 5  # digits are spoken by many voices


def test_missing_synthesiser_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(espeak_tasks.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="espeak-ng is not on PATH"):
        espeak_tasks.speak("one", "m1", 160, 50)
