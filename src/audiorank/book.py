"""Build the book: sweep → notebooks (only those whose inputs changed) → glue check → Jupyter Book.

`build_book` does, in order:

1. brings the profile's sweep up to date (`audiorank.sweep.sweep`; nothing runs when the results
   store is complete);
2. executes each notebook of _toc.yml (entries under book/executed/) with papermill, in a child
   process under a wall-clock limit, but only when its inputs changed: the notebook's source, its
   parameters, the results tables it reads and the library's code. The key of those inputs is kept
   in the executed copy's metadata, so an unchanged notebook is restored, not re-run;
3. folds the code of the executed copies (never the sources): every code cell `hide-input`, the
   notebook's own defaults (`parameters` cell) removed, the values papermill injected folded once;
4. checks that every glue reference of the book's pages and notebooks names a key that an
   executed notebook glues, and names the page and key when one does not;
5. runs `jupyter-book build` with warnings as errors, incrementally (Sphinx keeps _build/.doctrees),
   after marking changed (mtime) every page that pastes glue from a notebook that ran, since Sphinx
   does not see that dependency.

Any failing cell, dead kernel, notebook past its time limit, dangling glue reference or Sphinx
warning fails the build with a `BookError` naming the notebook or page. The Sphinx extension the
build uses (MathJax 3 served from the build, docstrings as field lists) is `audiorank.sphinx_ext`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .profiles import load_profile, project_root

#: where _toc.yml expects the executed notebooks, relative to the root
EXECUTED_DIR = Path("book") / "executed"
#: where papermill writes while a notebook runs; a failed run's copy (with its traceback) stays here
STAGING_DIR = Path("_build") / "papermill"
#: the results files a notebook that declares `results_dir` depends on (hashed by content)
RESULTS_FILES = ("runs.csv", "ranks.csv", "probes.csv", "manifest.json")
#: parameters the build itself passes to every notebook that declares them
BUILD_PARAMETERS = ("profile", "results_dir")
#: wall-clock limit of one notebook when the profile's `book:` section sets none
DEFAULT_TIMEOUT_S = 3600.0


class BookError(ValueError):
    """The book cannot be built; the message names the notebook, page or key at fault."""


# ----------------------------------------------------------------------------- table of contents


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


def toc_entries(root: Path | None = None) -> list[str]:
    """Every document of _toc.yml, as written there (no suffix), in book order."""
    root = Path(root or project_root())
    with open(root / "_toc.yml") as f:
        return list(_toc_files(yaml.safe_load(f)))


def toc_notebooks(root: Path | None = None) -> list[str]:
    """Names of the notebooks the table of contents shows (its book/executed/ entries), in book order."""
    prefix = EXECUTED_DIR.as_posix() + "/"
    return [PurePosixPath(e).stem for e in toc_entries(root) if e.startswith(prefix)]


def toc_pages(root: Path | None = None) -> list[Path]:
    """The prose pages of the table of contents (its entries outside book/executed/), as files."""
    root = Path(root or project_root())
    prefix = EXECUTED_DIR.as_posix() + "/"
    pages = []
    for entry in toc_entries(root):
        if entry.startswith(prefix):
            continue
        for suffix in ("", ".md", ".ipynb", ".rst"):
            if (root / (entry + suffix)).is_file() and (suffix or Path(entry).suffix):
                pages.append(root / (entry + suffix))
                break
        else:
            raise BookError(f"_toc.yml lists {entry!r}, but no {entry}.md exists under {root}")
    return pages


# ----------------------------------------------------------------------------- parameters, limits


def declared_parameters(source: Path) -> set[str]:
    """Names the notebook's `parameters` cell assigns (what papermill may set)."""
    import papermill

    return set(papermill.inspect_notebook(str(source)))


def notebook_parameters(profile: Mapping[str, Any], name: str, source: Path,
                        results_dir: str | None = None) -> dict[str, Any]:
    """The parameters one notebook runs with: `profile` and `results_dir` (the build's, when the
    notebook declares them) plus the profile's `notebooks: {name: {...}}` knobs, each checked
    against the notebook's `parameters` cell."""
    knobs = dict(profile["notebooks"].get(name, {}))
    declared = declared_parameters(source)
    unknown = set(knobs) - declared
    if unknown:
        raise BookError(
            f"profile {profile['name']!r}, notebook {name!r}: unknown parameters {sorted(unknown)}; "
            f"the notebook's parameters cell declares {sorted(declared)}"
        )
    reserved = set(knobs) & set(BUILD_PARAMETERS)
    if reserved:
        raise BookError(f"profile {profile['name']!r}, notebook {name!r}: {sorted(reserved)} are set by the "
                        f"build (--profile, --results), not by the profile's notebooks section")
    build = {"profile": profile["name"], "results_dir": results_dir}
    params = {key: value for key, value in build.items() if key in declared and value is not None}
    params.update(knobs)
    return params


def notebook_timeout(profile: Mapping[str, Any], name: str) -> float:
    """Seconds `name` may run: the profile's book.timeouts[name], else book.timeout_s, else the default."""
    book = profile.get("book") or {}
    return float((book.get("timeouts") or {}).get(name, book.get("timeout_s", DEFAULT_TIMEOUT_S)))


# ----------------------------------------------------------------------------- inputs key


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def library_fingerprint() -> str:
    """audiorank's version and the hash of its sources (src/audiorank/**/*.py): a code change re-runs
    the notebooks, a changed comment included, since the code is the point of the book."""
    from . import __version__

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:16]}"


def results_fingerprint(results_dir: Path) -> dict[str, str | None]:
    """Content hash of each results table (None where the file is absent)."""
    return {name: _sha256((results_dir / name).read_bytes())[:16] if (results_dir / name).is_file() else None
            for name in RESULTS_FILES}


def data_dirs(source: Path, parameters: Mapping[str, Any], root: Path) -> dict[str, Path]:
    """The folders a notebook reads besides the results store: each `*_dir` parameter other than
    `results_dir` (the value it runs with: the build's, else the notebook's default) that names a
    folder, relative to the root (e.g. a recipe study's rows under results/)."""
    import ast

    import papermill

    values = {}
    for name, spec in papermill.inspect_notebook(str(source)).items():
        try:
            values[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):  # a default that is an expression, not a literal
            continue
    values.update(parameters)
    return {name: root / value for name, value in sorted(values.items())
            if name.endswith("_dir") and name != "results_dir" and isinstance(value, str) and (root / value).is_dir()}


def folder_fingerprint(folder: Path) -> str:
    """One hash of the names and contents of every file under `folder`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def notebook_inputs(source: Path, parameters: Mapping[str, Any], results_dir: Path | None,
                    library: str, data: Mapping[str, Path] | None = None) -> dict[str, Any]:
    """What an executed notebook depends on; its results only when it reads them (`results_dir`),
    and the content of the other folders it reads (`data`, from `data_dirs`)."""
    return {
        "notebook": _sha256(source.read_bytes())[:16],
        "parameters": _sha256(json.dumps(parameters, sort_keys=True, default=str).encode())[:16],
        "results": results_fingerprint(results_dir) if results_dir is not None and "results_dir" in parameters else None,
        "data": {name: folder_fingerprint(folder) for name, folder in (data or {}).items()} or None,
        "library": library,
    }


def inputs_key(inputs: Mapping[str, Any]) -> str:
    """One hash of a notebook's inputs, stored in its executed copy's metadata."""
    return _sha256(json.dumps(inputs, sort_keys=True).encode())[:32]


def stored_inputs(executed: Path) -> dict[str, Any] | None:
    """The `audiorank` metadata (key, inputs) an executed copy was written with; None if there is none."""
    if not executed.is_file():
        return None
    try:
        return json.loads(executed.read_text())["metadata"].get("audiorank")
    except (ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------- execution


#: the child process that runs one notebook (kept small: papermill does the work)
_RUNNER = """
import json, sys
import papermill
source, target, cwd, timeout = sys.argv[1:5]
papermill.execute_notebook(source, target, parameters=json.loads(sys.stdin.read()), kernel_name="python3",
                           cwd=cwd, progress_bar=False, log_output=False, execution_timeout=int(float(timeout)) + 1)
"""


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (the kernel runs in a session of its own)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for proc in family:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


#: cells papermill adds to the executed copy (not in the source)
_PAPERMILL_TAGS = frozenset({"injected-parameters", "papermill-error-cell-tag"})


def _source_cells(staged: Path) -> list[dict[str, Any]]:
    """The cells of a (partly) executed copy that come from the source notebook, in order."""
    try:
        cells = json.loads(staged.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return []
    return [c for c in cells if not _PAPERMILL_TAGS & set(c.get("metadata", {}).get("tags", []))]


def _describe(index: int, cell: Mapping[str, Any]) -> str:
    """'cell N (its first line)', N counting the source notebook's cells from 1."""
    first = next((line.strip() for line in "".join(cell.get("source", "")).splitlines() if line.strip()), "")
    return f"cell {index} ({first[:60]})"


def _failure_summary(staged: Path) -> str | None:
    """'cell N (first line): Ename: value' for the first cell of a partly executed copy that raised."""
    for index, cell in enumerate(_source_cells(staged), start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{_describe(index, cell)}: {output.get('ename')}: {output.get('evalue')}"
    return None


def _last_started(staged: Path) -> str | None:
    """The last cell papermill started (where a kernel died or time ran out), as 'cell N (first line)'."""
    started = [(i, c) for i, c in enumerate(_source_cells(staged), start=1)
               if c.get("metadata", {}).get("papermill", {}).get("start_time")]
    return _describe(*started[-1]) if started else None


def run_notebook(name: str, source: Path, staged: Path, parameters: Mapping[str, Any], cwd: Path,
                 timeout_s: float) -> float:
    """Execute `source` into `staged` with papermill in a child process; returns its seconds.

    The child is killed, kernel and all, after `timeout_s` seconds of wall clock. A failing cell,
    a dead kernel or the limit raises BookError naming the notebook (and the cell, when one raised)."""
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.unlink(missing_ok=True)
    log_path = staged.with_suffix(".log")
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, str(source), str(staged), str(cwd), str(timeout_s)],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(dict(parameters)))
        proc.stdin.close()
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            running = _last_started(staged)
            raise BookError(f"notebook {name!r} ran past its limit of {timeout_s:g} s and was stopped"
                            f"{' in ' + running if running else ''} (the profile's book.timeouts.{name} or "
                            f"book.timeout_s sets the limit; the partly executed copy is {staged})") from None
    seconds = time.perf_counter() - start
    if code != 0:
        where = _failure_summary(staged)
        if where:
            raise BookError(f"notebook {name!r} failed in {where}\n(source {source}; the executed copy with the "
                            f"traceback is {staged})")
        lines = [line for line in log_path.read_text().splitlines() if line.strip()]
        running = _last_started(staged)
        raise BookError(f"notebook {name!r} failed{' in ' + running if running else ''}: "
                        f"{lines[-1].strip() if lines else 'no output'} (exit code {code}; log: {log_path})")
    return seconds


def fold_code(notebook: dict[str, Any], profile_name: str) -> dict[str, Any]:
    """Fold the code of an executed notebook for reading: every code cell `hide-input`, the source's
    default values (`parameters` cell) removed, papermill's injected values folded under one prompt."""
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        meta = cell.setdefault("metadata", {})
        tags = meta.setdefault("tags", [])
        if "parameters" in tags:
            new = ["remove-cell"]
        elif {"remove-cell", "remove_cell", "remove-input", "remove_input", "hide-cell"} & set(tags):
            new = []
        else:
            new = ["hide-input"]
        tags.extend(t for t in new if t not in tags)
        if "injected-parameters" in tags:
            meta.setdefault("mystnb", {}).update(code_prompt_show=f"Parameters used (profile {profile_name})",
                                                 code_prompt_hide="Hide the parameters")
    return notebook


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclasses.dataclass
class NotebookRun:
    """What the build did with one notebook."""

    name: str
    status: str  # "ran" or "restored"
    seconds: float = 0.0
    changed: tuple[str, ...] = ()  # which inputs differed from the executed copy's ("new": there was none)

    def describe(self) -> str:
        if self.status == "restored":
            return "restored (inputs unchanged)"
        return f"ran ({self.seconds:.1f} s; changed: {', '.join(self.changed) or 'forced'})"


def execute_notebooks(profile: str | Path | Mapping[str, Any] = "laptop", root: Path | None = None, *,
                      results: str | Path | None = None, only: Iterable[str] | None = None,
                      force: Iterable[str] = (), log: Callable[[str], None] = print) -> list[NotebookRun]:
    """Execute the notebooks of _toc.yml whose inputs changed into book/executed/; restore the rest.

    `only` limits the build to some notebooks, `force` re-runs these whatever their inputs. Returns
    one NotebookRun per notebook, in book order."""
    root = Path(root or project_root()).resolve()
    prof = profile if isinstance(profile, Mapping) else load_profile(profile)
    results_dir = resolve_results(prof, root, results)
    names = toc_notebooks(root)
    force = tuple(force)
    for option, given in (("--only", only or ()), ("--force", force)):
        missing = sorted(set(given) - set(names))
        if missing:
            raise BookError(f"{option}: notebooks {missing} are not in _toc.yml; it lists {names}")
    unknown_limits = sorted(set((prof.get("book") or {}).get("timeouts") or {}) - set(names))
    if unknown_limits:
        raise BookError(f"profile {prof['name']!r}: book.timeouts names {unknown_limits}, which are not notebooks "
                        f"of _toc.yml ({names})")
    if only:
        names = [n for n in names if n in set(only)]
    library = library_fingerprint()
    out_dir = root / EXECUTED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for name in names:
        source = root / "notebooks" / f"{name}.ipynb"
        if not source.is_file():
            raise BookError(f"_toc.yml lists {EXECUTED_DIR / name}, but {source} does not exist")
        params = notebook_parameters(prof, name, source, results_param(results_dir, root))
        if "results_dir" in params and not (results_dir / "runs.csv").is_file():
            raise BookError(f"notebook {name!r} reads results, but {results_dir} has no runs.csv: run the sweep "
                            f"(without --no-sweep) or pass --results with a complete results folder")
        inputs = notebook_inputs(source, params, results_dir, library, data_dirs(source, params, root))
        key = inputs_key(inputs)
        target = out_dir / f"{name}.ipynb"
        stored = stored_inputs(target)
        if stored and stored.get("key") == key and name not in set(force):
            done.append(NotebookRun(name, "restored"))
            log(f"[audiorank book] {name}: restored (inputs unchanged)")
            continue
        changed = tuple(k for k in inputs if stored and stored.get("inputs", {}).get(k) != inputs[k]) if stored else ("new",)
        log(f"[audiorank book] {name}: running (profile {prof['name']}, limit {notebook_timeout(prof, name):g} s)")
        staged = root / STAGING_DIR / f"{name}.ipynb"
        seconds = run_notebook(name, source, staged, params, root, notebook_timeout(prof, name))
        notebook = fold_code(json.loads(staged.read_text()), prof["name"])
        notebook["metadata"]["audiorank"] = {"key": key, "inputs": inputs, "profile": prof["name"],
                                             "seconds": round(seconds, 1)}
        _write_atomic(target, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
        run = NotebookRun(name, "ran", seconds, changed)
        done.append(run)
        log(f"[audiorank book] {name}: {run.describe()}")
    return done


def resolve_results(profile: Mapping[str, Any], root: Path, results: str | Path | None) -> Path:
    """The results store: `results` if given, else results/<profile>/ under the root."""
    return Path(results).resolve() if results is not None else root / "results" / profile["name"]


def results_param(results_dir: Path, root: Path) -> str:
    """The `results_dir` a notebook receives: relative to the root (where it runs) when inside it."""
    try:
        return results_dir.relative_to(root).as_posix()
    except ValueError:
        return str(results_dir)


# ----------------------------------------------------------------------------- the whole build


@dataclasses.dataclass
class BookReport:
    """What one build did: the sweep's counts, each notebook, the glue references checked, timings."""

    profile: str
    results_dir: Path
    sweep: dict[str, Any] | None
    notebooks: list[NotebookRun]
    glue_references: int = 0
    html: Path | None = None
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def run_sweep(profile: Mapping[str, Any], results_dir: Path, workers: int = 1,
              log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Bring the profile's sweep up to date in `results_dir` (nothing runs when it is complete)."""
    if not profile.get("sweep"):
        log(f"[audiorank book] profile {profile['name']!r} has no sweep section: no results to update")
        return None
    from .sweep import sweep

    log(f"[audiorank book] sweep {profile['name']!r} into {results_dir}")
    return sweep(profile, results_dir, executor="inline" if workers <= 1 else "process", workers=workers,
                 progress=not os.environ.get("CI"), log=log)


def build_book(profile: str | Path = "laptop", root: Path | None = None, *, results: str | Path | None = None,
               force: Iterable[str] = (), sweep: bool = True, only: Iterable[str] | None = None,
               html: bool = True, workers: int = 1, log: Callable[[str], None] = print) -> BookReport:
    """The whole build (sweep, notebooks, glue check, Jupyter Book); returns what it did.

    `html=False` stops after the notebooks; `only` (with it) executes a subset."""
    root = Path(root or project_root()).resolve()
    prof = load_profile(profile)
    results_dir = resolve_results(prof, root, results)
    if only and html:
        raise BookError("only a subset of notebooks cannot make a whole book: use it without building the HTML")
    times: dict[str, float] = {}
    start = time.perf_counter()
    counts = run_sweep(prof, results_dir, workers, log) if sweep else None
    times["sweep"] = time.perf_counter() - start
    start = time.perf_counter()
    runs = execute_notebooks(prof, root, results=results_dir, only=only, force=force, log=log)
    times["notebooks"] = time.perf_counter() - start
    report = BookReport(prof["name"], results_dir, counts, runs, seconds=times)
    if not html:
        return report
    start = time.perf_counter()
    from .gluecheck import check_glue, pages_pasting_from  # it imports this module

    report.glue_references = check_glue(root)
    ran = [(EXECUTED_DIR / f"{run.name}.ipynb").as_posix() for run in runs if run.status == "ran"]
    for page in pages_pasting_from(root, ran):  # Sphinx re-reads a page whose mtime is newer than its doctree
        os.utime(page)
        log(f"[audiorank book] {page.relative_to(root)}: pastes from a notebook that ran, re-read")
    log(f"[audiorank book] glue: all {report.glue_references} references resolve")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book), "build", str(root), "--warningiserror", "--nitpick", "--keep-going"]
    log("[audiorank book] " + " ".join(command))
    lines = []
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # echoed as it comes: a first build takes a while
            sys.stdout.write(line)
            lines.append(line.rstrip("\n"))
    times["sphinx"] = time.perf_counter() - start
    if proc.returncode != 0:
        warnings = [ln for ln in lines if "WARNING" in ln or "ERROR" in ln]
        raise BookError("jupyter-book build failed (warnings are errors):\n" + "\n".join(warnings[:30] or lines[-20:]))
    report.html = root / "_build" / "html"
    log(f"[audiorank book] done: {report.html / 'index.html'} (sweep {times['sweep']:.1f} s, notebooks "
        f"{times['notebooks']:.1f} s, glue check + Sphinx {times['sphinx']:.1f} s)")
    return report
