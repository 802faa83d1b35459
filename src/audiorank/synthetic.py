"""Synthetic embedding matrices with a prescribed singular spectrum.

Used by the tests, the benchmarks and the rank-estimation chapter: RankMe's behaviour is only
checkable against matrices whose spectrum is known in advance.
"""

from __future__ import annotations

import numpy as np


def power_law_spectrum(d: int, alpha: float, rank: int | None = None) -> np.ndarray:
    """Singular values σ_k = k^(−alpha), k = 1..d, with σ_k = 0 beyond `rank` (if given)."""
    if d < 1:
        raise ValueError(f"d must be a positive integer, got {d}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite non-negative number, got {alpha}")
    sigma = np.arange(1, d + 1, dtype=np.float64) ** (-float(alpha))
    if rank is not None:
        if not 0 <= rank <= d:
            raise ValueError(f"rank must lie in [0, d={d}], got {rank}")
        sigma[rank:] = 0.0
    return sigma


def gap_spectrum(d: int, head: int, plateau: float, alpha: float = 1.0) -> np.ndarray:
    """A steep head σ_k = k^(−alpha), k ≤ head, then a plateau of d − head values `plateau`·σ_1.

    With plateau ≈ 1e-7 the tail sits at the float64 Gram's resolution behind a spectral gap: the
    case where a Gram-based RankMe is tempted to zero genuine singular values.
    """
    if not 1 <= head <= d:
        raise ValueError(f"head must lie in [1, d={d}], got {head}")
    if not (np.isfinite(plateau) and plateau >= 0):
        raise ValueError(f"plateau must be a finite non-negative number, got {plateau}")
    sigma = power_law_spectrum(d, alpha)
    sigma[head:] = float(plateau)
    return sigma


def population_rankme(sigma: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe of a spectrum given directly (Garrido et al. 2023), e.g. the population spectrum."""
    from .rank import _entropy_rank

    return _entropy_rank(np.asarray(sigma, dtype=np.float64), eps)


def _random_orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """n×k matrix with orthonormal columns, Haar-distributed (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))


def embeddings_with_spectrum(
    n: int, sigma: np.ndarray, seed: int = 0, dtype: type = np.float32
) -> np.ndarray:
    """An (n, d) matrix U·diag(σ)·Vᵀ with Haar-random U, V: its singular values are exactly `sigma`.

    Needs n ≥ d. For a *sample* from a population with that spectrum use `gaussian_embeddings`.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    d = sigma.shape[0]
    if n < d:
        raise ValueError(f"embeddings_with_spectrum needs n >= d, got n={n}, d={d}")
    rng = np.random.default_rng(seed)
    u = _random_orthonormal(rng, n, d)
    v = _random_orthonormal(rng, d, d)
    return ((u * sigma) @ v.T).astype(dtype)


def gaussian_embeddings(
    n: int, sigma: np.ndarray, seed: int = 0, dtype: type = np.float32, chunk: int = 65536
) -> np.ndarray:
    """n samples x_i = diag(σ)·Vᵀ g_i with g_i ~ N(0, I): population covariance spectrum σ².

    The sample spectrum converges to `sigma`·√n as n grows: this is how finite-sample bias in
    RankMe is studied. Generated in chunks so that large n stays within memory.
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    d = sigma.shape[0]
    rng = np.random.default_rng(seed)
    mix = (_random_orthonormal(rng, d, d) * sigma).T  # (d, d): row k is σ_k v_kᵀ
    out = np.empty((n, d), dtype=dtype)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = rng.standard_normal((stop - start, d)) @ mix
    return out
