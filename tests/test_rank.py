"""Tests of audiorank.rank against an independent float64 numpy SVD reference.

The reference RankMe is written here again from the paper's formula (Garrido et al. 2023), on
singular values from `np.linalg.svd` of the matrix cast to float64, so the library's Gram path,
accuracy check and SVD fallback are all checked against something they do not share code with.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiorank.rank import (
    AlphaReq,
    RankMe,
    alpha_req,
    lidar,
    rankme,
    singular_values,
    stable_rank,
)
import audiorank._rank_accuracy as acc
from audiorank.rank import AUTO_RTOL
from audiorank.synthetic import (
    embeddings_with_spectrum,
    gap_spectrum,
    gaussian_embeddings,
    power_law_spectrum,
)

EPS = 1e-7
RTOL = {np.float64: 1e-6, np.float32: 1e-5}


def ref_sigma(Z) -> np.ndarray:
    return np.linalg.svd(np.asarray(Z, dtype=np.float64), compute_uv=False)


def ref_rankme(Z, eps: float = EPS, center: bool = False, squared: bool = False) -> float:
    """RankMe from the paper, on numpy's float64 SVD: exp(−Σ p log p), p = σ/‖σ‖₁ + ε."""
    Z = np.asarray(Z, dtype=np.float64)
    if center:
        Z = Z - Z.mean(axis=0)
    s = ref_sigma(Z)
    if squared:
        s = s**2
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(np.where(p > 0, p, 1.0)))))  # 0·log 0 = 0 (eps = 0)


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def random_orthogonal(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# Matrices as float64 numpy arrays; each test casts them to the dtype under test.
def gaussian(n=600, d=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


def power_law(alpha, n=500, d=64, seed=1):
    return embeddings_with_spectrum(n, power_law_spectrum(d, alpha), seed=seed, dtype=np.float64)


CASES = {
    "gaussian": lambda: gaussian(),
    "power_law_0.5": lambda: power_law(0.5),
    "power_law_1": lambda: power_law(1.0),
    "power_law_2": lambda: power_law(2.0),
    "power_law_3": lambda: power_law(3.0),
    "rank_deficient": lambda: embeddings_with_spectrum(
        500, power_law_spectrum(64, 1.0, rank=10), seed=2, dtype=np.float64
    ),
    "n_less_than_d": lambda: gaussian(n=40, d=100, seed=3),
    "scaled_1e-3": lambda: 1e-3 * power_law(1.0),
    "scaled_1e4": lambda: 1e4 * power_law(1.0),
    "rotated": lambda: power_law(1.5) @ random_orthogonal(64, seed=4),
}
# Cases where the plain Gram path is itself accurate enough (no small singular values).
WELL_CONDITIONED = ["gaussian", "power_law_0.5", "power_law_1", "n_less_than_d", "scaled_1e-3",
                    "scaled_1e4", "rotated"]


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rankme_matches_float64_svd(case, dtype, kind):
    Z = CASES[case]().astype(dtype)
    expected = ref_rankme(Z)
    got = rankme(torch.from_numpy(Z) if kind == "torch" else Z)
    assert isinstance(got, float)
    assert rel(got, expected) <= RTOL[dtype]


@pytest.mark.parametrize("method", ["auto", "gram", "svd"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", WELL_CONDITIONED)
def test_every_method_meets_the_bound(case, dtype, method):
    Z = CASES[case]().astype(dtype)
    assert rel(rankme(Z, method=method), ref_rankme(Z)) <= RTOL[dtype]


@pytest.mark.parametrize("method", ["auto", "svd"])
@pytest.mark.parametrize("case", ["power_law_2", "power_law_3", "rank_deficient"])
def test_ill_conditioned_cases_with_auto_and_svd(case, method):
    # The plain Gram path cannot resolve σ_k/σ_1 below ~1e-7; "auto" detects this and falls back.
    for dtype in (np.float64, np.float32):
        Z = CASES[case]().astype(dtype)
        assert rel(rankme(Z, method=method), ref_rankme(Z)) <= RTOL[dtype]


def test_auto_falls_back_to_svd_for_steep_spectra_and_float32_low_rank():
    assert singular_values(power_law(3.0), return_info=True).method == ("svd",)
    # float32 storage gives a "rank-10" matrix tiny non-zero singular values: not exact zeros.
    low32 = CASES["rank_deficient"]().astype(np.float32)
    assert singular_values(low32, return_info=True).method == ("svd",)
    # In float64 they are at the 1e-16 level, but the Gram cannot tell them from values at its
    # resolution (~1e-8·σ_1), which would move RankMe by ~1e-5: the bound says so, auto takes the SVD.
    info = singular_values(CASES["rank_deficient"](), method="gram", return_info=True)
    assert info.n_zeroed == (54,) and info.error_bound[0] > 1e-6
    assert singular_values(CASES["rank_deficient"](), return_info=True).method == ("svd",)


# A steep head (σ = k^-α for a few dozen k) then a plateau near the Gram's resolution, behind a
# spectral gap: the family where zeroing "sub-floor" values silently cost ~1e-4 of RankMe.
GAP_CASES = {
    f"gap_n{n}_d{d}_h{head}_p{plateau:g}_a{alpha:g}": (n, d, head, plateau, alpha)
    for n, d, head, plateau, alpha in [
        (1000, 128, 30, 1e-7, 1.0),
        (2000, 256, 50, 1e-7, 1.0),
        (3000, 200, 20, 3e-7, 1.0),
        (800, 96, 40, 1e-8, 1.0),
        (1500, 160, 24, 1e-6, 1.5),
        (600, 300, 60, 1e-7, 0.7),
    ]
}


def gap_matrix(case: str) -> np.ndarray:
    n, d, head, plateau, alpha = GAP_CASES[case]
    return embeddings_with_spectrum(n, gap_spectrum(d, head, plateau, alpha), seed=d, dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(GAP_CASES))
def test_gap_family_matches_float64_svd(case, dtype):
    Z = gap_matrix(case).astype(dtype)
    assert rel(rankme(Z), ref_rankme(Z)) <= RTOL[dtype]
    gram = singular_values(Z, method="gram", return_info=True)
    assert rel(rankme(Z, method="gram"), ref_rankme(Z)) <= gram.error_bound[0]


ALL_CASES = {**{c: CASES[c] for c in CASES}, **{c: (lambda c=c: gap_matrix(c)) for c in GAP_CASES}}


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_error_bound_covers_the_true_error_everywhere(case, dtype, center):
    Z = ALL_CASES[case]().astype(dtype)
    if center:
        Z = Z + 1.0  # an offset the centering must remove
    for method in ("gram", "auto"):
        info = singular_values(Z, method=method, center=center, return_info=True)
        got = rankme(Z, method=method, center=center)
        actual = rel(got, ref_rankme(Z, center=center))
        if info.method[0] == "gram":
            assert actual <= info.error_bound[0]
        else:  # the SVD fallback, taken because the Gram could not certify AUTO_RTOL
            assert info.error_bound[0] > AUTO_RTOL and actual <= 1e-10


@pytest.mark.parametrize("case", ["rank_deficient", "power_law_1", sorted(GAP_CASES)[0]])
def test_eps_zero_and_squared_bounds(case):
    Z = ALL_CASES[case]()
    assert rel(rankme(Z, eps=0.0), ref_rankme(Z, eps=0.0)) <= 1e-9
    assert rel(rankme(Z, squared=True), ref_rankme(Z, squared=True)) <= 1e-9
    # the library's own Gram eigenvalues, checked with each (eps, squared) against the reference
    lam, trace, n_sum = acc._gram_eigenvalues(torch.from_numpy(Z)[None], None,
                                              torch.ones(1, dtype=torch.float64), "Z", False)
    for eps, squared in [(0.0, False), (EPS, True), (0.0, True)]:
        clean, _, bound = acc.check_gram_layer(lam[0], trace[0], n_sum, min(Z.shape), force=True,
                                               eps=eps, squared=squared)
        actual = rel(rankme(Z, eps, squared=squared, method="gram"),
                     ref_rankme(Z, eps, squared=squared))
        assert actual <= bound
        if case == "rank_deficient" and eps == 0.0:
            # values that may be zero have log p = −∞ when eps = 0: the Gram path cannot bound it
            assert bound == math.inf


def test_singular_values_match_numpy():
    Z = power_law(1.0)
    np.testing.assert_allclose(singular_values(Z), ref_sigma(Z), rtol=1e-9, atol=1e-12)
    Zw = gaussian(n=30, d=70)
    assert singular_values(Zw).shape == (30,)
    np.testing.assert_allclose(singular_values(Zw, method="svd"), ref_sigma(Zw), rtol=1e-12)


def test_gaussian_25600x768_takes_the_gram_path():
    Z = np.random.default_rng(0).standard_normal((25_600, 768), dtype=np.float32)
    info = singular_values(Z, return_info=True)
    assert info.method == ("gram",)
    assert info.error_bound[0] < 1e-8  # accuracy vs the SVD is checked on the smaller cases
    assert info.sigma.shape == (768,) and info.n_zeroed == (0,)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_accepted(dtype):
    Z = torch.from_numpy(power_law(1.0)).to(dtype)
    expected = ref_rankme(Z.double().numpy())  # the same values, exactly, in float64
    assert rel(rankme(Z), expected) <= 1e-5
    if dtype == torch.float16:
        assert rel(rankme(Z.numpy()), expected) <= 1e-5


def test_center_and_squared_options():
    Z = power_law(1.0) + 5.0  # a large common offset: centering matters
    assert rel(rankme(Z, center=True), ref_rankme(Z, center=True)) <= 1e-6
    assert rel(rankme(Z, squared=True), ref_rankme(Z, squared=True)) <= 1e-6
    both = rankme(Z, center=True, squared=True)
    assert rel(both, ref_rankme(Z, center=True, squared=True)) <= 1e-6
    assert rel(rankme(Z, center=True), ref_rankme(Z)) > 1e-3  # never applied silently


@pytest.mark.parametrize("method", ["auto", "gram", "svd"])
def test_batched_layers_equal_per_layer(method):
    layers = [gaussian(n=300, d=40, seed=s) for s in range(2)] + [power_law(3.0, n=300, d=40)]
    Z = np.stack(layers)  # (3, 300, 40)
    got = rankme(Z, method=method)
    assert isinstance(got, np.ndarray) and got.shape == (3,) and got.dtype == np.float64
    for layer, value in zip(layers, got, strict=True):
        assert rel(value, rankme(layer, method=method)) <= 1e-12
    if method == "auto":
        assert singular_values(Z, return_info=True).method == ("gram", "gram", "svd")


def test_torch_tensor_with_grad_and_noncontiguous_input():
    Z = torch.from_numpy(gaussian(n=200, d=30)).requires_grad_(True)
    assert rel(rankme(Z), ref_rankme(Z.detach().numpy())) <= 1e-9
    Zt = gaussian(n=30, d=200).T  # non-contiguous numpy view
    assert rel(rankme(Zt), ref_rankme(Zt)) <= 1e-9
    assert rel(rankme(Zt[::-1]), ref_rankme(Zt)) <= 1e-9  # negative strides


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    Z = torch.from_numpy(np.stack([gaussian(n=2000, d=128), power_law(2.0, n=2000, d=128)]))
    for dtype in (torch.float32, torch.float64):
        cpu = rankme(Z.to(dtype))
        gpu = rankme(Z.to(dtype).cuda())
        np.testing.assert_allclose(gpu, cpu, rtol=1e-9)


# ------------------------------------------------------------------------------------------------
# Streaming estimator
# ------------------------------------------------------------------------------------------------


def test_streaming_chunks_equal_one_shot():
    Z = gaussian_embeddings(3000, power_law_spectrum(48, 0.7), seed=5, dtype=np.float64)
    est = RankMe()
    for start, stop in [(0, 1), (1, 700), (700, 2048), (2048, 3000)]:
        est.update(Z[start:stop])
    assert est.n_samples == 3000
    assert rel(est.compute(), rankme(Z)) <= 1e-9


@pytest.mark.parametrize("center", [False, True])
def test_streaming_merge_is_order_independent(center):
    Z = gaussian_embeddings(4000, power_law_spectrum(32, 0.5), seed=6, dtype=np.float64) + 3.0
    parts = [Z[:1500], Z[1500:1501], Z[1501:]]
    estimators = [RankMe(center=center).update(p) for p in parts]
    one_shot = rankme(Z, center=center)

    def merged(order):
        acc = RankMe(center=center)
        for i in order:
            acc.merge(estimators[i])
        return acc.compute()

    for order in [(0, 1, 2), (2, 1, 0), (1, 2, 0)]:
        assert rel(merged(order), one_shot) <= 1e-9
    a = RankMe(center=center).update(parts[0]).update(parts[1])
    assert a.merge(estimators[2]) is a
    assert rel(a.compute(), one_shot) <= 1e-9


def test_streaming_batched_layers_and_torch_chunks():
    Z = np.stack([gaussian(n=1000, d=24, seed=s) for s in range(3)])  # (3, 1000, 24)
    est = RankMe()
    for rows in (slice(0, 400), slice(400, 1000)):
        est.update(torch.from_numpy(Z[:, rows]))
    np.testing.assert_allclose(est.compute(), rankme(Z), rtol=1e-9)


def test_streaming_state_is_d_by_d_whatever_n():
    d = 16
    small = RankMe().update(gaussian(n=50, d=d))
    large = RankMe()
    for seed in range(20):
        large.update(gaussian(n=1000, d=d, seed=seed))
    for est in (small, large):
        assert est.gram.shape == (d, d) and est.gram.dtype == torch.float64
    assert large.gram.nbytes == small.gram.nbytes == d * d * 8
    assert large.n_samples == 20_000


def test_streaming_fewer_samples_than_dims_matches_rankme():
    Z = gaussian(n=20, d=50)
    est = RankMe().update(Z[:7]).update(Z[7:])
    assert rel(est.compute(), rankme(Z)) <= 1e-9


def test_streaming_errors_and_reset():
    est = RankMe()
    with pytest.raises(ValueError, match="at least 2 samples"):
        est.compute()
    est.update(gaussian(n=10, d=8))
    with pytest.raises(ValueError, match="expected chunks of shape"):
        est.update(gaussian(n=10, d=9))
    with pytest.raises(ValueError, match="expected"):
        est.merge(RankMe(center=True).update(gaussian(n=10, d=8)))
    with pytest.raises(ValueError, match="state of shape"):
        est.merge(RankMe().update(gaussian(n=10, d=9)))
    with pytest.raises(ValueError, match="NaN"):
        est.update(np.full((3, 8), np.nan))
    assert est.reset() is est and est.n_samples == 0 and est.gram is None
    with pytest.raises(ValueError, match="all-zero embeddings have no spectrum"):
        RankMe().update(np.zeros((5, 8))).compute()


# ------------------------------------------------------------------------------------------------
# Properties (hypothesis)
# ------------------------------------------------------------------------------------------------


@st.composite
def matrices(draw):
    """Small float64 matrices with a random rank and spectral decay."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 16))
    rank = draw(st.integers(1, min(n, d)))
    alpha = draw(st.floats(0.0, 3.0))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    left = rng.standard_normal((n, rank)) * np.arange(1, rank + 1) ** -alpha
    return left @ rng.standard_normal((rank, d)), seed


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(matrices())
def test_invariant_to_row_permutation(data):
    Z, seed = data
    perm = np.random.default_rng(seed).permutation(Z.shape[0])
    assert rel(rankme(Z[perm]), rankme(Z)) <= 1e-7


@SETTINGS
@given(matrices())
def test_invariant_to_orthogonal_rotation(data):
    Z, seed = data
    assert rel(rankme(Z @ random_orthogonal(Z.shape[1], seed)), rankme(Z)) <= 1e-7


@SETTINGS
@given(matrices(), st.floats(1e-6, 1e6))
def test_invariant_to_global_scale(data, c):
    Z, _ = data
    assert rel(rankme(c * Z), rankme(Z)) <= 1e-7


@SETTINGS
@given(matrices())
def test_bounded_by_one_and_min_n_d(data):
    # With K = min(N, D) values, p_k = q_k + ε lies on {p ≥ ε, Σp = 1 + Kε}; the entropy is concave,
    # so it is smallest at a vertex p = (1+ε, ε, …, ε) and largest at p = (1/K + ε, …).
    Z, _ = data
    K = min(Z.shape)
    h_min = -(1 + EPS) * math.log1p(EPS) - (K - 1) * EPS * math.log(EPS)
    h_max = -(1 + K * EPS) * math.log(1 / K + EPS)
    r = rankme(Z)
    assert math.exp(h_min) * (1 - 1e-12) <= r <= math.exp(h_max) * (1 + 1e-12)
    assert 1 - 2 * EPS <= r <= K * (1 + 20 * K * EPS)  # the same bounds, loosely


# ------------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------------


def with_nan_and_inf():
    Z = gaussian(n=20, d=5)
    Z[0, 0] = Z[3, 1] = np.nan
    Z[5, 2] = np.inf
    return Z


@pytest.mark.parametrize(
    "Z, fragment",
    [
        (with_nan_and_inf(), "2 NaN and 1 infinite"),
        (np.zeros((0, 5)), "empty"),
        (np.ones(5), "shape (N, D) or (L, N, D)"),
        (np.ones((2, 2, 5, 3)), "got a 4-D array"),
        (np.ones((1, 5)), "expected N >= 2"),
        (np.arange(20).reshape(10, 2), "unsupported dtype int64"),
        (np.ones((10, 2), dtype=np.complex128), "unsupported dtype complex128"),
        (torch.ones(10, 2, dtype=torch.int32), "unsupported dtype torch.int32"),
        (np.zeros((10, 4)), "all-zero embeddings have no spectrum"),
        (np.stack([gaussian(10, 4), np.zeros((10, 4))]), "layers [1]"),
    ],
)
def test_bad_input_raises(Z, fragment):
    with pytest.raises(ValueError, match="Z") as excinfo:
        rankme(Z)
    assert fragment in str(excinfo.value)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="method must be one of"):
        rankme(gaussian(10, 3), method="qr")
    with pytest.raises(ValueError, match="eps must be"):
        rankme(gaussian(10, 3), eps=-1.0)
    with pytest.raises(ValueError, match="all rows equal"):
        rankme(np.full((10, 3), 2.0), center=True)


def test_constant_embeddings_have_rankme_one():
    for Z in (np.full((100, 32), 0.3), np.tile(gaussian(1, 32), (100, 1)).astype(np.float32)):
        r = rankme(Z)
        assert not math.isnan(r) and 1.0 <= r <= 1.001


# ------------------------------------------------------------------------------------------------
# α-ReQ, LiDAR, stable rank
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.8, 1.5, 2.5])
def test_alpha_req_recovers_power_law_exponent(alpha):
    # σ_k = k^(−α/2) ⇒ covariance eigenvalues λ_k ∝ σ_k² = k^(−α).
    Z = embeddings_with_spectrum(4000, power_law_spectrum(200, alpha / 2), seed=7)
    result = alpha_req(Z)
    assert isinstance(result, AlphaReq)
    assert result.fit_range == (1, 100)
    assert abs(result.alpha - alpha) < 0.03 and result.r2 > 0.999
    assert abs(alpha_req(Z, fit_range=(5, 50)).alpha - alpha) < 0.03


def test_alpha_req_bad_fit_range():
    with pytest.raises(ValueError, match="fit_range"):
        alpha_req(gaussian(100, 10), fit_range=(3, 30))


def test_lidar_high_for_spread_samples_low_for_collapsed():
    rng = np.random.default_rng(8)
    n, v, d = 400, 4, 32
    noise = 0.01 * rng.standard_normal((n, v, d))
    spread = rng.standard_normal((n, 1, d)) + noise
    collapsed = rng.standard_normal((n, 1, 1)) * rng.standard_normal((1, 1, d)) + noise
    high, low = lidar(spread), lidar(collapsed)
    assert high > 0.8 * d
    assert low < 2.0
    assert rel(lidar(torch.from_numpy(spread)), high) < 1e-12


def test_lidar_matches_direct_formula():
    rng = np.random.default_rng(9)
    Zv = rng.standard_normal((50, 3, 6)) * [1, 2, 3, 0.5, 0.1, 1]
    mu = Zv.mean(axis=1)
    sb = np.cov(mu.T, bias=True)
    w = (Zv - mu[:, None]).reshape(-1, 6)
    sw = w.T @ w / len(w) + 1e-4 * np.eye(6)
    e, V = np.linalg.eigh(sw)
    s = V @ np.diag(e**-0.5) @ V.T
    lam = np.clip(np.linalg.eigvalsh(s @ sb @ s), 0, None)
    p = lam / lam.sum() + EPS
    assert rel(lidar(Zv), float(np.exp(-np.sum(p * np.log(p))))) < 1e-10


def test_lidar_bad_input():
    with pytest.raises(ValueError, match="n_views >= 2"):
        lidar(np.ones((10, 1, 4)))
    with pytest.raises(ValueError, match="n_samples, n_views, D"):
        lidar(np.ones((10, 4)))


def test_stable_rank_matches_numpy():
    for Z in (power_law(1.0), gaussian(n=30, d=90)):
        expected = np.linalg.norm(Z, "fro") ** 2 / np.linalg.norm(Z, 2) ** 2
        assert rel(stable_rank(Z), expected) < 1e-10
    batch = np.stack([gaussian(100, 10, seed=s) for s in range(3)])
    np.testing.assert_allclose(stable_rank(batch), [stable_rank(b) for b in batch], rtol=1e-12)
    with pytest.raises(ValueError, match="all-zero"):
        stable_rank(np.zeros((4, 4)))


def test_streaming_warns_when_gram_cannot_resolve_the_spectrum():
    est = RankMe().update(power_law(3.0))
    with pytest.warns(RuntimeWarning, match="estimated relative error"):
        est.compute()


@pytest.mark.parametrize("center", [False, True])
def test_chunked_gram_and_tsqr_paths_match_reference(monkeypatch, center):
    # Small chunks force many Gram chunks and the chunked-QR (TSQR) route of the SVD fallback.
    import audiorank._rank_accuracy as rank_module

    monkeypatch.setattr(rank_module, "CHUNK_ELEMENTS", 37 * 32)  # 37 rows of 32 columns
    Z = power_law(2.5, n=2000, d=32) + (4.0 if center else 0.0)
    expected = ref_rankme(Z, center=center)
    for method in ("svd", "auto"):
        assert rel(rankme(Z, method=method, center=center), expected) <= 1e-9
    Zg = gaussian(n=2000, d=32)
    assert rel(rankme(Zg, method="gram", center=center), ref_rankme(Zg, center=center)) <= 1e-12
    Zw = gaussian(n=20, d=300)  # N < D: chunks run over the columns of Z
    assert rel(rankme(Zw, center=center), ref_rankme(Zw, center=center)) <= 1e-9


@pytest.mark.parametrize("center", [False, True])
def test_blocked_gram_path_on_cpu_with_several_blocks(monkeypatch, center):
    # The CUDA Gram (blocked lower trapezoid + mirror) runs here on the CPU with ≥ 2 column blocks
    # and several row chunks, through the same code.
    monkeypatch.setattr(acc, "CPU_SYRK", False)
    monkeypatch.setattr(acc, "GRAM_BLOCK_COLUMNS", 8)
    monkeypatch.setattr(acc, "CHUNK_ELEMENTS", 53 * 40)
    assert len(acc.gram_block_edges(40)) - 1 == 4 and len(acc.gram_block_edges(13)) - 1 == 1
    Z = power_law(1.0, n=700, d=40) + (2.0 if center else 0.0)
    X = torch.from_numpy(Z)[None]
    np.testing.assert_allclose(
        acc.gram(X, None, torch.ones(1, dtype=torch.float64), torch.device("cpu"))[0].numpy(),
        Z.T @ Z, rtol=1e-12, atol=1e-12 * np.abs(Z.T @ Z).max(),
    )
    for dtype in (np.float64, np.float32):
        Zd = Z.astype(dtype)
        assert rel(rankme(Zd, method="gram", center=center), ref_rankme(Zd, center=center)) <= 1e-10
        Zg = gap_matrix(sorted(GAP_CASES)[0]).astype(dtype)
        assert rel(rankme(Zg), ref_rankme(Zg)) <= RTOL[dtype]


# ------------------------------------------------------------------------------------------------
# Streaming estimator as a metric state
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("k", [2, 5])
def test_merge_of_k_shards_equals_rankme_of_concatenation(center, k):
    Z = gaussian_embeddings(5000, power_law_spectrum(40, 0.8), seed=10 + k, dtype=np.float64) + 2.0
    bounds = np.sort(np.random.default_rng(k).choice(np.arange(1, 5000), k - 1, replace=False))
    shards = np.split(Z, bounds)
    merged = RankMe(center=center)
    for shard in shards:
        merged.merge(RankMe(center=center).update(shard))
    assert merged.n_samples == 5000
    assert rel(merged.compute(), rankme(Z, center=center, method="svd")) <= 1e-9
    # all-reduce by sum: the elementwise sum of the shards' states is the merged state
    states = [RankMe(center=center).update(shard).state_dict() for shard in shards]
    summed = {key: sum(s[key] for s in states) for key in ("gram", "col_sum", "n")}
    summed["batched"] = states[0]["batched"]
    assert rel(RankMe(center=center).load_state_dict(summed).compute(), merged.compute()) <= 1e-12


def test_state_dict_round_trip_into_a_fresh_object(tmp_path):
    Z = np.stack([gaussian(n=400, d=12, seed=s) + s for s in range(3)])  # (3, 400, 12)
    est = RankMe(center=True).update(Z[:, :150]).update(torch.from_numpy(Z[:, 150:]))
    path = tmp_path / "state.pt"
    torch.save(est.state_dict(), path)
    fresh = RankMe(center=True).load_state_dict(torch.load(path, weights_only=True))
    np.testing.assert_array_equal(fresh.compute(), est.compute())
    assert fresh.n_samples == 400 and fresh.gram.shape == (3, 12, 12)
    # the state is independent of the options: the same numbers serve uncentered RankMe
    plain = RankMe().load_state_dict(est.state_dict())
    np.testing.assert_allclose(plain.compute(), rankme(Z), rtol=1e-9)
    state = est.state_dict()
    state["gram"] += 1.0  # a copy: the estimator is untouched
    np.testing.assert_array_equal(est.compute(), fresh.compute())
    assert RankMe().load_state_dict({}).n_samples == 0 and RankMe().state_dict() == {}
    with pytest.raises(ValueError, match="expected"):
        RankMe().load_state_dict({"gram": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match="expected"):
        RankMe().load_state_dict({**state, "col_sum": torch.zeros(3, 5)})


def test_streaming_centering_matches_numpy_reference_and_compute_only_reads():
    # column offsets of the size of the spread: ZᵀZ − n·μμᵀ cancels about one digit
    Z = power_law(1.0, n=3000, d=48) * 18.0 + np.linspace(-3.0, 3.0, 48)
    est = RankMe(center=True)
    for rows in np.array_split(np.arange(3000), 7):
        est.update(Z[rows].astype(np.float32))
    Z32 = Z.astype(np.float32).astype(np.float64)
    centered = Z32 - Z32.mean(axis=0)
    np.testing.assert_allclose(
        est.state_dict()["gram"][0].numpy() - np.outer(Z32.sum(0), Z32.sum(0)) / 3000,
        centered.T @ centered, atol=1e-9 * np.abs(Z32.T @ Z32).max(),
    )
    before = est.state_dict()
    value = est.compute()
    assert rel(value, ref_rankme(Z32, center=True)) <= 1e-9
    squared = RankMe(squared=True, center=True).merge(RankMe(squared=True, center=True).update(Z32))
    assert rel(squared.compute(), ref_rankme(Z32, center=True, squared=True)) <= 1e-9
    after = est.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # compute did not touch the state
    with pytest.raises(ValueError, match="after centering"):
        RankMe(center=True).update(np.full((6, 4), 3.0)).compute()
    # offsets far above the spread: the cancellation is real, and compute says so
    far = Z32 * 0.02 + np.linspace(-7.0, 7.0, 48)
    with pytest.warns(RuntimeWarning, match="estimated relative error"):
        value = RankMe(center=True).update(far).compute()
    assert rel(value, ref_rankme(far, center=True)) <= 1e-6


def test_to_device_moves_the_state():
    est = RankMe().update(gaussian(n=50, d=6))
    assert est.to("cpu") is est and est.gram.device.type == "cpu"
    if torch.cuda.is_available():
        est.to("cuda").update(gaussian(n=50, d=6, seed=1))
        assert est.gram.device.type == "cuda"
        assert rel(est.compute(), rankme(np.vstack([gaussian(50, 6), gaussian(50, 6, seed=1)]))) <= 1e-9


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_threaded_syrk_partials_match_numpy(monkeypatch, dtype):
    # The CPU Gram splits rows between one-thread-BLAS workers, as many as the BLAS has threads.
    monkeypatch.setattr(acc, "SYRK_CHUNK_BYTES", 64 * 8 * 24)  # 64-row chunks: several per worker
    Z = torch.from_numpy(np.stack([gaussian(n=500, d=24, seed=s) + s for s in range(2)])).to(dtype)
    Z64 = Z.double().numpy()
    shift = torch.from_numpy(Z64.mean(axis=1, keepdims=True))  # (2, 1, 24)
    with acc._blas().limit(limits=3):
        G = acc.gram(Z, shift, torch.tensor([1.0, 0.5], dtype=torch.float64), torch.device("cpu"))
    for layer, factor in enumerate((1.0, 0.5)):
        centered = (Z64[layer] - Z64[layer].mean(axis=0)) * factor
        np.testing.assert_allclose(G[layer].numpy(), centered.T @ centered, rtol=1e-12, atol=1e-10)
