"""Every chapter and solution notebook has its paired jupytext source, and the two agree.

The .py (percent format) is what reviewers read; the .ipynb (with outputs) is what the book renders
and nbval runs. A cell changed in one but not the other fails here.
"""
from pathlib import Path

import jupytext
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
