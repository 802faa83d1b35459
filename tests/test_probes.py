"""Tests for audiorank.probes: patch-level vs pooled signal, determinism, metrics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorank.probes import (
    DEFAULT_GRID,
    PROBES,
    AttentiveProbe,
    BinarizedPrototypicalProbe,
    LinearProbe,
    PrototypicalProbe,
    accuracy,
    average_precision,
    make_probe,
    mean_average_precision,
)

FAST = dict(max_epochs=3, batch_size=16, lr=1e-2, seed=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def patch_data(n: int, seed: int, T: int = 16, D: int = 32, C: int = 4, a: float = 5.0,
               p: float = 0.3):
    """Multilabel tokens: each active class adds a·u_c to ONE random token among T noise tokens.

    Mean pooling shrinks that signal by T while the noise shrinks by √T only, so the pooled
    problem is hard; the max cosine over tokens still sees it clearly."""
    rng = np.random.default_rng(seed)
    U = np.random.default_rng(123).standard_normal((C, D))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    X = rng.standard_normal((n, T, D)).astype(np.float32)
    Y = (rng.random((n, C)) < p).astype(np.int64)
    for i, c in zip(*np.nonzero(Y)):
        X[i, rng.integers(T)] += a * U[c]
    return X, Y


def pooled_data(n: int, seed: int, T: int = 4, D: int = 8, C: int = 3):
    """Multiclass tokens whose mean carries a well-separated class centre."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).standard_normal((C, D)) * 3.0
    y = rng.integers(C, size=n)
    X = rng.standard_normal((n, T, D)).astype(np.float32) + centres[y][:, None, :]
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def multilabel_scores():
    Xtr, Ytr = patch_data(300, seed=10)
    Xva, Yva = patch_data(150, seed=11)
    Xte, Yte = patch_data(300, seed=12)
    out = {}
    for name in ("linear", "attentive", "prototypical", "protobin"):  # attentive: reported only
        probe = make_probe(name, max_epochs=30, batch_size=64, lr=3e-2, seed=0)
        out[name] = probe.fit(Xtr, Ytr, Xva, Yva).score(Xte, Yte)
    return out


# ---------------------------------------------------------------------------------------------
# the claims on synthetic data


def test_prototypical_probes_beat_linear_on_patch_level_multilabel(multilabel_scores):
    s = multilabel_scores
    print("synthetic patch-token mAP:", {k: round(v, 3) for k, v in s.items()})
    # measured (seeded): linear ≈ 0.61, attentive ≈ 0.90, prototypical ≈ 0.98, protobin ≈ 0.89;
    # attentive is not asserted on: on this toy task it beats protobin (the paper finds otherwise)
    assert s["linear"] < 0.75
    assert s["prototypical"] > s["linear"] + 0.15
    assert s["protobin"] > s["linear"] + 0.15


def test_linear_probe_near_perfect_on_pooled_signal():
    Xtr, ytr = pooled_data(200, seed=0)
    Xte, yte = pooled_data(200, seed=1)
    probe = LinearProbe(max_epochs=20, batch_size=32, lr=1e-2, seed=0).fit(Xtr, ytr)
    assert probe.score(Xte, yte) >= 0.97
    assert probe.predict(Xte).shape == (200,)
    P = probe.predict_scores(Xte)
    assert P.shape == (200, 3) and np.allclose(P.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", PROBES)
def test_every_probe_runs_both_tasks(name):
    Xm, Ym = patch_data(40, seed=1, T=4, D=8, C=3)
    Xc, yc = pooled_data(40, seed=2, T=4, D=8)
    kw = dict(FAST, num_heads=2) if name == "attentive" else FAST
    p = make_probe(name, **kw).fit(Xm, Ym)
    assert p.task_ == "multilabel" and p.predict(Xm).shape == (40, 3)
    assert set(np.unique(p.predict(Xm))) <= {0, 1}
    S, logits = p.predict_scores(Xm), p.decision_function(Xm).astype(np.float64)
    np.testing.assert_allclose(S, 1 / (1 + np.exp(-logits)), rtol=1e-5, atol=1e-7)  # per-class sigmoid
    assert np.array_equal(p.predict(Xm), (logits > 0).astype(np.int64))
    p = make_probe(name, **kw).fit(torch.as_tensor(Xc), torch.as_tensor(yc))
    assert p.task_ == "multiclass" and p.n_classes_ == 3
    logits = p.decision_function(Xc).astype(np.float64)
    soft = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(p.predict_scores(Xc), soft / soft.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert p.score(Xc, yc) == np.mean(logits.argmax(1) == yc)  # accuracy of the argmax, independently


def test_two_dimensional_input_is_one_token():
    X, y = pooled_data(30, seed=3)
    p = LinearProbe(**FAST).fit(X.mean(1), y)
    assert p.predict_scores(X.mean(1)[:5]).shape == (5, 3)
    p = PrototypicalProbe(**FAST).fit(X[:, :1, :][:, 0], y)
    assert p.predict(X[:, 0]).shape == (30,)


# ---------------------------------------------------------------------------------------------
# determinism, estimator contract, model selection


@pytest.mark.parametrize("name", PROBES)
def test_same_seed_same_scores(name):
    X, Y = patch_data(40, seed=4, T=4, D=8, C=3)
    kw = dict(FAST, num_heads=2) if name == "attentive" else FAST
    a = make_probe(name, **kw).fit(X, Y, X, Y).predict_scores(X)
    b = make_probe(name, **kw).fit(X, Y, X, Y).predict_scores(X)
    assert np.array_equal(a, b)
    c = make_probe(name, **{**kw, "seed": 1}).fit(X, Y).predict_scores(X)
    assert not np.array_equal(a, c)


def test_global_rng_untouched():
    X, y = pooled_data(30, seed=5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    LinearProbe(**FAST).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_fit_returns_self_and_attributes_only_after_fit():
    X, y = pooled_data(30, seed=6)
    p = BinarizedPrototypicalProbe(**FAST)
    for attr in ("module_", "history_", "best_epoch_", "task_", "n_classes_", "lr_"):
        assert not hasattr(p, attr)
    assert p.fit(X, y) is p
    assert p.best_epoch_ == 3 and p.n_prototypes_ == 32
    assert len(p.history_["train_loss"]) == 3 and np.isnan(p.history_["valid_score"]).all()
    assert p.get_params()["lr"] == 1e-2 and "n_prototypes" in p.get_params()
    with pytest.raises(ValueError, match="unknown parameter"):
        p.set_params(foo=1)


def test_validation_keeps_best_epoch_and_grid():
    Xtr, ytr = pooled_data(60, seed=7)
    Xva, yva = pooled_data(40, seed=8)
    p = LinearProbe(max_epochs=6, batch_size=16, lr_grid=(1e-4, 3e-2), seed=0)
    p.fit(Xtr, ytr, Xva, yva)
    vs = p.history_["valid_score"]
    assert p.best_score_ == max(vs) and vs[p.best_epoch_ - 1] == max(vs)
    assert p.score(Xva, yva) == pytest.approx(p.best_score_)
    assert [r["lr"] for r in p.search_] == [1e-4, 3e-2]
    assert p.lr_ in (1e-4, 3e-2)
    assert p.best_score_ == max(r["valid_score"] for r in p.search_)
    p = LinearProbe(max_epochs=50, lr=1e-2, patience=2, seed=0).fit(Xtr, ytr, Xva, yva)
    assert len(p.history_["valid_score"]) < 50  # early stopping on a saturated valid accuracy


@pytest.mark.parametrize("name", ["linear", "prototypical"])
def test_standardisation_uses_train_statistics_only(name):
    """Pooled probes standardise the token mean, token probes every token: numpy's mean/std of train."""
    Xtr, ytr = pooled_data(50, seed=11)
    Xva, yva = pooled_data(20, seed=12)
    fits = [make_probe(name, **FAST).fit(Xtr, ytr, v, yva) for v in (Xva, Xva * 1e3 - 7.0)]
    flat = Xtr.astype(np.float64).mean(1) if name == "linear" else Xtr.astype(np.float64).reshape(-1, Xtr.shape[2])
    for p in fits:
        np.testing.assert_allclose(p.mean_.numpy(), flat.mean(0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(p.scale_.numpy(), flat.std(0), rtol=1e-6)


def test_default_grid_search_picks_the_first_best_valid_pair():
    Xtr, ytr = pooled_data(60, seed=13)
    Xva, yva = pooled_data(30, seed=14)
    assert set(DEFAULT_GRID) == set(PROBES)
    p = LinearProbe(max_epochs=3, batch_size=16, seed=0, **DEFAULT_GRID["linear"]).fit(Xtr, ytr, Xva, yva)
    grid = [(lr, wd) for lr in DEFAULT_GRID["linear"]["lr_grid"] for wd in DEFAULT_GRID["linear"]["weight_decay_grid"]]
    assert [(r["lr"], r["weight_decay"]) for r in p.search_] == grid
    valid = [r["valid_score"] for r in p.search_]
    assert (p.lr_, p.weight_decay_) == grid[int(np.argmax(valid))] and p.best_score_ == max(valid)
    # each grid point is an ordinary fit from the same seed: refit the winner alone, same valid score
    alone = LinearProbe(max_epochs=3, batch_size=16, seed=0, lr=p.lr_, weight_decay=p.weight_decay_)
    assert alone.fit(Xtr, ytr, Xva, yva).best_score_ == p.best_score_


# ---------------------------------------------------------------------------------------------
# metrics


def brute_force_ap(y, s):
    """Mean over positives i of (positives scoring ≥ s_i) / (samples scoring ≥ s_i)."""
    pos = [i for i in range(len(y)) if y[i]]
    if not pos:
        return float("nan")
    total = 0.0
    for i in pos:
        above = [j for j in range(len(y)) if s[j] >= s[i]]
        total += sum(1 for j in above if y[j]) / len(above)
    return total / len(pos)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(-3, 3)), min_size=1, max_size=25),
       st.booleans())
def test_average_precision_matches_brute_force(pairs, continuous):
    y = np.array([p[0] for p in pairs])
    s = np.array([float(p[1]) for p in pairs])  # small integer range: many ties
    if continuous:
        s = s + np.random.default_rng(len(pairs)).random(len(s))
    ref = brute_force_ap(y, s)
    got = average_precision(y, s)
    if np.isnan(ref):
        assert np.isnan(got)
    else:
        assert got == pytest.approx(ref, abs=1e-12)


def test_average_precision_known_values():
    assert average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0, 1], [1.0, 1.0]) == pytest.approx(0.5)  # a tie is one threshold
    assert average_precision([1, 1, 0], [3, 2, 1]) == 1.0


def test_mean_average_precision_skips_classes_without_positives():
    Y = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0]])
    S = np.array([[0.9, 0.1, 0.2], [0.1, 0.5, 0.8], [0.3, 0.2, 0.9]])
    expected = np.mean([1.0, brute_force_ap(Y[:, 2], S[:, 2])])
    assert mean_average_precision(Y, S) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(np.zeros((3, 2)), np.ones((3, 2)))


def test_accuracy_known_cases():
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    assert accuracy([2], [2]) == 1.0
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_input_is_rejected():
    X, y = pooled_data(20, seed=9)
    p = LinearProbe(**FAST)
    with pytest.raises(RuntimeError, match="not fitted"):
        p.predict(X)
    bad = X.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        p.fit(bad, y)
    bad[3, 1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        p.fit(bad, y)
    with pytest.raises(ValueError, match="samples but X has"):
        p.fit(X, y[:-1])
    with pytest.raises(ValueError, match="shape"):
        p.fit(X, y.reshape(20, 1, 1))
    with pytest.raises(ValueError, match="shape"):
        p.fit(X[0, 0], y[:1])
    with pytest.raises(ValueError, match="negative class index"):
        p.fit(X, np.r_[y[:-1], -1])
    with pytest.raises(ValueError, match="integer class indices"):
        p.fit(X, y + 0.5)
    with pytest.raises(ValueError, match="multi-hot"):
        p.fit(X, np.full((20, 3), 2))
    with pytest.raises(ValueError, match="task='multilabel'"):
        LinearProbe(task="multilabel", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="need X_valid"):
        LinearProbe(lr_grid=(1e-3, 1e-2), **{k: v for k, v in FAST.items() if k != "lr"}).fit(X, y)
    with pytest.raises(ValueError, match="both X_valid and y_valid"):
        p.fit(X, y, X)
    with pytest.raises(ValueError, match="max_epochs"):
        LinearProbe(max_epochs=0).fit(X, y)
    p.fit(X, y)
    with pytest.raises(ValueError, match="out of range"):
        p.score(X, np.r_[y[:-1], 3])
    with pytest.raises(ValueError, match="features per token"):
        p.predict(X[:, :, :4])
    with pytest.raises(ValueError, match="unknown probe"):
        make_probe("mlp")
    with pytest.raises(ValueError, match="out of range"):
        LinearProbe(n_classes=2, **FAST).fit(X, y)
    assert LinearProbe(n_classes=5, **FAST).fit(X, y).predict_scores(X).shape == (20, 5)
    with pytest.raises(ValueError, match="divisible"):
        AttentiveProbe(num_heads=3, **FAST).fit(X, y)
