"""`audiorank corpus`, `pretrain` and `evaluate` end to end, as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiorank.audio import make_task, to_kfold
from audiorank.evaluate import evaluate, task_splits
from audiorank.models import build_encoder

AUDIORANK = str(Path(sys.executable).with_name("audiorank"))
HEAR_TOY = Path(__file__).parent / "hear_toy"


def run(*args, env=None):
    result = subprocess.run([AUDIORANK, *map(str, args)], capture_output=True, text=True,
                            env={**os.environ, "CI": "1", **(env or {})})
    return result


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    result = run("corpus", "--out", out, "--tasks", "events", "scenes", "--n-train", 32, "--n-valid", 12,
                 "--n-test", 12, "--seed", 1, "--quiet",
                 env={"AUDIORANK_CACHE": str(out / "cache")})
    assert result.returncode == 0, result.stderr
    assert (out / "events" / "task_metadata.json").is_file() and (out / "corpus.json").is_file()
    return out


def check_result(result, layers, metric):
    assert result["metric"] == metric
    assert result["layers"] == layers
    for layer in layers:
        assert 1.0 <= result["rankme"][layer] <= result["rankme_n_samples"]
        assert np.isfinite(result["rankme_frame"][layer])
    for probe, by_layer in result["scores"].items():
        assert set(by_layer) == set(layers) | {"best"}
        assert all(0.0 <= v <= 1.0 for v in by_layer.values())
        assert by_layer["best"] == by_layer[result["best_layer"][probe]]


def test_evaluate_random_encoder_on_a_corpus_task(tasks):
    result = run("evaluate", "--task", tasks / "events", "--encoder", "random:vit-nano", "--probes", "linear",
                 "prototypical", "--layers", "0", "-1", "--max-epochs", 5, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["n_clips"] == {"train": 32, "valid": 12, "test": 12} and out["rankme_n_samples"] == 56
    check_result(out, ["0", str(build_encoder("vit-nano").n_layers)], "accuracy")


def test_evaluate_a_hear_api_module_on_a_multilabel_task(tasks):
    result = run("evaluate", "--task", tasks / "scenes", "--encoder", "hear:toy_hear_model", "--probes", "linear",
                 "protobin", "--max-epochs", 5, "--json", "--quiet", env={"PYTHONPATH": str(HEAR_TOY)})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    check_result(out, ["scene", "timestamp"], "mAP")
    # the scene embedding is the timestamp embeddings' mean: same clip-level RankMe
    assert out["rankme"]["scene"] == pytest.approx(out["rankme"]["timestamp"], rel=1e-6)


def test_pretrain_then_evaluate_its_checkpoint(tasks, tmp_path):
    result = run("pretrain", "--out", tmp_path, "--preset", "vit-nano", "--steps", 4, "--batch-size", 8,
                 "--clips", 16, "--warmup-steps", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "pretrain.json").read_text())
    assert summary["status"] == "ok" and summary["flops_per_step"] > 0 and len(summary["losses"]) == 4
    checkpoint = tmp_path / "step_0000004.pt"
    result = run("evaluate", "--task", tasks / "events", "--encoder", checkpoint, "--probes", "linear",
                 "--layers", "-1", "--max-epochs", 3, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    check_result(json.loads(result.stdout), [str(build_encoder("vit-nano").n_layers)], "accuracy")


@pytest.mark.parametrize("encoder, message", [
    ("random:no-such-preset", "unknown preset"),
    ("missing.pt", "expected a checkpoint file"),
    ("hear:no_such_module_anywhere", "cannot import module"),
])
def test_evaluate_bad_encoder_is_a_clear_error(tasks, encoder, message):
    result = run("evaluate", "--task", tasks / "events", "--encoder", encoder, "--quiet")
    assert result.returncode == 2 and message in result.stderr


def test_kfold_task_uses_fold0_for_test_and_fold1_for_selection(tmp_path):
    task = to_kfold(make_task("vowels", 30, 6, 6, 0.5, seed=2, cache_dir=tmp_path), nfolds=4, seed=0)
    assert task_splits(task) == ("fold02+fold03", "fold01", "fold00")
    out = evaluate("random:vit-nano", task, probes=["linear"], layers=[-1], probe_options={"max_epochs": 3})
    assert out["splits"]["test"] == "fold00" and sum(out["n_clips"].values()) == 42


def test_random_encoder_is_above_chance_on_every_multiclass_task(tmp_path):
    """The tasks are learnable from a random-initialisation encoder's embeddings (chance = 1/classes)."""
    for name in ("events", "instruments", "vowels"):
        task = make_task(name, 96, 32, 64, 1.0, seed=0, cache_dir=tmp_path)
        out = evaluate("random:vit-tiny", task, probes=["linear"], layers=[-1], probe_options={"max_epochs": 40})
        chance = 1.0 / task.n_labels
        assert out["scores"]["linear"]["best"] > 2.5 * chance, (name, out["scores"])
        assert out["scores"]["linear"]["best"] < 0.98, (name, out["scores"])  # not trivial either
