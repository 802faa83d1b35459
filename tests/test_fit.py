"""Tests of audiorank.fit: recovery, gradients, bootstrap coverage, the Chinchilla replication,
model comparison, extrapolation, input checking and a scale-invariance property."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from audiorank import fit as F
from audiorank.fit import (
    FORMS,
    Extrapolation,
    PowerLawFit,
    fit_power_law,
    fit_scaling_law,
)

CHINCHILLA_CSV = (
    Path(__file__).resolve().parents[2] / "shared" / "validation" / "chinchilla_fig4_points.csv"
)

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
    assert list(f.params) == list(TRUE[form])
    for k, v in TRUE[form].items():
        assert f.params[k] == pytest.approx(v, rel=1e-6), k
    assert all(isinstance(v, float) for v in f.params.values())
    assert f.converged and f.n_points == 25 and f.n_converged >= 1
    assert f.r2_log == pytest.approx(1.0, abs=1e-10)
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
            assert f.params[k] == pytest.approx(v, rel=t), (seed, k, f.params)
        assert f.r2_log > 0.95
        if form == "rising":  # the constraint c > a·x^(−b) holds on the data by construction
            assert f.params["c"] > f.params["a"] * x.min() ** (-f.params["b"])
            assert np.all(f.predict(x) > 0)


def test_scaling_law_noiseless_recovery():
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    Ns, Ds = np.meshgrid(np.logspace(7, 10, 7), np.logspace(9, 12, 7))
    N, D = Ns.ravel(), Ds.ravel()
    y = true["E"] + true["A"] / N ** true["alpha"] + true["B"] / D ** true["beta"]
    f = fit_scaling_law(N, D, y, n_refine=30)
    assert list(f.params) == ["E", "A", "B", "alpha", "beta"]
    for k, v in true.items():
        assert f.params[k] == pytest.approx(v, rel=1e-4), (k, f.params)
    np.testing.assert_allclose(f.predict(N, D), y, rtol=1e-7)


# ------------------------------------------------------------------------------------------
# Analytic gradients vs finite differences
# ------------------------------------------------------------------------------------------
def _models_and_data():
    x, y = noisy("saturating", n=30, sigma=0.05, seed=3)
    t = np.log(x) - np.log(x).mean()
    for form in FORMS:
        yield form, F._MODELS[form](float(np.log(x).mean()), float(t.min())), (t,), np.log(y)
    rng = np.random.default_rng(1)
    N, D = 10 ** rng.uniform(7, 10, 40), 10 ** rng.uniform(9, 12, 40)
    yy = 1.8 + 400 / N**0.34 + 1500 / D**0.28
    yield "chinchilla", F._ChinchillaModel(), (np.log(N), np.log(D)), np.log(yy)


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
                fun = lambda th: F._objective(th, *args)[0]  # noqa: E731
                jac = lambda th: F._objective(th, *args)[1]  # noqa: E731
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
@pytest.mark.slow
def test_bootstrap_coverage():
    """The true exponent lies in the 95% bootstrap interval in >= 90 of 100 seeded trials.

    Design: a Chinchilla-like saturating law y = 1.8 + 400·x^(−0.35), 30 points log-spaced over
    3 decades (1e6..1e9), 2% multiplicative log-normal noise; 150 resamples, warm-started refits.
    """
    x = np.logspace(6, 9, 30)
    c, a, b = 1.8, 400.0, 0.35
    hits = 0
    t0 = time.perf_counter()
    for seed in range(100):
        rng = np.random.default_rng(seed)
        y = (c + a * x ** (-b)) * np.exp(0.02 * rng.standard_normal(x.size))
        f = PowerLawFit("saturating").fit(x, y)
        f.bootstrap(n_resamples=150, seed=seed)
        lo, hi = f.ci["b"]
        hits += lo <= b <= hi
    print(f"\ncoverage of the true exponent by the 95% bootstrap interval: {hits}/100 "
          f"({time.perf_counter() - t0:.1f} s)")
    assert hits >= 90


def test_bootstrap_seeded_and_sane():
    x, y = noisy("saturating", n=30, sigma=0.02, seed=5)
    f1 = fit_power_law(x, y, "saturating", n_bootstrap=150, seed=7)
    f2 = fit_power_law(x, y, "saturating", n_bootstrap=150, seed=7)
    f3 = fit_power_law(x, y, "saturating", n_bootstrap=150, seed=8)
    assert f1.ci == f2.ci
    assert f1.ci != f3.ci
    assert set(f1.ci) == set(f1.params)
    for k, (lo, hi) in f1.ci.items():
        assert lo < f1.params[k] < hi, k
        assert isinstance(lo, float) and isinstance(hi, float)
    assert f1.bootstrap_.samples.shape[1] == 3
    # BCa on request
    f1.bootstrap(n_resamples=150, seed=7, method="bca")
    lo, hi = f1.ci["b"]
    assert lo < f1.params["b"] < hi
    with pytest.raises(ValueError, match="valid: bca, percentile"):
        f1.bootstrap(n_resamples=10, method="student")


def test_unfitted_and_sklearn_style():
    f = PowerLawFit("saturating", delta=1e-2, n_refine=3)
    assert f.form == "saturating" and f.delta == 1e-2 and f.n_refine == 3
    assert not hasattr(f, "params")
    with pytest.raises(RuntimeError, match="not fitted"):
        f.predict([1.0])
    x, y = noisy("saturating")
    assert f.fit(x, y) is f
    assert f.ci is None
    assert set(f.start) == {"c", "a", "b"}
    assert "saturating" in repr(f)


# ------------------------------------------------------------------------------------------
# Chinchilla replication
# ------------------------------------------------------------------------------------------
def test_chinchilla_replication():
    if not CHINCHILLA_CSV.exists():
        pytest.skip(f"validation data not found at {CHINCHILLA_CSV}")
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(CHINCHILLA_CSV)
    df = df.sort_values("loss").iloc[:-5]  # the 5 highest-loss runs removed, as Epoch did
    N = df["Model Size"].to_numpy(float)
    D = df["Training FLOP"].to_numpy(float) / (6 * N)
    y = df["loss"].to_numpy(float)
    t0 = time.perf_counter()
    f = fit_scaling_law(N, D, y)  # Epoch's 4 500-point grid, L-BFGS-B from the best 200
    p = f.params
    print(f"\nChinchilla fit ({time.perf_counter() - t0:.1f} s, {f.n_converged}/{f.n_starts} "
          f"starts converged): E={p['E']:.4f} A={p['A']:.1f} B={p['B']:.1f} "
          f"alpha={p['alpha']:.4f} beta={p['beta']:.4f}")
    assert p["E"] == pytest.approx(1.82, abs=0.02)
    assert p["alpha"] == pytest.approx(0.348, abs=0.01)
    assert p["beta"] == pytest.approx(0.366, abs=0.015)
    # fewer starts reach the same optimum: the grid's best few dozen suffice on these data
    g = fit_scaling_law(N, D, y, n_refine=40)
    assert g.loss == pytest.approx(f.loss, rel=1e-7)
    corr = f.correlations
    assert corr["N"]["spearman"][0] < 0 and corr["D"]["kendall"][1] < 1e-3


# ------------------------------------------------------------------------------------------
# Model comparison and extrapolation
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_aic_prefers_true_form(seed):
    for true_form in ("saturating", "rising"):
        x, y = noisy(true_form, sigma=0.02, seed=seed)
        aic = {form: PowerLawFit(form).fit(x, y).aic for form in FORMS}
        assert min(aic, key=aic.get) == true_form, aic
    # a pure power law is nested in the saturating law (c → 0): AIC may tie, BIC must prefer it
    x, y = noisy("power", sigma=0.02, seed=seed)
    fits = {form: PowerLawFit(form).fit(x, y) for form in FORMS}
    assert fits["power"].aic <= min(f.aic for f in fits.values()) + 2.0
    assert min(fits, key=lambda k: fits[k].bic) == "power", {k: f.bic for k, f in fits.items()}


def test_extrapolate():
    x = np.logspace(0, 3, 30)
    y = law("saturating", TRUE["saturating"], x)
    exact = PowerLawFit("saturating").fit(x, y).extrapolate(n_holdout=5)
    assert isinstance(exact, Extrapolation)
    assert exact.n_train == 25 and exact.n_holdout == 5
    np.testing.assert_array_equal(exact.x, x[-5:])
    assert exact.max_abs_rel_error < 1e-6
    # misspecified: a pure power law fitted to saturating data overshoots the floor
    wrong = PowerLawFit("power").fit(x, y).extrapolate(n_holdout=5)
    assert wrong.mean_abs_rel_error > 0.01
    assert wrong.mean_abs_rel_error > 1e3 * exact.mean_abs_rel_error
    with pytest.raises(ValueError, match="n_holdout"):
        PowerLawFit("saturating").fit(x, y).extrapolate(n_holdout=28)


def test_scaling_law_extrapolate():
    true = {"E": 1.7, "A": 400.0, "B": 1500.0, "alpha": 0.34, "beta": 0.28}
    rng = np.random.default_rng(2)
    N, D = 10 ** rng.uniform(7, 10, 60), 10 ** rng.uniform(9, 12, 60)
    y = true["E"] + true["A"] / N ** true["alpha"] + true["B"] / D ** true["beta"]
    f = fit_scaling_law(N, D, y, n_refine=20)
    ex = f.extrapolate(n_holdout=5)
    assert ex.by == "compute" and ex.x.shape == (5, 2)
    assert np.all(np.prod(ex.x, axis=1) >= np.sort(N * D)[-5] * (1 - 1e-12))
    assert ex.max_abs_rel_error < 1e-4
    assert f.extrapolate(n_holdout=5, by="N").max_abs_rel_error < 1e-4


# ------------------------------------------------------------------------------------------
# Correlations, goodness of fit
# ------------------------------------------------------------------------------------------
def test_correlations_and_information_criteria():
    x, y = noisy("power", sigma=0.05, seed=1)
    f = fit_power_law(x, y, n_bootstrap=0)
    c = f.correlations
    r, p = stats.pearsonr(np.log(x), np.log(y))
    assert c["pearson_log"] == pytest.approx((r, p))
    assert c["spearman"][0] == pytest.approx(stats.spearmanr(x, y)[0])
    assert c["kendall"][0] == pytest.approx(stats.kendalltau(x, y)[0])
    assert c["spearman"][0] < -0.9 and c["kendall"][1] < 1e-6
    res = np.log(f.predict(x)) - np.log(y)
    n = x.size
    ll = -0.5 * n * (np.log(2 * np.pi * np.mean(res**2)) + 1)
    assert f.aic == pytest.approx(2 * 2 - 2 * ll)
    assert f.bic == pytest.approx(2 * np.log(n) - 2 * ll)
    tss = np.sum((np.log(y) - np.log(y).mean()) ** 2)
    assert f.r2_log == pytest.approx(1 - np.sum(res**2) / tss)


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
_A0, _B0 = _FIT0.params["a"], _FIT0.params["b"]


@settings(max_examples=25, deadline=None)
@given(k=st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_exponent_invariant_to_rescaling_x(k):
    f = fit_power_law(k * _X, _Y, n_bootstrap=0)
    assert f.params["b"] == pytest.approx(_B0, abs=1e-6)
    # a·(k·x)^b = a·k^b·x^b: the prefactor absorbs the units, a_k = a_1·k^(−b)
    assert f.params["a"] == pytest.approx(_A0 * k ** (-_B0), rel=1e-5)
