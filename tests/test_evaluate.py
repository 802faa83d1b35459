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
    """Consistency of the protocol's JSON with what the protocol says (each line can fail)."""
    assert result["metric"] == metric
    assert result["layers"] == layers
    n_test = result["n_clips"]["test"]
    counts = result["rankme_n_samples_per_layer"]
    assert set(counts.values()) == {result["rankme_n_samples"]}  # the same clips for every layer
    assert set(result["rankme_frame_n_samples_per_layer"].values()) == {result["rankme_frame_n_samples"]}
    for layer in layers:
        assert result["rankme_capped"][layer] == (counts[layer] < result["rankme_dim"][layer])
    for probe, by_layer in result["scores"].items():
        assert set(by_layer) == set(layers) | {"best"}
        valid = result["valid_scores"][probe]
        first_argmax = layers[int(np.argmax([valid[n] for n in layers]))]
        assert result["best_layer"][probe] == first_argmax
        assert by_layer["best"] == by_layer[first_argmax]
        if metric == "accuracy":  # a fraction of the test clips, exactly
            assert all(abs(v * n_test - round(v * n_test)) < 1e-9 for v in by_layer.values())
        seeds = result["seed_scores"][probe]
        assert seeds["layer"] == first_argmax and seeds["test"][0] == by_layer["best"]
        assert seeds["mean"] == pytest.approx(np.mean(seeds["test"])) and seeds["std"] == pytest.approx(np.std(seeds["test"]))
        for layer in layers:
            hp = result["hyperparameters"][probe][layer]
            grid = result["protocol"]["probe_options"][probe]
            assert hp["lr"] in grid["lr_grid"] and hp["weight_decay"] in grid["weight_decay_grid"]


def test_evaluate_random_encoder_on_a_corpus_task(tasks):
    result = run("evaluate", "--task", tasks / "events", "--encoder", "random:vit-nano", "--probes", "linear",
                 "prototypical", "--layers", "0", "-1", "--max-epochs", 5, "--probe-seeds", 2, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["n_clips"] == {"train": 32, "valid": 12, "test": 12} and out["rankme_n_samples"] == 56
    check_result(out, ["0", str(build_encoder("vit-nano").n_layers)], "accuracy")


def test_evaluate_a_hear_api_module_on_a_multilabel_task(tasks):
    result = run("evaluate", "--task", tasks / "scenes", "--encoder", "hear:toy_hear_model", "--probes", "linear",
                 "protobin", "--max-epochs", 5, "--probe-seeds", 1, "--json", "--quiet", env={"PYTHONPATH": str(HEAR_TOY)})
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
                 "--layers", "-1", "--max-epochs", 3, "--probe-seeds", 1, "--lr-grid", 1e-2, "--json", "--quiet")
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
    out = evaluate("random:vit-nano", task, probes=["linear"], layers=[-1], probe_options={"max_epochs": 3},
                   n_probe_seeds=1)
    assert out["splits"]["test"] == "fold00" and sum(out["n_clips"].values()) == 42


def test_random_encoder_is_above_chance_on_every_multiclass_task(tmp_path):
    """The tasks are learnable from a random-initialisation encoder's embeddings (chance = 1/classes)."""
    for name in ("events", "instruments", "vowels"):
        task = make_task(name, 96, 32, 64, 1.0, seed=0, cache_dir=tmp_path)
        out = evaluate("random:vit-tiny", task, probes=["linear"], layers=[-1], probe_options={"max_epochs": 40},
                       n_probe_seeds=1)
        chance = 1.0 / task.n_labels
        assert out["scores"]["linear"]["best"] > 2.5 * chance, (name, out["scores"])
        assert out["scores"]["linear"]["best"] < 0.98, (name, out["scores"])  # not trivial either


# ---------------------------------------------------------------------------------------------
# the protocol, checked with a stub encoder (known features) and stub probes (known scores)

from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

import audiorank.evaluate as ev  # noqa: E402
from audiorank.audio.hear import HearTask, Split  # noqa: E402
from audiorank.probes import make_probe  # noqa: E402
from audiorank.rank import rankme  # noqa: E402


def toy_task(n=(24, 10, 10), samples=512, seed=0):
    """A 3-class task whose waves' first sample carries the class (linearly separable features)."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, count in zip(("train", "valid", "test"), n):
        y = np.arange(count) % 3
        waves = rng.standard_normal((count, samples)).astype(np.float32)
        waves[:, :8] += 3.0 * y[:, None]
        splits[name] = Split([f"{name}{i}.wav" for i in range(count)], waves, y)
    meta = {"prediction_type": "multiclass", "split_mode": "trainvaltest"}
    return HearTask("toy", meta, ["a", "b", "c"], splits, 16000)


def stub_embedder(shapes, scales=None):
    """Layer l: tokens = scales[l] · the first T·D samples of each wave, as (B, T, D)."""
    scales = scales or [1.0] * len(shapes)

    def embed_batch(waves):
        return [s * waves[:, :t * d].reshape(len(waves), t, d) for (t, d), s in zip(shapes, scales)]

    return ev.Embedder("stub", 16000, [str(i) for i in range(len(shapes))], embed_batch)


@pytest.fixture
def stub(monkeypatch):
    def use(shapes, scales=None):
        monkeypatch.setattr(ev, "load_embedder", lambda *a, **k: stub_embedder(shapes, scales))
    return use


def reference_rankme(Z):
    s = np.linalg.svd(np.asarray(Z, dtype=np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    return float(np.exp(-(p * np.log(p)).sum()))


class StubProbe:
    """Valid and test scores are known functions of the layer (read from the feature dimension)."""

    VALID = {4: 0.5, 5: 0.8, 6: 0.3, 7: 0.8}
    TEST = {4: 0.9, 5: 0.6, 6: 1.0, 7: 0.7}

    def __init__(self, name, **options):
        self.lr_, self.weight_decay_, self.best_epoch_ = options.get("lr", 1e-3), 0.0, 1

    def fit(self, X, y, Xv, yv):
        self.d = X.shape[-1]
        self.best_score_ = self.VALID[self.d]
        return self

    def score(self, X, y):
        return self.TEST[X.shape[-1]]


def test_best_layer_is_the_first_argmax_of_valid_and_reports_its_test_score(stub, monkeypatch):
    stub([(2, d) for d in (4, 5, 6, 7)])
    monkeypatch.setattr(ev, "make_probe", StubProbe)
    out = ev.evaluate("stub", toy_task(), probes=["linear", "protobin"], n_probe_seeds=2)
    for probe in ("linear", "protobin"):
        assert out["valid_scores"][probe] == {"0": 0.5, "1": 0.8, "2": 0.3, "3": 0.8}
        assert out["best_layer"][probe] == "1"  # 0.8 at layers 1 and 3: the first; not layer 2's best test
        assert out["scores"][probe]["best"] == 0.6
        assert out["seed_scores"][probe] == {"layer": "1", "seeds": [0, 1], "test": [0.6, 0.6], "valid": [0.8, 0.8],
                                             "mean": 0.6, "std": 0.0}


def test_probe_statistics_and_front_end_come_from_train_only(stub, monkeypatch):
    made = []

    def recording(name, **options):
        made.append(make_probe(name, **options))
        return made[-1]

    monkeypatch.setattr(ev, "make_probe", recording)
    task = toy_task()
    wild = replace(task, splits={k: replace(v, waves=v.waves * 1e3 + 50.0) if k != "train" else v
                                 for k, v in task.splits.items()})
    stub([(4, 8)])
    opts = dict(probes=["linear"], probe_options={"max_epochs": 2, "lr_grid": (1e-2,), "weight_decay_grid": (0.0,)},
                n_probe_seeds=1)
    ev.evaluate("stub", task, **opts)
    ev.evaluate("stub", wild, **opts)
    pooled = task.splits["train"].waves[:, :32].reshape(-1, 4, 8).astype(np.float64).mean(1)  # (N, D) train only
    for probe in made:
        np.testing.assert_allclose(probe.mean_.numpy(), pooled.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(probe.scale_.numpy(), pooled.std(0), rtol=1e-5)
    # the real front end: fitted on the train waves only, so it embeds train clips identically either way
    monkeypatch.undo()
    monkeypatch.setattr(ev, "make_probe", recording)
    seen = []

    def loader(spec, fit_waves=None, **kw):
        seen.append((fit_waves, real_load(spec, fit_waves=fit_waves, **kw)))
        return seen[-1][1]

    real_load = ev.load_embedder
    monkeypatch.setattr(ev, "load_embedder", loader)
    small = lambda t: replace(t, splits={k: replace(v, waves=np.tile(v.waves, 16)[:, :8000])  # noqa: E731
                                         for k, v in t.splits.items()})
    for t in (small(task), small(wild)):
        ev.evaluate("random:vit-nano", t, layers=[-1], **opts)
    probe_input = torch.from_numpy(small(task).splits["train"].waves[:4])
    for fit_waves, embedder in seen:
        assert np.array_equal(fit_waves, small(task).splits["train"].waves)
    a, b = (e.embed_batch(probe_input)[-1] for _, e in seen)
    assert torch.equal(a, b)


def test_rankme_uses_the_same_clips_and_frames_for_every_layer(stub):
    # layer 1 is layer 0 scaled (RankMe is scale-invariant): equal only on the same rows; layer 2 has fewer tokens
    stub([(4, 8), (4, 8), (2, 6)], scales=[1.0, 3.0, 1.0])
    task = toy_task()
    out = ev.evaluate("stub", task, probes=[], max_rank_samples=30)
    assert out["rankme_n_samples_per_layer"] == {"0": 30, "1": 30, "2": 30} and out["rankme_n_samples"] == 30
    assert out["rankme_frame_n_samples_per_layer"] == {"0": 30, "1": 30, "2": 30}
    assert out["rankme"]["0"] == pytest.approx(out["rankme"]["1"], rel=1e-6)
    assert out["rankme_frame"]["0"] == pytest.approx(out["rankme_frame"]["1"], rel=1e-6)
    # every clip (44 ≤ cap): against a float64 SVD of the clip means
    out = ev.evaluate("stub", task, probes=[])
    waves = np.concatenate([task.splits[s].waves for s in ("train", "valid", "test")])
    for layer, (t, d) in enumerate([(4, 8), (4, 8), (2, 6)]):
        clips = waves[:, :t * d].reshape(-1, t, d).mean(1)
        assert out["rankme"][str(layer)] == pytest.approx(reference_rankme(clips), rel=1e-5)
    assert out["rankme_frame_n_samples"] == 44 * 2  # N · T_min frames, the same for every layer


def test_rankme_below_the_dimension_is_flagged_and_warned(stub):
    stub([(2, 8), (2, 64)])
    with pytest.warns(ev.RankMeCappedWarning, match=r"layers \['1'\].*capped"):
        out = ev.evaluate("stub", toy_task(), probes=[])  # 44 clips, 88 frames
    assert out["rankme_capped"] == {"0": False, "1": True}
    assert out["rankme_frame_capped"] == {"0": False, "1": False}
    assert out["rankme"]["1"] <= 44


def test_selection_never_looks_at_test_labels(stub):
    stub([(4, 8), (2, 16)])
    task = toy_task()
    test = task.splits["test"]
    shuffled = replace(task, splits={**task.splits, "test": replace(test, labels=(test.labels + 1) % 3)})
    opts = dict(probes=["linear"], probe_options={"max_epochs": 4}, n_probe_seeds=2)
    a, b = ev.evaluate("stub", task, **opts), ev.evaluate("stub", shuffled, **opts)
    for key in ("valid_scores", "best_layer", "hyperparameters"):
        assert a[key] == b[key], key
    assert a["seed_scores"]["linear"]["valid"] == b["seed_scores"]["linear"]["valid"]
    assert a["scores"] != b["scores"]  # the test labels are used, to score only


def test_time_pooling_concatenates_a_square_patch_vits_frequency_rows():
    waves = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32)
    by_patch = ev.embed(ev.load_embedder("random:vit-pico-p16", fit_waves=waves, seed=2), waves)
    by_time = ev.embed(ev.load_embedder("random:vit-pico-p16", fit_waves=waves, seed=2, pooling="time"), waves)
    rows = 64 // 16  # frequency rows of 16-mel patches
    for patches, steps in zip(by_patch, by_time):
        nt = patches.shape[1] // rows  # patches are mel-band-major: row f holds tokens f·nt … f·nt + nt − 1
        expected = torch.cat([patches[:, f * nt:(f + 1) * nt] for f in range(rows)], dim=-1)
        assert steps.shape == (3, nt, rows * patches.shape[2])
        assert torch.equal(steps, expected)
    # a clip embedding (the mean over tokens) keeps which band a feature came from; the mean over patches does not
    assert torch.allclose(by_time[-1].mean(1).reshape(3, rows, -1).mean(1), by_patch[-1].mean(1), atol=1e-6)


@pytest.mark.parametrize("preset", ["vit-nano", "cnn-nano", "conformer-nano"])  # tokens are time steps already
def test_time_pooling_leaves_time_step_tokens_alone(preset):
    waves = np.random.default_rng(1).standard_normal((2, 16000)).astype(np.float32)
    a, b = (ev.embed(ev.load_embedder(f"random:{preset}", fit_waves=waves, seed=0, pooling=p), waves)
            for p in ("mean", "time"))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_unknown_pooling_is_refused_naming_it():
    with pytest.raises(ValueError, match="pooling must be one of .*'max'"):
        evaluate("random:vit-pico-p16", toy_task(), pooling="max")


def test_evaluate_records_the_pooling_and_scores_time_tokens(tasks):
    result = evaluate("random:vit-pico-p16", tasks / "events", probes=["linear"], pooling="time",
                      probe_options={"max_epochs": 3}, n_probe_seeds=1)
    assert result["protocol"]["pooling"] == "time"
    assert set(result["rankme_dim"].values()) == {4 * 32}  # 4 frequency rows of the 32-wide pico ViT
