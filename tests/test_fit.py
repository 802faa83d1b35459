"""Tests of audiorank.fit and audiorank.laws: recovery, gradients, bootstrap coverage and failed
refits, the Chinchilla replication, model comparison, extrapolation by whole x levels with
prediction intervals, input checking and a scale-invariance property."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from audiorank import fit as F
from audiorank import _optimize
from audiorank import laws
from audiorank.fit import (
    FORMS,
    Extrapolation,
    PowerLawFit,
    ScalingLawFit,
    fit_power_law,
    fit_scaling_law,
)

# Besiroglu et al.'s (2024) points read off Chinchilla's Figure 4; source in the README beside them
CHINCHILLA_CSV = (Path(__file__).resolve().parent / "data" / "chinchilla"
                  / "chinchilla_fig4_points.csv")

TRUE = {
    "power": {"a": 2.0, "b": -0.4},
    "saturating": {"c": 1.5, "a": 3.0, "b": 0.5},
    "rising": {"c": 0.9, "a": 0.5, "b": 0.3},
}


def law(form: str, p: dict[str, float], x: np.ndarray) -> np.ndarray:
    if form == "power":
        return p["a"] * x ** p["b"]
    if form == "saturating":
        return p["c"] + p["a"] * x ** (-p["b"])
    return p["c"] - p["a"] * x ** (-p["b"])


def noisy(form: str, n: int = 40, sigma: float = 0.01, seed: int = 0):
    x = np.logspace(0, 3, n)
    rng = np.random.default_rng(seed)
    return x, law(form, TRUE[form], x) * np.exp(sigma * rng.standard_normal(n))


# ------------------------------------------------------------------------------------------
# Recovery
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", FORMS)
def test_noiseless_recovery(form):
    x = np.logspace(0, 3, 25)
    f = fit_power_law(x, law(form, TRUE[form], x), form, n_bootstrap=0)
    assert list(f.params_) == list(TRUE[form])
    for k, v in TRUE[form].items():
        assert f.params_[k] == pytest.approx(v, rel=1e-6), k
    assert f.n_points_ == 25 and 1 <= f.n_converged_ <= f.n_starts_
    assert f.n_starts_ == min(f.n_refine, len(f.opt_.ranked_starts))  # power: 8 grid slopes
    assert f.loss_ == pytest.approx(0.0, abs=1e-12)
    assert f.r2_ == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(f.predict(x), law(form, TRUE[form], x), rtol=1e-6)


@pytest.mark.parametrize("form", FORMS)
def test_noisy_recovery(form):
    # 40 points over 3 decades, 1% log-normal noise; tolerances from 20 seeds' worst case x ~2.
    tol = {"power": (0.02, 0.02), "saturating": (0.05, 0.04, 0.1),
           "rising": (0.06, 0.07, 0.25)}[form]
    for seed in range(3):
        x, y = noisy(form, seed=seed)
        f = fit_power_law(x, y, form, n_bootstrap=0)
        for (k, v), t in zip(TRUE[form].items(), tol):
            assert f.params_[k] == pytest.approx(v, rel=t), (seed, k, f.params_)
        assert f.r2_ > 0.95
        if form == "rising":  # the constraint c > a·x^(−b) holds on the data by construction
            assert f.params_["c"] > f.params_["a"] * x.min() ** (-f.params_["b"])
            assert np.all(f.predict(x) > 0)


def test_scaling_law_noiseless_recovery():
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    Ns, Ds = np.meshgrid(np.logspace(7, 10, 7), np.logspace(9, 12, 7))
    N, D = Ns.ravel(), Ds.ravel()
    y = true["E"] + true["A"] / N ** true["alpha"] + true["B"] / D ** true["beta"]
    f = fit_scaling_law(N, D, y, n_refine=30)
    assert list(f.params_) == ["E", "A", "B", "alpha", "beta"]
    for k, v in true.items():
        assert f.params_[k] == pytest.approx(v, rel=1e-4), (k, f.params_)
    np.testing.assert_allclose(f.predict(N, D), y, rtol=1e-7)


# ------------------------------------------------------------------------------------------
# Analytic gradients vs finite differences
# ------------------------------------------------------------------------------------------
def _models_and_data():
    x, y = noisy("saturating", n=30, sigma=0.05, seed=3)
    t = np.log(x) - np.log(x).mean()
    for form in FORMS:
        yield form, laws.LAWS[form](float(np.log(x).mean()), float(t.min())), (t,), np.log(y)
    rng = np.random.default_rng(1)
    N, D = 10 ** rng.uniform(7, 10, 40), 10 ** rng.uniform(9, 12, 40)
    yy = 1.8 + 400 / N**0.34 + 1500 / D**0.28
    yield "chinchilla", laws.ChinchillaLaw(), (np.log(N), np.log(D)), np.log(yy)


@pytest.mark.parametrize("delta", [1e-3, 10.0])  # linear and quadratic branches of the Huber loss
def test_analytic_gradients(delta):
    rng = np.random.default_rng(0)
    for name, model, X, logy in _models_and_data():
        scale = {"power": [1, 0.5], "saturating": [1, 1, 0.3], "rising": [0.3, 1, 0.3],
                 "chinchilla": [0.3, 2, 2, 0.1, 0.1]}[name]
        center = {"power": [0.5, -0.4], "saturating": [0.4, 1.0, 0.5], "rising": [0.2, 0.0, 0.4],
                  "chinchilla": [0.5, 6.0, 7.0, 0.35, 0.3]}[name]
        w = rng.integers(0, 3, logy.size).astype(float)
        for weights in (None, w):
            for _ in range(5):
                theta = np.array(center) + np.array(scale) * rng.uniform(-1, 1, len(scale))
                args = (model, X, logy, delta, weights)
                fun = lambda th: _optimize._objective(th, *args)[0]  # noqa: E731
                jac = lambda th: _optimize._objective(th, *args)[1]  # noqa: E731
                g = jac(theta)
                fd = optimize.approx_fprime(theta, fun, 1e-7)
                err = optimize.check_grad(fun, jac, theta, epsilon=1e-7)
                assert err <= 1e-4 * max(1.0, np.linalg.norm(g)), (name, theta, g, fd)
                # the Jacobian of log ŷ itself, per point
                L, J = model.log_pred(theta, X)
                np.testing.assert_allclose(L, model.log_pred_batch(theta[None], X)[0], rtol=1e-12)
                for j in range(theta.size):
                    e = np.zeros_like(theta)
                    e[j] = 1e-6
                    Lp, _ = model.log_pred(theta + e, X)
                    Lm, _ = model.log_pred(theta - e, X)
                    np.testing.assert_allclose(J[:, j], (Lp - Lm) / 2e-6, rtol=1e-5, atol=1e-7)


def test_huber_definition():
    r = np.array([-1.0, -1e-4, 0.0, 2e-4, 3.0])
    h, dh = F.huber(r, 1e-3)
    np.testing.assert_allclose(h, [1e-3 * (1 - 5e-4), 0.5e-8, 0.0, 2e-8, 1e-3 * (3 - 5e-4)])
    np.testing.assert_allclose(dh, [-1e-3, -1e-4, 0.0, 2e-4, 1e-3])


# ------------------------------------------------------------------------------------------
# Bootstrap
# ------------------------------------------------------------------------------------------
COVERAGE = {  # true law, x design; 30 points, 2% log-normal noise
    "power": ({"a": 2.0, "b": -0.4}, np.logspace(0, 3, 30)),
    "saturating": ({"c": 1.8, "a": 400.0, "b": 0.35}, np.logspace(6, 9, 30)),  # Chinchilla-like
    "rising": ({"c": 0.9, "a": 0.5, "b": 0.3}, np.logspace(0, 3, 30)),
}


@pytest.mark.study
@pytest.mark.parametrize("form", FORMS)
def test_bootstrap_coverage(form):
    """The 95% percentile interval of every parameter covers the truth in >= 90 of 100 trials.

    150 resamples a trial, each refit from the full-data optimum and the 2 best grid points.
    """
    true, x = COVERAGE[form]
    hits, failed, t0 = dict.fromkeys(true, 0), 0, time.perf_counter()
    for seed in range(100):
        y = law(form, true, x) * np.exp(0.02 * np.random.default_rng(seed).standard_normal(x.size))
        f = PowerLawFit(form).fit(x, y).bootstrap(n_resamples=150, seed=seed)
        failed += f.n_failed_
        for k, v in true.items():
            hits[k] += f.ci_[k][0] <= v <= f.ci_[k][1]
    print(f"\n{form}: coverage of the 95% intervals {hits} /100, {failed} failed refits of "
          f"15000 ({time.perf_counter() - t0:.0f} s)")
    assert min(hits.values()) >= 90, hits


@pytest.mark.study
def test_scaling_law_bootstrap_coverage():
    """fit_scaling_law's 95% intervals cover the true E, alpha, beta in >= 90 of 100 trials.

    A 6×6 grid of N ∈ [1e7, 1e10], D ∈ [1e9, 1e12], 2% log-normal noise; 100 resamples a trial
    (each refit from the full-data optimum and the best grid point of the resample) — a refit of
    the five-parameter law costs ~20 ms a start, so more would make this test take many minutes.
    """
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    Ns, Ds = (g.ravel() for g in np.meshgrid(np.logspace(7, 10, 6), np.logspace(9, 12, 6)))
    mean = true["E"] + true["A"] / Ns ** true["alpha"] + true["B"] / Ds ** true["beta"]
    hits, failed, t0 = dict.fromkeys(true, 0), 0, time.perf_counter()
    for seed in range(100):
        y = mean * np.exp(0.02 * np.random.default_rng(seed).standard_normal(mean.size))
        f = fit_scaling_law(Ns, Ds, y, n_refine=20).bootstrap(n_resamples=100, seed=seed,
                                                               n_starts=2)
        failed += f.n_failed_
        for k, v in true.items():
            hits[k] += f.ci_[k][0] <= v <= f.ci_[k][1]
    print(f"\nscaling law: coverage of the 95% intervals {hits} /100, {failed} failed refits of "
          f"10000 ({time.perf_counter() - t0:.0f} s)")
    assert min(hits[k] for k in ("E", "alpha", "beta")) >= 90, hits


def test_bootstrap_seeded_and_least_squares_reference():
    # with a Huber threshold far above every residual the fit is least squares: point estimate
    # = scipy's linregress, and the case bootstrap's interval ≈ the classical t interval
    x, y = noisy("power", n=40, sigma=0.05, seed=5)
    f1 = fit_power_law(x, y, delta=10.0, n_bootstrap=300, seed=7)
    ref = stats.linregress(np.log(x), np.log(y))
    assert f1.params_["b"] == pytest.approx(ref.slope, abs=1e-7)
    assert f1.params_["a"] == pytest.approx(np.exp(ref.intercept), rel=1e-6)
    half = stats.t.ppf(0.975, x.size - 2) * ref.stderr
    lo, hi = f1.ci_["b"]
    assert (hi - lo) / (2 * half) == pytest.approx(1.0, abs=0.2)
    assert lo < ref.slope < hi and f1.n_failed_ == 0
    assert f1.bootstrap_.samples.shape == (300, 2)
    # seeded: the same seed gives the same intervals, another seed others
    x, y = noisy("saturating", n=30, sigma=0.02, seed=5)
    ci = [PowerLawFit("saturating").fit(x, y).bootstrap(60, seed=s).ci_ for s in (7, 7, 8)]
    assert ci[0] == ci[1] and ci[0] != ci[2]
    # BCa on request; its interval still brackets the estimate
    f = fit_power_law(x, y, "saturating", n_bootstrap=100, seed=7, ci_method="bca")
    assert f.bootstrap_.jackknife.shape == (30, 3)
    for k, (lo, hi) in f.ci_.items():
        assert lo < f.params_[k] < hi, k
    with pytest.raises(ValueError, match="valid: bca, percentile"):
        f.bootstrap(n_resamples=10, method="student")
    with pytest.raises(ValueError, match="n_starts >= 1"):
        f.bootstrap(n_resamples=10, n_starts=0)


def test_bootstrap_counts_failed_refits():
    # 2 x levels, 2 points each: a resample fails iff it draws one level only, p = 2·(1/2)^4
    x, y = np.array([1.0, 1.0, 10.0, 10.0]), np.array([2.0, 2.1, 1.0, 1.05])
    f = PowerLawFit("power").fit(x, y)
    with pytest.warns(RuntimeWarning, match=r"bootstrap refits failed"):
        f.bootstrap(n_resamples=400, seed=3)
    expected, sd = 400 / 8, np.sqrt(400 * (1 / 8) * (7 / 8))
    assert abs(f.n_failed_ - expected) < 4 * sd, f.n_failed_
    assert f.bootstrap_.samples.shape == (400 - f.n_failed_, 2)  # kept: all the others
    assert f"n_failed={f.n_failed_}/400" in repr(f)
    assert f"400 resamples, {f.n_failed_} failed, intervals from {400 - f.n_failed_}" in f.summary()
    # the same count, drawn independently: resamples that miss a level
    rng = np.random.default_rng(3)
    misses = sum(np.unique(x[rng.integers(0, 4, 4)]).size < 2 for _ in range(400))
    assert f.n_failed_ == misses


@pytest.mark.parametrize("form", ["saturating", "rising"])
def test_bootstrap_refits_reach_the_resample_optimum(form):
    # each refit (the full-data optimum + 2 grid starts ranked on the resample) reaches the loss
    # of an exhaustive refit from every point of the grid with the same case weights
    x, y = noisy(form, n=30, sigma=0.05, seed=2)
    f = PowerLawFit(form).fit(x, y).bootstrap(n_resamples=4, seed=11)
    assert f.n_failed_ == 0
    rng = np.random.default_rng(11)
    for theta in f.bootstrap_.samples:
        w = np.bincount(rng.integers(0, x.size, x.size), minlength=x.size).astype(float)
        grid = f.opt_.ranked_starts
        full = F._minimize_huber(f.model_, f.X_, f.logy_, grid, delta=f.delta,
                                 n_refine=len(grid), weights=w)
        got = _optimize._objective(theta, f.model_, f.X_, f.logy_, f.delta, w)[0] * f.delta
        assert got <= full.loss * (1 + 1e-6) + 1e-12, (got, full.loss)


def test_unfitted_and_sklearn_style():
    f = PowerLawFit("saturating", delta=1e-2, n_refine=3)
    assert not hasattr(f, "params_") and not hasattr(f, "params")
    with pytest.raises(RuntimeError, match="not fitted"):
        f.predict([1.0])
    assert repr(f) == "PowerLawFit(form='saturating')"
    x, y = noisy("saturating")
    assert f.fit(x, y) is f
    assert f.ci_ is None and f.n_failed_ is None
    assert f.params is f.params_  # DESIGN.md's name, a read-only alias
    with pytest.raises(AttributeError):
        f.params = {}
    assert set(f.start_) == {"c", "a", "b"} and 0 <= f.start_rank_ < f.n_starts_ == 3
    clone = f._clone()
    assert (clone.form, clone.delta, clone.n_refine) == ("saturating", 1e-2, 3)
    assert not hasattr(clone, "params_")
    assert repr(f).startswith(f"PowerLawFit(form='saturating', c={f.params_['c']:.4g}, ")
    assert f"c = {f.params_['c']:.6g}" in f.summary() and "CI" not in f.summary()
    s = ScalingLawFit(n_refine=7)
    assert repr(s) == "ScalingLawFit()" and s._clone().n_refine == 7


# ------------------------------------------------------------------------------------------
# Chinchilla replication (Besiroglu et al. 2024, data in tests/data/chinchilla)
# ------------------------------------------------------------------------------------------
def _chinchilla():
    df = pd.read_csv(CHINCHILLA_CSV)
    df = df.sort_values("loss").iloc[:-5]  # the 5 highest-loss runs removed, as Epoch did
    N = df["Model Size"].to_numpy(float)
    return N, df["Training FLOP"].to_numpy(float) / (6 * N), df["loss"].to_numpy(float)


def test_chinchilla_replication():
    N, D, y = _chinchilla()
    assert N.size == 240
    t0 = time.perf_counter()
    f = fit_scaling_law(N, D, y)  # Epoch's 4 500-point grid, L-BFGS-B from the best 200
    p = f.params_
    print(f"\nChinchilla fit ({time.perf_counter() - t0:.1f} s, {f.n_converged_}/{f.n_starts_} "
          f"starts converged): E={p['E']:.4f} A={p['A']:.1f} B={p['B']:.1f} "
          f"alpha={p['alpha']:.4f} beta={p['beta']:.4f}")
    assert p["E"] == pytest.approx(1.82, abs=0.02)
    assert p["alpha"] == pytest.approx(0.348, abs=0.01)
    assert p["beta"] == pytest.approx(0.366, abs=0.015)
    # fewer starts reach the same optimum: the grid's best few dozen suffice on these data
    g = fit_scaling_law(N, D, y, n_refine=40)
    assert g.loss_ == pytest.approx(f.loss_, rel=1e-7)
    corr = f.correlations_
    assert corr["N"]["spearman"] == pytest.approx(tuple(stats.spearmanr(N, y)))
    assert corr["D"]["kendall"] == pytest.approx(tuple(stats.kendalltau(D, y)))


@pytest.mark.slow
def test_chinchilla_bootstrap_intervals():
    """Our 95% intervals match Epoch's published ones (bootstrap of the same fit)."""
    N, D, y = _chinchilla()
    t0 = time.perf_counter()
    f = fit_scaling_law(N, D, y, n_refine=40, n_bootstrap=200, seed=0)
    print(f"\n{f.summary()}\n({time.perf_counter() - t0:.0f} s)")
    published = {"alpha": (0.317, 0.373), "beta": (0.331, 0.415), "E": (1.769, 1.871)}
    for k, (lo, hi) in published.items():
        assert f.ci_[k][0] == pytest.approx(lo, abs=0.025), (k, f.ci_[k])
        assert f.ci_[k][1] == pytest.approx(hi, abs=0.025), (k, f.ci_[k])
    assert f.n_failed_ == 0


# ------------------------------------------------------------------------------------------
# Model comparison and extrapolation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_aic_prefers_true_form(seed):
    for true_form in ("saturating", "rising"):
        x, y = noisy(true_form, sigma=0.02, seed=seed)
        aic = {form: PowerLawFit(form).fit(x, y).aic_ for form in FORMS}
        assert min(aic, key=aic.get) == true_form, aic
    # a pure power law is nested in the saturating law (c → 0): AIC may tie, BIC must prefer it
    x, y = noisy("power", sigma=0.02, seed=seed)
    fits = {form: PowerLawFit(form).fit(x, y) for form in FORMS}
    assert fits["power"].aic_ <= min(f.aic_ for f in fits.values()) + 2.0
    assert min(fits, key=lambda k: fits[k].bic_) == "power", {k: f.bic_ for k, f in fits.items()}


def replicated(form, seed, levels=8, reps=4, sigma=0.02):
    """``reps`` noisy runs (seeds) at each of ``levels`` x values, in shuffled order."""
    rng = np.random.default_rng(seed)
    x = rng.permutation(np.repeat(np.logspace(0, 3, levels), reps))
    return x, law(form, TRUE[form], x) * np.exp(sigma * rng.standard_normal(x.size))


def test_extrapolate_holds_out_whole_levels():
    x, y = replicated("saturating", seed=0)
    f = PowerLawFit("saturating").fit(x, y)
    ex = f.extrapolate(n_levels=2, n_bootstrap=100, seed=1)
    assert isinstance(ex, Extrapolation)
    top = np.logspace(0, 3, 8)[-2:]
    np.testing.assert_allclose(ex.levels, top)
    assert ex.n_holdout == 8 and ex.n_train == 24  # all 4 replicates of each held-out level
    np.testing.assert_array_equal(np.sort(ex.x), np.sort(x[x >= top[0]]))
    np.testing.assert_array_equal(np.sort(ex.y_true), np.sort(y[x >= top[0]]))
    # the refit is the fit of the kept points alone
    kept = PowerLawFit("saturating").fit(x[x < top[0]], y[x < top[0]])
    assert ex.params == kept.params_
    np.testing.assert_allclose(ex.y_pred, kept.predict(ex.x))
    np.testing.assert_allclose(ex.rel_error, (ex.y_pred - ex.y_true) / ex.y_true)
    assert np.all(ex.pi_low < ex.y_pred) and np.all(ex.y_pred < ex.pi_high)
    np.testing.assert_array_equal(ex.inside, (ex.pi_low <= ex.y_true) & (ex.y_true <= ex.pi_high))
    assert ex.fraction_inside == np.mean(ex.inside) and ex.n_failed == 0
    # the interval carries the noise of a new run: wider than ±2% of ŷ at the held-out levels
    assert np.all(ex.pi_high / ex.pi_low > np.exp(2 * 1.96 * 0.02) * 0.8)
    # misspecified: a pure power law fitted to saturating data overshoots the floor, and its
    # prediction intervals miss most held-out runs
    wrong = PowerLawFit("power").fit(x, y).extrapolate(n_levels=2, n_bootstrap=100, seed=1)
    assert wrong.mean_abs_rel_error > 5 * ex.mean_abs_rel_error
    assert wrong.fraction_inside < 0.5
    with pytest.raises(ValueError, match=r"n_levels must be in \[1, 7\]"):
        f.extrapolate(n_levels=8)
    with pytest.raises(ValueError, match="n_levels=6 leaves 8 points on 2 x levels"):
        f.extrapolate(n_levels=6)


@pytest.mark.study
def test_extrapolation_interval_coverage():
    """On a well-specified law the 95% prediction intervals cover >= 90% of held-out runs."""
    inside, n, t0 = 0, 0, time.perf_counter()
    for seed in range(40):
        x, y = replicated("saturating", seed=seed, levels=10, reps=3)
        ex = PowerLawFit("saturating").fit(x, y).extrapolate(1, n_bootstrap=100, seed=seed)
        assert ex.n_holdout == 3
        inside, n = inside + int(np.sum(ex.inside)), n + ex.n_holdout
    print(f"\nheld-out runs inside their 95% prediction interval: {inside}/{n} "
          f"({time.perf_counter() - t0:.0f} s)")
    assert inside >= 0.9 * n


def test_scaling_law_extrapolate():
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    Ns, Ds = (g.ravel() for g in np.meshgrid(np.logspace(7, 10, 5), np.logspace(9, 12, 5)))
    N, D = np.tile(Ns, 2), np.tile(Ds, 2)  # two seeds per (N, D)
    rng = np.random.default_rng(2)
    y = (true["E"] + true["A"] / N ** true["alpha"] + true["B"] / D ** true["beta"]) * np.exp(
        0.005 * rng.standard_normal(N.size))
    f = fit_scaling_law(N, D, y, n_refine=20)
    ex = f.extrapolate(n_levels=3, n_bootstrap=30, seed=0, n_starts=2)
    C = N * D
    top = np.unique(C)[-3:]
    assert ex.by == "compute" and ex.x.shape == (ex.n_holdout, 2)
    assert ex.n_holdout == int(np.sum(C >= top[0])) and ex.n_holdout % 2 == 0
    np.testing.assert_allclose(np.unique(np.prod(ex.x, axis=1)), top)
    assert ex.max_abs_rel_error < 0.05 and ex.fraction_inside >= 0.5
    exN = f.extrapolate(n_levels=1, by="N", n_bootstrap=30, seed=0, n_starts=2)
    assert exN.n_holdout == 10 and np.all(exN.x[:, 0] == N.max())
# ------------------------------------------------------------------------------------------
# Correlations, goodness of fit
# ------------------------------------------------------------------------------------------
def test_correlations_and_information_criteria():
    x, y = noisy("power", sigma=0.05, seed=1)
    f = fit_power_law(x, y, n_bootstrap=0)
    c = f.correlations_
    r, p = stats.pearsonr(np.log(x), np.log(y))
    assert c["pearson_log"] == pytest.approx((r, p))
    assert c["spearman"][0] == pytest.approx(stats.spearmanr(x, y)[0])
    assert c["kendall"][0] == pytest.approx(stats.kendalltau(x, y)[0])
    assert c["spearman"][0] < -0.9 and c["kendall"][1] < 1e-6
    res = np.log(f.predict(x)) - np.log(y)
    n = x.size
    ll = -0.5 * n * (np.log(2 * np.pi * np.mean(res**2)) + 1)
    assert f.aic_ == pytest.approx(2 * 2 - 2 * ll)
    assert f.bic_ == pytest.approx(2 * np.log(n) - 2 * ll)
    tss = np.sum((np.log(y) - np.log(y).mean()) ** 2)
    assert f.r2_ == pytest.approx(1 - np.sum(res**2) / tss)


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "x, y, form, fragment",
    [
        ([1, 2, np.nan], [1, 2, 3], "power", "NaN or Inf"),
        ([1, 2, 3], [1, np.inf, 3], "power", "NaN or Inf"),
        ([0, 2, 3], [1, 2, 3], "power", "x must be positive"),
        ([1, 2, 3], [1, -2, 3], "saturating", "y must be positive"),
        ([1, 2], [1, 2], "saturating", "3 parameters but only 2 points"),
        ([1, 1, 2, 2], [1, 2, 3, 4], "saturating", "at least 3 distinct x values, got 2"),
        ([1, 2, 3], [1, 2], "power", "mismatched lengths"),
        ([], [], "power", "x is empty"),
        ([[1, 2], [3, 4]], [1, 2], "power", "must be 1-D"),
        ([1, 2, 3], [1, 2, 3], "exponential", "valid forms: power, saturating, rising"),
    ],
)
def test_bad_input(x, y, form, fragment):
    with pytest.raises(ValueError, match=fragment):
        fit_power_law(x, y, form, n_bootstrap=0)


def test_bad_input_scaling_law():
    N, D, y = np.logspace(7, 9, 6), np.logspace(9, 11, 6), np.linspace(3, 2, 6)
    with pytest.raises(ValueError, match="D contains NaN"):
        fit_scaling_law(N, np.r_[D[:-1], np.nan], y)
    with pytest.raises(ValueError, match="N must be positive"):
        fit_scaling_law(-N, D, y)
    with pytest.raises(ValueError, match="5 parameters but only 4"):
        fit_scaling_law(N[:4], D[:4], y[:4])
    with pytest.raises(ValueError, match="mismatched lengths"):
        fit_scaling_law(N, D[:5], y)
    with pytest.raises(ValueError, match="distinct values of N"):
        fit_scaling_law(np.full(6, 1e8), D, y)
    with pytest.raises(ValueError, match="valid: compute, N"):
        fit_scaling_law(N, D, y, n_refine=2).extrapolate(2, by="C")


def test_no_converged_start_raises():
    x, y = noisy("saturating")
    with pytest.raises(RuntimeError, match="did not converge.*ITERATIONS"):
        PowerLawFit("saturating", maxiter=1).fit(x, y)


# ------------------------------------------------------------------------------------------
# Property: the exponent does not depend on the units of x
# ------------------------------------------------------------------------------------------
_X = np.logspace(0, 2, 20)
_Y = 3.0 * _X**-0.7 * np.exp(0.05 * np.random.default_rng(4).standard_normal(_X.size))
_FIT0 = fit_power_law(_X, _Y, n_bootstrap=0)
_A0, _B0 = _FIT0.params_["a"], _FIT0.params_["b"]


@settings(max_examples=25, deadline=None)
@given(k=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_exponent_invariant_to_rescaling_x(k):
    f = fit_power_law(k * _X, _Y, n_bootstrap=0)
    assert f.params_["b"] == pytest.approx(_B0, abs=1e-6)
    # a·(k·x)^b = a·k^b·x^b: the prefactor absorbs the units, a_k = a_1·k^(−b)
    assert f.params_["a"] == pytest.approx(_A0 * k ** (-_B0), rel=1e-5)
