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
    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.titleweight": "bold",
                         "figure.figsize": (9.0, 3.6), "legend.fontsize": "small"})
    try:  # sharp on high-DPI screens: inline figures at twice the pixels
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")
    except ImportError:  # outside Jupyter
        pass


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


#: tick positions per decade, sparsest first; log_ticks takes the densest that fits
_LOG_SUBS: tuple[tuple[float, ...], ...] = ((1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                                             (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0))


def log_ticks(ax: plt.Axes, axis: str = "x") -> None:
    """Readable tick labels on a log axis — plain numbers (256, 1,024), compact powers for large
    values (3e12) — as many per decade as the panel's size leaves room for without labels touching:
    call it after plotting and after setting the figure size."""
    target = getattr(ax, f"{axis}axis")
    low, high = getattr(ax, f"get_{axis}lim")()
    if not (low > 0 and high > low):
        return
    box = ax.get_position()
    fig_w, fig_h = ax.figure.get_size_inches()
    length = box.width * fig_w if axis == "x" else box.height * fig_h  # inches
    font = plt.rcParams["xtick.labelsize" if axis == "x" else "ytick.labelsize"]
    points = font if isinstance(font, (int, float)) else plt.rcParams["font.size"] * 0.9
    chosen = _LOG_SUBS[0]
    for subs in _LOG_SUBS:
        ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
                 for m in subs if low <= m * 10.0**e <= high]
        # a label's extent along the axis: its width (x) or its line height (y), plus a gap
        extent = (max((len(_tick_label(t)) for t in ticks), default=1) * 0.6 + 1.5 if axis == "x" else 2.2) * points / 72
        if len(ticks) <= 1 or _fits(np.log10(ticks), np.log10(low), np.log10(high), length, extent):
            chosen = subs
        else:
            break
    target.set_major_locator(plt.LogLocator(base=10, subs=chosen))
    target.set_major_formatter(plt.FuncFormatter(_tick_label))
    target.set_minor_formatter(plt.NullFormatter())


def _fits(positions: np.ndarray, low: float, high: float, length: float, extent: float) -> bool:
    """Whether labels `extent` inches long centred at these log positions leave each other room."""
    inches = (np.asarray(positions) - low) / (high - low) * length
    return bool(np.all(np.diff(np.sort(inches)) >= extent))


def _tick_label(value: float, _position: Any = None) -> str:
    # powers from 10^4 up, so one axis never mixes "10,000" with "1e5"
    if value >= 1e4:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{value:,.0f}" if value >= 1e3 else f"{value:g}"


def log_axes(ax: plt.Axes, which: str = "xy") -> plt.Axes:
    """Log scale with plain-number ticks (1, 2, 5 per decade) on the axes named in `which`."""
    for axis in which:
        getattr(ax, f"set_{axis}scale")("log")
        log_ticks(ax, axis)
    return ax


def relative_gap(values: np.ndarray, reference: float | np.ndarray) -> np.ndarray:
    """|value − reference| / |reference|, elementwise (reference a scalar or an array like values)."""
    reference = np.asarray(reference, dtype=np.float64)
    return np.abs(np.asarray(values, dtype=np.float64) - reference) / np.abs(reference)


def draw_law(ax: plt.Axes, fit: Any, x: Any, color: Any = None, label: str | None = None, n: int = 100) -> plt.Axes:
    """A fitted law (`audiorank.fit`, bootstrapped) over the range of x: its curve and 95% band."""
    x = np.asarray(x, dtype=float)
    grid = np.geomspace(x.min(), x.max(), n)
    low, high = fit.band(grid)
    limits = ax.get_ylim() if ax.has_data() else None
    ax.plot(grid, fit.predict(grid), color=color, lw=1.5, label=label)
    ax.fill_between(grid, low, high, color=color, alpha=0.18, lw=0)
    if limits is not None:  # a wide band (few points) must not squash the data it was fitted to
        ax.set_ylim(min(limits[0], float(np.min(fit.predict(grid)))), max(limits[1], float(np.max(fit.predict(grid)))))
    return ax


def law_label(summary: dict[str, float], name: str = "b") -> str:
    """"b = 0.12 [0.05, 0.18], R² 0.77" for a legend, from `study.law_summary`."""
    return f"{name} = {summary['exponent']:.2f} [{summary['lo']:.2f}, {summary['hi']:.2f}], R² {summary['r2']:.2f}"
