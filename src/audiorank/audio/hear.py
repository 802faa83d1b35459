"""HEAR task folders: read any folder in the HEAR 2021 format, and write ours in it.

The format is the one hear-preprocess (hear-eval-kit) produces:

    <task>/task_metadata.json      task_name, version, embedding_type ("scene" | "event"),
                                   prediction_type ("multiclass" | "multilabel"), split_mode
                                   ("trainvaltest" | "new_split_kfold" | "presplit_kfold", with
                                   nfolds), sample_duration (s), evaluation, ...
    <task>/labelvocabulary.csv     columns idx,label
    <task>/<split>.json            {wav file name: [label, ...]}; splits train/valid/test or
                                   fold00 .. fold<nfolds-1>
    <task>/<rate>/<split>/*.wav    the audio, one folder per sample rate

Only scene tasks (one label set per clip) are read; event (timestamp) tasks raise ValueError.
A corrupt, empty, silent, non-finite or wrongly-sampled file raises ValueError naming it; with
``skip_bad=True`` it is skipped instead, logged, and listed in ``HearTask.skipped``.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: a clip whose peak amplitude is below this (-80 dBFS) counts as silent
SILENCE_PEAK = 1e-4
TRAINVALTEST = ("train", "valid", "test")
KFOLD_MODES = ("new_split_kfold", "presplit_kfold")


@dataclass
class Split:
    """One split: wav file names, waveforms (n, samples) float32, labels: class indices (n,)
    int64 for multiclass tasks, multi-hot (n, n_labels) float32 for multilabel ones."""

    files: list[str]
    waves: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class HearTask:
    """A scene task in memory: metadata (task_metadata.json), vocabulary (index -> label), the
    splits by name, the sample rate of `waves`, and the files skipped as bad per split
    ([(file, reason)])."""

    name: str
    metadata: dict
    vocabulary: list[str]
    splits: dict[str, Split]
    sample_rate: int
    path: Path | None = None
    skipped: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def prediction_type(self) -> str:
        return self.metadata["prediction_type"]

    @property
    def split_mode(self) -> str:
        return self.metadata["split_mode"]

    @property
    def n_labels(self) -> int:
        return len(self.vocabulary)

    @property
    def n_skipped(self) -> int:
        """How many files were skipped as bad, over all splits."""
        return sum(len(v) for v in self.skipped.values())

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(waves (n, samples) float32, labels) of one split."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; it has {list(self.splits)}")
        s = self.splits[split]
        return s.waves, s.labels

    def folds(self) -> list[str]:
        """Split names in order: train/valid/test or fold00.. ."""
        return list(self.splits)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------

def split_names(metadata: dict, where: str = "task") -> list[str]:
    """The split names a task's metadata implies (hear-eval-kit's rule)."""
    mode = metadata.get("split_mode")
    if mode == "trainvaltest":
        return list(TRAINVALTEST)
    if mode in KFOLD_MODES:
        nfolds = metadata.get("nfolds")
        if not isinstance(nfolds, int) or nfolds < 2:
            raise ValueError(f"{where}: split_mode {mode!r} needs an integer nfolds >= 2, got {nfolds!r}")
        return [f"fold{i:02d}" for i in range(nfolds)]
    raise ValueError(f"{where}: unknown split_mode {mode!r}; expected 'trainvaltest' or one of {KFOLD_MODES}")


def _read_json(file: Path, missing: str):
    """Parsed JSON of `file`; ValueError with `missing` if absent, naming the file if malformed."""
    if not file.is_file():
        raise ValueError(missing)
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e


def read_metadata(path: str | Path) -> dict:
    """task_metadata.json of a task folder, checked for the keys the reader needs."""
    path = Path(path)
    meta = _read_json(path / "task_metadata.json", f"{path}: not a HEAR task folder (no task_metadata.json)")
    missing = {"task_name", "embedding_type", "prediction_type", "split_mode"} - set(meta)
    if missing:
        raise ValueError(f"{path / 'task_metadata.json'}: missing keys {sorted(missing)}")
    return meta


def read_vocabulary(path: str | Path) -> list[str]:
    """labelvocabulary.csv (columns idx,label) as a list indexed by idx."""
    f = Path(path) / "labelvocabulary.csv"
    if not f.is_file():
        raise ValueError(f"{path}: no labelvocabulary.csv")
    with open(f, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"idx", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{f}: expected columns idx,label, got {reader.fieldnames}")
        rows = [(int(r["idx"]), str(r["label"])) for r in reader]
    rows.sort()
    if [i for i, _ in rows] != list(range(len(rows))) or not rows:
        raise ValueError(f"{f}: idx must run 0..n-1 without gaps, got {[i for i, _ in rows]}")
    labels = [lab for _, lab in rows]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{f}: duplicate labels")
    return labels


def _audio_root(path: Path, sample_rate: int) -> tuple[Path, int]:
    """The <rate> folder to read: the requested rate if present, else the lowest rate above it,
    else the highest below it."""
    rates = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if not rates:
        raise ValueError(f"{path}: no <sample_rate>/ audio folder (e.g. 16000/)")
    above = [r for r in rates if r >= sample_rate]
    rate = above[0] if above else rates[-1]
    return path / str(rate), rate


def load_wav(file: str | Path, expected_rate: int) -> np.ndarray:
    """A wav as mono float32, checked: readable, expected sample rate, non-empty, finite, not
    silent. Raises ValueError naming the file otherwise."""
    import soundfile as sf

    file = Path(file)
    if not file.is_file():
        raise ValueError(f"{file}: missing audio file")
    try:
        data, sr = sf.read(str(file), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises its own error types for corrupt files
        raise ValueError(f"{file}: unreadable audio ({type(e).__name__}: {e})") from e
    if sr != expected_rate:
        raise ValueError(f"{file}: sample rate {sr} Hz, expected {expected_rate} Hz (its folder)")
    if data.shape[0] == 0:
        raise ValueError(f"{file}: empty audio (0 samples)")
    x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{file}: audio holds NaN or Inf")
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise ValueError(f"{file}: silent audio (peak below {SILENCE_PEAK})")
    return np.ascontiguousarray(x, dtype=np.float32)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] >= n:
        return x[:n]
    return np.pad(x, (0, n - x.shape[0]))


def read_hear_task(path: str | Path, sample_rate: int = 16000, skip_bad: bool = False,
                   splits: Sequence[str] | None = None, progress: bool = False) -> HearTask:
    """Read a HEAR scene task folder: every split (or those named) as waveforms at `sample_rate`
    (resampled with torchaudio when the folder holds another rate), padded/cropped to the task's
    sample_duration, with labels as indices (multiclass) or multi-hot rows (multilabel).

    Bad audio raises ValueError naming the file, or with skip_bad=True is skipped, logged and
    recorded in the returned task's `skipped` (per split). Label errors always raise.
    """
    path = Path(path)
    meta = read_metadata(path)
    name = str(meta["task_name"])
    if meta["embedding_type"] != "scene":
        raise ValueError(
            f"task {name!r} ({path}): embedding_type {meta['embedding_type']!r} (timestamp/event tasks) "
            "is not supported yet; only scene tasks can be read"
        )
    ptype = meta["prediction_type"]
    if ptype not in ("multiclass", "multilabel"):
        raise ValueError(f"task {name!r} ({path}): prediction_type {ptype!r}; expected multiclass or multilabel")
    vocab = read_vocabulary(path)
    index = {lab: i for i, lab in enumerate(vocab)}
    all_splits = split_names(meta, str(path / "task_metadata.json"))
    wanted = list(splits) if splits is not None else all_splits
    for s in wanted:
        if s not in all_splits:
            raise ValueError(f"task {name!r}: no split {s!r}; its split_mode gives {all_splits}")
    audio_root, file_rate = _audio_root(path, sample_rate)
    duration = meta.get("sample_duration")

    out: dict[str, Split] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    for split in wanted:
        jf = path / f"{split}.json"
        mapping = _read_json(jf, f"task {name!r}: missing split file {jf}")
        if not isinstance(mapping, dict):
            raise ValueError(f"{jf}: expected a mapping of wav file name to label list")  # noqa: TRY004
        files, waves, labels, bad = [], [], [], []
        items: Iterable = mapping.items()
        if progress:
            from tqdm.auto import tqdm

            items = tqdm(list(items), desc=f"{name}/{split}", leave=False)
        for fname, labs in items:
            if isinstance(labs, str):
                labs = [labs]
            if not isinstance(labs, list) or any(isinstance(lab, dict) for lab in labs):
                raise ValueError(
                    f"{jf}: {fname}: expected a list of labels, got {labs!r} (event labels are not supported yet)"
                )
            unknown = [lab for lab in labs if str(lab) not in index]
            if unknown:
                raise ValueError(f"{jf}: {fname}: labels {unknown} not in labelvocabulary.csv")
            if ptype == "multiclass" and len(labs) != 1:
                raise ValueError(f"{jf}: {fname}: a multiclass task needs exactly one label, got {labs}")
            wav = audio_root / split / fname
            try:
                x = load_wav(wav, file_rate)
            except ValueError as e:
                if not skip_bad:
                    raise
                bad.append((fname, str(e)))
                log.warning("skipping bad audio: %s", e)
                continue
            files.append(fname)
            waves.append(x)
            if ptype == "multiclass":
                labels.append(index[str(labs[0])])
            else:
                row = np.zeros(len(vocab), dtype=np.float32)
                row[[index[str(lab)] for lab in labs]] = 1
                labels.append(row)
        if bad:
            warnings.warn(f"task {name!r} split {split!r}: skipped {len(bad)} bad audio files "
                          f"(first: {bad[0][1]})", stacklevel=2)
        skipped[split] = bad
        out[split] = Split(files=files, waves=_stack(waves, duration, file_rate, sample_rate),
                           labels=np.asarray(labels, dtype=np.int64) if ptype == "multiclass"
                           else np.asarray(labels, dtype=np.float32).reshape(len(labels), len(vocab)))
    return HearTask(name=name, metadata=meta, vocabulary=vocab, splits=out, sample_rate=sample_rate,
                    path=path, skipped=skipped)


def _stack(waves: list[np.ndarray], duration: float | None, file_rate: int, rate: int) -> np.ndarray:
    """Pad/crop to sample_duration (or the longest clip when it is null), resample, stack."""
    if duration is not None:
        n_in = round(float(duration) * file_rate)
        n_out = round(float(duration) * rate)
    else:
        n_in = max((w.shape[0] for w in waves), default=0)
        n_out = int(np.ceil(n_in * rate / file_rate))
    if not waves:
        return np.zeros((0, n_out), dtype=np.float32)
    x = np.stack([_fit_length(w, n_in) for w in waves])
    if file_rate != rate:
        import torch
        import torchaudio.functional as AF

        x = AF.resample(torch.from_numpy(x), file_rate, rate).numpy()
        x = np.stack([_fit_length(w, n_out) for w in x])
    return np.ascontiguousarray(x, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------

def scene_metadata(name: str, prediction_type: str, seconds: float, description: str, version: str,
                   seed: int) -> dict:
    """task_metadata.json of a generated train/valid/test scene task, in hear-eval-kit's fields (the
    corpus's and the scripts' tasks share it); `seed` is recorded as `corpus_seed`."""
    return {
        "task_name": name,
        "version": version,
        "embedding_type": "scene",
        "prediction_type": prediction_type,
        "split_mode": "trainvaltest",
        "sample_duration": float(seconds),
        "evaluation": ["top1_acc"] if prediction_type == "multiclass" else ["mAP", "d_prime", "aucroc"],
        "download_urls": [],
        "default_mode": "full",
        "mode": "full",
        "description": description,
        "corpus_seed": int(seed),
    }


def write_hear_task(task: HearTask, out: str | Path, folder: str | None = None) -> Path:
    """Write `task` as a HEAR task folder out/<folder or task name>/ (16-bit PCM wavs at the
    task's sample rate) and return the folder. Labels are written by name, one list per file."""
    import soundfile as sf

    root = Path(out) / (folder or task.name)
    root.mkdir(parents=True, exist_ok=True)
    meta = dict(task.metadata)
    split_names(meta, f"task {task.name!r}")  # validates split_mode / nfolds
    (root / "task_metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    with open(root / "labelvocabulary.csv", "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["idx", "label"])
        for i, lab in enumerate(task.vocabulary):
            w.writerow([i, lab])
    for split, s in task.splits.items():
        d = root / str(task.sample_rate) / split
        d.mkdir(parents=True, exist_ok=True)
        mapping = {}
        for fname, wave, lab in zip(s.files, s.waves, s.labels):
            sf.write(str(d / fname), np.clip(wave, -1, 1), task.sample_rate, subtype="PCM_16", format="WAV")
            if task.prediction_type == "multiclass":
                mapping[fname] = [task.vocabulary[int(lab)]]
            else:
                mapping[fname] = [task.vocabulary[i] for i in np.flatnonzero(lab)]
        (root / f"{split}.json").write_text(json.dumps(mapping, indent=4) + "\n")
    return root


def to_kfold(task: HearTask, nfolds: int = 5, seed: int = 0) -> HearTask:
    """The same clips regrouped into nfolds folds (split_mode new_split_kfold), as
    hear-preprocess does for tasks without a predefined split."""
    if nfolds < 2:
        raise ValueError(f"nfolds must be >= 2, got {nfolds}")
    files = [f for s in task.splits.values() for f in s.files]
    waves = np.concatenate([s.waves for s in task.splits.values()])
    labels = np.concatenate([s.labels for s in task.splits.values()])
    order = np.random.default_rng(seed).permutation(len(files))
    folds = {}
    for k in range(nfolds):
        idx = order[k::nfolds]
        folds[f"fold{k:02d}"] = Split([files[i] for i in idx], waves[idx], labels[idx])
    meta = dict(task.metadata, split_mode="new_split_kfold", nfolds=nfolds)
    return HearTask(task.name, meta, list(task.vocabulary), folds, task.sample_rate, None, {})
