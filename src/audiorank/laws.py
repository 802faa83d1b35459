"""The laws that :mod:`audiorank.fit` fits: log ŷ(θ), its Jacobian, and a grid of starts.

Single-variable laws (``form=`` of :func:`audiorank.fit_power_law`), x > 0:

- ``"power"``:      y = a·x^b                (b of any sign, a > 0)
- ``"saturating"``: y = c + a·x^(−b)         (decreasing toward a floor c; a, b > 0, c ≥ 0)
- ``"rising"``:     y = c − a·x^(−b)         (a quality saturating upward at c; a, b > 0 and
  c > a·x^(−b) on the data)

and the Chinchilla law y = E + A/N^α + B/D^β ("approach 3" of Hoffmann et al. 2022, as replicated
by Besiroglu et al. 2024).

Each law lives in an internal parameterisation θ in which positivity holds by construction: log ŷ
is a log-sum-exp (saturating, Chinchilla) or ``c + log(1 − e^u)`` with u < 0 on the data (rising),
so an optimiser never meets an invalid point. Gradients are analytic (chain rule through the
log-sum-exp / log1mexp), float64 throughout. Single-variable laws see t = log x − mean log x, so
their grids of starts and conditioning do not depend on the units of x; ``to_params`` maps θ back
to the public parameters in the user's units. Grids are data-informed: power 8 slopes; saturating
8 floors c ∈ {0, …, 0.99}·min y × 10 exponents b ∈ [0.05, 3]; rising 7 ceilings
c ∈ (1.001 … 4)·max y × the same 10 exponents (the prefactor of each start is the median
log-residual given (c, b)); Chinchilla Besiroglu et al.'s 4 500-point grid.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = ["FORMS", "LAWS", "Law", "PowerLaw", "SaturatingLaw", "RisingLaw", "ChinchillaLaw"]

#: The single-variable forms understood by :func:`audiorank.fit_power_law`.
FORMS: tuple[str, ...] = ("power", "saturating", "rising")


def _log1mexp(u: np.ndarray) -> np.ndarray:
    """log(1 − e^u) for u < 0, accurate near 0 and for very negative u (Mächler 2012)."""
    return np.where(u > -math.log(2.0), np.log(-np.expm1(u)), np.log1p(-np.exp(u)))


def _lse_weights(z: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """log Σ exp(z) along ``axis`` and the softmax weights (its gradient)."""
    zmax = np.max(z, axis=axis, keepdims=True)
    ez = np.exp(z - zmax)
    s = np.sum(ez, axis=axis, keepdims=True)
    return np.squeeze(zmax + np.log(s), axis=axis), ez / s


# ----------------------------------------------------------------------------------------------
# Laws: log ŷ(θ) and its Jacobian, in an internal parameterisation θ
# ----------------------------------------------------------------------------------------------
class Law:
    """One law in its internal parameterisation.

    ``X`` is a tuple of 1-D arrays (the covariates, already log-transformed and, for single-variable
    laws, centred). ``log_pred(θ, X)`` returns log ŷ (n,) and the Jacobian ∂log ŷ/∂θ (n, k);
    ``log_pred_batch(Θ, X)`` returns log ŷ for many θ at once (S, n), for grid evaluation.
    """

    names: tuple[str, ...] = ()
    bounds: list[tuple[float | None, float | None]] | None = None

    @property
    def k(self) -> int:
        """Number of parameters."""
        return len(self.names)

    def log_pred(
        self, theta: np.ndarray, X: tuple[np.ndarray, ...]
    ) -> tuple[np.ndarray, np.ndarray]:
        """log ŷ (n,) and its Jacobian ∂log ŷ/∂θ (n, k) at one θ."""
        raise NotImplementedError

    def log_pred_batch(self, thetas: np.ndarray, X: tuple[np.ndarray, ...]) -> np.ndarray:
        """log ŷ (S, n) at S parameter vectors at once (grid evaluation, bootstrap predictions)."""
        raise NotImplementedError

    def to_params(self, theta: np.ndarray) -> dict[str, float]:
        """Public parameters (user's units) of an internal θ."""
        raise NotImplementedError

    def predict(self, theta: np.ndarray, X: tuple[np.ndarray, ...]) -> np.ndarray:
        """ŷ in linear space (may be extrapolated outside the data range)."""
        return np.exp(self.log_pred_batch(np.atleast_2d(theta), X)[0])

    def grid(self, X: tuple[np.ndarray, ...], logy: np.ndarray) -> np.ndarray:
        """Starting points (S, k) in internal coordinates, informed by the data."""
        raise NotImplementedError


class PowerLaw(Law):
    """log ŷ = ℓ + b·t, with t = log x − m; a = exp(ℓ − b·m)."""

    names = ("a", "b")

    def __init__(self, m: float, t_min: float) -> None:
        self.m = m
        self.bounds = None

    def log_pred(self, theta, X):
        (t,) = X
        J = np.empty((t.size, 2))
        J[:, 0] = 1.0
        J[:, 1] = t
        return theta[0] + theta[1] * t, J

    def log_pred_batch(self, thetas, X):
        (t,) = X
        return thetas[:, :1] + thetas[:, 1:2] * t[None, :]

    def to_params(self, theta):
        return {"a": float(np.exp(theta[0] - theta[1] * self.m)), "b": float(theta[1])}

    def grid(self, X, logy):
        (t,) = X
        slope, intercept = np.polyfit(t, logy, 1) if np.ptp(t) > 0 else (0.0, float(np.mean(logy)))
        bs = np.array([slope, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
        ls = np.array([np.median(logy - b * t) for b in bs])
        return np.column_stack([ls, bs])


class SaturatingLaw(Law):
    """log ŷ = LSE(e, ℓ − b·t); c = exp(e), a = exp(ℓ + b·m), b ≥ 0."""

    names = ("c", "a", "b")

    def __init__(self, m: float, t_min: float) -> None:
        self.m = m
        self.bounds = [(None, None), (None, None), (0.0, None)]

    def log_pred(self, theta, X):
        (t,) = X
        z1 = theta[1] - theta[2] * t
        L = np.logaddexp(theta[0], z1)
        J = np.empty((3, t.size))
        np.exp(z1 - L, out=J[1])  # softmax weight of the power term
        np.subtract(1.0, J[1], out=J[0])
        np.multiply(J[1], -t, out=J[2])
        return L, J.T

    def log_pred_batch(self, thetas, X):
        (t,) = X
        z1 = thetas[:, 1:2] - thetas[:, 2:3] * t[None, :]
        return np.logaddexp(thetas[:, 0:1], z1)

    def to_params(self, theta):
        return {
            "c": float(np.exp(theta[0])),
            "a": float(np.exp(theta[1] + theta[2] * self.m)),
            "b": float(theta[2]),
        }

    def grid(self, X, logy):
        (t,) = X
        y = np.exp(logy)
        ymin = float(np.min(y))
        rows = []
        for q in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99):
            c = q * ymin
            e = math.log(max(c, 1e-6 * ymin))
            resid = np.log(y - c)
            for b in (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
                rows.append((e, float(np.median(resid + b * t)), b))
        return np.array(rows)


class RisingLaw(Law):
    """log ŷ = e + log(1 − e^u), u = −exp(d) − b·(t − t_min) < 0 on the data.

    c = exp(e); a = exp(e − exp(d) + b·log x_min). The constraint c > a·x^(−b) on the data holds
    by construction because u ≤ −exp(d) < 0 for every t ≥ t_min.
    """

    names = ("c", "a", "b")

    def __init__(self, m: float, t_min: float) -> None:
        self.m = m
        self.t_min = t_min
        self.bounds = [(None, None), (-30.0, 6.0), (0.0, None)]

    def _u(self, d, b, t):
        return -np.exp(d) - b * (t - self.t_min)

    def log_pred(self, theta, X):
        (t,) = X
        ed = math.exp(theta[1])
        u = -ed - theta[2] * (t - self.t_min)
        gprime = -1.0 / np.expm1(-u)  # d/du log(1 − e^u)
        J = np.empty((t.size, 3))
        J[:, 0] = 1.0
        J[:, 1] = -gprime * ed
        J[:, 2] = -gprime * (t - self.t_min)
        return theta[0] + _log1mexp(u), J

    def log_pred_batch(self, thetas, X):
        (t,) = X
        u = self._u(thetas[:, 1:2], thetas[:, 2:3], t[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            return thetas[:, 0:1] + _log1mexp(np.minimum(u, -1e-300))

    def predict(self, theta, X):
        (t,) = X
        u = self._u(theta[1], theta[2], t)  # may be > 0 below x_min: ŷ then ≤ 0, reported as is
        return np.exp(theta[0]) * -np.expm1(u)

    def to_params(self, theta):
        log_xmin = self.t_min + self.m
        return {
            "c": float(np.exp(theta[0])),
            "a": float(np.exp(theta[0] - np.exp(theta[1]) + theta[2] * log_xmin)),
            "b": float(theta[2]),
        }

    def grid(self, X, logy):
        (t,) = X
        y = np.exp(logy)
        ymax = float(np.max(y))
        rows = []
        for q in (0.001, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            c = ymax * (1.0 + q)
            e = math.log(c)
            resid = np.log(c - y)
            for b in (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0):
                ell = float(np.median(resid + b * t))  # log a − b·m
                gap = e - ell + b * self.t_min  # = exp(d) must be > 0
                rows.append((e, math.log(max(gap, 1e-3)), b))
        return np.array(rows)


class ChinchillaLaw(Law):
    """log ŷ = LSE(e, a − α·log N, b − β·log D); E, A, B = exp(e), exp(a), exp(b)."""

    names = ("E", "A", "B", "alpha", "beta")
    bounds = None
    #: Besiroglu et al.'s (2024) grid of initialisations.
    GRID = dict(
        e=np.arange(-1.0, 1.0 + 1e-9, 0.5),
        a=np.arange(0.0, 25.0 + 1e-9, 5.0),
        b=np.arange(0.0, 25.0 + 1e-9, 5.0),
        alpha=np.arange(0.0, 2.0 + 1e-9, 0.5),
        beta=np.arange(0.0, 2.0 + 1e-9, 0.5),
    )

    def log_pred(self, theta, X):
        lN, lD = X
        z = np.empty((lN.size, 3))
        z[:, 0] = theta[0]
        z[:, 1] = theta[1] - theta[3] * lN
        z[:, 2] = theta[2] - theta[4] * lD
        L, w = _lse_weights(z)
        J = np.empty((lN.size, 5))
        J[:, 0] = w[:, 0]
        J[:, 1] = w[:, 1]
        J[:, 2] = w[:, 2]
        J[:, 3] = -w[:, 1] * lN
        J[:, 4] = -w[:, 2] * lD
        return L, J

    def log_pred_batch(self, thetas, X):
        lN, lD = X
        z = np.stack(
            [
                np.broadcast_to(thetas[:, 0:1], (thetas.shape[0], lN.size)),
                thetas[:, 1:2] - thetas[:, 3:4] * lN[None, :],
                thetas[:, 2:3] - thetas[:, 4:5] * lD[None, :],
            ],
            axis=-1,
        )
        return special.logsumexp(z, axis=-1)

    def to_params(self, theta):
        return {
            "E": float(np.exp(theta[0])),
            "A": float(np.exp(theta[1])),
            "B": float(np.exp(theta[2])),
            "alpha": float(theta[3]),
            "beta": float(theta[4]),
        }

    def grid(self, X, logy):
        g = self.GRID
        mesh = np.meshgrid(g["e"], g["a"], g["b"], g["alpha"], g["beta"], indexing="ij")
        return np.column_stack([m.ravel() for m in mesh])


LAWS: dict[str, type[Law]] = {
    "power": PowerLaw,
    "saturating": SaturatingLaw,
    "rising": RisingLaw,
}

