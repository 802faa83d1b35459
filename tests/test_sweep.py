"""The sweep: grid expansion and validation, the atomic store, resumption after SIGKILL, executors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from audiorank.sweep import ResultsStore, expand, run_id, runs_on_axis, slurm_cluster, sweep

AUDIORANK = str(Path(sys.executable).with_name("audiorank"))

CORPUS = {"n_train": 16, "n_valid": 8, "n_test": 8, "seconds": 0.5, "pool_clips": 16, "pool_seconds": 0.5}


def tiny_profile(**axes):
    """Seconds per run: vit-nano, a few steps, one small task, the linear probe."""
    return {
        "name": "tiny",
        "corpus": CORPUS,
        "sweep": {
            "base": {"encoder": "vit-nano", "steps": 3, "batch_size": 8, "warmup_steps": 1,
                     "checkpoint_steps": [0, 3]},
            "axes": axes,
            "seeds": [0, 1],
            "tasks": ["events"],
            "probes": ["linear"],
            "evaluate": {"probe_options": {"max_epochs": 3}},
        },
    }


def fake_run(config):
    """A run record without training: numbers that are a function of the config alone."""
    seed, steps = config["pretrain"]["seed"], config["pretrain"]["steps"]
    return {"id": run_id(config), "config": config, "status": "ok", "params": 10 * steps,
            "ranks": [{"step": steps, "task": "events", "layer": "0", "level": "clip", "n_samples": 8,
                       "rankme": 1.0 + seed + steps}],
            "probes": [{"step": steps, "task": "events", "probe": "linear", "layer": "0", "split": "test",
                        "metric": "accuracy", "value": 0.1 * seed}]}


# ----------------------------------------------------------------------------- the grid


def test_expand_lists_base_once_and_every_axis_point_per_seed():
    runs = expand(tiny_profile(compute={"steps": [3, 6, 12]}, model_size={"encoder": ["vit-nano", "vit-tiny"]},
                               embedding_dim=[{"encoder.width": 32, "encoder.heads": 2}]))
    axes = [r.axis for r in runs]
    # base (steps 3, vit-nano) repeats in compute and model_size: listed once per seed, as "base"
    assert axes.count("base") == 2
    assert axes.count("compute") == 4 and axes.count("model_size") == 2 and axes.count("embedding_dim") == 2
    assert len({r.id for r in runs}) == len(runs) == 10
    widths = {r.config["pretrain"]["encoder"]["width"] for r in runs if r.axis == "embedding_dim"}
    assert widths == {32}
    # the id is the hash of the full resolved config: every encoder field is in it
    assert set(runs[0].config["pretrain"]["encoder"]) >= {"width", "depth", "heads", "patch", "arch"}


def test_runs_on_axis_includes_the_base():
    table = pd.DataFrame({"run": list("abc"), "axis": ["base", "depth", "data"]})
    assert list(runs_on_axis(table, "depth")["run"]) == ["a", "b"]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["axes"].update(widht={"steps": [1]}), "unknown sweep axes ['widht']"),
    (lambda s: s["base"].update(stepz=3), "unknown run key 'stepz'"),
    (lambda s: s["base"].update({"encoder.widht": 3}), "unknown encoder field 'widht'"),
    (lambda s: s["axes"].update(mask_ratio={"mask_ratio": [0.5, 1.5]}), "mask_ratio must be in (0, 1)"),
    (lambda s: s["axes"].update(embedding_dim={"encoder.width": [31]}), "axis 'embedding_dim', seed 0: EncoderConfig.width=31 must be divisible by heads=2"),
    (lambda s: s["base"].update(encoder="vit-huge"), "unknown encoder preset 'vit-huge'"),
    (lambda s: s.update(tasks=["nope"]), "unknown tasks ['nope']"),
    (lambda s: s.update(extra=1), "unknown sweep keys ['extra']"),
    (lambda s: s["axes"].update(depth={"encoder.depth": []}), "non-empty list"),
])
def test_bad_profiles_name_the_problem(mutate, message):
    profile = tiny_profile()
    mutate(profile["sweep"])
    with pytest.raises(ValueError) as err:
        expand(profile)
    assert message in str(err.value)


# ----------------------------------------------------------------------------- the store


def test_store_writes_once_and_never_reads_temp_files(tmp_path):
    store = ResultsStore(tmp_path)
    record = {"id": "abc", "config": {}, "status": "ok", "ranks": [], "probes": []}
    store.write(record)
    (store.runs_dir / ".def.123.tmp").write_text('{"torn": ')  # what a killed writer leaves
    assert store.ids() == {"abc"}
    assert store.clean() == 1 and not list(store.runs_dir.glob(".*"))
    assert store.read("abc") == record


def test_sweep_skips_present_runs_and_says_so(tmp_path):
    profile = tiny_profile(compute={"steps": [6]})
    calls, messages = [], []

    def counting_run(config):
        calls.append(run_id(config))
        return fake_run(config)

    first = sweep(profile, tmp_path, run_fn=counting_run, progress=False, log=messages.append)
    assert first == {"planned": 4, "present": 0, "ran": 4, "failed": 0}
    tables = {name: pd.read_csv(tmp_path / f"{name}.csv") for name in ("runs", "ranks", "probes")}
    assert sorted(tables["runs"]["axis"]) == ["base", "base", "compute", "compute"]
    assert set(tables["runs"]["run"]) == set(calls) == {p.stem for p in (tmp_path / "runs").glob("*.json")}
    # the values are the workers' own
    rows = tables["ranks"].merge(tables["runs"][["run", "seed", "steps"]], on="run")
    assert (rows["rankme"] == 1 + rows["seed"] + rows["steps"]).all()

    again = sweep(profile, tmp_path, run_fn=counting_run, progress=False, log=messages.append)
    assert again == {"planned": 4, "present": 4, "ran": 0, "failed": 0} and len(calls) == 4
    assert any(m.startswith("nothing to run") for m in messages)


def test_failed_runs_are_kept_with_their_status_and_retried_on_request(tmp_path):
    profile = tiny_profile()

    def broken(config):
        if config["pretrain"]["seed"] == 1:
            raise RuntimeError("out of memory")
        return fake_run(config)

    assert sweep(profile, tmp_path, run_fn=broken, progress=False, log=lambda m: None)["failed"] == 1
    runs = pd.read_csv(tmp_path / "runs.csv")
    failed = runs[runs["status"] == "failed"]
    assert list(failed["seed"]) == [1] and "out of memory" in failed["error"].iloc[0]
    assert sweep(profile, tmp_path, run_fn=fake_run, progress=False, log=lambda m: None)["ran"] == 0
    assert sweep(profile, tmp_path, run_fn=fake_run, progress=False, retry_failed=True, log=lambda m: None)["ran"] == 1
    assert set(pd.read_csv(tmp_path / "runs.csv")["status"]) == {"ok"}


def test_dry_run_lists_runs_with_a_cost_and_writes_nothing(tmp_path):
    messages = []
    out = sweep(tiny_profile(compute={"steps": [6]}), tmp_path, dry_run=True, log=messages.append)
    assert out["planned"] == 4 and not (tmp_path / "runs").exists()
    assert len([m for m in messages if "TFLOP" in m]) == 5
    # twice the steps, twice the estimated training cost
    base = next(m for m in messages if " base " in m and "seed=0" in m)
    longer = next(m for m in messages if " compute " in m and "seed=0" in m)
    cost = lambda m: float(m.split("≈")[1].split()[0])  # noqa: E731
    assert cost(longer) == pytest.approx(2 * cost(base), rel=1e-3) or cost(base) == 0.0


def test_slurm_recipe_job_script():
    pytest.importorskip("dask_jobqueue")
    cluster = slurm_cluster(queue="gpu", cores=8, memory="32GB", walltime="02:00:00", gpus=1)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    for line in ("#SBATCH -p gpu", "#SBATCH --cpus-per-task=8", "#SBATCH -t 02:00:00", "#SBATCH --gres=gpu:1",
                 "--nthreads 1", "--nworkers 8"):
        assert line in script, script


# ----------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_inline_process_and_dask_give_identical_tables(tmp_path, one_torch_thread):
    profile = tiny_profile()
    tables = {}
    for kind, workers in (("inline", 1), ("process", 2), ("dask", 2)):
        out = sweep(profile, tmp_path / kind, executor=kind, workers=workers, progress=False, log=lambda m: None)
        assert out == {"planned": 2, "present": 0, "ran": 2, "failed": 0}, (kind, out)
        tables[kind] = {name: pd.read_csv(tmp_path / kind / f"{name}.csv") for name in ("runs", "ranks", "probes")}
    runs = tables["inline"]["runs"]
    assert set(runs["status"]) == {"ok"}
    # RankMe of every layer at both checkpoints, clip and frame level; probe scores per layer
    assert len(tables["inline"]["ranks"]) == 2 * 2 * 3 * 2  # runs × steps × layers (vit-nano: 3) × levels
    # a value from fewer samples than dimensions is flagged capped; the thread count is recorded
    ranks = tables["inline"]["ranks"].merge(runs[["run", "encoder.width"]], on="run")
    assert (ranks["capped"] == (ranks["n_samples"] < ranks["encoder.width"])).all()
    assert (runs["torch_threads"] == 1).all()
    for kind in ("process", "dask"):
        for name in ("ranks", "probes"):
            pd.testing.assert_frame_equal(tables[kind][name], tables["inline"][name])
        cols = [c for c in runs.columns if c not in ("wall_time_s", "device")]
        pd.testing.assert_frame_equal(tables[kind]["runs"][cols], runs[cols])


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_loses_and_duplicates_nothing(tmp_path):
    profile = tiny_profile(compute={"steps": [4]})
    profile_path = tmp_path / "tiny.yaml"
    profile_path.write_text(yaml.safe_dump({k: v for k, v in profile.items() if k != "name"}))
    results = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "1"}
    cmd = [AUDIORANK, "sweep", str(profile_path), "--results", str(results)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list((results / "runs").glob("*.json")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in (results / "runs").glob("*.json")}
    assert 1 <= len(done_before) < 4
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    ids = [p.stem for p in (results / "runs").glob("*.json")]
    assert sorted(ids) == sorted({r.id for r in expand(profile)}) and done_before <= set(ids)
    for p in (results / "runs").glob("*.json"):
        json.loads(p.read_text())  # every file whole
    assert not list((results / "runs").glob(".*"))
    table = pd.read_csv(results / "runs.csv")
    assert len(table) == 4 and table["run"].is_unique
    third = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert third.returncode == 0 and "nothing to run" in third.stdout


def test_a_later_pretrain_field_at_its_default_leaves_run_ids_unchanged():
    # pixel_weight came after the committed laptop results: at 0 it is left out of the run config
    # (the code then trains exactly as before), set to anything else it is part of the id
    base = expand(tiny_profile())
    assert "pixel_weight" not in base[0].config["pretrain"]
    profile = tiny_profile()
    profile["sweep"]["base"]["pixel_weight"] = 0.0
    assert [r.id for r in expand(profile)] == [r.id for r in base]
    profile["sweep"]["base"]["pixel_weight"] = 1.0
    changed = expand(profile)
    assert changed[0].config["pretrain"]["pixel_weight"] == 1.0
    assert not {r.id for r in changed} & {r.id for r in base}
