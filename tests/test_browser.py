"""The smoke book as a reader sees it: every page opened in headless Chromium with no network.

Formulas must be typeset by the MathJax the build serves, every image must load, and no error text
(a traceback, an unresolved glue key, a Sphinx problem node) may show. Screenshots of a few pages
land in the pytest temporary folder (printed with -s) for a person to look at.
"""

import re
from pathlib import Path

import pytest

from audiorank.book import toc_entries
from audiorank.profiles import project_root

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (`apt-get install -y chromium`; .ci/run does)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: pages photographed, name -> document of _toc.yml: add a chapter here to get its screenshot
SCREENSHOTS = {"intro": "book/intro", "rank_estimation": "book/executed/rank_estimation"}
#: what must not be read on a page: a Python error, a glue or Sphinx failure
ERROR_TEXT = re.compile(r"Traceback|^\w*(Error|Exception): |glue key|[Nn]ot found|Unknown (directive|interpreted)",
                        re.MULTILINE)
#: every document of the book, as its page under _build/html
PAGES = toc_entries(project_root())


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (make venv)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def open_offline(browser, url: str):
    """A page loaded with every request that is not a local file aborted (and recorded)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    blocked, script_errors = [], []

    def only_local(route):
        if route.request.url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.goto(url, wait_until="load")
    return page, blocked, script_errors


@pytest.mark.slow
@pytest.mark.parametrize("doc", PAGES)
def test_page_reads_offline(smoke_book, browser, screenshots, doc):
    html = smoke_book.html / f"{doc}.html"
    assert html.is_file(), f"{doc} was not rendered"
    page, blocked, script_errors = open_offline(browser, html.as_uri())
    # MathJax typesets after load (its script is deferred); wait for its first pass when the page has math
    n_math = page.locator(".math").count()
    if n_math:
        typeset = page.evaluate("async () => { if (!window.MathJax || !MathJax.startup) return false;"
                                " await MathJax.startup.promise; return true; }")
        assert typeset, f"{doc}: MathJax did not start (is _static/mathjax/ in the build?)"
        untypeset = page.locator(".math:not(:has(mjx-container))").count()
        assert untypeset == 0, f"{doc}: {untypeset} of {n_math} formulas were not typeset"
    # images: load them all (none lazily), then each must have decoded to a real size
    broken = page.evaluate("""async () => {
        const images = Array.from(document.images);
        images.forEach(img => { img.loading = "eager"; });
        await Promise.all(images.map(img => img.complete ? null : new Promise(r => { img.onload = img.onerror = r; })));
        return images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src);
    }""")
    assert not broken, f"{doc}: images that did not load: {broken}"
    text = page.inner_text("main")
    raw = [m for m in ("\\(", "\\[", "$$") if m in text]
    assert not raw, f"{doc}: raw TeX delimiters {raw} left in the visible text"
    errors = ERROR_TEXT.findall(text)
    assert not errors, f"{doc}: error text on the page: {ERROR_TEXT.search(text).group(0)!r}"
    problems = page.locator(".problematic, .system-message, .output.traceback, .output.error").count()
    assert problems == 0, f"{doc}: {problems} error elements (Sphinx problems or cell errors)"
    assert not script_errors, f"{doc}: JavaScript errors: {script_errors}"
    assert not blocked, f"{doc}: the page asked the network for {blocked}"
    for name, wanted in SCREENSHOTS.items():
        if wanted == doc:
            path = screenshots / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            print(f"screenshot of {doc}: {path}")  # shown with pytest -s; --basetemp=DIR keeps them there
    page.context.close()


def test_every_photographed_page_is_in_the_book():
    assert set(SCREENSHOTS.values()) <= set(PAGES)
