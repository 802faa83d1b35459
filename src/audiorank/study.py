"""From a sweep's tables to the study's numbers: one row per run and checkpoint, the variable each
axis varies, laws fitted with their bands, frontiers and rank correlations. The notebooks call
these and plot; nothing here draws.

A run's *RankMe* is the clip-level RankMe of its last layer (the encoder's output, as Deng et al.
measure it), averaged over the tasks' clips; its *quality* is the test score of a probe at the
layer chosen on valid, averaged over tasks. Both are per checkpoint (`step`). Runs that failed or
diverged have no checkpoints: `status_table` lists them, and every function that fits says how
many runs it left out.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .fit import PowerLawFit

__all__ = [
    "AXIS_VARIABLES",
    "Results",
    "axis_points",
    "checkpoints",
    "claim_verdict",
    "clears",
    "compare_groups",
    "fit_law",
    "frontier",
    "held_out_error",
    "law_summary",
    "law_table",
    "layer_table",
    "listed",
    "load_group_rows",
    "load_recipe_rows",
    "load_results",
    "margin",
    "paired_points",
    "recipe_rows",
    "rise_with_compute",
    "spearman",
    "status_table",
    "task_checkpoints",
    "versus_init",
]

#: axis → (column of `checkpoints`, axis label); "architecture" is categorical, the others numeric
AXIS_VARIABLES: dict[str, tuple[str, str]] = {
    "model_size": ("params", "parameters (non-embedding)"),
    "data": ("pool_clips", "pretraining pool (clips)"),
    "compute": ("flops", "training compute (FLOPs)"),
    "architecture": ("architecture", "architecture / objective"),
    "clip_length": ("pool_seconds", "pretraining clip length (s)"),
    "embedding_dim": ("encoder.width", "embedding dimension"),
    "depth": ("encoder.depth", "depth (blocks)"),
    "mask_ratio": ("mask_ratio", "mask ratio"),
}
_TABLES = ("runs", "ranks", "probes")


@dataclass
class Results:
    """The three tidy tables of a results store (see results/README.md) and its manifest."""

    root: Path
    runs: pd.DataFrame
    ranks: pd.DataFrame
    probes: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)


def load_results(root: str | Path) -> Results:
    """Read runs.csv, ranks.csv, probes.csv (and manifest.json when present) from `root`."""
    root = Path(root)
    missing = [f"{name}.csv" for name in _TABLES if not (root / f"{name}.csv").is_file()]
    if missing:
        raise FileNotFoundError(f"results folder {root}: missing {', '.join(missing)}; make them with "
                                f"`audiorank sweep PROFILE --results {root}`")
    tables = {name: pd.read_csv(root / f"{name}.csv", dtype={"run": str, "layer": str}) for name in _TABLES}
    if tables["runs"].empty:
        raise ValueError(f"results folder {root}: runs.csv has no runs")
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    return Results(root, tables["runs"], tables["ranks"], tables["probes"], manifest)


def status_table(results: Results) -> pd.DataFrame:
    """Runs whose status is not "ok" (failed, diverged), with their axis and error: shown, not dropped."""
    bad = results.runs[results.runs["status"] != "ok"]
    cols = [c for c in ("run", "axis", "preset", "objective", "seed", "status", "error") if c in bad.columns]
    return bad[cols].reset_index(drop=True)


def _architecture(runs: pd.DataFrame) -> pd.Series:
    """A readable architecture/objective label: "vit · d2v", "cnn · byol", …"""
    return runs["encoder.arch"].astype(str) + " · " + runs["objective"].astype(str)


def _last_layer(ranks: pd.DataFrame) -> pd.Series:
    """Per run, the name of its last layer (numeric names compared as numbers)."""
    def last(names: pd.Series) -> str:
        unique = list(dict.fromkeys(names))
        return max(unique, key=int) if all(n.isdigit() for n in unique) else unique[-1]
    return ranks.groupby("run")["layer"].agg(last)


def task_checkpoints(results: Results, probe: str = "linear", level: str = "clip",
                     layer: str = "last") -> pd.DataFrame:
    """One row per (ok run, step, task): `rankme` of `layer` ("last", or a layer name) at `level`,
    and `score`, the `probe`'s test score at the layer chosen on valid."""
    ok = results.runs.loc[results.runs["status"] == "ok", "run"]
    ranks = results.ranks[(results.ranks["level"] == level) & results.ranks["run"].isin(ok)]
    if ranks.empty:
        raise ValueError(f"results {results.root}: no {level}-level RankMe of any ok run")
    if layer == "last":
        ranks = ranks[ranks["layer"] == ranks["run"].map(_last_layer(ranks))]
    else:
        ranks = ranks[ranks["layer"] == str(layer)]
    probes = results.probes
    scores = probes[(probes["probe"] == probe) & (probes["layer"] == "best") & (probes["split"] == "test")]
    if scores.empty:
        raise ValueError(f"results {results.root}: no test scores of probe {probe!r}; "
                         f"probes present: {sorted(probes['probe'].unique())}")
    keys = ["run", "step", "task"]
    merged = ranks[keys + ["rankme", "n_samples"]].merge(scores[keys + ["value", "metric"]], on=keys, how="inner")
    return merged.rename(columns={"value": "score"})


def checkpoints(results: Results, probe: str = "linear", level: str = "clip", layer: str = "last") -> pd.DataFrame:
    """One row per (ok run, step): the run's config columns, `flops` (FLOPs per step × step),
    `architecture`, `final` (the run's last checkpoint), `rankme` and `quality` (means over tasks,
    as `task_checkpoints`), and `n_tasks`."""
    per_task = task_checkpoints(results, probe, level, layer)
    agg = per_task.groupby(["run", "step"]).agg(rankme=("rankme", "mean"), quality=("score", "mean"),
                                                 n_tasks=("task", "nunique")).reset_index()
    runs = results.runs.assign(architecture=_architecture(results.runs))
    out = agg.merge(runs, on="run", how="left")
    out["flops"] = out["flops_per_step"] * out["step"]
    out["final"] = out["step"] == out["steps_done"]
    return out


def axis_points(table: pd.DataFrame, axis: str, final_only: bool = True) -> pd.DataFrame:
    """The rows of `checkpoints(...)` on `axis` (its runs and the base run) with `x`, the variable
    the axis varies. The compute axis keeps every checkpoint after step 0 (a run's checkpoints are
    points of it); the others keep each run's final checkpoint when `final_only`."""
    if axis not in AXIS_VARIABLES:
        raise ValueError(f"unknown axis {axis!r}; expected one of {list(AXIS_VARIABLES)}")
    column = AXIS_VARIABLES[axis][0]
    rows = table[table["axis"].isin([axis, "base"])]
    if axis == "compute":
        rows = rows[rows["step"] > 0]
    elif final_only:
        rows = rows[rows["final"]]
    return rows.assign(x=rows[column]).sort_values(["x", "seed"]).reset_index(drop=True)


def fit_law(x: Any, y: Any, form: str = "power", n_bootstrap: int = 400, seed: int = 0) -> PowerLawFit:
    """`fit_power_law` followed by a seeded bootstrap (the 95% intervals, failed refits counted)."""
    return PowerLawFit(form=form).fit(x, y).bootstrap(n_bootstrap, seed=seed)


def held_out_error(fit: PowerLawFit, x: Any, y: Any, seed: int = 0) -> dict[str, float]:
    """How a law fitted elsewhere predicts the points (x, y): mean |ŷ − y|/y, the fraction of y
    inside the 95% prediction interval (the fit needs `bootstrap()`), Spearman's ρ of ŷ with y, and
    the mean log residual log y − log ŷ (> 0: the points lie above the law)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"x and y must be 1-D of one non-zero length, got shapes {x.shape} and {y.shape}")
    predicted = fit.predict(x)
    low, high = fit.predict_interval(x, seed=seed)
    return {"points": int(x.size), "mean_abs_rel_error": float(np.mean(np.abs(predicted - y) / y)),
            "inside": float(np.mean((low <= y) & (y <= high))), "spearman": spearman(predicted, y),
            "mean_log_residual": float(np.mean(np.log(y) - np.log(predicted)))}


def paired_points(a: pd.DataFrame, b: pd.DataFrame, suffixes: tuple[str, str] = ("_a", "_b")) -> pd.DataFrame:
    """The same point of two sweeps side by side: for every numeric axis and the architecture axis,
    `axis_points` of two `checkpoints` tables joined on (axis, x, seed, steps, step): a run's
    length is part of the key, so that a long run's checkpoint at step 800 never pairs with an
    800-step run's end. On the compute axis x is FLOPs, which a change of the objective changes:
    there a point is (steps, step), and x is the first table's. One row per point present in
    both, with `run`, `rankme` and `quality` of each (suffixed); the base run appears once, under
    axis "base"."""
    keys = ["axis", "x", "seed", "steps", "step"]
    values = ["run", "rankme", "quality"]
    frames = []
    for axis in AXIS_VARIABLES:
        if not ((a["axis"] == axis).any() and (b["axis"] == axis).any()):
            continue
        pa, pb = axis_points(a, axis)[keys + values], axis_points(b, axis)[keys + values]
        if axis == "compute":
            pb = pb.drop(columns="x")
        frames.append(pa.merge(pb, on=[k for k in keys if k in pb], suffixes=suffixes))
    columns = keys + [f"{c}{s}" for s in suffixes for c in values]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True).drop_duplicates([f"run{suffixes[0]}", "step"])  # the base, once
    return out[columns].sort_values(["axis", "seed", "step"], kind="stable").reset_index(drop=True)


def frontier(table: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The upper envelope: rows whose `y` beats every row with smaller or equal `x` (e.g. the best
    RankMe reached at each compute budget, over all runs and checkpoints)."""
    ordered = table.sort_values([x, y], ascending=[True, False])
    previous_best = ordered[y].astype(float).cummax().shift(1, fill_value=-np.inf)
    return ordered[ordered[y] > previous_best].reset_index(drop=True)


def spearman(x: Any, y: Any) -> float:
    """Spearman's ρ of two sequences (NaN when either is constant or shorter than 3)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(x, y).statistic)


def layer_table(results: Results, probe: str = "linear", level: str = "clip") -> pd.DataFrame:
    """One row per (ok run, step, task, layer): `rankme` at `level`, and the `probe`'s `valid` and
    `test` scores at that layer (what the layer analysis compares)."""
    ok = results.runs.loc[results.runs["status"] == "ok", "run"]
    ranks = results.ranks[(results.ranks["level"] == level) & results.ranks["run"].isin(ok)]
    p = results.probes[(results.probes["probe"] == probe) & (results.probes["layer"] != "best")]
    scores = p.pivot_table(index=["run", "step", "task", "layer"], columns="split", values="value").reset_index()
    keys = ["run", "step", "task", "layer"]
    out = ranks[keys + ["rankme"]].merge(scores, on=keys, how="inner")
    out["layer_index"] = pd.to_numeric(out["layer"], errors="coerce")
    return out.sort_values(["run", "step", "task", "layer_index"]).reset_index(drop=True)


def law_summary(fit: PowerLawFit, exponent: str = "b", extrapolate_levels: int = 1) -> dict[str, float]:
    """The numbers the book quotes for one fitted law: the exponent with its interval, R², points,
    failed bootstrap refits, the `direction` its interval resolves (text), and the error when the `extrapolate_levels` largest x levels are held
    out and predicted (mean |ŷ − y|/y and the fraction inside the 95% prediction interval; NaN
    when too few levels remain to fit)."""
    lo, hi = fit.ci_[exponent]
    direction = "rises" if lo > 0 else "falls" if hi < 0 else "has no resolved direction"
    # plain Python numbers: myst-nb's glue formats their text form (np.float64(…) would not parse)
    out = {"exponent": float(fit.params_[exponent]), "lo": float(lo), "hi": float(hi), "r2": float(fit.r2_),
           "n": int(fit.n_points_), "n_failed": int(fit.n_failed_), "direction": direction}
    try:
        ex = fit.extrapolate(extrapolate_levels, n_bootstrap=200)
        out.update(extrap_err=float(ex.mean_abs_rel_error), extrap_inside=float(ex.fraction_inside))
    except ValueError:
        out.update(extrap_err=float("nan"), extrap_inside=float("nan"))
    return out


def law_table(laws: dict[str, dict[str, Any]], index_name: str = "") -> pd.DataFrame:
    """The laws of `law_summary` as a table for reading: one row per law, the exponent with its 95%
    interval, R² on logs, points, failed refits, direction and held-out error, rounded to 3 digits."""
    rows = {}
    for name, s in laws.items():
        rows[name] = {"b": round(s["exponent"], 3), "95% interval": f"[{s['lo']:.3f}, {s['hi']:.3f}]",
                      "R² (logs)": round(s["r2"], 3), "points": s["n"], "failed refits": s["n_failed"],
                      "direction": "unresolved" if s["direction"].startswith("has no") else s["direction"],
                      "held-out error": "–" if np.isnan(s.get("extrap_err", np.nan)) else f"{s['extrap_err']:.1%}"}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = index_name or None
    return table


def claim_verdict(checks: dict[str, bool]) -> str:
    """The book's one-line verdict on a published claim from named checks (True: our data agree on
    that point): "our data agree" or "our data disagree on X and Y"."""
    if not checks:
        raise ValueError("claim_verdict needs at least one check")
    failed = [name for name, ok in checks.items() if not ok]
    return f"our data disagree on {listed(failed)}" if failed else "our data agree"


def listed(names: Any, empty: str = "none") -> str:
    """Names joined for prose: "a", "a and b", "a, b and c"; `empty` when there are none."""
    names = [str(n) for n in names]
    if not names:
        return empty
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# ----------------------------------------------------------------------------- recipe studies


def recipe_rows(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The records of a recipe study (`scripts/recipe_study.py`, one per evaluated encoder) as one
    row per (kind, name, seed, step, task): `score` (test, at the layer chosen on valid), `layer`,
    `rankme` (clip RankMe of the last layer), `final` (a recipe's last checkpoint). Kind "random" is
    the preset at random init (step 0); a recipe's step 0 is its own initial checkpoint."""
    rows = []
    for r in records:
        final = r["kind"] == "recipe" and r.get("step") is None
        step = 0 if r["kind"] == "random" else r["steps"] if final else r["step"]
        for task, t in r["tasks"].items():
            rows.append({"kind": r["kind"], "name": r["name"], "preset": r.get("preset", r["name"]),
                         "seed": r["seed"], "step": step, "final": final, "task": task, "score": t["score"],
                         "layer": t["layer"], "rankme": t["rankme"][max(t["rankme"], key=int)]})
    return pd.DataFrame(rows, columns=["kind", "name", "preset", "seed", "step", "final", "task", "score",
                                       "layer", "rankme"])


def load_recipe_rows(path: str | Path) -> pd.DataFrame:
    """`recipe_rows` of a study's rows.jsonl."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no recipe-study rows (scripts/recipe_study.py writes rows.jsonl)")
    return recipe_rows([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def versus_init(rows: pd.DataFrame, recipe: str) -> pd.DataFrame:
    """Per task, `recipe`'s final checkpoint against its preset at random init with the same seeds:
    mean and sample sd over seeds of each, the difference, `clear` (the difference exceeds twice the
    larger of the two sds; never with one seed), and over the recipe's checkpoints (init included,
    seeds pooled) Spearman's ρ of the score with the step and of the last layer's RankMe with the score."""
    ckpts = rows[(rows["kind"] == "recipe") & (rows["name"] == recipe)]
    if ckpts.empty:
        known = sorted(rows.loc[rows["kind"] == "recipe", "name"].unique())
        raise ValueError(f"no checkpoints of recipe {recipe!r}; the rows have {known}")
    final = ckpts[ckpts["final"]]
    if final.empty:
        raise ValueError(f"recipe {recipe!r} has no final checkpoint in the rows (a study stopped early?)")
    base = rows[(rows["kind"] == "random") & (rows["name"] == final["preset"].iloc[0])]
    out = {}
    for task, f in final.groupby("task"):
        b = base[(base["task"] == task) & base["seed"].isin(f["seed"])]
        sd_f, sd_b = (x.std(ddof=1) if len(x) > 1 else np.nan for x in (f["score"], b["score"]))
        difference = f["score"].mean() - b["score"].mean()
        out[task] = {"seeds": len(f), "init": b["score"].mean(), "init_sd": sd_b, "pretrained": f["score"].mean(),
                     "pretrained_sd": sd_f, "difference": difference, "clear": bool(clears(difference, sd_f, sd_b))}
    table = pd.DataFrame.from_dict(out, orient="index").join(rise_with_compute(ckpts))
    table.index.name = "task"
    return table


def margin(sd_a: Any, sd_b: Any) -> Any:
    """The study's margin: twice the larger of two seed sds (NaN where either is NaN: one seed has no
    spread). Scalars or aligned pandas Series."""
    return 2 * np.maximum(sd_a, sd_b)  # np.maximum keeps a NaN


def clears(difference: Any, sd_a: Any, sd_b: Any) -> Any:
    """`difference` exceeds the `margin` of the two sds; never where either sd is NaN."""
    return difference > margin(sd_a, sd_b)  # NaN compares False


def rise_with_compute(ckpts: pd.DataFrame) -> pd.DataFrame:
    """Per task, over a run's checkpoints (`recipe_rows` rows; init included, seeds pooled): Spearman's
    ρ of the score with the step (`rho_step`) and of the last layer's RankMe with the score
    (`rho_rankme`). Needs no final checkpoint, so a stopped run has it too."""
    return pd.DataFrame({task: {"rho_step": spearman(c["step"], c["score"]), "rho_rankme": spearman(c["rankme"], c["score"])}
                         for task, c in ckpts.groupby("task")}).T


# ----------------------------------------------------------------------------- two groups of encoders


def load_group_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of `scripts/probe_encoders.py` (one per encoder and task: `group`, `seed`, `task`,
    `scores` {probe: test score at the best valid layer})."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no encoder-comparison rows (scripts/probe_encoders.py writes rows.jsonl)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def compare_groups(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per (probe, task), two groups of encoders (the first and second group named in `rows`, as
    `load_group_rows`): each group's mean and sd over seeds (columns named after the groups, and
    `<group>_sd`), the first group's lead over the second (`difference`), the `margin` it must
    exceed, and `clear` (`clears`)."""
    frame = pd.DataFrame([{"group": r["group"], "seed": r["seed"], "task": r["task"], "probe": p, "score": s}
                          for r in rows for p, s in r["scores"].items()])
    groups = list(dict.fromkeys(frame["group"])) if len(frame) else []
    if len(groups) != 2:
        raise ValueError(f"compare_groups needs rows of exactly two groups, got {groups}")
    first, second = groups
    stats = frame.groupby(["probe", "task", "group"])["score"].agg(["mean", "std"]).unstack("group")
    out = pd.DataFrame({
        f"{first}": stats[("mean", first)], f"{first}_sd": stats[("std", first)],
        f"{second}": stats[("mean", second)], f"{second}_sd": stats[("std", second)],
    })
    out["difference"] = out[first] - out[second]
    out["margin"] = margin(out[f"{first}_sd"], out[f"{second}_sd"])
    out["clear"] = clears(out["difference"], out[f"{first}_sd"], out[f"{second}_sd"])
    return out
