"""The first code cell of every notebook: get `bufferbook`, or say how.

A notebook downloaded on its own (the download button of a page, a launch button) cannot import
`bufferbook`, the book's helper package. Its first code cell, made from TEMPLATE below:

- does nothing where `bufferbook` imports (the repository, the course bundle once installed);
- in Colab, with `repository.url` set in _config.yml, installs `bufferbook` from that repository
  (pip, "bufferbook @ git+URL@BRANCH") and carries on;
- anywhere else, stops the notebook with a short message (no traceback) saying how to get the
  course bundle (`make book` builds it; every page's download menu links it).

The cell is tagged `remove-cell`: executed, but not shown on the book's pages.

Usage (after the notebooks change, or `repository` in _config.yml):
    python scripts/notebook_bootstrap.py            # insert or refresh the cell
    make notebooks release                          # re-execute; regenerate the exercises
`--check` lists the notebooks whose first code cell differs and exits 1. It edits every chapter
notebook (chapters/*.ipynb) and every assignment source (solutions/<a>/<a>.ipynb), then syncs
their paired .py with jupytext; the exercises get the cell from their solution through nbgrader
(`make release`). tests/test_notebook_bootstrap.py checks every notebook and the cell's two paths.
"""
import argparse
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = "# Set-up: this notebook uses bufferbook, the book's helper package."
TAGS = ["remove-cell"]
CELL_ID = "bufferbook-setup"

TEMPLATE = '''\
# Set-up: this notebook uses bufferbook, the book's helper package.
try:
    import bufferbook  # noqa: F401
except ImportError:
    import sys

    # The book's repository (repository.url and .branch in its _config.yml)
    REPOSITORY = "{repository}"
    BRANCH = "{branch}"
    if "google.colab" in sys.modules and REPOSITORY:
        import importlib
        import subprocess

        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q",
                               f"bufferbook @ git+{{REPOSITORY}}@{{BRANCH}}"])
        importlib.invalidate_caches()
        import bufferbook  # noqa: F401
    else:
        class BufferbookMissing(Exception):
            def _render_traceback_(self):  # IPython: no traceback
                return str(self).splitlines()

        raise BufferbookMissing(
            "This notebook needs bufferbook, the helper package of the\\n"
            "book 'Buffers in PyTorch'. Get the course bundle: in the web\\n"
            "book, open the download menu of any page and pick 'Course\\n"
            "bundle (.zip)'. Unzip it, and in its folder run once:\\n"
            "    python -m pip install -r requirements.txt\\n"
            "then open this notebook from the bundle's chapters/ or\\n"
            "exercises/ folder.")
'''


def repository(config_path=ROOT / "_config.yml"):
    """(url, branch) of `repository` in a jupyter-book _config.yml ("" when unset)."""
    config = yaml.safe_load(Path(config_path).read_text(encoding="utf8")) or {}
    repo = config.get("repository") or {}
    return (repo.get("url") or "").strip().rstrip("/"), (repo.get("branch") or "main").strip()


def cell_source(config_path=ROOT / "_config.yml"):
    """The bootstrap cell's source for this book's configuration."""
    url, branch = repository(config_path)
    return TEMPLATE.format(repository=url, branch=branch).rstrip("\n")


def is_bootstrap(cell):
    return cell.cell_type == "code" and cell.source.startswith(MARKER)


def first_code_cell(nb):
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def matches(nb, source):
    """Whether the notebook's first code cell is the bootstrap cell with this source."""
    cell = first_code_cell(nb)
    return (cell is not None and cell.source == source
            and set(TAGS) <= set(cell.metadata.get("tags", [])))


def apply(nb, source):
    """Insert the bootstrap cell before the first code cell, or refresh it; True if changed."""
    if matches(nb, source):
        return False
    existing = [i for i, c in enumerate(nb.cells) if is_bootstrap(c)]
    for i in reversed(existing):
        del nb.cells[i]
    cell = nbformat.v4.new_code_cell(source)
    cell.id = CELL_ID
    cell.metadata["tags"] = list(TAGS)
    first = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first, cell)
    return True


def notebooks(root=ROOT):
    """The notebooks that carry the cell themselves (exercises get it from their solution)."""
    return sorted([*root.glob("chapters/*.ipynb"), *root.glob("solutions/*/*.ipynb")])


def update(paths, source, sync=True):
    """Apply the cell to each notebook file; sync paired .py files; return the changed paths."""
    changed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if apply(nb, source):
            nbformat.write(nb, path)
            changed.append(path)
            if sync and path.with_suffix(".py").is_file():
                subprocess.run([str(Path(sys.executable).parent / "jupytext"), "--sync", "-q",
                                str(path)], check=True)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="list notebooks whose first code cell differs; change nothing")
    parser.add_argument("paths", nargs="*", type=Path,
                        help="notebooks (default: chapters/*.ipynb, solutions/*/*.ipynb)")
    args = parser.parse_args(argv)
    source = cell_source()
    paths = args.paths or notebooks()
    if args.check:
        stale = [p for p in paths if not matches(nbformat.read(p, as_version=4), source)]
        for path in stale:
            print(f"first code cell is not the bootstrap cell: {path}")
        return 1 if stale else 0
    for path in update(paths, source):
        print(f"bootstrap cell written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
