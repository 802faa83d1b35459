"""The fitting machinery: Huber objective, multi-start optimiser, bootstrap, extrapolation and
model comparison; the laws themselves (power, saturating, rising, Chinchilla) are in
:mod:`audiorank.laws`, the optimiser routine in ``_optimize.py``. :func:`fit_power_law`
(``form=`` one of :data:`FORMS`) and :func:`fit_scaling_law` (y = E + A/N^α + B/D^β, Chinchilla
approach 3) return estimators in scikit-learn's style: hyper-parameters in ``__init__``, ``fit``
returns ``self``, learned values end in ``_`` (``params_``, ``ci_``, ``n_failed_``, ``r2_``,
``aic_``, ``bic_``, ...); ``.params`` is a read-only alias of ``params_``, the name of DESIGN.md's
contract.

Fitting: residuals in log space, r_i = log ŷ_i − log y_i (scaling-law noise is multiplicative);
loss Σ_i H_δ(r_i), the Huber loss with δ = 1e-3, so a few outlying runs cannot drag the fit
(Hoffmann et al.'s choice). The loss is evaluated on the law's whole grid of starts at once,
L-BFGS-B runs from the ``n_refine`` best, and the lowest loss among runs that *converged* is kept
(none: ``RuntimeError`` with the optimiser's message). The objective is divided by δ internally
(same minimiser; meaningful stopping tolerances whatever δ is); reported losses are the plain sum.

Uncertainty: ``bootstrap(n_resamples, seed)`` refits seeded case resamples, each from a small grid:
the full-data optimum plus the ``n_starts − 1`` grid points of lowest loss *on that resample* (a
resample's optimum may lie in another basin, and warm starts alone would understate the spread).
Refits that cannot be done (too few distinct levels drawn) or do not converge are counted in
``n_failed_`` (shown by ``repr`` and :meth:`~PowerLawFit.summary`; a warning above 5%); intervals
come from the others. Percentile intervals by default; ``method="bca"`` gives Efron's bias-corrected
accelerated ones, offered rather than preferred: with a tiny δ the fit is close to L1, for which the
jackknife's acceleration estimate is noisy. ``r2_`` is R² of log y; ``aic_``/``bic_`` use the
Gaussian likelihood of the log residuals at the ML variance, k = the law's parameter count.

Extrapolation, the honest test of a scaling law: ``extrapolate(n_levels)`` refits without the
``n_levels`` largest distinct x levels (scaling law: compute N·D, or N), every replicate of them
held out, and gives each held-out point a bootstrap prediction interval — the refit's bootstrap laws
plus a resampled residual of the kept levels inflated by √(n/(n−k)), so it carries parameter
uncertainty *and* the scatter of a new run — and says whether the point falls inside.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats

from ._optimize import _minimize_huber, _OptResult, _single_threaded_blas, huber
from .laws import FORMS, LAWS, ChinchillaLaw

__all__ = ["FORMS", "PowerLawFit", "ScalingLawFit", "Extrapolation", "fit_power_law",
           "fit_scaling_law", "huber"]

_CI_METHODS = ("bca", "percentile")
_WARN_FAILED = 0.05  # above this fraction of failed bootstrap refits, a RuntimeWarning


# ---- Input checks --------------------------------------------------------------------------------
def _positive_1d(**arrays: Any) -> list[np.ndarray]:
    """The named inputs as float64 arrays: 1-D, non-empty, finite, positive, of equal lengths."""
    out = []
    for name, v in arrays.items():
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {a.shape}")
        if a.size == 0:
            raise ValueError(f"{name} is empty")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} contains NaN or Inf")
        if np.any(a <= 0):
            raise ValueError(f"{name} must be positive (its logarithm is taken); "
                             f"min is {a.min():g}")
        out.append(a)
    if len({a.size for a in out}) > 1:
        raise ValueError(f"mismatched lengths: { {k: a.size for k, a in zip(arrays, out)} }")
    return out


def _check_options(delta: float, n_refine: int, level: float | None = None) -> None:
    if not (np.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a positive number, got {delta}")
    if int(n_refine) < 1:
        raise ValueError(f"n_refine must be >= 1, got {n_refine}")
    if level is not None and not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


# ---- Results -------------------------------------------------------------------------------------
@dataclass
class Extrapolation:
    """Outcome of ``extrapolate``: the refit on the kept levels, judged on the held-out ones.

    ``levels`` are the held-out values of the key (x, compute N·D or N), every replicate of each
    held out; ``x`` the held-out covariates (scaling law: an (n_holdout, 2) array of N, D);
    ``rel_error`` = (ŷ − y)/y; ``pi_low``/``pi_high`` the ``confidence`` prediction interval of
    each held-out y and ``inside`` whether y falls in it; ``params`` the refit's parameters;
    ``n_failed`` its failed bootstrap refits (of ``n_bootstrap``).
    """

    n_train: int
    n_holdout: int
    levels: np.ndarray
    x: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    rel_error: np.ndarray
    pi_low: np.ndarray
    pi_high: np.ndarray
    inside: np.ndarray
    params: dict[str, float]
    confidence: float
    n_bootstrap: int
    n_failed: int
    by: str = "x"

    @property
    def fraction_inside(self) -> float:
        """Fraction of held-out points inside their prediction interval."""
        return float(np.mean(self.inside))

    @property
    def mean_abs_rel_error(self) -> float:
        """Mean |ŷ − y|/y on the held-out points."""
        return float(np.mean(np.abs(self.rel_error)))

    @property
    def max_abs_rel_error(self) -> float:
        """Max |ŷ − y|/y on the held-out points."""
        return float(np.max(np.abs(self.rel_error)))


@dataclass
class _Bootstrap:
    samples: np.ndarray  # successful refits, internal parameters (n_resamples − n_failed, k)
    n_resamples: int
    n_failed: int
    method: str
    level: float
    seed: int | None
    n_starts: int
    jackknife: np.ndarray | None = field(default=None, repr=False)


class _HuberLawFit:
    """Everything the single-variable and the scaling-law fits share (not public)."""

    def __init__(self, *, delta: float = 1e-3, n_refine: int = 10, maxiter: int = 5000,
                 ftol: float = 1e-10, gtol: float = 1e-6) -> None:
        self.delta, self.n_refine, self.maxiter = delta, n_refine, maxiter
        self.ftol, self.gtol = ftol, gtol

    params = property(lambda self: self.params_, doc="Read-only alias of ``params_`` (DESIGN.md).")

    # Subclasses' fit sets model_ (a Law), X_ (its covariates), logy_, opt_ (_OptResult) and
    # covariates_ (the raw ones, (x,) or (N, D)); they define _X(*raw covariates) → X and
    # _fittable(mask): whether the points in mask identify the law (enough points and levels).

    def _clone(self) -> "_HuberLawFit":
        """An unfitted copy with the same hyper-parameters (scikit-learn's ``clone``)."""
        return type(self)(**{k: v for k, v in vars(self).items() if not k.endswith("_")})

    def _optimize(self, starts: np.ndarray, weights: np.ndarray | None = None,
                  n_refine: int | None = None) -> _OptResult:
        return _minimize_huber(
            self.model_, self.X_, self.logy_, starts, delta=self.delta,
            n_refine=self.n_refine if n_refine is None else n_refine, weights=weights,
            maxiter=self.maxiter, ftol=self.ftol, gtol=self.gtol,
        )

    def _finish_fit(self) -> None:
        o = self.opt_
        self.theta_ = o.theta
        self.params_ = self.model_.to_params(o.theta)
        self.loss_ = o.loss
        self.n_points_ = int(self.logy_.size)
        self.n_starts_, self.n_converged_ = o.n_starts, o.n_converged
        self.start_ = self.model_.to_params(o.start)
        self.start_rank_, self.message_ = o.start_rank, o.message
        r = self.model_.log_pred_batch(o.theta[None, :], self.X_)[0] - self.logy_
        self.log_residuals_ = r  # log ŷ − log y on the fitted data
        tss = float(np.sum((self.logy_ - self.logy_.mean()) ** 2))
        self.r2_ = float(1.0 - np.sum(r * r) / tss) if tss > 0 else float("nan")
        s2 = float(np.sum(r * r)) / r.size
        loglik = -0.5 * r.size * (math.log(2 * math.pi * s2) + 1.0) if s2 > 0 else math.inf
        self.aic_ = 2 * self.model_.k - 2 * loglik
        self.bic_ = self.model_.k * math.log(r.size) - 2 * loglik
        self.ci_: dict[str, tuple[float, float]] | None = None
        self.n_failed_: int | None = None
        self.bootstrap_: _Bootstrap | None = None

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet; call .fit() first")

    def bootstrap(self, n_resamples: int = 1000, seed: int | None = 0, level: float = 0.95,
                  method: str = "percentile", n_starts: int = 3) -> "_HuberLawFit":
        """Seeded case-resampling bootstrap; sets ``ci_`` (name → (low, high)), ``n_failed_``.

        Each refit starts from the full-data optimum and the ``n_starts − 1`` grid points of lowest
        loss on the resample. Failed refits are counted in ``n_failed_`` (warning above 5%),
        intervals come from the others; their internal parameters are in ``bootstrap_.samples``.
        ``method="bca"`` adds a jackknife (n more refits) for bias-corrected accelerated intervals.
        """
        self._check_fitted()
        if method not in _CI_METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(_CI_METHODS)}")
        _check_options(self.delta, self.n_refine, level)
        if int(n_resamples) < 2 or int(n_starts) < 1:
            raise ValueError(f"n_resamples must be >= 2 and n_starts >= 1, got {n_resamples} "
                             f"and {n_starts}")
        with _single_threaded_blas():
            return self._bootstrap(int(n_resamples), seed, level, method, int(n_starts))

    def _refit(self, w: np.ndarray, n_starts: int, grid: np.ndarray, H: np.ndarray
               ) -> np.ndarray | None:
        """Internal θ refitted with case weights ``w``, or None if it cannot be or did not converge.

        ``H`` (S, n) holds each grid start's per-point Huber loss, so the grid's loss on a
        resample is one product H·w instead of a re-evaluation of the law at every start.
        """
        if not self._fittable(w > 0):
            return None
        best = grid[np.argsort(H @ w, kind="stable")[: n_starts - 1]]
        try:
            theta = self._optimize(np.vstack([self.theta_[None, :], best]), weights=w,
                                   n_refine=n_starts).theta
        except RuntimeError:
            return None
        return theta if np.all(np.isfinite(theta)) else None

    def _bootstrap(self, n_resamples: int, seed: int | None, level: float, method: str,
                   n_starts: int) -> "_HuberLawFit":
        n, k = self.n_points_, self.model_.k
        # the grid's starts ranked on the full data (all of it unless S·n > 4e6, i.e. 32 MB)
        grid = self.opt_.ranked_starts[: max(n_starts, 4_000_000 // n)]
        with np.errstate(all="ignore"):
            H = huber(self.model_.log_pred_batch(grid, self.X_) - self.logy_, self.delta)[0]
        rng = np.random.default_rng(seed)
        refits = [self._refit(np.bincount(rng.integers(0, n, size=n), minlength=n).astype(float),
                              n_starts, grid, H) for _ in range(n_resamples)]
        samples = np.array([t for t in refits if t is not None]).reshape(-1, k)
        n_failed = n_resamples - samples.shape[0]
        if samples.shape[0] < 2:
            raise RuntimeError(f"{n_failed} of {n_resamples} bootstrap refits failed; "
                               "fewer than 2 left to form intervals")
        if n_failed > _WARN_FAILED * n_resamples:
            warnings.warn(f"{n_failed} of {n_resamples} bootstrap refits failed; the intervals "
                          f"come from the other {samples.shape[0]}", RuntimeWarning, stacklevel=3)
        jack = None
        if method == "bca":
            loo = [self._refit(np.where(np.arange(n) == j, 0.0, 1.0), n_starts, grid, H)
                   for j in range(n)]
            jack = np.array([t for t in loo if t is not None]).reshape(-1, k)
        self.bootstrap_ = _Bootstrap(samples, n_resamples, n_failed, method, level, seed,
                                     n_starts, jack)
        self.n_failed_ = n_failed
        # Intervals are taken on the public parameters, each refit mapped through to_params
        # (some public parameters, e.g. a, combine several internal coordinates).
        pub = [np.array([list(self.model_.to_params(t).values()) for t in a]) if a is not None
               and len(a) else None for a in (samples, jack)]
        lo, hi = _intervals(*pub, level, method, np.array(list(self.params_.values())))
        self.ci_ = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(self.params_)}
        return self

    # --- extrapolation ---
    def _extrapolate(self, key: np.ndarray, n_levels: int, by: str, n_bootstrap: int,
                     seed: int | None, level: float, n_starts: int) -> Extrapolation:
        self._check_fitted()
        levels = np.unique(key)
        if not 1 <= int(n_levels) < levels.size:
            raise ValueError(f"n_levels must be in [1, {levels.size - 1}] (there are "
                             f"{levels.size} distinct {by} levels), got {n_levels}")
        held = key >= levels[-int(n_levels)]  # every replicate of a held-out level goes
        if not self._fittable(~held):
            raise ValueError(f"n_levels={n_levels} leaves {int(np.sum(~held))} points on "
                             f"{levels.size - int(n_levels)} {by} levels, too few to fit "
                             f"{self.model_.k} parameters")
        sub = self._clone().fit(*(c[~held] for c in self.covariates_), np.exp(self.logy_[~held]))
        sub.bootstrap(n_bootstrap, seed=seed, level=level, n_starts=n_starts)
        Xh = sub._X(*(c[held] for c in self.covariates_))
        lo, hi = sub._prediction_interval(Xh, level, seed)
        yt = np.exp(self.logy_[held])
        pred = sub.model_.predict(sub.theta_, Xh)
        xh = np.column_stack([c[held] for c in self.covariates_])
        return Extrapolation(
            n_train=int(np.sum(~held)), n_holdout=int(np.sum(held)), levels=levels[-int(n_levels):],
            x=xh[:, 0] if xh.shape[1] == 1 else xh, y_true=yt, y_pred=pred,
            rel_error=(pred - yt) / yt, pi_low=lo, pi_high=hi, inside=(lo <= yt) & (yt <= hi),
            params=sub.params_, confidence=level, n_bootstrap=int(n_bootstrap),
            n_failed=int(sub.n_failed_), by=by)

    def _bootstrapped(self, what: str) -> _Bootstrap:
        self._check_fitted()
        if self.bootstrap_ is None:
            raise RuntimeError(f"{what} needs the bootstrap refits: call .bootstrap() first")
        return self.bootstrap_

    def _band(self, X: tuple[np.ndarray, ...], level: float | None) -> tuple[np.ndarray, np.ndarray]:
        b = self._bootstrapped("a confidence band")
        a = (1.0 - (b.level if level is None else level)) / 2
        logp = self.model_.log_pred_batch(b.samples, X)  # (B, n)
        return np.exp(np.quantile(logp, a, axis=0)), np.exp(np.quantile(logp, 1 - a, axis=0))

    def _prediction_interval(self, X: tuple[np.ndarray, ...], level: float,
                             seed: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Interval for a new observation: a bootstrap law plus a resampled residual, the
        residuals inflated for the k parameters fitted on them (a new point's scatter exceeds
        that of the fitted ones)."""
        logp = self.model_.log_pred_batch(self._bootstrapped("a prediction interval").samples, X)
        r = self.log_residuals_ * math.sqrt(self.n_points_ / max(1, self.n_points_ - self.model_.k))
        rng = np.random.default_rng(None if seed is None else (seed, 1))
        sim = logp - r[rng.integers(0, r.size, size=logp.shape)]
        a = (1.0 - level) / 2
        return np.exp(np.quantile(sim, a, axis=0)), np.exp(np.quantile(sim, 1 - a, axis=0))

    @property
    def correlations_(self) -> dict[str, Any]:
        """(statistic, p-value) of Pearson on logs, Spearman and Kendall, of y against x, or
        (scaling law) against each of N and D: ``{"N": {...}, "D": {...}}``."""
        self._check_fitted()
        out = {}
        for name, x in zip(("x",) if len(self.covariates_) == 1 else "ND", self.covariates_):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # constant inputs give NaN, reported as such
                p = stats.pearsonr(np.log(x), self.logy_)
                s, kt = stats.spearmanr(x, self.logy_), stats.kendalltau(x, self.logy_)
            out[name] = {k: (float(v[0]), float(v[1]))
                         for k, v in (("pearson_log", p), ("spearman", s), ("kendall", kt))}
        return out["x"] if "x" in out else out

    # --- reporting ---
    def _hyper_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        parts = [self._hyper_repr()] if self._hyper_repr() else []
        if hasattr(self, "params_"):
            parts += [f"{k}={v:.4g}" for k, v in self.params_.items()] + [f"n={self.n_points_}"]
            if self.bootstrap_ is not None:
                parts.append(f"n_failed={self.n_failed_}/{self.bootstrap_.n_resamples}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def summary(self) -> str:
        """Parameters with their intervals, failed refits, R², AIC and BIC, as text."""
        self._check_fitted()
        lines = [f"{type(self).__name__}({self._hyper_repr()}): {self.n_points_} points, "
                 f"Huber delta={self.delta:g}, loss={self.loss_:.6g}"]
        b = self.bootstrap_
        for name, v in self.params_.items():
            ci = "" if self.ci_ is None else \
                f"   {b.level:.0%} CI [{self.ci_[name][0]:.6g}, {self.ci_[name][1]:.6g}]"
            lines.append(f"  {name:>6} = {v:.6g}{ci}")
        if b is not None:
            lines.append(f"  bootstrap ({b.method}, seed {b.seed}): {b.n_resamples} resamples, "
                         f"{b.n_failed} failed, intervals from {b.n_resamples - b.n_failed}")
        lines.append(f"  R² (log y) = {self.r2_:.6g}, AIC = {self.aic_:.6g}, BIC = {self.bic_:.6g}")
        return "\n".join(lines)


def _intervals(samples: np.ndarray, jack: np.ndarray | None, level: float, method: str,
               center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column percentile or BCa interval of ``samples`` around the estimate ``center``."""
    alpha = 1.0 - level
    if method == "percentile" or jack is None or len(jack) < 3:
        return (np.quantile(samples, alpha / 2, axis=0),
                np.quantile(samples, 1 - alpha / 2, axis=0))
    lo, hi = np.empty(samples.shape[1]), np.empty(samples.shape[1])
    za = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
    for p in range(samples.shape[1]):
        s = samples[:, p]
        frac = (np.sum(s < center[p]) + 0.5 * np.sum(s == center[p])) / s.size
        z0 = stats.norm.ppf(min(max(frac, 0.5 / s.size), 1 - 0.5 / s.size))
        d = jack[:, p].mean() - jack[:, p]
        den = 6.0 * np.sum(d * d) ** 1.5
        acc = float(np.sum(d**3) / den) if den > 0 else 0.0
        adj = stats.norm.cdf(z0 + (z0 + za) / (1 - acc * (z0 + za)))
        lo[p], hi[p] = np.quantile(s, adj[0]), np.quantile(s, adj[1])
    return lo, hi


# ---- Public estimators ---------------------------------------------------------------------------
class PowerLawFit(_HuberLawFit):
    """Single-variable law y = f(x), one of :data:`FORMS`, fitted by Huber loss on log y.

    Hyper-parameters: ``form``; ``delta`` (Huber threshold on log residuals); ``n_refine`` (best
    grid starts refined by L-BFGS-B); ``maxiter``, ``ftol``, ``gtol`` (L-BFGS-B). After
    :meth:`fit`: ``params_`` (alias ``params``), ``loss_``, ``n_points_``, ``n_starts_``,
    ``n_converged_``, ``start_`` / ``start_rank_`` (the winning grid start), ``log_residuals_``,
    ``r2_``, ``aic_``, ``bic_``, ``correlations_``; after :meth:`bootstrap`: ``ci_``,
    ``n_failed_``, ``bootstrap_``. A returned fit always converged (else ``fit`` raises).
    """

    def __init__(self, form: str = "power", *, delta: float = 1e-3, n_refine: int = 10,
                 maxiter: int = 5000, ftol: float = 1e-10, gtol: float = 1e-6) -> None:
        super().__init__(delta=delta, n_refine=n_refine, maxiter=maxiter, ftol=ftol, gtol=gtol)
        self.form = form

    def _hyper_repr(self) -> str:
        return f"form={self.form!r}"

    def _X(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.log(x) - self.model_.m,)

    def _fittable(self, mask: np.ndarray) -> bool:
        return np.unique(self.covariates_[0][mask]).size >= self.model_.k

    def fit(self, x: Any, y: Any) -> "PowerLawFit":
        """Fit the law to positive 1-D arrays x, y of equal length; returns self."""
        if self.form not in FORMS:
            raise ValueError(f"unknown form {self.form!r}; valid forms: {', '.join(FORMS)}")
        _check_options(self.delta, self.n_refine)
        x, y = _positive_1d(x=x, y=y)
        n = x.size
        k = len(LAWS[self.form].names)
        if n < k:
            raise ValueError(f"form {self.form!r} has {k} parameters but only {n} points "
                             "were given")
        if np.unique(x).size < k:
            raise ValueError(f"form {self.form!r} has {k} parameters and needs at least {k} "
                             f"distinct x values, got {np.unique(x).size}")
        t = np.log(x) - np.log(x).mean()
        self.model_ = LAWS[self.form](float(np.log(x).mean()), float(t.min()))
        self.X_, self.logy_, self.covariates_ = (t,), np.log(y), (x,)
        self.opt_ = self._optimize(self.model_.grid(self.X_, self.logy_))
        self._finish_fit()
        return self

    def predict(self, x: Any) -> np.ndarray:
        """ŷ at positive x (``"rising"``: below the fitted range ŷ may be ≤ 0, reported as is)."""
        self._check_fitted()
        return self.model_.predict(self.theta_, self._X(*_positive_1d(x=np.atleast_1d(x))))

    def band(self, x: Any, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise ``level`` (default: the bootstrap's) interval of the fitted curve at x, from
        the bootstrap refits: where the law itself may lie, not where a new point may fall."""
        return self._band(self._X(*_positive_1d(x=np.atleast_1d(x))), level)

    def predict_interval(self, x: Any, level: float = 0.95, seed: int | None = 0
                         ) -> tuple[np.ndarray, np.ndarray]:
        """``level`` prediction interval of a new observation at x (bootstrap law + resampled,
        inflated residual; as :meth:`extrapolate` uses for held-out levels). Needs bootstrap()."""
        return self._prediction_interval(self._X(*_positive_1d(x=np.atleast_1d(x))), level, seed)

    def extrapolate(self, n_levels: int = 1, *, n_bootstrap: int = 200, seed: int | None = 0,
                    level: float = 0.95, n_starts: int = 3) -> Extrapolation:
        """Refit without the ``n_levels`` largest distinct x (all their replicates); predict them
        with a ``level`` bootstrap prediction interval (``n_bootstrap`` seeded resamples)."""
        self._check_fitted()
        return self._extrapolate(self.covariates_[0], n_levels, "x", n_bootstrap, seed, level,
                                 n_starts)


class ScalingLawFit(_HuberLawFit):
    """Chinchilla law y = E + A/N^α + B/D^β, fitted by Huber loss on log y (approach 3).

    Starts: Besiroglu et al.'s 4 500-point grid; the loss is evaluated on all of it and L-BFGS-B
    runs from the ``n_refine`` (default 200) best — all 4 500 would take about a minute (≈12 ms a
    run), and on the Chinchilla data the optimum does not change beyond the first few dozen starts
    (see tests). ``params_`` keys ``E, A, B, alpha, beta``; other learned values as
    :class:`PowerLawFit`.
    """

    def __init__(self, *, delta: float = 1e-3, n_refine: int = 200, maxiter: int = 5000,
                 ftol: float = 1e-10, gtol: float = 1e-6) -> None:
        super().__init__(delta=delta, n_refine=n_refine, maxiter=maxiter, ftol=ftol, gtol=gtol)

    def _X(self, N: np.ndarray, D: np.ndarray) -> tuple[np.ndarray, ...]:
        return (np.log(N), np.log(D))

    def _fittable(self, mask: np.ndarray) -> bool:
        N, D = self.covariates_
        return (np.count_nonzero(mask) >= self.model_.k and np.unique(N[mask]).size >= 2
                and np.unique(D[mask]).size >= 2)

    def fit(self, N: Any, D: Any, y: Any) -> "ScalingLawFit":
        """Fit to positive 1-D arrays N (parameters), D (tokens), y (loss); returns self."""
        _check_options(self.delta, self.n_refine)
        N, D, y = _positive_1d(N=N, D=D, y=y)
        n = y.size
        if n < 5:
            raise ValueError(f"the scaling law has 5 parameters but only {n} points were given")
        if np.unique(N).size < 2 or np.unique(D).size < 2:
            raise ValueError("the scaling law needs at least 2 distinct values of N and of D")
        self.model_ = ChinchillaLaw()
        self.X_, self.logy_, self.covariates_ = self._X(N, D), np.log(y), (N, D)
        self.opt_ = self._optimize(self.model_.grid(self.X_, self.logy_))
        self._finish_fit()
        return self

    def predict(self, N: Any, D: Any) -> np.ndarray:
        """ŷ = E + A/N^α + B/D^β at positive N, D."""
        self._check_fitted()
        return self.model_.predict(self.theta_,
                                   self._X(*_positive_1d(N=np.atleast_1d(N), D=np.atleast_1d(D))))

    def extrapolate(self, n_levels: int = 1, by: str = "compute", *, n_bootstrap: int = 200,
                    seed: int | None = 0, level: float = 0.95, n_starts: int = 3) -> Extrapolation:
        """Refit without the runs on the ``n_levels`` largest distinct compute values
        (C ∝ N·D, ``by="compute"``) or model sizes (``by="N"``); predict them with a ``level``
        bootstrap prediction interval (``n_bootstrap`` seeded resamples)."""
        self._check_fitted()
        if by not in ("compute", "N"):
            raise ValueError(f"unknown by={by!r}; valid: compute, N")
        N, D = self.covariates_
        return self._extrapolate(N * D if by == "compute" else N, n_levels, by, n_bootstrap,
                                 seed, level, n_starts)


# ---- Convenience functions -----------------------------------------------------------------------
def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                  form: str = "power", *, n_bootstrap: int = 1000, seed: int | None = 0,
                  level: float = 0.95, ci_method: str = "percentile", **options: Any
                  ) -> PowerLawFit:
    """Fit ``form`` (one of :data:`FORMS`) to (x, y), with ``n_bootstrap`` (default 1000, a few
    seconds) seeded case-resampling refits for the intervals ``ci_`` (0 skips them); ``options``
    go to :class:`PowerLawFit` (``delta``, ``n_refine``, ``maxiter``, ``ftol``, ``gtol``)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid forms: {', '.join(FORMS)}")
    f = PowerLawFit(form, **options).fit(x, y)
    if n_bootstrap:
        f.bootstrap(n_resamples=n_bootstrap, seed=seed, level=level, method=ci_method)
    return f


def fit_scaling_law(N: Sequence[float] | np.ndarray, D: Sequence[float] | np.ndarray,
                    y: Sequence[float] | np.ndarray, *, n_bootstrap: int = 0,
                    seed: int | None = 0, level: float = 0.95, ci_method: str = "percentile",
                    **options: Any) -> ScalingLawFit:
    """Fit y = E + A/N^α + B/D^β (Chinchilla approach 3); ``options`` go to :class:`ScalingLawFit`.

    Bootstrap intervals only if ``n_bootstrap`` > 0 (off by default: a refit of the five-parameter
    law from three starts costs ~0.1–0.2 s, so 1000 take minutes; or call ``.bootstrap()``)."""
    f = ScalingLawFit(**options).fit(N, D, y)
    if n_bootstrap:
        f.bootstrap(n_resamples=n_bootstrap, seed=seed, level=level, method=ci_method)
    return f
