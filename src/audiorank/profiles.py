"""Profiles: the scale of every run, as data (configs/<name>.yaml), never as code.

A profile names the sweep grid, the parameters each notebook is executed with, and the book's
time limits (`book: {timeout_s: S, timeouts: {notebook: S}}`). Loading validates its keys, so a
typo fails loudly instead of silently running the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

#: keys a profile file may hold at its top level
PROFILE_KEYS = frozenset({"description", "notebooks", "corpus", "sweep", "book"})
#: keys of a profile's `book:` section: a wall-clock limit for every notebook, and per notebook
BOOK_KEYS = frozenset({"timeout_s", "timeouts"})


def project_root() -> Path:
    """The repository root: the folder holding configs/ and _toc.yml (src layout, editable install)."""
    return Path(__file__).resolve().parents[2]


def profile_path(name: str | Path) -> Path:
    """configs/<name>.yaml for a bare name, else the given file."""
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return candidate
    return project_root() / "configs" / f"{name}.yaml"


def available_profiles() -> list[str]:
    """Names of the profiles under configs/."""
    return sorted(p.stem for p in (project_root() / "configs").glob("*.yaml"))


def load_profile(name: str | Path) -> dict[str, Any]:
    """Read and validate a profile; unknown keys raise ValueError naming them."""
    path = profile_path(name)
    if not path.is_file():
        raise ValueError(
            f"profile {str(name)!r}: no file {path}; available profiles: {', '.join(available_profiles())}"
        )
    with open(path) as f:
        profile = yaml.safe_load(f) or {}
    if not isinstance(profile, dict):
        raise ValueError(f"profile {path}: expected a mapping at the top level, got {type(profile).__name__}")
    unknown = set(profile) - PROFILE_KEYS
    if unknown:
        raise ValueError(
            f"profile {path}: unknown keys {sorted(unknown)}; expected some of {sorted(PROFILE_KEYS)}"
        )
    notebooks = profile.setdefault("notebooks", {}) or {}
    if not isinstance(notebooks, dict) or not all(isinstance(v, dict) for v in notebooks.values()):
        raise ValueError(f"profile {path}: 'notebooks' must map notebook names to parameter mappings")
    profile["notebooks"] = notebooks
    profile["book"] = _check_book(profile.get("book"), path)
    profile["name"] = path.stem
    return profile


def _check_book(book: Any, path: Path) -> dict[str, Any]:
    """The `book:` section, checked: known keys, positive numbers of seconds."""
    book = {} if book is None else book
    if not isinstance(book, dict):
        raise ValueError(f"profile {path}: 'book' must be a mapping, got {type(book).__name__}")
    unknown = set(book) - BOOK_KEYS
    if unknown:
        raise ValueError(f"profile {path}: unknown book keys {sorted(unknown)}; expected some of {sorted(BOOK_KEYS)}")
    timeouts = book.get("timeouts") or {}
    if not isinstance(timeouts, dict):
        raise ValueError(f"profile {path}: book.timeouts must map notebook names to seconds")
    for where, value in [("book.timeout_s", book.get("timeout_s", 1))] + [(f"book.timeouts.{k}", v) for k, v in timeouts.items()]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"profile {path}: {where} must be a positive number of seconds, got {value!r}")
    return {**book, "timeouts": timeouts}
