# `make book` and `make test` do all set-up on a fresh machine: create .venv, install, then build / test.
# A second run reinstalls nothing unless requirements.txt or pyproject.toml changed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)
# Two jobs: pip installs while npm fetches the web assets; the bundle is zipped while the PDF prints.
MAKEFLAGS += --jobs=2

.PHONY: book html bundle pdf test install system-deps notebooks release clean help

help:
	@echo "make book      build the web book into _build/html (warnings are errors), with the"
	@echo "               course bundle and the whole book as a PDF (both linked from every page)"
	@echo "make pdf       bring the HTML up to date and print the book's PDF (make bundle: the zip)"
	@echo "make test      run every test: unit tests, nbval of all notebooks, release sync, grading"
	@echo "make notebooks re-execute chapter and solution notebooks in place (after editing a .py)"
	@echo "make release   regenerate exercises/ from solutions/ with nbgrader"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-compile -r requirements.txt -e .
	@# pip would compile every module to bytecode, one file at a time (~27 s here); compileall
	@# uses every core. Sandboxed kernels see .venv read-only and need the .pyc files made now.
	@# Like pip, it skips the few files that are not Python 3.11 (torch's py312 test helpers).
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src > /dev/null || true
	$(BIN)/python -m sandboxed_grading.student_tools  # students' JupyterLab: no instructor tools
	touch $@

install: $(STAMP) system-deps

# Debian packages the tests need (installed when missing, as root; see README).
system-deps:
	@bash scripts/system-deps.sh

# Browser assets the web book serves itself (the widget manager, built with esbuild) and the npm
# packages the build and tests use (MathJax typesets math at build time, axe-core): npm ci of the
# versions pinned in package-lock.json; built files go into git-ignored book/_static/vendor/.
.PHONY: web-assets
web-assets: system-deps  # after it: both may call apt-get, which one at a time
	@bash scripts/vendor_web_assets.sh

# The web book: HTML (math typeset, icon fonts cut), then what every page's download menu links.
book: html bundle pdf

html: install web-assets
	@start=$$(date +%s); \
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going || exit 1; \
	echo "book built in $$(( $$(date +%s) - start )) s: _build/html/index.html"

# The course bundle: chapter and exercise notebooks, src/bufferbook, pinned requirements, README.
bundle: html
	$(BIN)/python scripts/build_bundle.py

# The whole book as one PDF (Chromium's print through Playwright; fails if code would be cut off).
pdf: html
	$(BIN)/python scripts/build_pdf.py

test: book
	$(BIN)/python -m pytest -n 2 --nbval --nbval-current-env \
	    --nbval-sanitize-with nbval_sanitize.cfg tests chapters solutions

ASSIGNMENTS := $(notdir $(wildcard solutions/*))

# After editing a paired .py source: sync it into its .ipynb, execute in place, sync back.
notebooks: install
	$(BIN)/jupytext --sync chapters/*.ipynb $(foreach a,$(ASSIGNMENTS),solutions/$(a)/$(a).ipynb)
	$(BIN)/python scripts/execute_notebooks.py chapters/*.ipynb $(foreach a,$(ASSIGNMENTS),solutions/$(a)/$(a).ipynb)
	$(BIN)/jupytext --sync chapters/*.ipynb $(foreach a,$(ASSIGNMENTS),solutions/$(a)/$(a).ipynb)

release: install
	$(BIN)/nbgrader generate_assignment "*" --force

clean:
	rm -rf _build course artifacts
