"""Effective rank of embedding matrices: RankMe and its relatives, fast on CPU or GPU.

What this file holds
- `rankme`: RankMe of Garrido et al. 2023, "RankMe: Assessing the Downstream Performance of
  Pretrained Self-Supervised Representations by Their Rank" (ICML 2023), for one (N, D) matrix
  or a batch of layers (L, N, D).
- `RankMe`: the same quantity as a streaming estimator (update / merge / compute, in the style of
  torchmetrics' `Metric`), whose state is a float64 Gram matrix: memory O(L·D²) whatever N is.
- `singular_values`: the singular spectrum both share, with the path it took (`Spectrum`).
- `alpha_req`: α-ReQ of Agrawal et al. 2022, "α-ReQ: Assessing Representation Quality in
  Self-Supervised Learning by measuring eigenspectrum decay" (NeurIPS 2022).
- `lidar`: LiDAR of Thilak et al. 2023, "LiDAR: Sensing Linear Probing Performance in Joint
  Embedding SSL Architectures" (ICLR 2024).
- `stable_rank`: ‖Z‖_F² / ‖Z‖₂² (Rudelson & Vershynin 2007, "Sampling from large matrices").

How the spectrum is computed (method="auto", the default)
The Gram matrix G = ZᵀZ is accumulated in float64 over row chunks (never a full float64 copy of Z)
and its eigenvalues λ = σ² come from `torch.linalg.eigvalsh`. That is faster than an SVD (see
benchmarks/README.md for measured ratios), but eigenvalues of a float64 Gram carry an absolute
error of about ε₆₄·λ_max, so the smallest singular values are poorly resolved. After the fact we
therefore (1) set eigenvalues below the noise floor to exact zeros when a clear gap separates them
from the rest (the matrix is numerically rank-deficient), and (2) propagate the eigenvalue error
bound to RankMe — for zeroed values, their largest size compatible with the input's storage
precision; when the bound exceeds `AUTO_RTOL` the layer is recomputed with a float64 SVD. See
`_noise_floor`, `_denoise` and `_rankme_error_bound`. Everything runs on the input's device (CUDA
included) in float64, so TF32 never enters.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

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

# Largest estimated relative error of RankMe that method="auto" accepts from the Gram path before
# it recomputes the layer with a float64 SVD.
AUTO_RTOL = 1e-8
# Eigenvalues below the noise floor count as exact zeros only if every resolved eigenvalue is at
# least this factor above the floor: a spectrum that drops by six orders of magnitude straight into
# rounding noise is a (numerically) rank-deficient matrix, not a slowly decaying one.
GAP_FACTOR = 1e6
# Elements of one float64 chunk (128 MiB): bounds the extra memory of the Gram accumulation.
CHUNK_ELEMENTS = 2**24

_EPS64 = float(np.finfo(np.float64).eps)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NUMPY_FLOATS = (np.float16, np.float32, np.float64)
_METHODS = ("auto", "gram", "svd")

ArrayLike = Any  # numpy array, torch tensor (any device) or nested lists of floats


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _to_tensor(Z: ArrayLike, name: str) -> torch.Tensor:
    """A torch view of Z (no copy for numpy arrays) after checking that its dtype is a float."""
    if isinstance(Z, torch.Tensor):
        t = Z.detach()
    else:
        arr = np.asarray(Z)
        if arr.dtype.type not in _NUMPY_FLOATS:
            raise ValueError(
                f"{name} has unsupported dtype {arr.dtype}; expected float16, bfloat16, "
                "float32 or float64 embeddings"
            )
        with warnings.catch_warnings():  # read-only arrays (memmaps) are fine: we never write
            warnings.simplefilter("ignore", UserWarning)
            try:
                t = torch.from_numpy(arr)
            except (ValueError, TypeError):  # negative strides or non-native byte order
                t = torch.from_numpy(np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C"))
    if t.dtype not in _FLOAT_DTYPES:
        raise ValueError(
            f"{name} has unsupported dtype {t.dtype}; expected float16, bfloat16, float32 or "
            "float64 embeddings"
        )
    return t


def _prepare(Z: ArrayLike, name: str = "Z", min_rows: int = 2) -> tuple[torch.Tensor, bool]:
    """Validate shape and dtype; return Z as (L, N, D) and whether it was batched (3-D)."""
    t = _to_tensor(Z, name)
    if t.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (N, D) or (L, N, D); got a {t.ndim}-D array of shape "
            f"{tuple(t.shape)}"
        )
    if t.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(t.shape)}); expected at least {min_rows} samples "
            "of at least 1 dimension"
        )
    if t.shape[-2] < min_rows:
        raise ValueError(
            f"{name} has N={t.shape[-2]} sample(s) (shape {tuple(t.shape)}); expected N >= "
            f"{min_rows}"
        )
    batched = t.ndim == 3
    return (t if batched else t.unsqueeze(0)), batched


def _row_slices(n_rows: int, rows_per_chunk: int):
    for start in range(0, n_rows, rows_per_chunk):
        yield slice(start, min(n_rows, start + rows_per_chunk))


def _rows_per_chunk(X: torch.Tensor) -> int:
    L, _, C = X.shape
    return max(1, CHUNK_ELEMENTS // (L * C))


def _scan(X: torch.Tensor, name: str) -> torch.Tensor:
    """Max |z| per layer, (L,) float64, raising on NaN/Inf: one cheap chunked pass over X."""
    amax = torch.zeros(X.shape[0], dtype=torch.float64, device=X.device)
    for rows in _row_slices(X.shape[1], _rows_per_chunk(X)):
        chunk_max = X[:, rows].abs().amax(dim=(1, 2)).to(torch.float64)  # (L,)
        amax = torch.maximum(amax, chunk_max)  # NaN propagates, so one check at the end suffices
    if not bool(torch.isfinite(amax).all()):
        n_nan = int(torch.isnan(X).sum())  # counted only on this error path
        n_inf = int(torch.isinf(X).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s) out of {X.numel()}; "
            "expected finite embeddings"
        )
    return amax


def _check_nonzero(amax: torch.Tensor, name: str, batched: bool) -> None:
    zero = (amax == 0).nonzero().flatten().tolist()
    if zero:
        where = f" (layers {zero})" if batched else ""
        raise ValueError(f"{name} is all zeros{where}: all-zero embeddings have no spectrum")


def _pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """Power of two near max|z| per layer: dividing by it is exact and keeps the Gram finite."""
    return torch.exp2(torch.floor(torch.log2(amax)))


def _column_mean(X: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Column means (L, D) in float64, summed chunk by chunk (no float64 copy of X)."""
    total = torch.zeros(X.shape[0], X.shape[2], dtype=torch.float64, device=device)
    for rows in _row_slices(X.shape[1], _rows_per_chunk(X)):
        total += X[:, rows].to(device=device, dtype=torch.float64).sum(dim=1)
    return total / X.shape[1]


# --------------------------------------------------------------------------------------------
# Spectrum machinery: Gram accumulation, eigenvalues, accuracy check, SVD fallback
# --------------------------------------------------------------------------------------------


def _gram(
    X: torch.Tensor,
    shift: torch.Tensor | None,
    inv_scale: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """G = Σ_r x̃_rᵀ x̃_r in float64 with x̃ = (x − shift)·inv_scale; X (L, R, C) → G (L, C, C).

    Each chunk is cast to float64 and accumulated, so the extra memory is one float64 chunk.
    `shift` is (L, 1, C) (column means) or (L, R, 1) (per-row shift, used for the transposed
    N < D case); `inv_scale` is (L,). On the CPU the accumulation is BLAS syrk through numpy (half the flops of a
    matmul, since G is symmetric), on other devices a blocked batched matmul.
    """
    if device.type == "cpu" and X.device.type == "cpu" and (shift is None or shift.shape[1] == 1):
        return _gram_syrk(X, shift, inv_scale)
    L, R, C = X.shape
    G = torch.zeros(L, C, C, dtype=torch.float64, device=device)
    inv_scale = inv_scale.to(device).view(L, 1, 1)
    # G is symmetric: computing only its lower block trapezoid (block row i, columns up to the end
    # of block i) saves up to 3/8 of the flops with 4 blocks (torch has no syrk).
    n_blocks = max(1, min(4, C // 192))
    edges = [C * i // n_blocks for i in range(n_blocks + 1)]
    for rows in _row_slices(R, _rows_per_chunk(X)):
        chunk = X[:, rows].to(device=device, dtype=torch.float64, copy=True)  # (L, r, C)
        if shift is not None:
            chunk -= shift[:, rows] if shift.shape[1] > 1 else shift
        chunk *= inv_scale
        for lo, hi in itertools.pairwise(edges):
            G[:, lo:hi, :hi].baddbmm_(chunk[:, :, lo:hi].mT, chunk[:, :, :hi])  # (L, hi-lo, hi)
    return G.tril() + G.tril(-1).mT  # mirror the lower triangle: exactly symmetric


# Rows of the float64 chunk on the CPU path: about 16 MiB (measured on the 2-core CPU for
# 25,600×768: 4–16 MiB chunks 0.26–0.34 s; a whole float64 copy costs as much plus N·D·8 bytes).
_SYRK_CHUNK_BYTES = 2**24


def _gram_syrk(X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor) -> torch.Tensor:
    """CPU Gram, one float64 chunk at a time, with numpy's BLAS (see `_gram`).

    numpy computes `chunk.T @ chunk` with BLAS syrk (half the flops of a matmul) and returns it
    exactly symmetric. numpy, not torch, does the casts and products: torch's OpenMP workers, or a
    second OpenBLAS (scipy's), would spin on the cores this BLAS is using (measured on 2 cores:
    0.51 s with torch's casts, 0.29 s with scipy's dsyrk after a numpy call, 0.26 s like this).
    """
    L, R, C = X.shape
    rows = max(64, min(R, _SYRK_CHUNK_BYTES // (8 * C)))
    buffer = np.empty((rows, C))
    source = X.numpy() if X.dtype != torch.bfloat16 else None  # bfloat16 has no numpy type
    shift_np = shift.cpu().numpy() if shift is not None else None
    factor = inv_scale.tolist()
    out = torch.empty(L, C, C, dtype=torch.float64)
    for layer in range(L):
        G = out[layer].numpy()
        G[:] = 0.0
        for r in _row_slices(R, rows):
            chunk = buffer[: r.stop - r.start]
            if source is not None:
                np.copyto(chunk, source[layer, r])  # cast to float64 (exact for every input dtype)
            else:
                torch.from_numpy(chunk).copy_(X[layer, r])
            if shift_np is not None:
                chunk -= shift_np[layer]
            if factor[layer] != 1.0:
                chunk *= factor[layer]
            G += chunk.T @ chunk  # (C, C)
    return out


def _eigvalsh(G: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of symmetric G (..., C, C), ascending.

    On the CPU, up to a few thousand columns, LAPACK (numpy's OpenBLAS) on one thread: the
    symmetric eigensolvers synchronise threads once per column, and when other processes share
    the cores each barrier waits for a descheduled thread (measured on the 2-core machine of
    benchmarks/README.md: 768×768 in 0.035 s on one thread, 4–10 s on two under load; torch's
    eigvalsh on one thread took 0.063 s). threadpoolctl restores the thread count afterwards.
    """
    if G.device.type == "cpu" and G.shape[-1] <= 2048:
        with threadpool_limits(limits=1, user_api="blas"):
            return torch.from_numpy(np.linalg.eigvalsh(G.numpy()))
    return torch.linalg.eigvalsh(G)


def _noise_floor(trace: np.ndarray, lam_max: np.ndarray, n_sum: int, dim: int) -> np.ndarray:
    """Estimated absolute error of the Gram eigenvalues, per layer.

    Two error sources, added (Weyl's inequality bounds each eigenvalue's shift by ‖δG‖₂):
    - forming G: entry (i, j) is a length-n_sum float64 dot product, |δG_ij| ≤ γ·Σ_r |x_ri||x_rj|,
      and ‖|X|ᵀ|X|‖₂ ≤ ‖X‖_F² = trace(G). The worst case γ = n·u is far too pessimistic; rounding
      errors behave like independent random variables and grow as √n·u with overwhelming
      probability (Higham & Mary 2019, "A new approach to probabilistic rounding error analysis").
    - eigvalsh is backward stable: |δλ| ≤ p(C)·u·‖G‖₂ with p a modestly growing function (LAPACK
      Users' Guide §4.7.1 takes p = 1); we take p = √C.
    We use ε₆₄ = 2u, a safety factor of 2 over both estimates.
    """
    return _EPS64 * (math.sqrt(n_sum) * trace + math.sqrt(dim) * lam_max)


def _denoise(lam: np.ndarray, tol: float, force: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) with sub-floor ones set to exact zeros, and the mask of those.

    Zeros are only set when a gap of GAP_FACTOR separates them from the resolved eigenvalues (or
    when `force`, for method="gram", which has nothing better to offer). Without a gap they are
    kept (clamped at 0) and the error bound, which is large for them, decides.
    """
    below = lam <= tol
    if not below.any():
        return lam, below
    if force or lam[~below].min() >= GAP_FACTOR * tol:
        return np.where(below, 0.0, lam), below
    return np.clip(lam, 0.0, None), np.zeros_like(below)


def _unit_roundoff(dtype: torch.dtype) -> float:
    """u = ε/2 of the dtype the embeddings were stored in."""
    return torch.finfo(dtype).eps / 2


def _least_precise(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    return a if _unit_roundoff(a) >= _unit_roundoff(b) else b


def _rankme_error_bound(
    lam: np.ndarray,
    zeroed: np.ndarray,
    tol: float,
    eps: float,
    squared: bool,
    zero_sigma: float,
) -> float:
    """First-order bound on the relative error of RankMe from eigenvalue errors |δλ_k| ≤ tol.

    With v_k = σ_k (or λ_k when squared), q_k = v_k/Σv, p_k = q_k + ε and H = −Σ p_k log p_k,
    ∂H/∂v_j = −(log p_j − m)/Σv with m = Σ_k q_k log p_k, so |δH| ≤ Σ_j |log p_j − m|·δv_j / Σv,
    and δRankMe/RankMe = δH. For σ = √λ, δσ_k = √λ_k − √max(λ_k − tol, 0) (≤ √tol near zero).
    Eigenvalues zeroed by the gap rule belong to a matrix that is low-rank up to the rounding of
    its storage dtype: by Weyl's inequality their σ are at most `zero_sigma` = u_dtype·‖Z‖_F.
    That is negligible for float64 input; for float32 and below it usually triggers the SVD.
    """
    lam = np.clip(lam, 0.0, None)
    if squared:
        v, dv = lam, np.full_like(lam, tol)
        dv = np.where(zeroed, zero_sigma**2, dv)
    else:
        v = np.sqrt(lam)
        dv = v - np.sqrt(np.clip(lam - tol, 0.0, None))
        dv = np.where(zeroed, zero_sigma, dv)
    total = v.sum()
    q = v / total
    log_p = np.log(q + eps) if eps > 0 else np.log(np.where(q > 0, q, 1.0))
    m = float((q * log_p).sum())
    return float((np.abs(log_p - m) * dv).sum() / total)


def _svdvals(
    X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor
) -> torch.Tensor:
    """Singular values (L, min(N, D)) of (X − shift)·inv_scale in float64, descending.

    Up to a few chunks, one float64 copy and `torch.linalg.svdvals`. Taller matrices are first
    reduced to their D×D triangular factor by a chunked (TSQR-style) QR — backward stable like the
    SVD, so the singular values are as accurate, with memory bounded by one chunk.
    """
    L, N, D = X.shape
    rows_per_chunk = _rows_per_chunk(X)
    inv_scale = inv_scale.to(X.device).view(L, 1, 1)

    def load(rows: slice) -> torch.Tensor:
        chunk = X[:, rows].to(dtype=torch.float64, copy=True)  # (L, r, D)
        if shift is not None:
            chunk -= shift
        return chunk * inv_scale

    if N <= D or N <= 2 * rows_per_chunk:
        return torch.linalg.svdvals(load(slice(0, N)))
    R = None
    for rows in _row_slices(N, rows_per_chunk):
        block = load(rows) if R is None else torch.cat([R, load(rows)], dim=1)  # (L, r+D, D)
        R = torch.linalg.qr(block, mode="r").R  # (L, D, D)
    return torch.linalg.svdvals(R)


@dataclass(frozen=True)
class Spectrum:
    """Singular spectrum of Z and how it was obtained.

    sigma: singular values, descending, float64, shape (K,) or (L, K) with K = min(N, D).
    method: per layer, "gram" or "svd" (the path that produced the values).
    n_zeroed: per layer, eigenvalues under the Gram noise floor set to exact zeros.
    error_bound: per layer, estimated relative error of RankMe from the Gram eigenvalues
        (see `_rankme_error_bound`); None where no Gram was computed (method="svd").
    """

    sigma: np.ndarray
    method: tuple[str, ...]
    n_zeroed: tuple[int, ...]
    error_bound: tuple[float | None, ...]


def _gram_eigenvalues(
    X: torch.Tensor, mean: torch.Tensor | None, inv_scale: torch.Tensor, name: str, batched: bool
) -> tuple[np.ndarray, np.ndarray, int]:
    """Eigenvalues (L, K) descending, traces (L,) and dot-product length of the smaller Gram.

    ZᵀZ (D×D) when N ≥ D, else Z Zᵀ (N×N): the same non-zero eigenvalues, K = min(N, D).
    A NaN or Inf anywhere in Z makes its column's diagonal entry non-finite, and all-zero
    embeddings have a zero trace: both are reported before any eigenproblem is solved.
    """
    _, N, D = X.shape
    if N >= D:
        shift = mean.unsqueeze(1) if mean is not None else None  # (L, 1, D): column means
        G = _gram(X, shift, inv_scale, X.device)  # (L, D, D)
    else:
        shift = mean.unsqueeze(2) if mean is not None else None  # (L, D, 1): rows of Zᵀ
        G = _gram(X.mT, shift, inv_scale, X.device)  # (L, N, N)
    trace = G.diagonal(dim1=-2, dim2=-1).sum(-1).cpu().numpy()  # (L,)
    if not np.isfinite(trace).all():
        _scan(X, name)  # raises, counting the NaN and Inf values
    if mean is None:
        _check_nonzero(torch.from_numpy(trace), name, batched)
    lam = _eigvalsh(G).flip(-1).cpu().numpy()  # (L, K)
    return lam, trace, max(N, D)


def _check_gram_layer(
    lam: np.ndarray,
    trace: float,
    n_sum: int,
    dim: int,
    dtype: torch.dtype,
    *,
    force: bool,
    eps: float,
    squared: bool,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One layer's Gram eigenvalues → (cleaned eigenvalues, zeroed mask, RankMe error bound)."""
    tol = float(_noise_floor(trace, lam[0], n_sum, dim))
    clean, zeroed = _denoise(lam, tol, force=force)
    zero_sigma = _unit_roundoff(dtype) * math.sqrt(trace)
    return clean, zeroed, _rankme_error_bound(clean, zeroed, tol, eps, squared, zero_sigma)


def _spectrum(
    Z: ArrayLike,
    *,
    method: str,
    center: bool,
    eps: float,
    squared: bool,
    name: str = "Z",
) -> tuple[Spectrum, bool]:
    """Shared machinery of `rankme` and `singular_values`; returns (spectrum, batched)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}; got {method!r}")
    X, batched = _prepare(Z, name)  # (L, N, D)
    L, N, D = X.shape
    if X.dtype == torch.float64 or method == "svd":
        amax = _scan(X, name)
        _check_nonzero(amax, name, batched)
        scale = _pow2_scale(amax)  # (L,): exact rescaling, undone on σ at the end
    else:
        # squares of float32/16/bfloat16 values neither overflow nor underflow float64 (≤ 2^256,
        # ≥ 2^-298), so no rescaling is needed and NaN/Inf/zero are caught on the Gram matrix
        # itself, which saves a full pass over Z (see `_gram_eigenvalues`)
        scale = torch.ones(L, dtype=torch.float64)
    inv_scale = 1.0 / scale
    mean = _column_mean(X, X.device) if center else None  # (L, D)

    K = min(N, D)
    sigma = np.zeros((L, K))
    methods = ["svd"] * L
    n_zeroed = [0] * L
    bounds: list[float | None] = [None] * L
    if method != "svd":
        lam, trace, n_sum = _gram_eigenvalues(X, mean, inv_scale, name, batched)
        for layer in range(L):
            if center:
                _check_centered_nonzero(trace[layer], name, layer, batched)
            clean, zeroed, bounds[layer] = _check_gram_layer(
                lam[layer], trace[layer], n_sum, K, X.dtype,
                force=(method == "gram"), eps=eps, squared=squared,
            )
            if method == "gram" or bounds[layer] <= AUTO_RTOL:
                methods[layer] = "gram"
                n_zeroed[layer] = int(zeroed.sum())
                sigma[layer] = np.sqrt(np.clip(clean, 0.0, None)) * float(scale[layer])
    for layer in (i for i in range(L) if methods[i] == "svd"):
        shift = mean[layer : layer + 1].unsqueeze(1) if center else None  # (1, 1, D)
        s = _svdvals(X[layer : layer + 1], shift, inv_scale[layer : layer + 1])
        sigma[layer] = s[0].cpu().numpy() * float(scale[layer])
        if center:
            _check_centered_nonzero(float(sigma[layer, 0]), name, layer, batched)
    spectrum = Spectrum(
        sigma=sigma if batched else sigma[0],
        method=tuple(methods),
        n_zeroed=tuple(n_zeroed),
        error_bound=tuple(bounds),
    )
    return spectrum, batched


def _check_centered_nonzero(size: float, name: str, layer: int, batched: bool) -> None:
    """Non-zero input can still be zero after centering (all rows equal): no spectrum then."""
    if size == 0:
        where = f" layer {layer}" if batched else ""
        raise ValueError(
            f"{name}{where} has all rows equal: centered, these are all-zero embeddings, and "
            "all-zero embeddings have no spectrum"
        )


def _entropy_rank(values: np.ndarray, eps: float) -> float:
    """exp(−Σ p_k log p_k) with p_k = v_k/Σv + ε: the entropy effective rank of RankMe/LiDAR."""
    p = values / values.sum() + eps
    log_p = np.log(np.where(p > 0, p, 1.0))  # 0·log 0 = 0 when eps = 0
    return float(np.exp(-(p * log_p).sum()))


def _check_eps(eps: float) -> None:
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite non-negative number; got {eps}")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


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
        (float64 `torch.linalg.svdvals`) or "auto" (Gram, falling back to SVD per layer when the
        estimated error of RankMe with its default ε = 1e-7 exceeds `AUTO_RTOL`; see the module
        docstring).
    return_info: return the `Spectrum` (values, path taken, zeroed count, error bound) instead.
    """
    spectrum, _ = _spectrum(Z, method=method, center=center, eps=1e-7, squared=False)
    return spectrum if return_info else spectrum.sigma


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
    within ~AUTO_RTOL (relative) of the float64-SVD value, up to the error estimate's assumptions.
    Raises ValueError for NaN/Inf, empty, wrong-rank, N < 2, non-float or all-zero input.
    """
    _check_eps(eps)
    spectrum, batched = _spectrum(Z, method=method, center=center, eps=eps, squared=squared)
    sigma = np.atleast_2d(spectrum.sigma)
    values = sigma**2 if squared else sigma
    ranks = np.array([_entropy_rank(v, eps) for v in values])
    return ranks if batched else float(ranks[0])


class RankMe:
    """Streaming RankMe: `update` with chunks, `merge` estimators, `compute` at the end.

    State (declared in `reset`, reduced across workers by addition like torchmetrics' `Metric`):
    a float64 Gram matrix G = Σ zzᵀ, (D, D) or (L, D, D), and the sample count n. With
    `center=True` the state is the running mean and the centered scatter Σ (z − μ)(z − μ)ᵀ, merged
    with the parallel formula of Chan, Golub & LeVeque (1979) — stable, unlike G − nμμᵀ.
    Memory is O(L·D²) whatever N. `compute` is RankMe (Garrido et al. 2023) of the eigenvalues of
    the state — equal to `rankme` of the concatenated chunks. It cannot fall back to an SVD (the
    data are gone): when the error estimate exceeds AUTO_RTOL it warns (RuntimeWarning).
    """

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
        self._gram: torch.Tensor | None = None  # (L, D, D) float64, sum-reduced
        self._mean: torch.Tensor | None = None  # (L, D) float64, center=True only
        self._n = 0  # samples seen, sum-reduced
        self._batched: bool | None = None
        self._dtype = torch.float64  # least precise dtype of the chunks seen (for the error bound)
        return self

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def gram(self) -> torch.Tensor | None:
        """The accumulated float64 state, (D, D) or (L, D, D) (centered scatter if center)."""
        if self._gram is None:
            return None
        return self._gram if self._batched else self._gram[0]

    def _options(self) -> tuple:
        return (self.eps, self.center, self.squared)

    def update(self, Z: ArrayLike) -> RankMe:
        """Accumulate a chunk (N, D) or (L, N, D) (numpy or torch); returns self."""
        X, batched = _prepare(Z, "Z", min_rows=1)  # (L, N, D)
        _scan(X, "Z")  # NaN/Inf check; zero chunks are fine
        L, N, D = X.shape
        if self._gram is None:
            self._batched = batched
            device = self.device if self.device is not None else X.device
            self._gram = torch.zeros(L, D, D, dtype=torch.float64, device=device)
            if self.center:
                self._mean = torch.zeros(L, D, dtype=torch.float64, device=device)
        elif batched != self._batched or self._gram.shape[:2] != (L, D):
            shape = tuple(X.shape) if batched else tuple(X.shape[1:])
            raise ValueError(
                f"Z has shape {shape}; expected chunks of shape {self._expected_shape()} like "
                "the previous updates"
            )
        device = self._gram.device
        one = torch.ones(L, dtype=torch.float64)
        if self.center:
            mean_b = _column_mean(X, device)  # (L, D)
            scatter_b = _gram(X, mean_b.unsqueeze(1), one, device)
            self._merge_centered(N, mean_b, scatter_b)
        else:
            self._gram += _gram(X, None, one, device)
        self._n += N
        self._dtype = _least_precise(self._dtype, X.dtype)
        if not bool(torch.isfinite(self._gram).all()):
            raise ValueError("Z has values too large: their float64 Gram matrix overflows")
        return self

    def _merge_centered(self, n_b: int, mean_b: torch.Tensor, scatter_b: torch.Tensor) -> None:
        """Chan et al. (1979): M = M_a + M_b + δδᵀ·n_a n_b/n, μ = μ_a + δ·n_b/n, δ = μ_b − μ_a."""
        n_a = self._n
        n = n_a + n_b
        delta = mean_b - self._mean  # (L, D)
        self._mean += delta * (n_b / n)
        self._gram += scatter_b + (n_a * n_b / n) * delta.unsqueeze(2) * delta.unsqueeze(1)

    def _expected_shape(self) -> str:
        L, D = self._gram.shape[0], self._gram.shape[2]
        return f"(L={L}, N, D={D})" if self._batched else f"(N, D={D})"

    def merge(self, other: RankMe) -> RankMe:
        """Add another estimator's state to this one (e.g. from another worker); returns self."""
        if not isinstance(other, RankMe):
            raise TypeError(f"other must be a RankMe estimator; got {type(other).__name__}")
        if other._options() != self._options():
            raise ValueError(
                "other has options (eps, center, squared) = "
                f"{other._options()}; expected {self._options()} to merge"
            )
        if other._gram is None:
            return self
        if self._gram is None:
            self._batched = other._batched
            device = self.device if self.device is not None else other._gram.device
            self._gram = other._gram.to(device, copy=True)
            self._mean = other._mean.to(device, copy=True) if self.center else None
            self._n = other._n
            self._dtype = other._dtype
            return self
        if other._batched != self._batched or other._gram.shape != self._gram.shape:
            raise ValueError(
                f"other has state of shape {tuple(other._gram.shape)}; expected "
                f"{tuple(self._gram.shape)} ({self._expected_shape()} chunks)"
            )
        device = self._gram.device
        if self.center:
            self._merge_centered(
                other._n, other._mean.to(device), other._gram.to(device)
            )
        else:
            self._gram += other._gram.to(device)
        self._n += other._n
        self._dtype = _least_precise(self._dtype, other._dtype)
        return self

    def compute(self) -> float | np.ndarray:
        """RankMe of all data seen: float, or one value per layer for (L, N, D) updates."""
        if self._n < 2:
            raise ValueError(f"RankMe needs at least 2 samples; got n_samples={self._n}")
        D = self._gram.shape[-1]
        K = min(self._n, D)  # as many values as singular values of the (n, D) data matrix
        lam = _eigvalsh(self._gram).flip(-1).cpu().numpy()[:, :K]  # (L, K)
        trace = self._gram.diagonal(dim1=-2, dim2=-1).sum(-1).cpu().numpy()
        ranks = []
        for layer in range(lam.shape[0]):
            if trace[layer] == 0:
                where = f" (layer {layer})" if self._batched else ""
                raise ValueError(
                    f"Z{where} accumulated only zeros"
                    f"{' after centering' if self.center else ''}: all-zero embeddings have "
                    "no spectrum"
                )
            clean, _, bound = _check_gram_layer(
                lam[layer], trace[layer], self._n, D, self._dtype,
                force=False, eps=self.eps, squared=self.squared,
            )
            if bound > AUTO_RTOL:
                warnings.warn(
                    f"RankMe.compute: estimated relative error {bound:.1e} exceeds {AUTO_RTOL:.0e}"
                    " (small eigenvalues of the Gram matrix are unresolved in float64); use "
                    "rankme(Z) on the full data for an SVD-accurate value",
                    RuntimeWarning,
                    stacklevel=2,
                )
            values = clean if self.squared else np.sqrt(np.clip(clean, 0.0, None))
            ranks.append(_entropy_rank(values, self.eps))
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
    X, batched = _prepare(Z, "Z")
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
    t = _to_tensor(Z_views, "Z_views")
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
    _scan(X, "Z_views")
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
    lam = _eigvalsh(w_inv_sqrt @ sigma_b @ w_inv_sqrt).clamp(min=0).cpu().numpy()
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
    X, batched = _prepare(Z, "Z")
    amax = _scan(X, "Z")
    _check_nonzero(amax, "Z", batched)
    inv_scale = 1.0 / _pow2_scale(amax)
    # The smaller Gram has the same trace and largest eigenvalue.
    G = _gram(X if X.shape[1] >= X.shape[2] else X.mT, None, inv_scale, X.device)  # (L, K, K)
    lam_max = _eigvalsh(G)[:, -1]
    ranks = (G.diagonal(dim1=-2, dim2=-1).sum(-1) / lam_max).cpu().numpy()
    return ranks if batched else float(ranks[0])
