"""Build the book: execute each notebook of _toc.yml with papermill, then run Jupyter Book.

The notebooks in notebooks/ are sources without outputs; _toc.yml points at their executed
copies in the build tree (book/executed/, git-ignored), so the rendered book always shows
numbers from a run of the current code under one profile. Any notebook error, or any Sphinx
warning, fails the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from .profiles import load_profile, project_root

#: where _toc.yml expects the executed notebooks, relative to the root
EXECUTED_DIR = Path("book") / "executed"


def _toc_files(node: Any) -> Iterator[str]:
    """Every `file:`/`root:` entry of a (nested) Jupyter Book table of contents."""
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                yield node[key]
        for value in node.values():
            if isinstance(value, (list, dict)):
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def toc_notebooks(root: Path | None = None) -> list[str]:
    """Names of the notebooks the table of contents shows, in book order."""
    root = Path(root or project_root())
    with open(root / "_toc.yml") as f:
        toc = yaml.safe_load(f)
    prefix = EXECUTED_DIR.as_posix() + "/"
    return [Path(entry).stem for entry in _toc_files(toc) if entry.startswith(prefix)]


def notebook_parameters(profile: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    """The profile's parameters for one notebook, checked against its `parameters` cell."""
    import papermill

    params = dict(profile["notebooks"].get(name, {}))
    declared = set(papermill.inspect_notebook(str(source)))
    unknown = set(params) - declared
    if unknown:
        raise ValueError(
            f"profile {profile['name']!r}, notebook {name!r}: unknown parameters {sorted(unknown)}; "
            f"the notebook's parameters cell declares {sorted(declared)}"
        )
    return params


def execute_notebooks(
    profile: str | Path = "laptop", root: Path | None = None, only: list[str] | None = None
) -> list[Path]:
    """Execute the book's notebooks with papermill under `profile`; returns the executed copies."""
    import papermill

    root = Path(root or project_root())
    prof = load_profile(profile)
    names = toc_notebooks(root)
    if only:
        missing = set(only) - set(names)
        if missing:
            raise ValueError(f"notebooks {sorted(missing)} are not in _toc.yml; it lists {names}")
        names = [n for n in names if n in only]
    out_dir = root / EXECUTED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for name in names:
        source = root / "notebooks" / f"{name}.ipynb"
        if not source.is_file():
            raise ValueError(f"_toc.yml lists {EXECUTED_DIR / name}, but {source} does not exist")
        target = out_dir / f"{name}.ipynb"
        print(f"[audiorank book] executing {source.relative_to(root)} (profile {prof['name']})", flush=True)
        papermill.execute_notebook(
            str(source),
            str(target),
            parameters=notebook_parameters(prof, name, source),
            kernel_name="python3",
            cwd=str(root),
            progress_bar=not os.environ.get("CI"),
            log_output=False,
        )
        executed.append(target)
    return executed


def build_book(profile: str | Path = "laptop", root: Path | None = None) -> Path:
    """Execute every notebook, then `jupyter-book build` with warnings as errors; returns the HTML dir."""
    root = Path(root or project_root())
    execute_notebooks(profile, root)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(root), "--warningiserror", "--nitpick", "--keep-going"]
    print("[audiorank book] " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    html = root / "_build" / "html"
    print(f"[audiorank book] done: {html / 'index.html'}", flush=True)
    return html
