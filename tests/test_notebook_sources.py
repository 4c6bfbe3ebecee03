"""Every chapter and solution notebook has its paired jupytext source, and the two agree.

The .py (percent format) is what reviewers read; the .ipynb (with outputs) is what the book renders
and nbval runs. A cell changed in one but not the other fails here.
"""
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb")])


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_paired_source_agrees_with_notebook(path):
    paired = path.with_suffix(".py")
    assert paired.is_file(), f"{paired.name} missing: run `jupytext --sync {path.name}`"
    assert _cells(jupytext.read(paired)) == _cells(jupytext.read(path)), (
        f"{path.name} and {paired.name} differ: run `make notebooks`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_executed(path):
    nb = jupytext.read(path)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()
            and "requires-cuda" not in c.metadata.get("tags", [])]  # recorded on a GPU
    assert code and all(c.execution_count for c in code), (
        f"{path.name} has unexecuted code cells: run `make notebooks`")


READER_NOTEBOOKS = sorted([*NOTEBOOKS, *ROOT.glob("exercises/*/*.ipynb")])
MAX_COLUMNS = 80  # what a 1280-px page shows without clipping (book/_static/bufferbook.css)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MYST_ROLE = re.compile(r"\{(?:doc|ref|numref|eq|download|term|cite)\}`")


def _too_long(nb):
    return [f"cell {i}: {len(line)} columns: {line[:50]}..."
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for line in cell.source.splitlines() if len(line) > MAX_COLUMNS]


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_fits_80_columns(path):
    long_lines = _too_long(jupytext.read(path))
    assert not long_lines, f"{path.name}: code lines over {MAX_COLUMNS} columns: {long_lines}"


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nbval_markers_are_tags_not_comments(path):
    """The reader never sees `# NBVAL_...`: nbval reads the same markers from cell tags."""
    marked = [i for i, c in enumerate(jupytext.read(path).cells)
              if c.cell_type == "code" and "NBVAL_" in c.source]
    assert not marked, f"{path.name}: cells {marked} carry an NBVAL comment; use a cell tag"


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_render_in_jupyter_too(path):
    """MyST roles show as raw text in Jupyter; plain Markdown links work in both."""
    roles = [m.group(0) for c in jupytext.read(path).cells if c.cell_type == "markdown"
             for m in MYST_ROLE.finditer(c.source)]
    assert not roles, f"{path.name}: MyST roles {roles}; use [text](other.ipynb) links"


def _wide_output_lines(nb):
    lines = []
    for i, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                continue  # the page shows the widget, not its text/plain repr
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            lines += [f"cell {i}: {len(l)} columns: {l[:50]}..."
                      for l in text.splitlines() if len(l) > MAX_COLUMNS]
    return lines


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_printed_output_fits_80_columns(path):
    """Printed values and quoted error messages are read on the page too: no clipping."""
    wide = _wide_output_lines(nbformat.read(path, as_version=4))
    assert not wide, f"{path.name}: output lines over {MAX_COLUMNS} columns: {wide}"


def test_line_length_check_catches_a_long_line():
    nb = jupytext.reads("x = 1\ny = '" + "a" * 80 + "'\n", fmt="py:percent")
    assert len(_too_long(nb)) == 1


FENCE_WITH_BACKTICK = re.compile(r"^(`{3,})\{[^}]*\}.*`", re.MULTILINE)


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_directive_titles_have_no_backticks(path):
    """```{admonition} Pitfall: `x` is no valid fence: jupytext then merges the code cells after
    it into markdown (commented out) and both paired files agree, so nothing else catches it."""
    bad = [m.group(0) for c in jupytext.read(path).cells if c.cell_type == "markdown"
           for m in FENCE_WITH_BACKTICK.finditer(c.source)]
    assert not bad, f"{path.name}: directive titles with backticks: {bad}"


def test_fence_check_catches_a_backtick_title():
    assert FENCE_WITH_BACKTICK.search("```{admonition} Pitfall: `add_`\n:class: warning\n```")
    assert not FENCE_WITH_BACKTICK.search("```{admonition} Pitfall: add in place\n```")
