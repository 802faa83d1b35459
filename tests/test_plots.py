"""Tick labels of the log axes the notebooks draw: short, and one style per decade range."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from audiorank.plots import _tick_label, log_axes  # noqa: E402


@pytest.mark.parametrize("value, label", [(0.5, "0.5"), (7, "7"), (500, "500"), (2000, "2,000"),
                                          (1e4, "1e4"), (2e5, "2e5"), (1e12, "1e12")])
def test_tick_labels_are_compact(value, label):
    assert _tick_label(value) == label


def test_log_axes_label_parameter_counts_in_one_style():
    fig, ax = plt.subplots()
    ax.plot([8e3, 3e6], [1, 2])
    log_axes(ax, "x")
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert labels and all("e" in label for label in labels if float(label.replace(",", "")) >= 1e4)
    assert not any("," in label and float(label.replace(",", "")) >= 1e4 for label in labels)


@pytest.mark.parametrize("width, low, high", [(1.6, 30, 256), (1.6, 0.4, 0.9), (3.0, 1e4, 3e6), (8.0, 1, 1000),
                                              (1.2, 2e10, 3e13)])
def test_log_tick_labels_never_overlap_and_are_not_too_few(width, low, high):
    fig, ax = plt.subplots(figsize=(width + 0.8, 2.5))
    fig.subplots_adjust(left=0.4 / (width + 0.8), right=1 - 0.4 / (width + 0.8))
    ax.plot([low, high], [1, 2])
    ax.set_xlim(low, high)
    log_axes(ax, "x")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = sorted((t.get_window_extent(renderer) for t in ax.get_xticklabels()
                    if t.get_text() and t.get_visible() and low <= t.get_position()[0] <= high), key=lambda b: b.x0)
    plt.close(fig)
    assert len(boxes) >= 2, "at least two labelled ticks"
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 <= right.x0, "tick labels overlap"
