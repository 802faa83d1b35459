"""scripts/recipe_study.py end to end on a tiny task: rows under two poolings, resumption, tables."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audiorank.profiles import project_root

SCRIPT = project_root() / "scripts" / "recipe_study.py"
AUDIORANK = str(Path(sys.executable).with_name("audiorank"))


def study(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_recipe_study_writes_one_row_per_checkpoint_and_pooling_and_resumes(tmp_path):
    tasks = tmp_path / "tasks"
    made = subprocess.run([AUDIORANK, "corpus", "--out", str(tasks), "--tasks", "vowels", "--n-train", "24",
                           "--n-valid", "8", "--n-test", "8", "--seconds", "0.5", "--quiet"], capture_output=True,
                          text=True, env={**os.environ, "AUDIORANK_CACHE": str(tmp_path / "cache")})
    assert made.returncode == 0, made.stderr
    args = ["--tasks", tasks, "--out", tmp_path / "out", "--recipes", "default", "--steps", 4, "--clips", 40,
            "--checkpoint-fractions", 0, "--seeds", 0, "--max-epochs", 2, "--curve", "default", "--pooling", "mean", "time"]
    first = study(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for pooling in ("mean", "time"):
        rows = [json.loads(line) for line in (tmp_path / "out" / pooling / "rows.jsonl").read_text().splitlines()]
        # the random init, then the run's checkpoints 0 and 4 (the final one has step None)
        assert [(r["kind"], r.get("step")) for r in rows] == [("random", None), ("recipe", 0), ("recipe", None)]
        assert {r["tasks"]["vowels"]["layer"] for r in rows} <= {"0", "1", "2", "3", "4"}
        table = (tmp_path / "out" / pooling / "table.md").read_text()
        assert "| default | vit-tiny-p16 | 4 |" in table and "Spearman score–step" in table
    # the two poolings embed differently: a square-patch ViT's time pooling is 4x wider, so its RankMe differs
    mean_rank = json.loads((tmp_path / "out" / "mean" / "rows.jsonl").read_text().splitlines()[0])["tasks"]["vowels"]["rankme"]
    time_rank = json.loads((tmp_path / "out" / "time" / "rows.jsonl").read_text().splitlines()[0])["tasks"]["vowels"]["rankme"]
    assert mean_rank != time_rank
    again = study(*args, cwd=tmp_path)  # everything is there: nothing trains, nothing is appended
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "out" / "mean" / "rows.jsonl").read_text().splitlines()) == 3
    assert '"kind": "recipe"' not in again.stdout
    # --stop-after: the first steps of a longer run's schedule; its rows end there, and it counts as done
    stopped = ["--tasks", tasks, "--out", tmp_path / "early", "--recipes", "default", "--steps", 8, "--clips", 40,
               "--checkpoint-fractions", 0, "--stop-after", 2, "--seeds", 0, "--max-epochs", 2, "--curve", "default"]
    early = study(*stopped, cwd=tmp_path)
    assert early.returncode == 0, early.stderr
    rows = [json.loads(line) for line in (tmp_path / "early" / "rows.jsonl").read_text().splitlines()]
    assert [(r["kind"], r.get("step")) for r in rows] == [("random", None), ("recipe", 0), ("recipe", 2)]
    assert rows[-1]["status"] == "stopped" and rows[-1]["steps"] == 8
    assert "| 2 | 1 |" in (tmp_path / "early" / "table.md").read_text()  # the curve's last row: step 2, one seed
    assert '"kind": "recipe"' not in study(*stopped, cwd=tmp_path).stdout
