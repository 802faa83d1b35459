"""The book pipeline: profiles validate, notebooks are committed clean, each notebook runs only when
its inputs changed, failures and dangling glue name what is wrong, and the smoke build works."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
import yaml

from audiorank.book import (
    BookError,
    build_book,
    data_dirs,
    declared_parameters,
    execute_notebooks,
    fold_code,
    inputs_key,
    notebook_inputs,
    notebook_parameters,
    notebook_timeout,
    toc_notebooks,
)
from audiorank.gluecheck import GlueReference, check_glue, glue_references, role_reference
from audiorank.sphinx_ext import plain_docstring
from audiorank.profiles import available_profiles, load_profile, project_root

ROOT = project_root()


# ----------------------------------------------------------------------------- profiles and sources


def test_every_profile_loads_and_names_only_toc_notebooks():
    names = set(toc_notebooks(ROOT))
    assert {"smoke", "laptop", "reference"} <= set(available_profiles())
    for profile in available_profiles():
        loaded = load_profile(profile)
        assert set(loaded["notebooks"]) <= names, profile
        assert set(loaded["book"]["timeouts"]) <= names, profile
        for name in loaded["notebooks"]:
            notebook_parameters(loaded, name, ROOT / "notebooks" / f"{name}.ipynb", "results/x")


def test_unknown_profile_key_is_an_error(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump({"notebok": {}}))
    with pytest.raises(ValueError, match="unknown keys.*notebok"):
        load_profile(path)


def test_missing_profile_lists_the_available_ones():
    with pytest.raises(ValueError, match="available profiles: .*smoke"):
        load_profile("no-such-profile")


@pytest.mark.parametrize("book, message", [
    ({"timeout": 3}, "unknown book keys.*timeout"),
    ({"timeout_s": 0}, "book.timeout_s must be a positive number"),
    ({"timeouts": {"scaling": "long"}}, "book.timeouts.scaling must be a positive number"),
    ({"timeouts": [1]}, "book.timeouts must map"),
])
def test_bad_book_section_names_the_key(tmp_path, book, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"book": book}))
    with pytest.raises(ValueError, match=message):
        load_profile(path)


def test_timeouts_come_from_the_book_section(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"book": {"timeout_s": 30, "timeouts": {"slow": 90}}}))
    profile = load_profile(path)
    assert notebook_timeout(profile, "slow") == 90 and notebook_timeout(profile, "other") == 30


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


# ----------------------------------------------------------------------------- a scratch book


def write_notebook(path: Path, parameters: str, *cells: str, markdown: str = "") -> Path:
    """A notebook with a tagged parameters cell, then code cells (and an optional markdown cell)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    first = nbformat.v4.new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), first, *map(nbformat.v4.new_code_cell, cells)]
    if markdown:
        nb.cells.append(nbformat.v4.new_markdown_cell(markdown))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def scratch_book(root: Path, notebooks: dict[str, tuple], pages: dict[str, str] | None = None) -> Path:
    """A book root: _toc.yml listing book/intro, the pages and the notebooks' executed copies."""
    (root / "book").mkdir(parents=True, exist_ok=True)
    (root / "book" / "intro.md").write_text("# Intro\n")
    for name, text in (pages or {}).items():
        (root / "book" / f"{name}.md").write_text(text)
    for name, (parameters, *cells) in notebooks.items():
        write_notebook(root / "notebooks" / f"{name}.ipynb", parameters, *cells)
    chapters = [{"file": f"book/{p}"} for p in pages or {}] + [{"file": f"book/executed/{n}"} for n in notebooks]
    (root / "_toc.yml").write_text(yaml.safe_dump({"format": "jb-book", "root": "book/intro", "chapters": chapters}))
    return root


def scratch_profile(tmp_path: Path, **sections) -> dict:
    path = tmp_path / "scratch.yaml"
    path.write_text(yaml.safe_dump(sections))
    return load_profile(path)


def test_build_parameters_go_only_to_notebooks_that_declare_them(tmp_path):
    reader = write_notebook(tmp_path / "reader.ipynb", "profile = 'x'\nresults_dir = ''\nseed = 0\nknob = 1")
    plain = write_notebook(tmp_path / "plain.ipynb", "dim = 4")
    profile = scratch_profile(tmp_path, notebooks={"reader": {"knob": 2}, "plain": {"dim": 8}})
    assert notebook_parameters(profile, "reader", reader, "results/smoke") == {
        "profile": "scratch", "results_dir": "results/smoke", "knob": 2}
    assert notebook_parameters(profile, "plain", plain, "results/smoke") == {"dim": 8}
    clash = scratch_profile(tmp_path, notebooks={"reader": {"results_dir": "elsewhere"}})
    with pytest.raises(BookError, match="set by the build"):
        notebook_parameters(clash, "reader", reader, "results/smoke")


def test_the_inputs_key_changes_with_each_input_and_results_only_for_readers(tmp_path):
    source = write_notebook(tmp_path / "n.ipynb", "results_dir = ''")
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.csv").write_text("run,status\na,ok\n")
    reader = {"results_dir": str(results)}
    key = inputs_key(notebook_inputs(source, reader, results, "0.1.0+abc"))
    assert key == inputs_key(notebook_inputs(source, reader, results, "0.1.0+abc"))  # deterministic
    assert key != inputs_key(notebook_inputs(source, reader, results, "0.1.0+abd"))  # library
    assert key != inputs_key(notebook_inputs(source, {**reader, "seed": 1}, results, "0.1.0+abc"))  # parameters
    nonreader = inputs_key(notebook_inputs(source, {"dim": 3}, results, "0.1.0+abc"))
    (results / "runs.csv").write_text("run,status\na,failed\n")
    assert key != inputs_key(notebook_inputs(source, reader, results, "0.1.0+abc"))  # results tables
    assert nonreader == inputs_key(notebook_inputs(source, {"dim": 3}, results, "0.1.0+abc"))  # reads none
    write_notebook(source, "results_dir = ''", "print(1)")
    assert key != inputs_key(notebook_inputs(source, reader, results, "0.1.0+abc"))  # source


def test_folding_hides_code_removes_defaults_and_labels_the_injected_values():
    nb = {"cells": [
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "dim = 4"},
        {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "source": "dim = 8"},
        {"cell_type": "code", "metadata": {}, "source": "plot()"},
        {"cell_type": "code", "metadata": {"tags": ["remove-cell"]}, "source": "glue()"},
        {"cell_type": "markdown", "metadata": {}, "source": "text"},
    ]}
    cells = fold_code(nb, "smoke")["cells"]
    assert cells[0]["metadata"]["tags"] == ["parameters", "remove-cell"]
    assert cells[1]["metadata"]["tags"] == ["injected-parameters", "hide-input"]
    assert cells[1]["metadata"]["mystnb"]["code_prompt_show"] == "Parameters used (profile smoke)"
    assert cells[2]["metadata"]["tags"] == ["hide-input"]
    assert cells[3]["metadata"]["tags"] == ["remove-cell"]
    assert "tags" not in cells[4]["metadata"]


def test_notebooks_run_once_then_restore_until_an_input_changes(tmp_path):
    root = scratch_book(tmp_path / "book", {"a": ("n = 1", "print(n)"), "b": ("m = 1", "print(m)")})
    profile = scratch_profile(tmp_path, notebooks={"a": {"n": 2}})
    lines: list[str] = []
    first = execute_notebooks(profile, root, log=lines.append)
    assert [(r.name, r.status, r.changed) for r in first] == [("a", "ran", ("new",)), ("b", "ran", ("new",))]
    assert [r.status for r in execute_notebooks(profile, root, log=lines.append)] == ["restored", "restored"]
    assert "[audiorank book] a: restored (inputs unchanged)" in lines
    changed = scratch_profile(tmp_path, notebooks={"a": {"n": 3}})
    again = execute_notebooks(changed, root, force=["b"], log=lines.append)
    assert [(r.name, r.status, r.changed) for r in again] == [("a", "ran", ("parameters",)), ("b", "ran", ())]
    executed = json.loads((root / "book" / "executed" / "a.ipynb").read_text())
    assert executed["metadata"]["papermill"]["parameters"] == {"n": 3}
    assert "".join(executed["cells"][-1]["outputs"][0]["text"]) == "3\n"


def test_a_failing_cell_names_the_notebook_the_cell_and_the_error(tmp_path):
    root = scratch_book(tmp_path / "book", {"broken": ("n = 1", "x = 1", "raise ValueError(f'bad n={n}')")})
    with pytest.raises(BookError, match=r"notebook 'broken' failed in cell 4 \(raise ValueError.*\): ValueError: bad n=1"):
        execute_notebooks(scratch_profile(tmp_path), root, log=lambda line: None)
    assert not (root / "book" / "executed" / "broken.ipynb").exists()  # nothing stale is left to restore


def test_a_dead_kernel_names_the_notebook(tmp_path):
    root = scratch_book(tmp_path / "book", {"dies": ("n = 1", "import os\nos._exit(1)")})
    with pytest.raises(BookError, match=r"notebook 'dies' failed in cell 3 \(import os\): .*DeadKernelError"):
        execute_notebooks(scratch_profile(tmp_path), root, log=lambda line: None)


def test_a_notebook_past_its_limit_is_stopped_kernel_and_all(tmp_path):
    root = scratch_book(tmp_path / "book", {"slow": ("n = 1", "import time\ntime.sleep(120)")})
    profile = scratch_profile(tmp_path, book={"timeout_s": 600, "timeouts": {"slow": 8}})
    with pytest.raises(BookError, match=r"notebook 'slow' ran past its limit of 8 s and was stopped in cell 3"):
        execute_notebooks(profile, root, log=lambda line: None)
    assert not psutil.Process().children(recursive=True)  # papermill and its kernel are gone


def test_unknown_force_and_timeout_names_are_errors(tmp_path):
    root = scratch_book(tmp_path / "book", {"a": ("n = 1",)})
    with pytest.raises(BookError, match=r"--force: notebooks \['nope'\] are not in _toc.yml"):
        execute_notebooks(scratch_profile(tmp_path), root, force=["nope"])
    with pytest.raises(BookError, match=r"book.timeouts names \['nope'\]"):
        execute_notebooks(scratch_profile(tmp_path, book={"timeouts": {"nope": 5}}), root)


# ----------------------------------------------------------------------------- glue references


def test_glue_references_are_read_as_myst_nb_reads_them():
    text = """Flat {glue:text}`rank_flat:.0f`, {glue}`plain` and {glue:text}`executed/a.ipynb::alpha:.2f`.

```{glue:figure} fig_main
:name: fig-main
Caption with {glue:text}`n_runs:d`.
```

:::{note}
Inside a note: {glue:md}`table`
:::

```{glue} other
:doc: executed/b.ipynb
```

```python
glue("in_code", 1)  # {glue}`not_a_reference`
```
"""
    refs = glue_references(text)
    assert [(r.kind, r.doc, r.key, r.fmt) for r in refs] == [
        ("glue:text", None, "rank_flat", ".0f"), ("glue", None, "plain", None),
        ("glue:text", "executed/a.ipynb", "alpha", ".2f"), ("glue:figure", None, "fig_main", None),
        ("glue:text", None, "n_runs", "d"), ("glue:md", None, "table", None), ("glue", "executed/b.ipynb", "other", None),
    ]
    # myst-nb splits the last colon off a text role as its format, even after `::`
    assert role_reference("glue:text", "executed/a.ipynb::alpha") == GlueReference(
        "glue:text", "executed/a.ipynb::alpha", None, "executed/a.ipynb:", "alpha")


def glued(key: str, value: str) -> dict:
    return {"output_type": "display_data", "data": {"application/papermill.record/text/plain": value},
            "metadata": {"scrapbook": {"name": key, "mime_prefix": "application/papermill.record/"}}}


def executed_book(root: Path, page: str, markdown: str = "") -> Path:
    """A book whose notebook `a` glues n_runs = 12 and slope = np.float64(0.5), with `page` as a page."""
    scratch_book(root, {"a": ("n = 1",)}, {"results": page})
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("glue(...)")
    cell.outputs = [nbformat.from_dict(glued("n_runs", "12")), nbformat.from_dict(glued("slope", "np.float64(0.5)"))]
    nb.cells = [cell, nbformat.v4.new_markdown_cell(markdown)]
    (root / "book" / "executed").mkdir(parents=True)
    nbformat.write(nb, root / "book" / "executed" / "a.ipynb")
    return root


def test_glue_references_that_resolve_pass(tmp_path):
    root = executed_book(tmp_path, "{glue:text}`executed/a.ipynb::n_runs:d` runs", "{glue:text}`n_runs:d`")
    assert check_glue(root) == 2


def test_a_missing_glue_key_names_the_page_the_key_and_who_glues_it(tmp_path):
    root = executed_book(tmp_path, "Runs: {glue:text}`n_runs:d`; {glue:text}`executed/a.ipynb::n_rnus:d`.",
                         "{glue}`missing_here`")
    with pytest.raises(BookError) as error:
        check_glue(root)
    message = str(error.value)
    assert "book/results.md: {glue:text}`n_runs:d`: no key 'n_runs' in book/results.md" in message
    assert "glued by book/executed/a.ipynb" in message  # the fix: name the notebook
    assert "book/results.md: {glue:text}`executed/a.ipynb::n_rnus:d`: no key 'n_rnus' in book/executed/a.ipynb" in message
    assert "book/executed/a.ipynb: {glue}`missing_here`: no key 'missing_here'" in message


def test_a_glued_value_its_format_cannot_read_is_named(tmp_path):
    root = executed_book(tmp_path, "Slope {glue:text}`executed/a.ipynb::slope:.2f`.")
    with pytest.raises(BookError, match=r"results.md: .*slope:.2f`: cannot format 'np.float64\(0.5\)' with '.2f'"):
        check_glue(root)


# ----------------------------------------------------------------------------- the API reference


def test_plain_docstrings_become_field_lists_and_keep_their_bars():
    def spectrum(Z, center=False):
        """Singular values.

        Z: (N, D) or (L, N, D)
        center: subtract the column mean
            first (the centered data).
        other: not an argument
        """

    lines = ["Singular values.", "", "Z: (N, D) or (L, N, D)", "center: subtract the column mean",
             "    first (the centered data).", "other: not an argument", "", "AP = (1/|pos|) Σ, ``a|b``"]
    plain_docstring(None, "function", "spectrum", spectrum, {}, lines)
    assert lines == ["Singular values.", "", ":param Z: (N, D) or (L, N, D)", ":param center: subtract the column mean",
                     "    first (the centered data).", ":other: not an argument", "", "AP = (1/\\|pos\\|) Σ, ``a|b``"]
    prose = ["A paragraph: with a colon,", "and a second line."]
    plain_docstring(None, "function", "spectrum", spectrum, {}, prose)
    assert prose == ["A paragraph: with a colon,", "and a second line."]  # not a list of names


def test_module_data_without_a_docstring_lists_its_keys_not_its_types_docstring():
    lines = dict.__doc__.splitlines()
    plain_docstring(None, "data", "PRESETS", {"vit-nano": 1, "cnn-nano": 2}, {}, lines)
    assert lines == ["Keys: ``vit-nano``, ``cnn-nano``."]


# ----------------------------------------------------------------------------- the command


def test_book_command_reports_a_bad_notebook_name():
    command = [str(Path(sys.executable).with_name("audiorank")), "book", "--profile", "smoke", "--no-sweep",
               "--force", "no_such_notebook"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert "audiorank book: error: --force: notebooks ['no_such_notebook'] are not in _toc.yml" in result.stderr


# ----------------------------------------------------------------------------- the smoke book


@pytest.mark.slow
def test_smoke_book_sweeps_executes_every_notebook_and_builds(smoke_book):
    report = smoke_book.report
    assert report.sweep["failed"] == 0 and report.sweep["ran"] == report.sweep["planned"] > 0
    assert [r.name for r in report.notebooks] == toc_notebooks(ROOT)
    assert all(r.status == "ran" for r in report.notebooks)
    assert (smoke_book.html / "index.html").is_file()
    smoke = load_profile("smoke")
    for name in toc_notebooks(ROOT):
        executed = json.loads((smoke_book.root / "book" / "executed" / f"{name}.ipynb").read_text())
        declared = declared_parameters(smoke_book.root / "notebooks" / f"{name}.ipynb")
        expected = {k: v for k, v in {"profile": "smoke", "results_dir": str(smoke_book.results)}.items() if k in declared}
        assert executed["metadata"]["papermill"]["parameters"] == {**expected, **smoke["notebooks"].get(name, {})}
        cells = executed["cells"]
        assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert all({"hide-input", "remove-cell"} & set(c["metadata"]["tags"]) for c in code), name
        html = (smoke_book.html / "book" / "executed" / f"{name}.html").read_text()
        assert "<img" in html, name  # its figures were rendered
        assert "tag_parameters" not in html, name  # the source's defaults are not shown
        assert html.count("Parameters used (profile smoke)") == 1, name  # the values used, once


@pytest.mark.slow
def test_smoke_book_serves_mathjax_from_the_build(smoke_book):
    mathjax = smoke_book.html / "_static" / "mathjax" / "tex-chtml.js"
    assert mathjax.is_file()
    for page in smoke_book.html.rglob("*.html"):
        html = page.read_text()
        if "tex-chtml.js" in html:
            assert 'src="https://' not in html and "_static/mathjax/tex-chtml.js" in html, page


@pytest.mark.slow
def test_second_smoke_build_restores_every_notebook_and_rereads_nothing(smoke_book, capfd):
    lines: list[str] = []
    report = build_book("smoke", smoke_book.root, results=smoke_book.results, log=lines.append)
    assert report.sweep["ran"] == 0 and any(line.startswith("nothing to run") for line in lines)
    assert [r.status for r in report.notebooks] == ["restored"] * len(toc_notebooks(ROOT))
    sphinx = capfd.readouterr().out
    assert "0 added, 0 changed, 0 removed" in sphinx, sphinx[-3000:]


@pytest.mark.slow
def test_executed_notebooks_of_the_smoke_build_are_not_rewritten_when_restored(smoke_book):
    executed = smoke_book.root / "book" / "executed"
    before = {p.name: p.stat().st_mtime_ns for p in executed.glob("*.ipynb")}
    execute_notebooks("smoke", smoke_book.root, results=smoke_book.results, log=lambda line: None)
    assert {p.name: p.stat().st_mtime_ns for p in executed.glob("*.ipynb")} == before


def test_a_notebook_reading_a_study_folder_reruns_when_a_file_in_it_changes(tmp_path):
    # `study_dir` names a folder (default in the notebook, or given by the build): its files are an input
    study = tmp_path / "results" / "study"
    (study / "sub").mkdir(parents=True)
    (study / "rows.jsonl").write_text("{}\n")
    source = write_notebook(tmp_path / "n.ipynb", "study_dir = 'results/study'\nother_dir = 'missing'\nseed = 0")
    folders = data_dirs(source, {}, tmp_path)
    assert folders == {"study_dir": study}  # a *_dir naming no folder is not data
    key = inputs_key(notebook_inputs(source, {}, None, "0.1.0", folders))
    assert key == inputs_key(notebook_inputs(source, {}, None, "0.1.0", data_dirs(source, {}, tmp_path)))
    (study / "sub" / "rows.jsonl").write_text("{}\n")  # a new file, deeper down
    assert key != inputs_key(notebook_inputs(source, {}, None, "0.1.0", data_dirs(source, {}, tmp_path)))
    assert data_dirs(source, {"study_dir": "results"}, tmp_path) == {"study_dir": tmp_path / "results"}  # the build's value


def test_pages_pasting_from_a_notebook_are_found_through_their_glue_references():
    from audiorank.gluecheck import pages_pasting_from

    pages = {p.relative_to(ROOT).as_posix() for p in pages_pasting_from(ROOT, ["book/executed/pretraining.ipynb"])}
    assert "book/results.md" in pages  # its premise section pastes the pretraining chapter's verdicts
    assert "book/method.md" not in pages and "book/cite.md" not in pages
    assert pages_pasting_from(ROOT, []) == []
    everything = {f"book/executed/{n}.ipynb" for n in toc_notebooks(ROOT)}
    assert {"book/intro.md", "book/results.md"} <= {p.relative_to(ROOT).as_posix() for p in pages_pasting_from(ROOT, everything)}
