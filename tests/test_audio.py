"""Tests of audiorank.audio: the procedural corpus, HEAR task folders, the log-mel front end.

Small and fast (short clips, few of them); generation speed is reported by
``python -m audiorank.audio``, never asserted here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiorank import cli
from audiorank.audio import (
    TASKS,
    LogMel,
    dsp,
    instruments,
    make_task,
    pretraining_pool,
    read_hear_task,
    soundfont,
    speech,
    to_kfold,
    write_hear_task,
)
from audiorank.audio import tasks as corpus
from audiorank.audio.hear import SILENCE_PEAK
from audiorank.profiles import available_profiles, load_profile

DATA = Path(__file__).parent / "data"
HANDWRITTEN = DATA / "hear_handwritten"
HANDWRITTEN_KFOLD = DATA / "hear_handwritten_kfold"
SR = dsp.SAMPLE_RATE


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TASKS))
def test_same_seed_same_bytes_other_seed_differs(name):
    labels = corpus.task_labels(name, "train", 3, seed=7)
    a = [corpus.generate_clip(name, "train", i, labels[i], 0.5, seed=7) for i in range(3)]
    b = [corpus.generate_clip(name, "train", i, labels[i], 0.5, seed=7) for i in range(3)]
    c = [corpus.generate_clip(name, "train", i, labels[i], 0.5, seed=8) for i in range(3)]
    for x, y, z in zip(a, b, c):
        assert x.dtype == np.float32 and x.shape == (SR // 2,)
        assert x.tobytes() == y.tobytes()
        assert x.tobytes() != z.tobytes()
    assert np.array_equal(labels, corpus.task_labels(name, "train", 3, seed=7))


def test_written_wavs_are_byte_identical(tmp_path):
    for out in ("a", "b"):
        make_task("instruments", 8, 2, 2, 0.25, seed=3, cache_dir=tmp_path / out / "cache")
        write_hear_task(make_task("instruments", 8, 2, 2, 0.25, seed=3, cache_dir=tmp_path / out / "cache"),
                        tmp_path / out)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / "instruments").rglob("*") if p.is_file())
    assert len(files) == 3 + 1 + 1 + 12  # 3 split jsons, metadata, vocabulary, 12 wavs
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_pool_is_seeded_per_index_and_worker_safe():
    pool = pretraining_pool(6, seconds=0.25, seed=1)
    assert len(pool) == 6
    x = pool[4]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (SR // 4,)
    assert torch.equal(x, pool[4])
    assert not torch.equal(x, pretraining_pool(6, 0.25, seed=2)[4])
    assert not torch.equal(x, pool[3])
    loader = torch.utils.data.DataLoader(pool, batch_size=3, num_workers=2)
    batches = torch.cat(list(loader))
    assert torch.equal(batches, torch.stack([pool[i] for i in range(6)]))
    with pytest.raises(IndexError):
        pool.clip(6)


def test_pool_and_task_streams_differ():
    # same (seed, index) but different purpose words: different clips
    pool = pretraining_pool(3, seconds=0.25, seed=0)
    task = corpus.generate_clip("events", "train", 0, 0, 0.25, seed=0)
    assert pool.clip(0).tobytes() != task.tobytes()
    rng_task = dsp.clip_rng(0, 0, dsp._task_id("events"), 0, 0)
    rng_pool = dsp.clip_rng(0, 1, 0)
    assert rng_task.random() != rng_pool.random()


# ----------------------------------------------------------------------------------------------
# task content
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_labels_balanced_and_clips_sane(name, tmp_path):
    spec = TASKS[name]
    C = len(spec.vocabulary)
    n = C * 2 if spec.prediction_type == "multiclass" else 12
    task = make_task(name, n, 3, 3, 0.5, seed=11, cache_dir=tmp_path)
    waves, labels = task.arrays("train")
    assert waves.shape == (n, SR // 2) and waves.dtype == np.float32
    assert np.all(np.isfinite(waves))
    peaks = np.abs(waves).max(axis=1)
    assert peaks.min() > 100 * SILENCE_PEAK and peaks.max() <= 1.0
    rms = np.sqrt((waves.astype(np.float64) ** 2).mean(axis=1))
    assert np.all(rms > 1e-3)
    assert len({w.tobytes() for w in waves}) == n  # no two clips alike
    if spec.prediction_type == "multiclass":
        assert labels.dtype == np.int64
        assert np.array_equal(np.bincount(labels, minlength=C), np.full(C, 2))
    else:
        assert labels.shape == (n, C)
        per_clip = labels.sum(axis=1)
        assert per_clip.min() >= 1 and per_clip.max() <= 3
        assert np.array_equal(np.bincount(per_clip.astype(int), minlength=4)[1:], [4, 4, 4])


def test_task_inventory():
    classes = {name: len(spec.vocabulary) for name, spec in TASKS.items()}
    assert classes == {"events": 10, "instruments": 8, "chroma": 12, "vowels": 10, "speakers": 16,
                       "scenes": 12, "gm_family": 14, "gm_pitch": 12}
    assert [n for n, s in TASKS.items() if s.prediction_type == "multilabel"] == ["scenes"]
    assert [n for n, s in TASKS.items() if s.soundfont] == ["gm_family", "gm_pitch"]
    assert instruments.MIDI_RANGE == (45, 84)  # A2..C6: 3.25 octaves
    assert TASKS["gm_family"].vocabulary[0] == "piano" and "sound_effects" not in TASKS["gm_family"].vocabulary
    spk = speech.speakers(0)
    assert len({(s.f0, s.vtl, s.jitter) for s in spk}) == len(spk)


def test_chroma_clip_has_its_pitch():
    # an organ note of MIDI 57 (A3, 220 Hz): the spectral peak below 1 kHz sits on a harmonic of 220 Hz
    rng = dsp.clip_rng(0, 5, 1)
    x = instruments.music_clip(rng, "organ", SR, midi=57, channel=False)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    band = (freqs > 100) & (freqs < 1000)
    peak = freqs[band][np.argmax(spec[band])]
    ratio = peak / 220.0
    assert abs(ratio - round(ratio)) < 0.03 * round(ratio)


# ----------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------

def test_second_call_reads_the_cache(tmp_path, monkeypatch):
    calls = []
    real = corpus.generate_split

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(corpus, "generate_split", counting)
    a = corpus.cached_split("vowels", "valid", 4, 0.25, seed=5, cache_dir=tmp_path)
    b = corpus.cached_split("vowels", "valid", 4, 0.25, seed=5, cache_dir=tmp_path)
    assert len(calls) == 1
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    corpus.cached_split("vowels", "valid", 5, 0.25, seed=5, cache_dir=tmp_path)  # other size: new key
    corpus.cached_split("vowels", "valid", 4, 0.25, seed=6, cache_dir=tmp_path)  # other seed: new key
    assert len(calls) == 3
    assert all(f"corpus-v{corpus.GENERATOR_VERSION}" in str(p) for p in tmp_path.rglob("*.npz"))


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIORANK_CACHE", str(tmp_path / "env-cache"))
    assert corpus.default_cache_dir() == tmp_path / "env-cache"
    make_task("chroma", 12, 1, 1, 0.1, seed=0)
    assert list((tmp_path / "env-cache").rglob("chroma_seed0_*.npz"))


# ----------------------------------------------------------------------------------------------
# HEAR task folders
# ----------------------------------------------------------------------------------------------

def test_reads_handwritten_multilabel_task():
    task = read_hear_task(HANDWRITTEN, sample_rate=16000)
    assert task.name == "handwritten_tags" and task.prediction_type == "multilabel"
    assert task.vocabulary == ["Bird", "Dog_bark", "Rain"]
    assert list(task.splits) == ["train", "valid", "test"]
    train = task.splits["train"]
    assert train.files == ["a1.wav", "a2.wav"]
    assert train.waves.shape == (2, 1600)  # 0.05 s files padded to sample_duration 0.1 s
    assert np.all(train.waves[:, 800:] == 0) and np.abs(train.waves[:, :800]).max() > 0.2
    assert np.array_equal(train.labels, [[1, 0, 0], [1, 0, 1]])
    assert np.array_equal(task.splits["test"].labels, [[0, 1, 1]])
    assert task.n_skipped == 0
    a1, sr = sf.read(HANDWRITTEN / "16000" / "train" / "a1.wav", dtype="float32")
    assert sr == 16000 and np.array_equal(train.waves[0, :800], a1)


def test_reads_handwritten_kfold_task_resampled():
    task = read_hear_task(HANDWRITTEN_KFOLD, sample_rate=16000)
    assert task.split_mode == "new_split_kfold" and task.folds() == ["fold00", "fold01"]
    assert task.vocabulary == ["low", "high"]
    assert np.array_equal(task.splits["fold00"].labels, [0, 1])
    assert np.array_equal(task.splits["fold01"].labels, [0, 1])
    waves = task.splits["fold00"].waves
    assert waves.shape == (2, 800)  # 0.05 s at 16 kHz, resampled from the 8000/ folder
    spec = np.abs(np.fft.rfft(waves[0]))
    assert abs(np.fft.rfftfreq(800, 1 / 16000)[spec.argmax()] - 220) < 25
    only = read_hear_task(HANDWRITTEN_KFOLD, sample_rate=8000, splits=["fold01"])
    assert list(only.splits) == ["fold01"] and only.splits["fold01"].waves.shape == (2, 400)


@pytest.mark.parametrize("name", ["events", "scenes"])
def test_writer_round_trips_through_reader(name, tmp_path):
    task = make_task(name, 12, 3, 3, 0.25, seed=2, cache_dir=tmp_path / "cache")
    folder = write_hear_task(task, tmp_path / "tasks")
    meta = json.loads((folder / "task_metadata.json").read_text())
    assert meta["embedding_type"] == "scene" and meta["split_mode"] == "trainvaltest"
    assert meta["prediction_type"] == task.prediction_type and meta["sample_duration"] == 0.25
    assert (folder / "labelvocabulary.csv").read_text().splitlines()[0] == "idx,label"
    mapping = json.loads((folder / "valid.json").read_text())
    assert list(mapping) == task.splits["valid"].files and all(isinstance(v, list) for v in mapping.values())
    back = read_hear_task(folder, sample_rate=16000)
    assert back.vocabulary == task.vocabulary
    for split in ("train", "valid", "test"):
        w0, y0 = task.arrays(split)
        w1, y1 = back.arrays(split)
        assert np.array_equal(y0, y1)
        assert w1.shape == w0.shape
        assert np.max(np.abs(w1 - w0)) <= 1.0 / 32768 + 1e-7  # PCM16 quantisation
        info = sf.info(str(folder / "16000" / split / back.splits[split].files[0]))
        assert info.subtype == "PCM_16" and info.samplerate == 16000 and info.channels == 1


def test_kfold_writer_round_trips(tmp_path):
    task = to_kfold(make_task("chroma", 12, 4, 4, 0.1, seed=0, cache_dir=tmp_path / "c"), nfolds=4)
    folder = write_hear_task(task, tmp_path / "tasks")
    assert sorted(p.name for p in folder.glob("fold*.json")) == [f"fold{k:02d}.json" for k in range(4)]
    back = read_hear_task(folder)
    assert back.metadata["nfolds"] == 4
    for k in task.splits:
        assert np.array_equal(back.splits[k].labels, task.splits[k].labels)


def _copy_task(tmp_path: Path) -> Path:
    dst = tmp_path / "task"
    shutil.copytree(HANDWRITTEN, dst)
    return dst


def _corrupt(folder: Path, kind: str) -> str:
    target = folder / "16000" / "train" / "a2.wav"
    if kind == "garbage":
        target.write_bytes(b"RIFF\x00\x01garbage, not a wav file" * 3)
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "zero_frames":
        sf.write(str(target), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    elif kind == "silent":
        sf.write(str(target), np.zeros(800, dtype=np.float32), 16000, subtype="PCM_16")
    elif kind == "wrong_rate":
        sf.write(str(target), 0.3 * np.ones(441, dtype=np.float32), 44100, subtype="PCM_16")
    elif kind == "missing":
        target.unlink()
    return target.name


@pytest.mark.parametrize("kind", ["garbage", "empty", "zero_frames", "silent", "wrong_rate", "missing"])
def test_bad_audio_raises_naming_file_or_is_skipped(kind, tmp_path):
    folder = _copy_task(tmp_path)
    name = _corrupt(folder, kind)
    with pytest.raises(ValueError, match=name):
        read_hear_task(folder)
    with pytest.warns(UserWarning, match="skipped 1 bad"):
        task = read_hear_task(folder, skip_bad=True)
    assert task.n_skipped == 1
    assert [f for f, _ in task.skipped["train"]] == [name]
    assert task.splits["train"].files == ["a1.wav"]
    assert np.array_equal(task.splits["train"].labels, [[1, 0, 0]])
    assert task.splits["valid"].waves.shape == (1, 1600)


def test_label_errors_always_raise(tmp_path):
    folder = _copy_task(tmp_path)
    (folder / "valid.json").write_text(json.dumps({"b1.wav": ["Cat"]}))
    with pytest.raises(ValueError, match="Cat"):
        read_hear_task(folder, skip_bad=True)


def test_event_tasks_not_supported_yet(tmp_path):
    folder = _copy_task(tmp_path)
    meta = json.loads((folder / "task_metadata.json").read_text())
    meta["embedding_type"] = "event"
    (folder / "task_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="handwritten_tags.*not supported yet"):
        read_hear_task(folder)


def test_corpus_command_writes_all_tasks(tmp_path):
    written = cli.corpus_command(tmp_path / "out", seed=4, n_train=4, n_valid=2, n_test=2, seconds=0.25,
                             cache_dir=tmp_path / "cache", progress=False)
    assert sorted(written) == sorted(TASKS)
    summary = json.loads((tmp_path / "out" / "corpus.json").read_text())
    assert summary["seed"] == 4 and summary["config"]["n_train"] == 4
    for name, folder in written.items():
        task = read_hear_task(folder)
        assert task.name == name and len(task.splits["train"]) == 4 and len(task.splits["test"]) == 2


def test_profiles_corpus_sizes_cover_every_class_of_every_task():
    # the profiles' sizes apply to every task, the SoundFont ones included: each class of each
    # multiclass task must appear in every split (labels cycle through the vocabulary)
    most = max(len(s.vocabulary) for s in TASKS.values() if s.prediction_type == "multiclass")
    assert most == 16
    for name in available_profiles():
        sizes = load_profile(name)["corpus"]
        assert set(sizes) <= set(corpus.CORPUS_DEFAULTS), name
        assert min(sizes["n_train"], sizes["n_valid"], sizes["n_test"]) >= most, name
        labels = corpus.task_labels("gm_family", "valid", sizes["n_valid"], seed=0)
        assert np.bincount(labels, minlength=14).min() >= 1


# ----------------------------------------------------------------------------------------------
# SoundFont: sampled recordings
# ----------------------------------------------------------------------------------------------

def _f0(x: np.ndarray) -> float:
    """Fundamental (Hz) by autocorrelation: the shortest lag whose peak is within 10 % of the best."""
    seg = x[SR // 10 : SR * 6 // 10].astype(np.float64)
    seg -= seg.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(seg, 2 * len(seg))) ** 2)[: len(seg)]
    ac /= ac[0]
    peaks = [k for k in range(SR // 2000, SR // 40) if ac[k - 1] < ac[k] >= ac[k + 1]]
    best = max(ac[k] for k in peaks)
    return SR / min(k for k in peaks if ac[k] >= 0.9 * best)


@pytest.mark.parametrize("program", [0, 24, 40, 56, 73, 33])  # piano, guitar, violin, trumpet, flute, bass
def test_rendered_notes_sound_at_their_midi_pitch(program):
    for pitch in (45, 57, 69) if program != 33 else (33, 40, 45):
        x = soundfont.render_note(program, pitch, 100, SR, SR * 3 // 4)
        assert x.dtype == np.float32 and x.shape == (SR,)
        assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 0.005  # not silent
        cents = 1200 * np.log2(_f0(x) / dsp.midi_to_hz(pitch))
        assert abs(cents) < 50, (program, pitch, cents)  # within a quarter tone (integer-lag resolution)
    held = soundfont.render_note(0, 60, 100, SR, SR // 4)
    assert np.abs(held[SR // 4 - 800 : SR // 4]).max() > 3 * np.abs(held[-800:]).max()  # the release decays


def test_soundfont_rendering_is_deterministic():
    a = soundfont.render_note(40, 64, 90, SR // 2, SR // 4)
    soundfont.render_note(118, 50, 127, SR // 3, SR // 6)  # other state in between
    soundfont.render_note(0, 38, 100, SR // 3, SR // 6, drum=True)
    assert a.tobytes() == soundfont.render_note(40, 64, 90, SR // 2, SR // 4).tobytes()
    assert a.tobytes() != soundfont.render_note(40, 65, 90, SR // 2, SR // 4).tobytes()
    rng = lambda: dsp.clip_rng(0, 9, 5)  # noqa: E731
    assert soundfont.gm_music_clip(rng(), SR // 2).tobytes() == soundfont.gm_music_clip(rng(), SR // 2).tobytes()


def test_cloned_synth_renders_what_a_freshly_parsed_one_renders(monkeypatch):
    """new_synth clones a SoundFont parsed once; the clips must equal those of a synthesizer parsed
    from the file for each clip (what the committed corpora were rendered with)."""
    import tinysoundfont._tinysoundfont as tsf

    def parsed_per_clip(sf=None):
        synth = tsf.SoundFont(soundfont.soundfont_path(sf).read_bytes())
        synth.set_output(tsf.OutputMode.Mono, SR, 0.0)
        synth.set_max_voices(64)
        return synth

    rng = lambda i: dsp.clip_rng(3, 9, i)  # noqa: E731
    cloned = [soundfont.gm_music_clip(rng(i), SR // 2) for i in range(6)]
    notes = [soundfont.render_note(p, 60, 100, SR // 4, SR // 8) for p in (0, 40, 73)]
    monkeypatch.setattr(soundfont, "new_synth", parsed_per_clip)
    assert all(a.tobytes() == soundfont.gm_music_clip(rng(i), SR // 2).tobytes() for i, a in enumerate(cloned))
    assert all(a.tobytes() == soundfont.render_note(p, 60, 100, SR // 4, SR // 8).tobytes()
               for a, p in zip(notes, (0, 40, 73)))


def test_soundfont_tasks_read_the_cache(tmp_path, monkeypatch):
    a = corpus.cached_split("gm_pitch", "train", 12, 0.25, seed=1, cache_dir=tmp_path)
    sha = soundfont.soundfont_id()
    assert len(sha) == 64
    assert [p.name for p in tmp_path.rglob("*.npz")] == [f"gm_pitch_seed1_0.25s_sf{sha[:16]}_train12.npz"]

    def broken(*args, **kwargs):
        raise AssertionError("rendered instead of reading the cache")

    monkeypatch.setattr(soundfont, "render_note", broken)
    b = corpus.cached_split("gm_pitch", "train", 12, 0.25, seed=1, cache_dir=tmp_path)
    assert a[0].tobytes() == b[0].tobytes() and np.array_equal(a[1], b[1])
    with pytest.raises(AssertionError, match="rendered"):
        corpus.cached_split("gm_pitch", "train", 13, 0.25, seed=1, cache_dir=tmp_path)


def test_bad_soundfont_path_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.sf2"
    with pytest.raises(ValueError, match="nowhere.sf2.*does not exist"):
        make_task("gm_family", 14, 14, 14, 0.1, soundfont=missing, cache_dir=tmp_path)
    fake = tmp_path / "fake.sf2"
    fake.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    monkeypatch.setenv(soundfont.SOUNDFONT_ENV, str(fake))
    with pytest.raises(ValueError, match="fake.sf2.*not a SoundFont"):
        pretraining_pool(4, 0.1)
    monkeypatch.delenv(soundfont.SOUNDFONT_ENV)
    assert soundfont.soundfont_path() == soundfont.bundled_soundfont().resolve()


def test_pool_mixes_sources_by_pool_mix(monkeypatch):
    assert sum(corpus.POOL_MIX.values()) == pytest.approx(1.0)
    for fn, source in (("environment_clip", "environment"), ("music_clip", "music"),
                       ("gm_music_clip", "soundfont_music"), ("speech_clip", "speech"), ("scene_clip", "scenes")):
        monkeypatch.setattr(corpus, fn, lambda *a, _s=source, **k: _s)
    draws = [corpus.random_clip(dsp.clip_rng(0, 1, i), 8) for i in range(4000)]
    for source, share in corpus.POOL_MIX.items():
        sd = np.sqrt(share * (1 - share) / len(draws))
        assert abs(draws.count(source) / len(draws) - share) < 4 * sd, source


# ----------------------------------------------------------------------------------------------
# log-mel front end
# ----------------------------------------------------------------------------------------------

def test_logmel_shape_and_pool_normalisation():
    pool = pretraining_pool(24, seconds=1.0, seed=0)
    fe = LogMel()
    assert not bool(fe.fitted)
    out = fe(torch.zeros(2, SR) + 0.01)
    assert out.shape == (2, 64, 101)  # ~100 frames per second
    assert fe(torch.zeros(SR // 2)).shape == (1, 64, 51)
    fe.fit_stats(pool, batch_size=8)
    assert bool(fe.fitted)
    z = fe(torch.from_numpy(pool.batch(0, 24)))
    assert torch.allclose(z.mean(dim=(0, 2)), torch.zeros(64), atol=1e-3)
    assert torch.allclose(z.std(dim=(0, 2)), torch.ones(64), atol=1e-2)
    other = LogMel()
    other.load_state_dict(fe.state_dict())
    assert bool(other.fitted) and torch.equal(other.mean, fe.mean) and torch.equal(other.std, fe.std)
    arr = LogMel().fit_stats(pool.batch(0, 24))  # arrays give the same statistics as the Dataset
    assert torch.allclose(arr.mean, fe.mean, atol=1e-5) and torch.allclose(arr.std, fe.std, atol=1e-5)
    with pytest.raises(ValueError, match="no audio"):
        LogMel().fit_stats([])
