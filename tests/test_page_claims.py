"""No page claims an output it does not show: GPU figures are promised only once recorded.

Cells tagged `requires-cuda` hold either outputs recorded on a GPU or, until such a run is
committed, the note of `%%requires_cuda` (bufferbook.cuda_cells). While any of them holds no GPU
output, no page (front pages, chapters, exercises) may say that the book shows GPU figures.
"""
import re
from pathlib import Path

import nbformat
import pytest

from bufferbook.cuda_cells import NOTE_PREFIX, cell_text, has_gpu_output, is_cuda_cell

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("exercises/*/*.ipynb")])
PAGES = sorted(ROOT.glob("book/*.md"))

# Phrasings that tell the reader GPU figures are on the page.
PROMISES = [
    r"recorded\s+(?:on|with)\s+(?:a|an|one|the)?\s*(?:real\s+)?(?:GPU|CUDA|H\d+|NVIDIA)",
    r"GPU[- ](?:figures|outputs|results|measurements|numbers|timings)",
]


def promises_gpu_figures(text):
    """The first phrase in ``text`` that promises recorded GPU figures, or None."""
    for pattern in PROMISES:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return match.group(0)
    return None


def _cuda_cells():
    for path in sorted(ROOT.glob("chapters/*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if is_cuda_cell(cell):
                yield path, index, cell


def _page_texts():
    for path in PAGES:
        yield path, path.read_text(encoding="utf8")
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        yield path, "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_detector_recognises_promises_and_honest_notes():
    assert promises_gpu_figures("the GPU-only cells show figures recorded on a real GPU")
    assert promises_gpu_figures("the book shows the outputs recorded on a GPU.")
    assert promises_gpu_figures("The GPU figures come from the tagged cells")
    assert promises_gpu_figures("Each cell that needs CUDA prints a note instead.") is None
    assert promises_gpu_figures("run it on a machine with a GPU to see the timings") is None


def test_every_cuda_cell_shows_something():
    """A reader never meets an empty CUDA cell: GPU outputs, or the note saying what it needs."""
    empty = [f"{p.name} cell {i}" for p, i, cell in _cuda_cells() if not cell_text(cell).strip()]
    assert not empty, f"CUDA cells with no output (run `make notebooks`): {empty}"


def test_cuda_cells_use_the_magic():
    """`%%requires_cuda` makes Run All finish on a CPU (bufferbook.cuda_cells)."""
    bare = [f"{p.name} cell {i}" for p, i, cell in _cuda_cells()
            if not cell.source.startswith("%%requires_cuda")]
    assert not bare, f"CUDA cells that do not start with %%requires_cuda: {bare}"


def test_no_page_promises_gpu_figures_that_are_not_recorded():
    missing = [f"{p.name} cell {i}" for p, i, cell in _cuda_cells() if not has_gpu_output(cell)]
    if not missing:
        pytest.skip("every CUDA cell holds GPU outputs: pages may describe them")
    promises = [f"{p.relative_to(ROOT)}: {phrase!r}" for p, text in _page_texts()
                if (phrase := promises_gpu_figures(text))]
    assert not promises, (
        f"{len(missing)} CUDA cells show only the note {NOTE_PREFIX!r} (e.g. {missing[0]}), "
        f"yet these pages promise GPU figures: {promises}")
