"""scripts/probe_encoders.py: its argument parsing, and the comparison it tabulates (study.compare_groups)."""

import argparse
import importlib.util

import pytest

from audiorank.profiles import project_root
from audiorank.study import compare_groups

_spec = importlib.util.spec_from_file_location("probe_encoders", project_root() / "scripts" / "probe_encoders.py")
probe_encoders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe_encoders)


def test_encoder_argument_is_group_seed_and_spec():
    assert probe_encoders.parse_encoder("init:2=random:vit-tiny-p16") == ("init", 2, "random:vit-tiny-p16")
    assert probe_encoders.parse_encoder("pt:0=runs/a=b/step_1.pt") == ("pt", 0, "runs/a=b/step_1.pt")
    for bad in ("init=random:vit", "init:x=random:vit", ":0=a", "init:0="):
        with pytest.raises(argparse.ArgumentTypeError, match="GROUP:SEED=SPEC"):
            probe_encoders.parse_encoder(bad)


def _rows(scores):
    return [{"group": g, "seed": s, "task": t, "scores": {"linear": v}} for (g, s, t), v in scores.items()]


def test_comparison_is_first_group_minus_second_and_clear_beyond_twice_the_larger_sd():
    rows = _rows({("pt", 0, "a"): 0.8, ("pt", 1, "a"): 0.9, ("init", 0, "a"): 0.5, ("init", 1, "a"): 0.6,
                  ("pt", 0, "b"): 0.6, ("pt", 1, "b"): 0.8, ("init", 0, "b"): 0.5, ("init", 1, "b"): 0.5})
    result = compare_groups(rows)
    a, b = result.loc[("linear", "a")], result.loc[("linear", "b")]
    assert a["difference"] == pytest.approx(0.3) and a["clear"]  # sd 0.0707 each: 0.3 > 0.141
    assert b["difference"] == pytest.approx(0.2) and not b["clear"]  # pt sd 0.141: 0.2 < 0.283
    text = probe_encoders.table(rows)
    assert "| linear | a | 0.850 ± 0.071 | 0.550 ± 0.071 | +0.300 | yes |" in text
    assert "| linear | 1/2 | 2/2 |" in text
    with pytest.raises(ValueError, match="exactly two groups, got \\['pt'\\]"):
        compare_groups([r for r in rows if r["group"] == "pt"])


def test_main_writes_a_row_per_encoder_and_task_with_every_layers_rankme_and_resumes(tmp_path, monkeypatch):
    from audiorank.audio import make_task, write_hear_task

    write_hear_task(make_task("chroma", 12, 4, 4, 0.25, seed=0, cache_dir=tmp_path / "cache"), tmp_path / "tasks")
    argv = ["probe_encoders.py", "--tasks", str(tmp_path / "tasks"), "--out", str(tmp_path / "out"), "--probes", "linear",
            "--encoder", "a:0=random:vit-femto-p16", "--encoder", "b:1=random:vit-femto-p16"]
    monkeypatch.setattr("sys.argv", argv)
    probe_encoders.main()
    rows = probe_encoders.load_group_rows(tmp_path / "out" / "rows.jsonl")
    assert [(r["group"], r["seed"], r["task"]) for r in rows] == [("a", 0, "chroma"), ("b", 1, "chroma")]
    for r in rows:
        assert set(r["scores"]) == {"linear"} and 0 <= r["scores"]["linear"] <= 1
        assert r["layers"]["linear"] in r["rankme"] and all(v >= 1 for v in r["rankme"].values())
    assert "| linear | chroma |" in (tmp_path / "out" / "table.md").read_text()
    before = (tmp_path / "out" / "rows.jsonl").read_text()
    probe_encoders.main()  # every (group, seed, task) is there: nothing is evaluated again
    assert (tmp_path / "out" / "rows.jsonl").read_text() == before
