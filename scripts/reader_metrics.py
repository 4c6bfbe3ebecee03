"""What a reader of each chapter page sees: code lines shown, how many are checks, long lines.

Usage: python scripts/reader_metrics.py [NOTEBOOK.ipynb ...]   (default: chapters/*.ipynb)

A code line is *shown* when its cell's input is on the page uncollapsed (no `remove-input`,
`remove-cell`, `hide-input` or `hide-cell` tag). A *check* line belongs to an `assert` statement.
`label: True` counts printed lines that end in a bare boolean, the pattern chapters avoid.
"""
import ast
import re
import sys
from pathlib import Path

import nbformat

HIDDEN = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
BOOL_LABEL = re.compile(r":\s*(True|False)\s*$")


def assert_lines(source):
    """Line numbers (1-based) covered by assert statements; none when the code does not parse."""
    try:
        tree = ast.parse("\n".join(l for l in source.splitlines() if not l.startswith("%")))
    except SyntaxError:
        return set()
    return {n for node in ast.walk(tree) if isinstance(node, ast.Assert)
            for n in range(node.lineno, node.end_lineno + 1)}


def metrics(path):
    nb = nbformat.read(path, as_version=4)
    shown = checks = long_lines = bool_labels = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = cell.source.splitlines()
        long_lines += sum(len(line) > 80 for line in lines)
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            bool_labels += sum(bool(BOOL_LABEL.search(line)) for line in text.splitlines())
        if HIDDEN & set(cell.metadata.get("tags", [])):
            continue
        covered = assert_lines(cell.source)
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.strip().startswith("#"):
                shown += 1
                checks += number in covered
    return shown, checks, long_lines, bool_labels


if __name__ == "__main__":
    paths = sys.argv[1:] or sorted(str(p) for p in Path("chapters").glob("*.ipynb"))
    print(f"{'notebook':34s} {'shown':>6s} {'checks':>7s} {'share':>6s} {'>80 col':>8s} "
          f"{'label: bool':>11s}")
    for path in paths:
        shown, checks, long_lines, labels = metrics(path)
        share = checks / shown if shown else 0.0
        print(f"{Path(path).stem:34s} {shown:6d} {checks:7d} {share:6.1%} {long_lines:8d} "
              f"{labels:11d}")
