"""One look for every figure of the book, and the few plotting helpers the notebooks share."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def set_theme() -> None:
    """The book's seaborn theme: white grid, colour-blind palette, readable on a laptop screen."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold"})


def spread(
    data: pd.DataFrame, x: str, y: str, hue: str | None = None, ax: plt.Axes | None = None, **kwargs: Any
) -> plt.Axes:
    """Mean over seeds as a line, every seed as a faint point, min–max over seeds as a band."""
    ax = ax if ax is not None else plt.gca()
    groups = data.groupby(hue) if hue else [(None, data)]
    palette = sns.color_palette(n_colors=max(1, data[hue].nunique() if hue else 1))
    for color, (level, group) in zip(palette, groups):
        stats = group.groupby(x)[y].agg(["mean", "min", "max"]).reset_index()
        label = f"{hue} = {level}" if hue else kwargs.pop("label", None)
        ax.plot(stats[x], stats["mean"], color=color, marker="o", ms=3, label=label, **kwargs)
        ax.fill_between(stats[x], stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
        ax.scatter(group[x], group[y], color=color, s=6, alpha=0.35, lw=0)
    return ax


def log_ticks(ax: plt.Axes, axis: str = "x") -> None:
    """Plain-number tick labels on a log axis (256, 1024, … rather than 10^2.4)."""
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(plt.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    target.set_minor_formatter(plt.NullFormatter())


def relative_gap(values: np.ndarray, reference: float | np.ndarray) -> np.ndarray:
    """|value − reference| / |reference|, elementwise (reference a scalar or an array like values)."""
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(np.asarray(values, dtype=np.float64) - reference) / np.abs(reference)
