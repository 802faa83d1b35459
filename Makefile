# audiorank: make venv | book | test | bench | lock        (PROFILE=smoke|laptop|reference)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= laptop
# the virtual environment is rebuilt only when the locked dependencies or the project metadata change
STAMP := $(VENV)/.installed

.PHONY: venv book test test-fast test-study bench lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-deps -r requirements.lock  # the lock is complete; --no-deps skips tinysoundfont's playback-only pyaudio (needs the portaudio headers)
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# brings PROFILE's sweep up to date (results/PROFILE/), executes with papermill the notebooks of
# _toc.yml whose inputs changed (the others are restored), checks the glue, builds the book with
# warnings as errors: _build/html/index.html. BOOK_ARGS passes more options, e.g. "--force scaling".
book: $(STAMP)
	$(VENV)/bin/audiorank book --profile $(PROFILE) $(BOOK_ARGS)

# the whole suite, the book included: the smoke sweep, every notebook and the book built once
# (tests/conftest.py), its pages opened offline in Chromium (tests/test_browser.py)
test: $(STAMP)
	$(PY) -m pytest

# the suite without the slow end-to-end runs
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not study"

# the coverage studies of the fits' intervals (100 seeded trials each; about 15 CPU-minutes in all)
test-study: $(STAMP)
	$(PY) -m pytest -m study -s

bench: $(STAMP)
	$(PY) benchmarks/bench_rank.py
	$(PY) benchmarks/bench_train.py

# resolve pyproject.toml's ranges afresh in a throw-away venv and record the exact versions
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet -e '.[dev,dist]'
	{ echo "# Exact versions the project was tested with (Python 3.11, Linux x86_64)."; \
	  echo "# Installed by 'make venv'; refreshed by 'make lock' (resolves pyproject.toml's ranges afresh)."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^audiorank'; } > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf _build book/executed .pytest_cache
