"""`audiorank` on the command line, end to end, as a user calls it."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from audiorank import rankme
from audiorank.synthetic import gaussian_embeddings, power_law_spectrum

AUDIORANK = str(Path(sys.executable).with_name("audiorank"))


def run(*args):
    return subprocess.run([AUDIORANK, *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def embeddings():
    return gaussian_embeddings(2000, power_law_spectrum(48, 1.0), seed=3)


def test_rank_of_npy_prints_the_library_value(tmp_path, embeddings):
    np.save(tmp_path / "z.npy", embeddings)
    result = run("rank", str(tmp_path / "z.npy"))
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == pytest.approx(rankme(embeddings), rel=1e-6)


def test_rank_json_for_layers_in_npz_and_pt(tmp_path, embeddings):
    layers = np.stack([embeddings, embeddings[:, :8].repeat(6, axis=1)])
    np.savez(tmp_path / "z.npz", layers=layers, other=np.zeros(3))
    torch.save({"layers": torch.from_numpy(layers)}, tmp_path / "z.pt")
    expected = rankme(layers)
    for path in ("z.npz", "z.pt"):
        result = run("rank", str(tmp_path / path), "--key", "layers", "--json")
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout)
        assert out["shape"] == [2, 2000, 48]
        np.testing.assert_allclose(out["rankme"], expected, rtol=1e-6)


def test_rank_options_are_passed_through(tmp_path, embeddings):
    shifted = embeddings + 5.0
    np.save(tmp_path / "z.npy", shifted)
    centered = json.loads(run("rank", str(tmp_path / "z.npy"), "--center", "--json").stdout)["rankme"]
    assert centered == pytest.approx(rankme(shifted, center=True), rel=1e-6)
    assert centered > 5 * rankme(shifted)  # a large common offset collapses the uncentered rank


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: np.save(p / "z.npy", np.full((10, 4), np.nan)), "NaN"),
        (lambda p: np.savez(p / "z.npz", a=np.ones((3, 3)), b=np.ones((3, 3))), "choose one with --key"),
        (lambda p: (p / "z.txt").write_text("1,2"), "expected .npy"),
    ],
)
def test_rank_bad_input_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path)
    target = next(iter(sorted(tmp_path.iterdir())), tmp_path / "missing.npy")
    result = run("rank", str(target))
    assert result.returncode == 2
    assert message in result.stderr


def test_book_only_needs_no_build():
    result = run("book", "--only", "rank_estimation")
    assert result.returncode != 0 and "--no-build" in result.stderr


def test_corpus_writes_the_soundfont_tasks_as_hear_folders(tmp_path):
    from audiorank.audio import read_hear_task

    env_cache = ["--n-train", "14", "--n-valid", "14", "--n-test", "14", "--seconds", "0.25", "--quiet"]
    result = run("corpus", "--out", str(tmp_path / "out"), "--tasks", "gm_family", "gm_pitch", *env_cache)
    assert result.returncode == 0, result.stderr
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["gm_family", "gm_pitch"]
    for name, classes in (("gm_family", 14), ("gm_pitch", 12)):
        task = read_hear_task(tmp_path / "out" / name)
        assert len(task.vocabulary) == classes and task.metadata["soundfont"]["file"] == "TimGM6mb.sf2"
        assert np.bincount(task.splits["train"].labels, minlength=classes).min() >= 1
    bad = run("corpus", "--out", str(tmp_path / "bad"), "--tasks", "gm_pitch", "--soundfont",
              str(tmp_path / "missing.sf2"), *env_cache)
    assert bad.returncode == 2 and "missing.sf2" in bad.stderr and "does not exist" in bad.stderr
