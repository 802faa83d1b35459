"""Effective rank of embedding matrices: RankMe and its relatives, fast on CPU or GPU.

What this file holds (the definitions; the accuracy machinery — Gram path, noise floor, error
bound, SVD fallback — lives beside it in `_rank_accuracy.py`, whose docstring explains it)
- `rankme`: RankMe of Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of
  Pretrained Self-Supervised Representations by Their Rank" (ICML 2023), for one (N, D) matrix
  or a batch of layers (L, N, D).
- `RankMe`: the same quantity as a streaming metric in the shape of torchmetrics' `Metric`: its
  state (ZᵀZ, Σz, n) is reduced across processes by a plain sum; memory O(L·D²) whatever N is.
- `singular_values`: the singular spectrum both share, with the path it took (`Spectrum`).
- `alpha_req`: α-ReQ of Agrawal et al. 2022, "α-ReQ: Assessing Representation Quality in
  Self-Supervised Learning by measuring eigenspectrum decay" (NeurIPS 2022).
- `lidar`: LiDAR of Thilak et al. 2023, "LiDAR: Sensing Linear Probing Performance in Joint
  Embedding SSL Architectures" (ICLR 2024).
- `stable_rank`: ‖Z‖_F² / ‖Z‖₂² (Rudelson & Vershynin 2007, "Sampling from large matrices").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from . import _rank_accuracy as acc
from ._rank_accuracy import AUTO_RTOL, ArrayLike

__all__ = [
    "AUTO_RTOL",
    "AlphaReq",
    "RankMe",
    "Spectrum",
    "alpha_req",
    "lidar",
    "rankme",
    "singular_values",
    "stable_rank",
]


def _entropy_rank(values: np.ndarray, eps: float) -> float:
    """exp(−Σ p_k log p_k) with p_k = v_k/Σv + ε: the entropy effective rank of RankMe/LiDAR."""
    p = values / values.sum() + eps
    log_p = np.log(np.where(p > 0, p, 1.0))  # 0·log 0 = 0 when eps = 0
    return float(np.exp(-(p * log_p).sum()))


def _check_eps(eps: float) -> None:
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number; got {eps}")


@dataclass(frozen=True)
class Spectrum:
    """Singular spectrum of Z and how it was obtained.

    sigma: singular values, descending, float64, shape (K,) or (L, K) with K = min(N, D).
    method: per layer, "gram" or "svd" (the path that produced the values).
    n_zeroed: per layer, eigenvalues under the Gram noise floor set to exact zeros.
    error_bound: per layer, bound on the relative error of RankMe (ε = 1e-7) from the Gram
        eigenvalues, zeroed ones included at their possible size; None where no Gram was computed.
    """

    sigma: np.ndarray
    method: tuple[str, ...]
    n_zeroed: tuple[int, ...]
    error_bound: tuple[float | None, ...]


def singular_values(
    Z: ArrayLike,
    *,
    center: bool = False,
    method: str = "auto",
    return_info: bool = False,
) -> np.ndarray | Spectrum:
    """Singular values of Z (descending, float64), shape (K,) or (L, K) with K = min(N, D).

    Z: (N, D) or (L, N, D), numpy or torch, float16/bfloat16/float32/float64, CPU or CUDA.
    center: subtract the column mean first (singular values of the centered data).
    method: "gram" (eigvalsh of the float64 Gram, σ = √λ, sub-noise-floor λ set to 0), "svd"
        (float64 SVD) or "auto" (Gram, falling back to SVD per layer when the bound on the
        relative error of RankMe with ε = 1e-7 exceeds `AUTO_RTOL`; see `_rank_accuracy`).
    return_info: return the `Spectrum` (values, path taken, zeroed count, error bound) instead.
    """
    sigma, methods, n_zeroed, bounds, batched = acc.spectrum(
        Z, method=method, center=center, eps=1e-7, squared=False
    )
    info = Spectrum(sigma if batched else sigma[0], tuple(methods), tuple(n_zeroed), tuple(bounds))
    return info if return_info else info.sigma


def rankme(
    Z: ArrayLike,
    eps: float = 1e-7,
    *,
    center: bool = False,
    squared: bool = False,
    method: str = "auto",
) -> float | np.ndarray:
    """RankMe (Garrido et al. 2023): smooth effective rank of an embedding matrix.

    RankMe(Z) = exp(−Σ_k p_k log p_k),  p_k = σ_k(Z)/‖σ(Z)‖₁ + ε,
    with σ the singular values of the *uncentered* Z (as in the paper). Options, never applied
    silently: `center=True` uses the column-centered Z; `squared=True` uses σ_k² (the eigenvalues
    of ZᵀZ, i.e. the covariance-spectrum variant).

    Z: (N, D) → float; (L, N, D) → numpy float64 array of L values (one per layer).
    method: "auto" (default), "gram" or "svd"; see `singular_values`. With "auto" the result is
    within AUTO_RTOL (relative) of the float64-SVD value, up to the noise floor's assumptions;
    eps = 0 is allowed (the Gram path then only certifies spectra resolved away from zero).
    Raises ValueError for NaN/Inf, empty, wrong-rank, N < 2, non-float or all-zero input.
    """
    _check_eps(eps)
    sigma, _, _, _, batched = acc.spectrum(
        Z, method=method, center=center, eps=eps, squared=squared
    )
    values = sigma**2 if squared else sigma
    ranks = np.array([_entropy_rank(v, eps) for v in values])
    return ranks if batched else float(ranks[0])


class RankMe:
    """Streaming RankMe as a metric: `update` accumulates, `merge` adds, `compute` reads.

    State, declared once in `_REDUCTIONS` with how it reduces across processes (a sum, as in
    torchmetrics' `Metric`): the float64 Gram ZᵀZ (L, D, D), the column sums Σz (L, D) and the
    sample count n. Centering is applied only in `compute`, as ZᵀZ − n·μμᵀ with μ = Σz/n, so states
    from any number of workers merge by addition (`merge`, or summing `state_dict()`s). Memory is
    O(L·D²) whatever N. `compute` equals `rankme` of the concatenated chunks; it cannot fall back to
    an SVD (the data are gone), so when the error bound exceeds AUTO_RTOL it warns (RuntimeWarning).
    """

    _REDUCTIONS = {"gram": "sum", "col_sum": "sum", "n": "sum"}

    def __init__(
        self,
        eps: float = 1e-7,
        center: bool = False,
        squared: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        _check_eps(eps)
        self.eps = eps
        self.center = center
        self.squared = squared
        self.device = torch.device(device) if device is not None else None
        self.reset()

    def reset(self) -> RankMe:
        """Forget all data (the shape is fixed again by the next update)."""
        self._state: dict[str, torch.Tensor] = {}  # empty until the first update
        self._batched: bool | None = None
        return self

    @property
    def n_samples(self) -> int:
        """Samples accumulated so far."""
        return int(self._state["n"]) if self._state else 0

    @property
    def gram(self) -> torch.Tensor | None:
        """The accumulated (uncentered) float64 ZᵀZ, (D, D) or (L, D, D); None before updates."""
        if not self._state:
            return None
        return self._state["gram"] if self._batched else self._state["gram"][0]

    def to(self, device: str | torch.device) -> RankMe:
        """Move the state (and later updates) to `device`; returns self."""
        self.device = torch.device(device)
        self._state = {k: v.to(self.device) for k, v in self._state.items()}
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state as tensors (copies): `gram`, `col_sum`, `n` and the `batched` flag."""
        if not self._state:
            return {}
        out = {k: v.clone() for k, v in self._state.items()}
        out["batched"] = torch.tensor(self._batched)
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> RankMe:
        """Replace the state by one from `state_dict()` (possibly summed over workers); returns self."""
        if not state:
            return self.reset()
        expected = set(self._REDUCTIONS) | {"batched"}
        if set(state) != expected:
            raise ValueError(f"state has keys {sorted(state)}; expected {sorted(expected)}")
        G, s, n = state["gram"], state["col_sum"], state["n"]
        if G.ndim != 3 or G.shape[1] != G.shape[2] or tuple(s.shape) != tuple(G.shape[:2]) or n.ndim:
            raise ValueError(
                f"state has gram {tuple(G.shape)}, col_sum {tuple(s.shape)}, n {tuple(n.shape)}; "
                "expected (L, D, D), (L, D) and a scalar"
            )
        device = self.device if self.device is not None else G.device
        self._state = {
            "gram": G.to(device, torch.float64, copy=True),
            "col_sum": s.to(device, torch.float64, copy=True),
            "n": n.to(device, torch.int64, copy=True),
        }
        self._batched = bool(state["batched"])
        return self

    def _options(self) -> tuple:
        return (self.eps, self.center, self.squared)

    def _expected_shape(self) -> str:
        L, D = self._state["col_sum"].shape
        return f"(L={L}, N, D={D})" if self._batched else f"(N, D={D})"

    def update(self, Z: ArrayLike) -> RankMe:
        """Accumulate a chunk (N, D) or (L, N, D) (numpy or torch); returns self."""
        X, batched = acc.prepare(Z, "Z", min_rows=1)  # (L, N, D)
        L, N, D = X.shape
        if self._state and (batched != self._batched or self._state["col_sum"].shape != (L, D)):
            shape = tuple(X.shape) if batched else tuple(X.shape[1:])
            raise ValueError(
                f"Z has shape {shape}; expected chunks of shape {self._expected_shape()} like "
                "the previous updates"
            )
        device = self.device if self.device is not None else X.device
        one = torch.ones(L, dtype=torch.float64)
        G = acc.gram(X, None, one, device)  # (L, D, D); NaN/Inf show on its diagonal
        if not bool(torch.isfinite(G.diagonal(dim1=-2, dim2=-1)).all()):
            acc.scan(X, "Z")  # raises, counting NaN and Inf
            raise ValueError("Z has values too large: their float64 Gram matrix overflows")
        chunk = {"gram": G, "col_sum": acc.column_sum(X, device),
                 "n": torch.tensor(N, dtype=torch.int64, device=device)}
        self._add(chunk, batched)
        return self

    def _add(self, chunk: dict[str, torch.Tensor], batched: bool) -> None:
        """Reduce a state into this one: every entry of `_REDUCTIONS` is a sum."""
        if not self._state:
            device = self.device if self.device is not None else chunk["gram"].device
            self._state = {k: torch.zeros_like(v, device=device) for k, v in chunk.items()}
            self._batched = batched
        for name in self._REDUCTIONS:
            self._state[name] += chunk[name].to(self._state[name].device)

    def merge(self, other: RankMe) -> RankMe:
        """Add another estimator's state to this one (e.g. from another worker); returns self."""
        if not isinstance(other, RankMe):
            raise TypeError(f"other must be a RankMe estimator; got {type(other).__name__}")
        if other._options() != self._options():
            raise ValueError(
                "other has options (eps, center, squared) = "
                f"{other._options()}; expected {self._options()} to merge"
            )
        if not other._state:
            return self
        if self._state and (
            other._batched != self._batched or other._state["gram"].shape != self._state["gram"].shape
        ):
            raise ValueError(
                f"other has state of shape {tuple(other._state['gram'].shape)}; expected "
                f"{tuple(self._state['gram'].shape)} ({self._expected_shape()} chunks)"
            )
        self._add(other._state, other._batched)
        return self

    def compute(self) -> float | np.ndarray:
        """RankMe of all data seen: float, or one value per layer for (L, N, D) updates."""
        n = self.n_samples
        if n < 2:
            raise ValueError(f"RankMe needs at least 2 samples; got n_samples={n}")
        G = self._state["gram"]
        trace = G.diagonal(dim1=-2, dim2=-1).sum(-1).cpu().numpy()  # uncentered: sets the floor
        if self.center:
            s = self._state["col_sum"]  # (L, D)
            # ZᵀZ − n·μμᵀ = ZᵀZ − s·sᵀ/n; s_i·s_j is exactly symmetric, so the result is too.
            G = G - (s.unsqueeze(2) / n) * s.unsqueeze(1)  # (L, D, D)
        D = G.shape[-1]
        K = min(n, D)  # as many values as singular values of the (n, D) data matrix
        lam = acc.eigvalsh(G).flip(-1).cpu().numpy()[:, :K]  # (L, K)
        ranks = []
        for layer in range(lam.shape[0]):
            # all rows equal leave a centered Gram of pure rounding noise: below the floor
            if trace[layer] == 0 or lam[layer, 0] <= acc.noise_floor(trace[layer], 0.0, n, D):
                where = f" (layer {layer})" if self._batched else ""
                raise ValueError(
                    f"Z{where} accumulated only zeros{' after centering' if self.center else ''}"
                    ": all-zero embeddings have no spectrum"
                )
            clean, _, bound = acc.check_gram_layer(
                lam[layer], trace[layer], n, D, force=False, eps=self.eps, squared=self.squared
            )
            if bound > AUTO_RTOL:
                warnings.warn(
                    f"RankMe.compute: estimated relative error (bound) {bound:.1e} exceeds "
                    f"{AUTO_RTOL:.0e} (small eigenvalues of the Gram matrix are unresolved in "
                    "float64); use rankme(Z) on the full data for an SVD-accurate value",
                    RuntimeWarning,
                    stacklevel=2,
                )
            ranks.append(_entropy_rank(clean if self.squared else np.sqrt(clean), self.eps))
        return np.array(ranks) if self._batched else ranks[0]


@dataclass(frozen=True)
class AlphaReq:
    """Result of `alpha_req`: decay exponent, the 1-based index range fitted, r² of the line."""

    alpha: float
    fit_range: tuple[int, int]
    r2: float


def alpha_req(Z: ArrayLike, fit_range: tuple[int, int] | None = None) -> AlphaReq:
    """α-ReQ (Agrawal et al. 2022): power-law decay exponent of the covariance eigenspectrum.

    The eigenvalues of the covariance C = (Z − μ)ᵀ(Z − μ)/N are modelled as λ_k ∝ k^(−α); α is
    minus the slope of the least-squares line of log λ_k against log k over the 1-based indices
    k ∈ [a, b] = fit_range (inclusive). Default: a = 1, b = min(K // 2, rank) (at least 2), with
    K = min(N, D) — the far tail is dominated by finite-sample noise. Z: (N, D).
    """
    X, batched = acc.prepare(Z, "Z")
    if batched:
        raise ValueError(f"Z must have shape (N, D) for alpha_req; got shape {tuple(X.shape)}")
    N = X.shape[1]
    sigma = singular_values(X[0], center=True)
    lam = sigma**2 / N  # covariance eigenvalues, descending
    K = lam.shape[0]
    rank = int((lam > 0).sum())
    if fit_range is None:
        fit_range = (1, max(2, min(K // 2, rank)))
    a, b = (int(v) for v in fit_range)
    if not (1 <= a < b <= rank):
        raise ValueError(
            f"fit_range must satisfy 1 <= a < b <= {rank} (the number of positive covariance "
            f"eigenvalues); got {tuple(fit_range)}"
        )
    log_k = np.log(np.arange(a, b + 1, dtype=np.float64))
    log_lam = np.log(lam[a - 1 : b])
    slope, intercept = np.polyfit(log_k, log_lam, 1)
    residual = log_lam - (slope * log_k + intercept)
    ss_tot = float(((log_lam - log_lam.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return AlphaReq(alpha=float(-slope), fit_range=(a, b), r2=r2)


def lidar(Z_views: ArrayLike, delta: float = 1e-4, eps: float = 1e-7) -> float:
    """LiDAR (Thilak et al. 2023): effective rank of the LDA matrix of augmented views.

    Z_views: (n_samples, n_views, D); each sample is a surrogate class whose members are its views.
    Σ_b = (1/n) Σ_i (μ_i − μ)(μ_i − μ)ᵀ (class means μ_i, grand mean μ),
    Σ_w = (1/(n·v)) Σ_i Σ_j (z_ij − μ_i)(z_ij − μ_i)ᵀ + δ·I,
    Σ_lidar = Σ_w^(−1/2) Σ_b Σ_w^(−1/2), and with its eigenvalues λ_k, p_k = λ_k/‖λ‖₁ + ε,
    LiDAR = exp(−Σ p_k log p_k) (the same entropy as RankMe). Computed in float64.
    """
    _check_eps(eps)
    if not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"delta must be a finite positive number; got {delta}")
    t = acc.to_tensor(Z_views, "Z_views")
    if t.ndim != 3:
        raise ValueError(
            "Z_views must have shape (n_samples, n_views, D); got a "
            f"{t.ndim}-D array of shape {tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(f"Z_views is empty (shape {tuple(t.shape)}); expected embeddings")
    X = t
    n, v, D = X.shape
    if n < 2:
        raise ValueError(f"Z_views has n_samples={n}; expected n_samples >= 2")
    if v < 2:
        raise ValueError(
            f"Z_views has n_views={v}; expected n_views >= 2 (LiDAR needs several views per "
            "sample to estimate the within-sample covariance)"
        )
    acc.scan(X, "Z_views")
    Z64 = X.to(torch.float64)
    class_means = Z64.mean(dim=1)  # (n, D)
    between = class_means - class_means.mean(dim=0)  # (n, D)
    sigma_b = between.T @ between / n  # (D, D)
    within = (Z64 - class_means.unsqueeze(1)).reshape(n * v, D)  # (n·v, D)
    eye = torch.eye(D, dtype=torch.float64, device=X.device)
    sigma_w = within.T @ within / (n * v) + delta * eye
    if X.device.type == "cpu":  # one-thread LAPACK, as in `_eigvalsh`
        with threadpool_limits(limits=1, user_api="blas"):
            w, V = (torch.from_numpy(a) for a in np.linalg.eigh(sigma_w.numpy()))
    else:
        w, V = torch.linalg.eigh(sigma_w)  # Σ_w is SPD thanks to δ·I
    w_inv_sqrt = (V * w.rsqrt()) @ V.T  # Σ_w^(−1/2)
    lam = acc.eigvalsh(w_inv_sqrt @ sigma_b @ w_inv_sqrt).clamp(min=0).cpu().numpy()
    if lam.sum() == 0:
        raise ValueError(
            "Z_views has identical mean embeddings for every sample: the between-sample "
            "covariance is zero and has no spectrum"
        )
    return _entropy_rank(lam[::-1], eps)


def stable_rank(Z: ArrayLike) -> float | np.ndarray:
    """Stable rank (Rudelson & Vershynin 2007): ‖Z‖_F² / ‖Z‖₂² = Σσ_k² / σ_1².

    Computed from the float64 Gram: trace(G)/λ_max(G), both well resolved (no small eigenvalue is
    involved). Z: (N, D) → float; (L, N, D) → one value per layer.
    """
    X, batched = acc.prepare(Z, "Z")
    amax = acc.scan(X, "Z")
    acc.check_nonzero(amax, "Z", batched)
    inv_scale = 1.0 / acc.pow2_scale(amax)
    # The smaller Gram has the same trace and largest eigenvalue.
    G = acc.gram(X if X.shape[1] >= X.shape[2] else X.mT, None, inv_scale, X.device)  # (L, K, K)
    lam_max = acc.eigvalsh(G)[:, -1]
    ranks = (G.diagonal(dim1=-2, dim2=-1).sum(-1) / lam_max).cpu().numpy()
    return ranks if batched else float(ranks[0])
