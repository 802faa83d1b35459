"""The book's glue check: every `{glue:...}` reference of the book's pages and executed notebooks
must name a key that an executed notebook glues, in a form its format spec can read. Run by
`audiorank.book.build_book` before Sphinx, so a dangling reference fails naming its page and key
rather than as one of Sphinx's warnings."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path, PurePosixPath
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from .book import EXECUTED_DIR, BookError, toc_notebooks, toc_pages
from .profiles import project_root


#: myst-nb's glue roles and directives
GLUE_ROLES = frozenset({"glue", "glue:", "glue:any", "glue:text", "glue:md"})
GLUE_DIRECTIVES = frozenset({"glue", "glue:", "glue:any", "glue:figure", "glue:math", "glue:md"})
#: roles whose target ends in `:format` (myst-nb splits the last colon off, whatever precedes it)
_FORMATTED = frozenset({"glue:text", "glue:md"})
#: directives that paste from another document with a `doc` option (the others paste only locally)
_DOC_OPTION = frozenset({"glue", "glue:", "glue:any", "glue:md"})
#: directives whose body is code, never markdown to search
_CODE_DIRECTIVES = frozenset({"code", "code-block", "sourcecode", "code-cell", "literalinclude", "eval-rst"})


@dataclasses.dataclass(frozen=True)
class GlueReference:
    """One glue role or directive: where it pastes from (`doc`, None for its own page), its key and format."""

    kind: str  # the role or directive name, e.g. "glue:text", "glue:figure"
    written: str  # the target as written
    doc: str | None
    key: str
    fmt: str | None = None


def _markdown_parser():
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    config = MdParserConfig(enable_extensions={"colon_fence", "dollarmath", "amsmath", "deflist"})
    return create_md_parser(config, RendererHTML)


def _directive_options(body: str) -> dict[str, str]:
    """A MyST directive's options: `:name: value` lines or a `---` YAML block at the top of its body."""
    lines = body.splitlines()
    if lines and lines[0].strip() == "---":
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is not None:
            options = yaml.safe_load("\n".join(lines[1:end])) or {}
            return {str(k): str(v) for k, v in options.items()} if isinstance(options, dict) else {}
    options = {}
    for line in lines:
        name, sep, value = line.strip()[1:].partition(":") if line.strip().startswith(":") else ("", "", "")
        if not sep or not name:
            break
        options[name] = value.strip()
    return options


def role_reference(kind: str, text: str) -> GlueReference:
    """Read a glue role's target the way myst-nb does: `:format` split off the end for text/md roles,
    then `doc::key`."""
    target, fmt = text, None
    if kind in _FORMATTED and ":" in text:
        target, fmt = text.rsplit(":", 1)
    doc, sep, key = target.partition("::")
    return GlueReference(kind, text, doc if sep else None, key if sep else target, fmt)


def glue_references(text: str, parser: Any = None) -> list[GlueReference]:
    """Every glue reference in MyST markdown, directive bodies included, code blocks excluded."""
    parser = parser or _markdown_parser()
    found = []
    for token in parser.parse(text):
        if token.type == "inline":
            found += [role_reference(c.meta["name"], c.content.strip()) for c in token.children or []
                      if c.type == "myst_role" and c.meta.get("name") in GLUE_ROLES]
        elif token.type in ("fence", "colon_fence") and token.info.strip().startswith("{"):
            name, _, argument = token.info.strip()[1:].partition("}")
            if name in GLUE_DIRECTIVES and argument.strip():
                doc = _directive_options(token.content).get("doc") if name in _DOC_OPTION else None
                found.append(GlueReference(name, argument.strip(), doc, argument.strip()))
            if name not in _CODE_DIRECTIVES:
                found += glue_references(token.content, parser)
    return found


def glued_outputs(notebook: Path) -> dict[str, dict[str, Any]]:
    """{key: mime bundle} of what an executed notebook glues: outputs whose metadata names a
    scrapbook entry (how myst-nb finds them), the bundle without its mime prefix."""
    glued = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            scrap = output.get("metadata", {}).get("scrapbook")
            if scrap:
                prefix = len(scrap.get("mime_prefix", ""))
                glued[scrap["name"]] = {mime[prefix:]: value for mime, value in output.get("data", {}).items()}
    return glued


def _format_problem(ref: GlueReference, bundle: Mapping[str, Any]) -> str | None:
    """Why myst-nb could not format a glued value for a {glue:text} role, or None when it can."""
    if ref.kind != "glue:text":
        return None
    from myst_nb.core.variables import format_plain_text

    text = bundle.get("text/plain")
    if text is None:
        return "the glued value has no text/plain form"
    text = "".join(text) if isinstance(text, list) else text
    try:
        format_plain_text(text, ref.fmt if ref.fmt is not None else "s")
    except Exception as error:  # noqa: BLE001 — reported with the page and key
        return f"cannot format {text!r} with {ref.fmt!r} ({error}); glue a plain int or float"
    return None


def _source_doc(doc: str, ref: GlueReference) -> str:
    """The document (root-relative, e.g. book/executed/x.ipynb) that `ref`, written in `doc`, pastes from."""
    if ref.doc is None:
        return doc
    base = PurePosixPath("." if ref.doc.startswith("/") else PurePosixPath(doc).parent)
    return os.path.normpath((base / ref.doc.lstrip("/")).as_posix())


def pages_pasting_from(root: Path, notebooks: Iterable[str]) -> list[Path]:
    """The TOC's pages with a glue reference into any of `notebooks` (root-relative paths of executed
    copies). Sphinx does not know that such a page depends on the notebook, so after the notebook is
    re-executed the build marks the page changed, or an incremental build would keep old numbers."""
    notebooks = set(notebooks)
    parser = _markdown_parser()
    pages = []
    for page in toc_pages(root):
        doc = page.relative_to(root).as_posix()
        if any(_source_doc(doc, ref) in notebooks for ref in glue_references(page.read_text(), parser)):
            pages.append(page)
    return pages


def check_glue(root: Path | None = None) -> int:
    """Every glue reference of the TOC's pages and executed notebooks must name a key that its
    notebook glues, in a form its format can read; raises BookError listing each page with its
    missing keys (and which notebook glues them, if another does). Returns the references checked."""
    root = Path(root or project_root()).resolve()
    parser = _markdown_parser()
    executed = {(EXECUTED_DIR / f"{n}.ipynb").as_posix(): root / EXECUTED_DIR / f"{n}.ipynb" for n in toc_notebooks(root)}
    missing_copies = [doc for doc, path in executed.items() if not path.is_file()]
    if missing_copies:
        raise BookError(f"executed notebooks {missing_copies} are missing: execute them first")
    glued = {doc: glued_outputs(path) for doc, path in executed.items()}
    documents: dict[str, list[GlueReference]] = {}
    for page in toc_pages(root):
        documents[page.relative_to(root).as_posix()] = glue_references(page.read_text(), parser)
    for doc, path in executed.items():
        cells = json.loads(path.read_text())["cells"]
        documents[doc] = [ref for c in cells if c["cell_type"] == "markdown"
                          for ref in glue_references("".join(c["source"]), parser)]
    problems, checked = [], 0
    for doc, refs in documents.items():
        for ref in refs:
            checked += 1
            source_doc = _source_doc(doc, ref)
            if ref.doc is None:
                hint = "" if doc in glued else (
                    " (a page pastes from a notebook: {glue:text}`executed/NAME.ipynb::key:format`, "
                    "or a {glue} directive with :doc:; {glue:figure} pastes only inside its own notebook)")
            else:
                hint = "" if source_doc in glued else f" ({ref.doc!r} is not an executed notebook of the book)"
            where = f"  {doc}: {{{ref.kind}}}`{ref.written}`"
            bundle = glued.get(source_doc, {}).get(ref.key)
            if bundle is None:
                elsewhere = sorted(d for d, keys in glued.items() if ref.key in keys)
                also = f"; glued by {', '.join(elsewhere)}" if elsewhere else ""
                if ref.key.endswith(":"):
                    also += f" (myst-nb splits the last ':' off as the format: write `{ref.written}:s`)"
                problems.append(f"{where}: no key {ref.key!r} in {source_doc}{hint}{also}")
            elif (problem := _format_problem(ref, bundle)) is not None:
                problems.append(f"{where}: {problem}")
    if problems:
        raise BookError("unresolved glue references (page: reference: what is wrong):\n" + "\n".join(problems))
    return checked


