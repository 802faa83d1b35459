"""The scores probes report: accuracy (multiclass) and macro mean average precision (multilabel),
in numpy, checked against scikit-learn's definitions by the tests."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "average_precision", "mean_average_precision"]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of samples whose predicted class index equals the true one."""
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy of zero samples is undefined")
    return float(np.mean(y_true == y_pred))


def average_precision(y_true: Any, scores: Any) -> float:
    """Average precision of one class: mean over positives i of precision at threshold scores[i].

    AP = (1/|pos|) Σ_{i ∈ pos} #{j ∈ pos: s_j ≥ s_i} / #{j: s_j ≥ s_i}; tied scores form one
    threshold (the same value as scikit-learn's `average_precision_score`). NaN without positives.
    """
    y = np.asarray(y_true).reshape(-1).astype(bool)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"y_true and scores differ in length: {y.shape} vs {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)  # true positives among the first k+1
    # the last index of each run of tied scores: everything tied counts at one threshold
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s.size - 1]
    tp_at = tp[last]
    precision = tp_at / (last + 1.0)
    new_pos = np.diff(np.r_[0, tp_at])  # positives entering at each threshold
    return float(np.sum(new_pos * precision) / n_pos)


def mean_average_precision(Y: Any, S: Any) -> float:
    """Macro mAP: mean of `average_precision` over the classes (columns) with ≥ 1 positive."""
    Y = np.asarray(Y)
    S = np.asarray(S, dtype=np.float64)
    if Y.ndim != 2 or Y.shape != S.shape:
        raise ValueError(f"Y and S must be (N, C) arrays of one shape, got {Y.shape} and {S.shape}")
    aps = [average_precision(Y[:, c], S[:, c]) for c in range(Y.shape[1]) if Y[:, c].any()]
    if not aps:
        raise ValueError("mAP is undefined: no class has a positive sample")
    return float(np.mean(aps))
