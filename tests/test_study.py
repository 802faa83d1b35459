"""audiorank.study: results tables → per-checkpoint rows, axis points, frontiers, layer tables."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from hypothesis import given, settings
from hypothesis import strategies as st

from audiorank.fit import PowerLawFit
from audiorank.study import (axis_points, checkpoints, claim_verdict, fit_law, frontier, held_out_error, law_summary,
                             law_table, layer_table, load_results, paired_points, recipe_rows, spearman, status_table,
                             versus_init)


def _store(tmp_path, failed: bool = True):
    """Three runs: base (steps 0 and 4), a model-size run, and (optionally) a failed one."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    runs = pd.DataFrame([
        {"run": "r_base", "axis": "base", "status": "ok", "preset": "p", "objective": "d2v", "seed": 0,
         "encoder.arch": "vit", "encoder.width": 8, "encoder.depth": 2, "mask_ratio": 0.75, "pool_clips": 64,
         "pool_seconds": 1.0, "params": 100, "flops_per_step": 10.0, "steps": 4, "steps_done": 4, "wall_time_s": 1.0},
        {"run": "r_big", "axis": "model_size", "status": "ok", "preset": "q", "objective": "d2v", "seed": 0,
         "encoder.arch": "vit", "encoder.width": 16, "encoder.depth": 2, "mask_ratio": 0.75, "pool_clips": 64,
         "pool_seconds": 1.0, "params": 400, "flops_per_step": 40.0, "steps": 4, "steps_done": 4, "wall_time_s": 2.0},
    ] + ([{"run": "r_bad", "axis": "model_size", "status": "failed", "preset": "z", "objective": "d2v", "seed": 0,
           "encoder.arch": "vit", "params": np.nan, "error": "RuntimeError: boom"}] if failed else []))
    ranks, probes = [], []
    for run, steps in (("r_base", (0, 4)), ("r_big", (4,))):
        for step in steps:
            for t, task in enumerate(("a", "b")):
                for layer in ("0", "1", "2"):
                    value = 1.0 + 10 * (run == "r_big") + step + t + int(layer)
                    for level in ("clip", "frame"):
                        ranks.append({"run": run, "step": step, "task": task, "layer": layer, "level": level,
                                      "n_samples": 10, "rankme": value * (2 if level == "frame" else 1)})
                    for split in ("valid", "test"):
                        probes.append({"run": run, "step": step, "task": task, "probe": "linear", "layer": layer,
                                       "split": split, "metric": "accuracy", "value": value / 100})
                probes.append({"run": run, "step": step, "task": task, "probe": "linear", "layer": "best",
                               "split": "test", "metric": "accuracy", "value": (step + t + 1) / 10})
    for name, df in (("runs", runs), ("ranks", pd.DataFrame(ranks)), ("probes", pd.DataFrame(probes))):
        df.to_csv(tmp_path / f"{name}.csv", index=False)
    return load_results(tmp_path)


def test_missing_tables_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}.*runs.csv.*audiorank sweep"):
        load_results(tmp_path)


def test_checkpoints_average_tasks_at_the_last_layer(tmp_path):
    table = checkpoints(_store(tmp_path)).set_index(["run", "step"])
    assert set(table.index) == {("r_base", 0), ("r_base", 4), ("r_big", 4)}  # the failed run has no rows
    # last layer "2": value = 1 + 10·big + step + task index + 2, averaged over tasks a (0) and b (1)
    assert table.loc[("r_base", 4), "rankme"] == pytest.approx(1 + 4 + 0.5 + 2)
    assert table.loc[("r_big", 4), "rankme"] == pytest.approx(11 + 4 + 0.5 + 2)
    assert table.loc[("r_base", 4), "quality"] == pytest.approx(((4 + 1) + (4 + 2)) / 20)
    assert table.loc[("r_base", 4), "flops"] == 40.0 and table.loc[("r_big", 4), "flops"] == 160.0
    assert table.loc[("r_base", 4), "final"] and not table.loc[("r_base", 0), "final"]
    assert (table["n_tasks"] == 2).all()


def test_axis_points_keep_the_base_and_the_final_checkpoint(tmp_path):
    table = checkpoints(_store(tmp_path))
    size = axis_points(table, "model_size")
    assert list(size["x"]) == [100, 400] and list(size["run"]) == ["r_base", "r_big"]
    compute = axis_points(table, "compute")  # every trained checkpoint of the base, none at step 0
    assert list(compute["step"]) == [4]
    with pytest.raises(ValueError, match="unknown axis 'colour'"):
        axis_points(table, "colour")


def test_paired_points_join_the_same_point_of_two_sweeps(tmp_path):
    a = checkpoints(_store(tmp_path / "a"))
    b = checkpoints(_store(tmp_path / "b", failed=False))
    b = b.assign(rankme=b["rankme"] * 2, run=b["run"] + "'")  # the second sweep: other ids, double rank
    pairs = paired_points(a, b, suffixes=("_a", "_b"))
    # the base's final checkpoint once (it sits on every axis), the model-size run, the base's step 4
    # on the compute axis is that same checkpoint: two rows in all
    assert sorted(zip(pairs["run_a"], pairs["step"])) == [("r_base", 4), ("r_big", 4)]
    assert list(pairs["run_b"]) == [r + "'" for r in pairs["run_a"]]
    np.testing.assert_allclose(pairs["rankme_b"], 2 * pairs["rankme_a"])
    np.testing.assert_allclose(pairs["quality_b"], pairs["quality_a"])
    assert paired_points(a, b[b["axis"] == "architecture"]).empty  # nothing in common


def test_paired_points_never_pair_a_long_runs_checkpoint_with_a_short_runs_end():
    # the compute axis: a 4-step run, and an 8-step run with a checkpoint at step 4 (same FLOPs)
    rows = [{"run": run, "axis": "compute", "seed": 0, "steps": steps, "step": step, "final": step == steps,
             "flops": 10.0 * step, "rankme": rank, "quality": 0.5}
            for run, steps, step, rank in (("short", 4, 4, 1.0), ("long", 8, 4, 2.0), ("long", 8, 8, 3.0))]
    table = pd.DataFrame(rows)
    pairs = paired_points(table, table.assign(rankme=table["rankme"] + 10))
    assert len(pairs) == 3 and (pairs["run_a"] == pairs["run_b"]).all()
    np.testing.assert_allclose(pairs["rankme_b"] - pairs["rankme_a"], 10)
    # another objective costs other FLOPs per step: the same (steps, step) is still the same point
    costlier = paired_points(table, table.assign(flops=table["flops"] * 1.03))
    assert len(costlier) == 3 and (costlier["run_a"] == costlier["run_b"]).all()
    assert sorted(costlier["x"]) == sorted(table["flops"])  # x: the first table's FLOPs


def test_held_out_error_against_direct_computation():
    rng = np.random.default_rng(1)
    x = np.repeat(np.geomspace(1, 100, 6), 3)
    fit = PowerLawFit().fit(x, 3.0 * x ** 0.5 * np.exp(rng.normal(0, 0.05, x.size))).bootstrap(200, seed=0)
    x_new = np.geomspace(2, 50, 10)
    y_new = 1.2 * 3.0 * x_new ** 0.5  # 20% above the law, exactly
    out = held_out_error(fit, x_new, y_new)
    predicted = fit.predict(x_new)
    assert out["points"] == 10
    assert out["mean_abs_rel_error"] == pytest.approx(np.mean(np.abs(predicted - y_new) / y_new))
    assert out["mean_log_residual"] == pytest.approx(np.mean(np.log(y_new / predicted)))
    assert out["mean_log_residual"] == pytest.approx(np.log(1.2), abs=0.03)
    assert out["spearman"] == pytest.approx(1.0)
    low, high = fit.predict_interval(x_new)
    assert out["inside"] == np.mean((low <= y_new) & (y_new <= high))
    with pytest.raises(ValueError, match="1-D of one non-zero length"):
        held_out_error(fit, x_new, y_new[:3])


def test_failed_runs_are_listed_not_dropped(tmp_path):
    bad = status_table(_store(tmp_path))
    assert list(bad["run"]) == ["r_bad"] and bad.loc[0, "error"] == "RuntimeError: boom"
    assert status_table(_store(tmp_path, failed=False)).empty


def test_layer_table_pairs_rankme_with_valid_and_test(tmp_path):
    layers = layer_table(_store(tmp_path))
    row = layers[(layers["run"] == "r_big") & (layers["task"] == "b") & (layers["layer"] == "1")].iloc[0]
    assert row["rankme"] == pytest.approx(11 + 4 + 1 + 1)
    assert row["valid"] == row["test"] == pytest.approx(row["rankme"] / 100)
    assert len(layers) == 3 * 2 * 3  # (run, step) pairs x tasks x layers, "best" rows excluded


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50)), min_size=1, max_size=30))
def test_frontier_is_the_brute_force_upper_envelope(points):
    df = pd.DataFrame(points, columns=["x", "y"])
    front = frontier(df, "x", "y")
    expected = sorted({(x, y) for x, y in points if all(y > y2 for x2, y2 in points if x2 < x)
                       and y == max(y2 for x2, y2 in points if x2 == x)})
    assert list(zip(front["x"], front["y"])) == expected


def test_spearman_matches_scipy_and_is_nan_when_undefined():
    from scipy import stats

    x, y = np.array([1, 2, 3, 4, 5.0]), np.array([2, 1, 4, 3, 5.0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert np.isnan(spearman([1, 2, 3], [1, 1, 1])) and np.isnan(spearman([1, 2], [1, 2]))


def test_band_and_prediction_interval_of_a_fitted_law():
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(1, 1000, 8), 4)
    y = 2.0 * x ** 0.3 * np.exp(rng.normal(0, 0.05, x.size))
    fit = PowerLawFit().fit(x, y)
    with pytest.raises(RuntimeError, match="bootstrap"):
        fit.band([10.0])
    fit.bootstrap(300, seed=0)
    grid = np.geomspace(1, 1000, 5)
    low, high = fit.band(grid)
    p_low, p_high = fit.predict_interval(grid)
    assert np.all(low < fit.predict(grid)) and np.all(fit.predict(grid) < high)
    assert np.all(p_low < low) and np.all(high < p_high)  # a new point scatters more than the law
    assert np.all(low <= 2.0 * grid ** 0.3 * 1.05) and np.all(2.0 * grid ** 0.3 * 0.95 <= high)
    # new observations from the same law fall inside their 95% interval about 95% of the time
    x_new = rng.choice(np.geomspace(1, 1000, 8), 400)
    y_new = 2.0 * x_new ** 0.3 * np.exp(rng.normal(0, 0.05, x_new.size))
    lo, hi = fit.predict_interval(x_new)
    assert 0.88 <= np.mean((lo <= y_new) & (y_new <= hi)) <= 0.995


def test_law_summary_reports_exponent_interval_and_extrapolation():
    x = np.repeat(np.geomspace(1, 100, 6), 3)
    y = 3.0 * x ** -0.2 * np.exp(np.random.default_rng(1).normal(0, 0.02, x.size))
    summary = law_summary(fit_law(x, y, n_bootstrap=200))
    assert summary["lo"] < summary["exponent"] < summary["hi"]
    assert abs(summary["exponent"] + 0.2) < 0.02 and summary["n"] == 18 and summary["n_failed"] == 0
    assert summary["direction"] == "falls"
    assert 0 <= summary["extrap_err"] < 0.1 and 0 <= summary["extrap_inside"] <= 1
    with warnings.catch_warnings():  # resamples of 4 points often hold one x level: failed refits, counted
        warnings.simplefilter("ignore", RuntimeWarning)
        tiny = law_summary(fit_law([1, 2, 1, 2.0], [1, 2, 1.1, 2.1], n_bootstrap=50))  # one level left: no refit
    assert np.isnan(tiny["extrap_err"])


def test_law_table_rounds_and_keeps_every_law():
    x = np.geomspace(1, 100, 12)
    laws = {"a": law_summary(fit_law(x, 2 * x ** 0.5, n_bootstrap=100)),
            "b": law_summary(fit_law(x, 3 * x ** -0.2, n_bootstrap=100))}
    table = law_table(laws, "axis")
    assert list(table.index) == ["a", "b"] and table.index.name == "axis"
    assert table.loc["a", "b"] == pytest.approx(0.5, abs=1e-3) and table.loc["b", "direction"] == "falls"
    lo, hi = (float(v) for v in table.loc["a", "95% interval"].strip("[]").split(","))
    assert lo <= 0.5 <= hi


def test_claim_verdict_names_every_point_of_disagreement():
    assert claim_verdict({"model size": True, "compute": True}) == "our data agree"
    assert claim_verdict({"model size": False, "data": True}) == "our data disagree on model size"
    assert claim_verdict({"a": False, "b": False, "c": False}) == "our data disagree on a, b and c"
    with pytest.raises(ValueError):
        claim_verdict({})


def _record(kind, name, seed, scores, step=None, steps=None, rankme=1.0):
    record = {"kind": kind, "name": name, "seed": seed,
              "tasks": {task: {"score": s, "layer": "1", "rankme": {"0": 99.0, "1": rankme}} for task, s in scores.items()}}
    if kind == "recipe":
        record.update(step=step, steps=steps, preset="vit-x")
    return record


def test_versus_init_compares_the_final_checkpoint_with_the_same_seeds_init():
    records = [_record("random", "vit-x", s, {"a": 0.5 + 0.01 * s}) for s in (0, 1, 2, 3)]  # seed 3 unused
    for s in (0, 1, 2):
        for step, score in ((0, 0.5), (10, 0.6), (None, 0.7 + 0.01 * s)):
            records.append(_record("recipe", "r", s, {"a": score}, step=step, steps=100, rankme=score * 10))
    rows = recipe_rows(records)
    assert set(rows["step"]) == {0, 10, 100} and rows["rankme"].max() == pytest.approx(7.2)  # last layer's
    v = versus_init(rows, "r").loc["a"]
    init, trained = np.array([0.5, 0.51, 0.52]), np.array([0.7, 0.71, 0.72])
    assert v["init"] == pytest.approx(init.mean()) and v["pretrained"] == pytest.approx(trained.mean())
    assert v["init_sd"] == pytest.approx(init.std(ddof=1)) and v["seeds"] == 3
    assert v["clear"] and v["difference"] == pytest.approx(0.2)
    assert v["rho_step"] == pytest.approx(stats.spearmanr([0, 10, 100] * 3, [0.5, 0.6, 0.7, 0.5, 0.6, 0.71, 0.5, 0.6, 0.72]).statistic)
    assert v["rho_rankme"] == pytest.approx(1.0)
    one_seed = recipe_rows([r for r in records if r["seed"] == 0])
    assert not versus_init(one_seed, "r").loc["a", "clear"]  # one seed: no spread, never "clear"
    with pytest.raises(ValueError, match="no checkpoints of recipe 'q'"):
        versus_init(rows, "q")


def test_clears_needs_both_spreads_and_works_on_series():
    from audiorank.study import clears

    assert clears(0.3, 0.1, 0.05) and not clears(0.2, 0.1, 0.05)  # twice the larger sd: 0.2
    assert not clears(0.3, np.nan, 0.05) and not clears(0.3, 0.05, np.nan)  # one seed, either side
    got = clears(pd.Series([0.3, 0.3]), pd.Series([0.1, np.nan]), pd.Series([0.05, 0.05]))
    assert got.tolist() == [True, False]
