"""The Sphinx extension of the book (`sphinx: extra_extensions` in _config.yml): MathJax 3 served
from the build's _static/ (formulas render without a network), plain `name: description` docstrings
shown as parameter lists in the API reference, and each page's scripts included once."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .book import BookError

#: the wheel that ships MathJax 3 (tex-chtml.js, fonts, extensions), copied into the build's _static/mathjax/
MATHJAX_DIST = "sphinx-mathjax-offline"


def mathjax_static_dir() -> Path:
    """The folder holding mathjax/ (MathJax 3's tex-chtml.js, fonts and extensions) from the
    sphinx-mathjax-offline wheel, installed from the lock."""
    from importlib import metadata

    try:
        dist = metadata.distribution(MATHJAX_DIST)
    except metadata.PackageNotFoundError:
        raise BookError(f"the {MATHJAX_DIST} package (MathJax 3, served from the build) is not installed: "
                        f"run `make venv`") from None
    static = Path(str(dist.locate_file("sphinx-mathjax-offline/static")))
    if not (static / "mathjax" / "tex-chtml.js").is_file():
        raise BookError(f"{static}/mathjax/tex-chtml.js is missing: reinstall {MATHJAX_DIST}")
    return static


def _serve_mathjax(app: Any, config: Any) -> None:
    config.html_static_path = [*config.html_static_path, str(mathjax_static_dir())]
    if not str(config.mathjax_path).startswith("mathjax/"):
        raise BookError(f"mathjax_path is {config.mathjax_path!r}: set it to mathjax/tex-chtml.js in _config.yml "
                        f"(sphinx: config:), so formulas render offline from the build's _static/")


#: a `name: description` line of a docstring (or `a, b: description`)
_FIELD = re.compile(r"^([A-Za-z_][\w.]*(?:, [A-Za-z_][\w.]*)*): (\S.*)$")
#: a `|` outside ``literal`` text: the docstrings' norms (|x|), never RST substitutions
_LITERAL = re.compile(r"(``.+?``)")


def _field_lists(lines: list[str], parameters: Iterable[str] = ()) -> list[str]:
    """Blocks of `name: description` lines (the docstrings' argument lists, continued with hanging
    indents) as RST field lists: `:param name:` for the object's parameters (merged with their type
    hints), `:name:` for anything else. As plain RST they run together into one paragraph, and a
    hanging indent is an error."""
    out: list[str] = []
    block: list[str] = []
    parameters = set(parameters)

    def field(line: str) -> str:
        name, text = _FIELD.match(line).groups()
        return f":param {name}: {text}" if name in parameters else f":{name}: {text}"

    def flush() -> None:
        heads = [line for line in block if not line[:1].isspace()]
        hanging = any(line[:1].isspace() for line in block)
        if heads and (hanging or len(heads) > 1) and all(_FIELD.match(line) for line in heads):
            out.extend(line if line[:1].isspace() else field(line) for line in block)
        else:
            out.extend(block)
        block.clear()

    for line in lines:
        if line.strip():
            block.append(line)
        else:
            flush()
            out.append(line)
    flush()
    return out


def _escape_bars(line: str) -> str:
    return "".join(part if part.startswith("``") else part.replace("|", "\\|") for part in _LITERAL.split(line))


def plain_docstring(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """autodoc hook: the project's docstrings are plain text with RST inline markup; make the two
    plain-text habits RST misreads render as written (hanging-indent argument lists, |x| norms), and
    give module-level data without a docstring of its own its keys instead of its type's docstring."""
    if what in ("data", "attribute") and obj is not None and lines and \
            "\n".join(lines).strip() == (type(obj).__doc__ or "").strip():
        keys = list(obj)[:40] if isinstance(obj, Mapping) else None
        lines[:] = [f"Keys: {', '.join(f'``{k}``' for k in keys)}."] if keys else []
        return
    try:
        parameters = list(inspect.signature(obj).parameters) if callable(obj) else []
    except (TypeError, ValueError):  # builtins and some C types have no signature
        parameters = []
    lines[:] = [_escape_bars(line) for line in _field_lists(lines, parameters)]


def _one_of_each_script(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Drop repeated <script> entries of a page. Extensions that add scripts once the builder exists
    (sphinx-thebe, sphinx-togglebutton) are listed twice by Sphinx 7, and the second inline
    `const THEBE_JS_URL` is a JavaScript error on every page. Runs after every other handler."""
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        seen, unique = set(), []
        for script in scripts:  # the same script is once registered with filename None, once with ''
            key = (str(getattr(script, "filename", script) or ""),
                   tuple(sorted(getattr(script, "attributes", {}).items())))
            if key not in seen:
                seen.add(key)
                unique.append(script)
        context["script_files"] = unique


def setup(app: Any) -> dict[str, Any]:
    """Sphinx extension: copy MathJax 3 into the build's _static/ (mathjax_path points there), read
    the project's plain-text docstrings for the API reference, list each page script once."""
    app.connect("config-inited", _serve_mathjax)
    app.connect("autodoc-process-docstring", plain_docstring)
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
