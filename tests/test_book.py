"""The book pipeline: profiles validate, notebooks are committed clean, and the smoke build works."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from audiorank.book import notebook_parameters, toc_notebooks
from audiorank.profiles import available_profiles, load_profile, project_root

ROOT = project_root()


def test_every_profile_loads_and_names_only_toc_notebooks():
    names = set(toc_notebooks(ROOT))
    assert {"smoke", "laptop", "reference"} <= set(available_profiles())
    for profile in available_profiles():
        loaded = load_profile(profile)
        assert set(loaded["notebooks"]) <= names, profile
        for name in loaded["notebooks"]:
            notebook_parameters(loaded, name, ROOT / "notebooks" / f"{name}.ipynb")


def test_unknown_profile_key_is_an_error(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"notebok": {}}))
    with pytest.raises(ValueError, match="unknown keys.*notebok"):
        load_profile(path)


def test_missing_profile_lists_the_available_ones():
    with pytest.raises(ValueError, match="available profiles: .*smoke"):
        load_profile("no-such-profile")


def test_unknown_notebook_parameter_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"notebooks": {"rank_estimation": {"dimm": 3}}}))
    profile = load_profile(path)
    with pytest.raises(ValueError, match="unknown parameters.*dimm"):
        notebook_parameters(profile, "rank_estimation", ROOT / "notebooks" / "rank_estimation.ipynb")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs_and_with_one_parameters_cell(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1


def test_every_notebook_is_in_the_toc():
    assert sorted(toc_notebooks(ROOT)) == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
def test_smoke_book_builds_with_warnings_as_errors():
    """`audiorank book --profile smoke`: papermill runs every notebook, Sphinx builds with -W."""
    command = [str(Path(sys.executable).with_name("audiorank")), "book", "--profile", "smoke"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "CI": "1"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in toc_notebooks(ROOT):
        executed = json.loads((ROOT / "book" / "executed" / f"{name}.ipynb").read_text())
        assert executed["metadata"]["papermill"]["parameters"] == load_profile("smoke")["notebooks"].get(name, {})
        errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors
        html = (ROOT / "_build" / "html" / "book" / "executed" / f"{name}.html").read_text()
        assert "<img" in html  # its figures were rendered
