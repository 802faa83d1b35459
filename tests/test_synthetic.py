"""Synthetic spectra: the matrices the rank tests and the rank-estimation chapter rely on."""

import numpy as np
import pytest

from audiorank import rankme
from audiorank.synthetic import (
    embeddings_with_spectrum,
    gap_spectrum,
    gaussian_embeddings,
    population_rankme,
    power_law_spectrum,
)


def test_embeddings_with_spectrum_have_exactly_that_spectrum():
    sigma = power_law_spectrum(40, 1.3, rank=25)
    Z = embeddings_with_spectrum(300, sigma, seed=4, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.svd(Z, compute_uv=False), sigma, atol=1e-12)
    assert rankme(Z) == pytest.approx(population_rankme(sigma), rel=1e-9)


def test_gaussian_embeddings_are_seeded_and_have_the_population_covariance():
    sigma = power_law_spectrum(16, 0.7)
    a = gaussian_embeddings(200_000, sigma, seed=1, dtype=np.float64, chunk=30_000)
    assert np.array_equal(a, gaussian_embeddings(200_000, sigma, seed=1, dtype=np.float64, chunk=30_000))
    assert not np.array_equal(a[:10], gaussian_embeddings(10, sigma, seed=2, dtype=np.float64))
    eigenvalues = np.sort(np.linalg.eigvalsh(a.T @ a / len(a)))[::-1]
    np.testing.assert_allclose(eigenvalues, sigma**2, rtol=0.02)


def test_population_rankme_of_flat_and_single_spectra():
    assert population_rankme(np.ones(10)) == pytest.approx(10, rel=1e-5)
    assert population_rankme(power_law_spectrum(10, 1.0, rank=1)) == pytest.approx(1, rel=1e-4)  # ε terms: 1 + 1.4e-5


def test_gap_spectrum_has_head_then_plateau():
    sigma = gap_spectrum(10, 4, 1e-7, alpha=2.0)
    np.testing.assert_array_equal(sigma[:4], [1.0, 1 / 4, 1 / 9, 1 / 16])
    np.testing.assert_array_equal(sigma[4:], np.full(6, 1e-7))
    Z = embeddings_with_spectrum(50, gap_spectrum(20, 5, 1e-3), seed=3, dtype=np.float64)
    np.testing.assert_allclose(np.linalg.svd(Z, compute_uv=False), gap_spectrum(20, 5, 1e-3), atol=1e-13)


@pytest.mark.parametrize("call, message", [
    (lambda: gap_spectrum(5, 0, 1e-7), "head must lie"),
    (lambda: gap_spectrum(5, 6, 1e-7), "head must lie"),
    (lambda: gap_spectrum(5, 2, -1.0), "plateau must be"),
    (lambda: power_law_spectrum(0, 1.0), "d must be"),
    (lambda: power_law_spectrum(5, -1.0), "alpha must be"),
    (lambda: power_law_spectrum(5, 1.0, rank=6), "rank must lie"),
    (lambda: embeddings_with_spectrum(3, np.ones(5)), "n >= d"),
    (lambda: gaussian_embeddings(0, np.ones(5)), "n must be"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
