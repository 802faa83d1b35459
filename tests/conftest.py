"""Shared fixtures: one torch thread for tiny models; one smoke-profile build of the book per session."""

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from audiorank.profiles import project_root

ROOT = project_root()
#: what a build of the book reads from the repository (configs/ is read from the repository itself;
#: the pretraining chapter reads the committed recipe-study rows, the regulariser chapter the two
#: committed laptop sweeps)
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "notebooks", "results/default_vs_init", "results/laptop",
                "results/laptop_vc0")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core CPU run far faster with one intra-op thread (measured 5–10×)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def book_copy(dest: Path) -> Path:
    """The book's sources copied to `dest` (not their executed copies, not a build): a build there
    leaves the repository's own book/executed/ and _build/ as they are."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("executed", ".ipynb_checkpoints"))
        else:
            shutil.copy2(source, dest / name)
    return dest


@dataclasses.dataclass
class BuiltBook:
    """A book built by the tests: its root, the results folder its sweep filled, what the build did."""

    root: Path
    results: Path
    report: object  # audiorank.book.BookReport
    log: list

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> BuiltBook:
    """What `audiorank book --profile smoke --results DIR --workers 2` does, once per session: the smoke
    sweep into a fresh folder, every notebook executed, the glue checked, the book built with -W --nitpick."""
    from audiorank.book import build_book

    root = book_copy(tmp_path_factory.mktemp("book"))
    results = tmp_path_factory.mktemp("smoke_results")
    log: list[str] = []

    def echo(line: str) -> None:
        log.append(line)
        print(line, flush=True)

    # two one-thread sweep processes: tiny models run far faster so than on two threads of one process
    report = build_book("smoke", root, results=results, workers=2, log=echo)
    return BuiltBook(root, results, report, log)
