"""The accuracy machinery behind `audiorank.rank`: input checks, Gram path, error bound, fallback.

How method="auto" computes the spectrum
The Gram matrix G = ZᵀZ is accumulated in float64 over row chunks (never a full float64 copy of Z;
BLAS syrk on the CPU, a blocked batched matmul elsewhere) and its eigenvalues λ = σ² come from a
symmetric eigensolver. That is faster than an SVD, but the eigenvalues of a float64 Gram carry an
absolute error of about ε₆₄·‖Z‖_F²·√N (`_noise_floor`), so singular values below roughly
√(ε₆₄·√N)·‖Z‖_F are not resolved. After the fact, every true eigenvalue is known only to lie in
[λ̂ − tol, λ̂ + tol] ∩ [0, ∞); `_rankme_error_bound` propagates those intervals to RankMe —
including eigenvalues set to zero below the floor (`_denoise`) and negative ones clipped to zero,
which may really be as large as the resolution. When the bound exceeds `AUTO_RTOL` the layer is
recomputed with a float64 SVD (`_svdvals`; `driver="gesvd"` on CUDA, the documented choice for
ill-conditioned input). Everything runs on the input's device in float64, so TF32 never enters.
"""

from __future__ import annotations

import itertools
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

# Largest bound on the relative error of RankMe that method="auto" accepts from the Gram path before
# it recomputes the layer with a float64 SVD.
AUTO_RTOL = 1e-8
# Sub-floor eigenvalues are set to exact zeros (a better point estimate than rounding noise) only
# when every resolved eigenvalue is at least this factor above the floor. The error bound counts
# them with their largest possible size either way.
GAP_FACTOR = 1e6
# Elements of one float64 chunk (128 MiB) on the blocked (non-CPU) Gram path and in the SVD.
CHUNK_ELEMENTS = 2**24
# Bytes of the float64 chunk on the CPU syrk path (measured on the 2-core CPU for 25,600×768:
# 4–16 MiB chunks 0.26–0.34 s; a whole float64 copy costs as much plus N·D·8 bytes).
SYRK_CHUNK_BYTES = 2**24
# Memory for the per-thread partial Grams of the CPU path; beyond it one multi-threaded syrk.
SYRK_PARTIALS_BYTES = 2**28
# Columns per block of the blocked Gram (at most 4 blocks); tests lower it to force several blocks.
GRAM_BLOCK_COLUMNS = 192
# Use numpy's BLAS syrk for CPU Gram matrices; tests switch it off to run the blocked path on CPU.
CPU_SYRK = True

_BLAS: ThreadpoolController | None = None  # see `_blas`
_EPS64 = float(np.finfo(np.float64).eps)
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NUMPY_FLOATS = (np.float16, np.float32, np.float64)
METHODS = ("auto", "gram", "svd")

ArrayLike = Any  # numpy array, torch tensor (any device) or nested lists of floats


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def to_tensor(Z: ArrayLike, name: str) -> torch.Tensor:
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


def prepare(Z: ArrayLike, name: str = "Z", min_rows: int = 2) -> tuple[torch.Tensor, bool]:
    """Validate shape and dtype; return Z as (L, N, D) and whether it was batched (3-D)."""
    t = to_tensor(Z, name)
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


def scan(X: torch.Tensor, name: str) -> torch.Tensor:
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


def check_nonzero(amax: torch.Tensor, name: str, batched: bool) -> None:
    zero = (amax == 0).nonzero().flatten().tolist()
    if zero:
        where = f" (layers {zero})" if batched else ""
        raise ValueError(f"{name} is all zeros{where}: all-zero embeddings have no spectrum")


def check_centered_nonzero(size: float, name: str, layer: int, batched: bool) -> None:
    """Non-zero input can still be zero after centering (all rows equal): no spectrum then."""
    if size == 0:
        where = f" layer {layer}" if batched else ""
        raise ValueError(
            f"{name}{where} has all rows equal: centered, these are all-zero embeddings, and "
            "all-zero embeddings have no spectrum"
        )


def pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """Power of two near max|z| per layer: dividing by it is exact and keeps the Gram finite."""
    return torch.exp2(torch.floor(torch.log2(amax)))


def column_sum(X: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Column sums (L, D) in float64, chunk by chunk (no float64 copy of X)."""
    total = torch.zeros(X.shape[0], X.shape[2], dtype=torch.float64, device=device)
    for rows in _row_slices(X.shape[1], _rows_per_chunk(X)):
        total += X[:, rows].to(device=device, dtype=torch.float64).sum(dim=1)
    return total


# --------------------------------------------------------------------------------------------
# Gram accumulation and eigenvalues
# --------------------------------------------------------------------------------------------


def gram(
    X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """G = Σ_r x̃_rᵀ x̃_r in float64 with x̃ = (x − shift)·inv_scale; X (L, R, C) → G (L, C, C).

    `shift` is (L, 1, C) (column means) or (L, R, 1) (per-row shift, for the transposed N < D
    case); `inv_scale` is (L,). CPU: numpy's BLAS syrk (`_gram_syrk`); elsewhere `_gram_blocked`.
    """
    per_row_shift = shift is not None and shift.shape[1] > 1
    if CPU_SYRK and device.type == "cpu" and X.device.type == "cpu" and not per_row_shift:
        return _gram_syrk(X, shift, inv_scale)
    return _gram_blocked(X, shift, inv_scale, device)


def gram_block_edges(C: int) -> list[int]:
    """Column edges of the blocks of `_gram_blocked`: up to 4 blocks of ≥ GRAM_BLOCK_COLUMNS."""
    n_blocks = max(1, min(4, C // GRAM_BLOCK_COLUMNS))
    return [C * i // n_blocks for i in range(n_blocks + 1)]


def _gram_blocked(
    X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Gram by batched matmuls over float64 row chunks (torch has no syrk; used on CUDA).

    G is symmetric: only its lower block trapezoid (block row i, columns up to the end of block i)
    is computed, which saves up to 3/8 of the flops with 4 blocks, then mirrored.
    """
    L, R, C = X.shape
    G = torch.zeros(L, C, C, dtype=torch.float64, device=device)
    inv_scale = inv_scale.to(device).view(L, 1, 1)
    edges = gram_block_edges(C)
    for rows in _row_slices(R, _rows_per_chunk(X)):
        chunk = X[:, rows].to(device=device, dtype=torch.float64, copy=True)  # (L, r, C)
        if shift is not None:
            chunk -= shift[:, rows].to(device) if shift.shape[1] > 1 else shift.to(device)
        chunk *= inv_scale
        for lo, hi in itertools.pairwise(edges):
            G[:, lo:hi, :hi].baddbmm_(chunk[:, :, lo:hi].mT, chunk[:, :, :hi])  # (L, hi-lo, hi)
    return G.tril() + G.tril(-1).mT  # mirror the lower triangle: exactly symmetric


def _blas() -> ThreadpoolController:
    """numpy's BLAS (threadpoolctl controller, found once, after numpy has loaded it)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController().select(user_api="blas")
    return _BLAS


def _gram_syrk(X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor) -> torch.Tensor:
    """CPU Gram, one cache-sized float64 chunk at a time, with numpy's BLAS syrk.

    numpy computes `chunk.T @ chunk` with syrk (half the flops of a matmul), exactly symmetric;
    numpy, not torch, does the casts (torch's OpenMP workers would spin on the BLAS's cores). The
    rows are split between as many Python threads as the BLAS has threads, each running a
    one-thread BLAS on its own chunks, and the partial Grams are summed in a fixed order: the
    casts run in parallel too, and no BLAS-internal barrier waits on a descheduled thread
    (25,600×768 on the shared 2-core VM: 0.37–0.41 s against 0.71 s for one two-thread syrk).
    """
    L, R, C = X.shape
    rows = max(64, min(R, SYRK_CHUNK_BYTES // (8 * C)))
    source = X.numpy() if X.dtype != torch.bfloat16 else None  # bfloat16 has no numpy type
    shift_np = shift.cpu().numpy() if shift is not None else None
    factor = inv_scale.tolist()

    def partial(layer: int, part: slice) -> np.ndarray:
        """Σ xᵀx over rows `part` of one layer, in the calling thread."""
        buffer = np.empty((min(rows, part.stop - part.start), C))
        product, G = np.empty((C, C)), np.zeros((C, C))
        for start in range(part.start, part.stop, rows):
            r = slice(start, min(part.stop, start + rows))
            chunk = buffer[: r.stop - r.start]
            if source is not None:
                np.copyto(chunk, source[layer, r])  # cast to float64 (exact for every input dtype)
            else:
                torch.from_numpy(chunk).copy_(X[layer, r])
            if shift_np is not None:
                chunk -= shift_np[layer]
            if factor[layer] != 1.0:
                chunk *= factor[layer]
            G += np.matmul(chunk.T, chunk, out=product)  # (C, C); numpy picks syrk for AᵀA
        return G

    threads = max([lib.num_threads for lib in _blas().lib_controllers] + [1])
    workers = max(1, min(threads, R // rows, SYRK_PARTIALS_BYTES // (8 * C * C)))
    out = torch.empty(L, C, C, dtype=torch.float64)
    if workers == 1:  # one chunk, or a Gram too large to copy per thread: the BLAS's own threads
        for layer in range(L):
            out[layer] = torch.from_numpy(partial(layer, slice(0, R)))
        return out
    edges = [R * i // workers for i in range(workers + 1)]
    with _blas().limit(limits=1), ThreadPoolExecutor(workers) as pool:
        for layer in range(L):
            parts = pool.map(lambda p: partial(layer, slice(*p)), itertools.pairwise(edges))
            out[layer] = torch.from_numpy(sum(parts))  # fixed order: deterministic
    return out


def eigvalsh(G: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of symmetric G (..., C, C), ascending.

    On the CPU, up to a few thousand columns, LAPACK (numpy's OpenBLAS) on one thread: the
    symmetric eigensolvers synchronise threads once per column, and when other processes share
    the cores each barrier waits for a descheduled thread (768×768: 0.035 s on one thread, 4–10 s
    on two under load). threadpoolctl restores the thread count afterwards.
    """
    if G.device.type == "cpu" and G.shape[-1] <= 2048:
        with _blas().limit(limits=1):
            return torch.from_numpy(np.linalg.eigvalsh(G.numpy()))
    return torch.linalg.eigvalsh(G)


# --------------------------------------------------------------------------------------------
# Accuracy: noise floor, denoising, error bound
# --------------------------------------------------------------------------------------------


def noise_floor(trace: float, lam_max: float, n_sum: int, dim: int) -> float:
    """Estimated absolute error of every Gram eigenvalue (Weyl: |δλ| ≤ ‖δG‖₂).

    - forming G: entry (i, j) is a length-n_sum float64 dot product, |δG_ij| ≤ γ·Σ_r |x_ri||x_rj|,
      and ‖|X|ᵀ|X|‖₂ ≤ ‖X‖_F² = trace(G). Rounding errors behave like independent random
      variables and grow as √n·u with overwhelming probability (Higham & Mary 2019, "A new
      approach to probabilistic rounding error analysis"), not as the worst case n·u.
    - eigvalsh is backward stable: |δλ| ≤ p(C)·u·‖G‖₂; we take p = √C.
    `trace` must be that of the Gram the products were summed in (the *uncentered* one when a
    mean is subtracted afterwards). ε₆₄ = 2u gives a safety factor of 2 over both estimates.
    """
    return _EPS64 * (math.sqrt(n_sum) * trace + math.sqrt(dim) * lam_max)


def denoise(lam: np.ndarray, tol: float, force: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) with sub-floor ones set to exact zeros, and the mask of those.

    Zeros are set when a gap of GAP_FACTOR separates them from the resolved eigenvalues, or when
    `force` (method="gram"); otherwise everything is just clipped at 0. This only picks the point
    estimate: `rankme_error_bound` counts every value with its whole interval.
    """
    below = lam <= tol
    if below.any() and (force or lam[~below].min(initial=np.inf) >= GAP_FACTOR * tol):
        return np.where(below, 0.0, lam), below
    return np.clip(lam, 0.0, None), np.zeros_like(below)


def rankme_error_bound(
    lam: np.ndarray, estimate: np.ndarray, tol: float, eps: float, squared: bool
) -> float:
    """Bound on the relative error of RankMe when each true eigenvalue lies in [λ̂ − tol, λ̂ + tol].

    lam: raw eigenvalues λ̂ (descending); estimate: the values actually used (zeroed / clipped).
    With v = σ = √λ (or λ when squared), p_k = v_k/S + ε, S = Σv, H = −Σ p log p:
    ∂H/∂v_j = −(log p_j − m)/S with m = Σ_k (v_k/S) log p_k. Along the segment from the estimate
    to the truth, v_j ∈ [lo_j, hi_j] (so zeroed or clipped values count with their possible size,
    up to √(2·tol)), S ≥ S_lo = S − Σδv, and |log p_j − m| is taken at the worst end of p_j's range
    with m's own drift bounded by |δm| ≤ (A + 2Σδv/S_lo). Then |δH| ≤ A + |δm|·Σδv/S_lo with
    A = Σ_j max|log p_j − m̂|·δv_j/S_lo, and RankMe = e^H moves by at most expm1(|δH|).
    With ε = 0 a value that may be zero has log p = −∞: the bound is infinite (auto takes the SVD).
    """
    lo_lam = np.clip(lam - tol, 0.0, None)
    hi_lam = np.clip(lam + tol, 0.0, None)
    if squared:
        v, lo, hi = estimate, lo_lam, hi_lam
    else:
        v, lo, hi = np.sqrt(estimate), np.sqrt(lo_lam), np.sqrt(hi_lam)
    dv = np.maximum(hi - v, v - lo)
    total, spread = float(v.sum()), float(dv.sum())
    s_lo, s_hi = total - spread, total + spread
    if s_lo <= 0:
        return math.inf
    with np.errstate(divide="ignore"):
        m = float((v / total * np.log(v / total + eps)).sum()) if eps > 0 else float(
            (v / total * np.log(np.where(v > 0, v / total, 1.0))).sum()
        )
        log_lo = np.log(lo / s_hi + eps)  # −inf where lo = 0 and eps = 0
        log_hi = np.log(hi / s_lo + eps)
    worst = np.maximum(np.abs(log_lo - m), np.abs(log_hi - m))
    if not np.isfinite(worst[dv > 0]).all():
        return math.inf
    first = float((worst[dv > 0] * dv[dv > 0]).sum()) / s_lo
    drift = first + 2 * spread / s_lo
    return math.expm1(first + drift * spread / s_lo)


# --------------------------------------------------------------------------------------------
# SVD fallback and the per-layer decision
# --------------------------------------------------------------------------------------------


def _svdvals64(A: torch.Tensor) -> torch.Tensor:
    """float64 singular values; on CUDA with gesvd (QR iteration: documented for ill-conditioned
    matrices, where the default gesvdj may lose the small singular values)."""
    return torch.linalg.svdvals(A, driver="gesvd") if A.is_cuda else torch.linalg.svdvals(A)


def svdvals(X: torch.Tensor, shift: torch.Tensor | None, inv_scale: torch.Tensor) -> torch.Tensor:
    """Singular values (L, min(N, D)) of (X − shift)·inv_scale in float64, descending.

    Up to a few chunks, one float64 copy and an SVD. Taller matrices are first reduced to their
    D×D triangular factor by a chunked (TSQR-style) QR — backward stable like the SVD, so the
    singular values are as accurate, with memory bounded by one chunk.
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
        return _svdvals64(load(slice(0, N)))
    R = None
    for rows in _row_slices(N, rows_per_chunk):
        block = load(rows) if R is None else torch.cat([R, load(rows)], dim=1)  # (L, r+D, D)
        R = torch.linalg.qr(block, mode="r").R  # (L, D, D)
    return _svdvals64(R)


def check_gram_layer(
    lam: np.ndarray, trace: float, n_sum: int, dim: int, *, force: bool, eps: float, squared: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """One layer's Gram eigenvalues → (point estimate of λ, zeroed mask, RankMe error bound)."""
    tol = noise_floor(trace, float(max(lam[0], 0.0)), n_sum, dim)
    clean, zeroed = denoise(lam, tol, force=force)
    return clean, zeroed, rankme_error_bound(lam, clean, tol, eps, squared)


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
        G = gram(X, shift, inv_scale, X.device)  # (L, D, D)
    else:
        shift = mean.unsqueeze(2) if mean is not None else None  # (L, D, 1): rows of Zᵀ
        G = gram(X.mT, shift, inv_scale, X.device)  # (L, N, N)
    trace = G.diagonal(dim1=-2, dim2=-1).sum(-1).cpu().numpy()  # (L,)
    if not np.isfinite(trace).all():
        scan(X, name)  # raises, counting the NaN and Inf values
    if mean is None:
        check_nonzero(torch.from_numpy(trace), name, batched)
    lam = eigvalsh(G).flip(-1).cpu().numpy()  # (L, K)
    return lam, trace, max(N, D)


def spectrum(
    Z: ArrayLike, *, method: str, center: bool, eps: float, squared: bool, name: str = "Z"
) -> tuple[np.ndarray, list[str], list[int], list[float | None], bool]:
    """σ (L, K), path per layer, zeroed count per layer, error bound per layer, batched."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    X, batched = prepare(Z, name)  # (L, N, D)
    L, N, D = X.shape
    if X.dtype == torch.float64 or method == "svd":
        amax = scan(X, name)
        check_nonzero(amax, name, batched)
        scale = pow2_scale(amax)  # (L,): exact rescaling, undone on σ at the end
    else:
        # squares of float32/16/bfloat16 values neither overflow nor underflow float64 (≤ 2^256,
        # ≥ 2^-298), so no rescaling is needed and NaN/Inf/zero are caught on the Gram matrix
        # itself, which saves a full pass over Z (see `_gram_eigenvalues`)
        scale = torch.ones(L, dtype=torch.float64)
    inv_scale = 1.0 / scale
    mean = column_sum(X, X.device) / N if center else None  # (L, D)

    K = min(N, D)
    sigma = np.zeros((L, K))
    methods = ["svd"] * L
    n_zeroed = [0] * L
    bounds: list[float | None] = [None] * L
    if method != "svd":
        lam, trace, n_sum = _gram_eigenvalues(X, mean, inv_scale, name, batched)
        for layer in range(L):
            if center:
                check_centered_nonzero(trace[layer], name, layer, batched)
            clean, zeroed, bounds[layer] = check_gram_layer(
                lam[layer], trace[layer], n_sum, K,
                force=(method == "gram"), eps=eps, squared=squared,
            )
            if method == "gram" or bounds[layer] <= AUTO_RTOL:
                methods[layer] = "gram"
                n_zeroed[layer] = int(zeroed.sum())
                sigma[layer] = np.sqrt(clean) * float(scale[layer])
    for layer in (i for i in range(L) if methods[i] == "svd"):
        shift = mean[layer : layer + 1].unsqueeze(1) if center else None  # (1, 1, D)
        s = svdvals(X[layer : layer + 1], shift, inv_scale[layer : layer + 1])
        sigma[layer] = s[0].cpu().numpy() * float(scale[layer])
        if center:
            check_centered_nonzero(float(sigma[layer, 0]), name, layer, batched)
    return sigma, methods, n_zeroed, bounds, batched
