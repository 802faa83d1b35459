"""The one optimiser routine of :mod:`audiorank.fit`: the summed Huber loss on log residuals,
evaluated on a law's whole grid of starts at once, then L-BFGS-B from the best of them (see
:mod:`audiorank.fit` for why: log residuals, δ, the 1/δ scaling, "converged" runs only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from .laws import Law


# scipy's L-BFGS-B calls BLAS/LAPACK on tiny (k ≤ 10) problems; a multi-threaded OpenBLAS spends
# ~20× longer waking its threads than computing (measured: 50 ms vs 2.7 ms per fit). While this
# module optimises, BLAS is held at one thread (threadpoolctl restores the setting on exit).
def _single_threaded_blas() -> threadpool_limits:
    return threadpool_limits(limits=1, user_api="blas")


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss H_δ(r) and its derivative, elementwise.

    H_δ(r) = r²/2 for |r| ≤ δ, δ·(|r| − δ/2) otherwise; H'_δ(r) = clip(r, −δ, δ).
    """
    d = np.clip(r, -delta, delta)
    # d·(r − d/2) is r²/2 where |r| ≤ δ and δ·|r| − δ²/2 elsewhere: both branches at once
    return d * (r - 0.5 * d), d


def _objective(theta: np.ndarray, model: Law, X: tuple[np.ndarray, ...], logy: np.ndarray,
               delta: float, weights: np.ndarray | None) -> tuple[float, np.ndarray]:
    """Σ w_i H_δ(log ŷ_i − log y_i) / δ and its analytic gradient (the 1/δ: see module doc)."""
    L, J = model.log_pred(theta, X)
    h, dh = huber(L - logy, delta)
    if weights is not None:
        h, dh = h * weights, dh * weights
    return float(np.sum(h)) / delta, (dh @ J) / delta


def _grid_losses(model: Law, starts: np.ndarray, X: tuple[np.ndarray, ...], logy: np.ndarray,
                 delta: float, weights: np.ndarray | None) -> np.ndarray:
    """Summed Huber loss at every row of ``starts`` (vectorised); non-finite → +inf."""
    out = np.empty(starts.shape[0])
    chunk = max(1, 2_000_000 // max(1, logy.size * 3))
    with np.errstate(all="ignore"):
        for i in range(0, starts.shape[0], chunk):
            L = model.log_pred_batch(starts[i : i + chunk], X)
            h, _ = huber(L - logy[None, :], delta)
            if weights is not None:
                h = h * weights[None, :]
            out[i : i + chunk] = h.sum(axis=1)
    out[~np.isfinite(out)] = np.inf
    return out


@dataclass
class _OptResult:
    theta: np.ndarray
    loss: float
    message: str
    start: np.ndarray
    start_rank: int
    n_starts: int
    n_converged: int
    ranked_starts: np.ndarray


def _minimize_huber(model: Law, X: tuple[np.ndarray, ...], logy: np.ndarray, starts: np.ndarray,
                    *, delta: float, n_refine: int, weights: np.ndarray | None = None,
                    maxiter: int = 5000, ftol: float = 1e-10, gtol: float = 1e-6) -> _OptResult:
    """Summed Huber loss on log residuals, minimised by L-BFGS-B from a grid of starts.

    Evaluates the loss at every start (vectorised), runs L-BFGS-B from the ``n_refine`` best, and
    keeps the lowest-loss run among those that converged. Raises ``RuntimeError`` (with the
    optimiser's message) if none converged. Shared by every law in this module.
    """
    starts = np.atleast_2d(np.asarray(starts, dtype=np.float64))
    losses = _grid_losses(model, starts, X, logy, delta, weights)
    order = np.argsort(losses, kind="stable")
    order = order[np.isfinite(losses[order])]
    if order.size == 0:
        raise RuntimeError("the loss is not finite at any starting point")
    ranked = starts[order]
    best: optimize.OptimizeResult | None = None
    best_rank, n_converged, messages = -1, 0, []
    for rank, x0 in enumerate(ranked[: max(1, n_refine)]):
        with _single_threaded_blas(), np.errstate(over="ignore", under="ignore", divide="ignore",
                                                  invalid="ignore"):
            res = optimize.minimize(
                _objective, x0, args=(model, X, logy, delta, weights), jac=True,
                method="L-BFGS-B", bounds=model.bounds,
                options={"maxiter": maxiter, "ftol": ftol, "gtol": gtol},
            )
        if not (res.success and np.all(np.isfinite(res.x)) and np.isfinite(res.fun)):
            messages.append(str(res.message))
            continue
        n_converged += 1
        if best is None or res.fun < best.fun:
            best, best_rank = res, rank
    if best is None:
        raise RuntimeError(f"L-BFGS-B did not converge from any of {min(n_refine, len(ranked))} "
                           f"starts; optimizer message: {messages[0] if messages else 'n/a'}")
    return _OptResult(np.asarray(best.x, dtype=np.float64), float(best.fun) * delta,
                      str(best.message), ranked[best_rank].copy(), best_rank,
                      int(min(max(1, n_refine), len(ranked))), n_converged, ranked)
