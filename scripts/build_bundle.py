"""Build the course bundle: a zip a reader unpacks, installs with one command and runs.

    python scripts/build_bundle.py [OUT.zip]     (default: the web book's download location)

`make book` runs it after building the HTML, so every page's download menu links a fresh zip
(book/_ext/bufferbook_web.py: DOWNLOADS["bundle"]). The zip holds one folder,
`buffers-in-pytorch/`, with:

- every chapter and exercise notebook listed in _toc.yml (`chapters/`, `exercises/<a>/`), as
  committed (executed, with outputs; exercises are the student versions);
- `src/bufferbook/`, the helper package the notebooks import, and a `pyproject.toml` for it;
- `requirements.txt`: the packages the notebooks need, pinned (versions from the repository's
  requirements.txt; JupyterLab, which that file gets through nbgrader, at the version this
  build ran with), then `-e .` for bufferbook itself;
- `README.md`: the one set-up command and how to start.

File dates inside the zip are fixed, so the same sources give the same bytes.
tests/test_course_bundle.py unpacks it and runs a chapter and an exercise against its own copy
of bufferbook.
"""
import argparse
import importlib.metadata
import re
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
sys.path.insert(0, str(ROOT / "scripts"))
from book_toc import toc_files  # noqa: E402
from bufferbook_web import DOWNLOADS  # noqa: E402  (where the book links the bundle)

FOLDER = "buffers-in-pytorch"
# What the notebooks import or need to run in Jupyter, in the order requirements.txt lists them.
RUNTIME = ["torch", "numpy", "matplotlib", "ipywidgets", "ipykernel", "jupyterlab"]
ZIP_DATE = (2026, 1, 1, 0, 0, 0)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "bufferbook"
version = "{version}"
description = "Helpers for the teaching book 'Buffers in PyTorch' (one module per chapter)."
requires-python = ">=3.10"
dependencies = {dependencies}

[tool.setuptools.packages.find]
where = ["src"]
"""

README = """\
# Buffers in PyTorch: course bundle

The chapter notebooks of the book *Buffers in PyTorch* (executed, with their outputs), the
exercise notebooks, and `bufferbook`, the small helper package they import.

## Set up (once)

With Python 3.10 or newer, in this folder (ideally in a fresh virtual environment,
`python -m venv .venv` and activate it first):

```bash
python -m pip install -r requirements.txt
```

This installs the pinned versions in `requirements.txt` ({torch} and the rest) and this
folder's `bufferbook` package (`src/bufferbook`, editable: your copy is the one imported).
On Linux, pip's default torch wheel is the CUDA build, which is large; every chapter also runs
on a CPU.

## Run

```bash
jupyter lab
```

Then open a chapter in `chapters/` or an exercise in `exercises/<assignment>/`. Read the
chapter first: each exercise builds on it. In an exercise, write your code where it says
`# YOUR CODE HERE`, run the test cell under it, and finish with *Restart Kernel and Run All*.

Contents:

{contents}
"""


def bundled_notebooks(root=ROOT):
    """The chapter and exercise notebooks the toc lists (relative paths)."""
    found = []
    for name in toc_files(root / "_toc.yml"):
        path = Path(name).with_suffix(".ipynb")
        if path.parts[0] in ("chapters", "exercises") and (root / path).is_file():
            found.append(path)
    return found


def pinned_requirements(root=ROOT):
    """`name==version` lines for RUNTIME, from requirements.txt or else the installed version."""
    pins = {}
    for line in (root / "requirements.txt").read_text(encoding="utf8").splitlines():
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    lines = []
    for name in RUNTIME:
        version = pins.get(name) or importlib.metadata.version(name).split("+")[0]
        lines.append(f"{name}=={version}")
    return lines


def package_files(root=ROOT):
    package = root / "src" / "bufferbook"
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def build_bundle(out, root=ROOT):
    """Write the bundle zip to ``out``; return the list of paths inside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf8"))["project"]
    requirements = pinned_requirements(root)
    notebooks = bundled_notebooks(root)
    members = {}
    for path in notebooks:
        members[path.as_posix()] = (root / path).read_bytes()
    for path in package_files(root):
        members[path.relative_to(root).as_posix()] = path.read_bytes()
    members["pyproject.toml"] = PYPROJECT.format(
        version=meta["version"], dependencies=repr(meta["dependencies"]).replace("'", '"')
    ).encode()
    members["requirements.txt"] = (
        "# Pinned versions this course was executed with; the last line installs bufferbook\n"
        "# from this folder (src/bufferbook). Set up: python -m pip install -r requirements.txt\n"
        + "\n".join(requirements) + "\n-e .\n").encode()
    contents = "\n".join(f"- `{p.as_posix()}`" for p in notebooks)
    members["README.md"] = README.format(torch=requirements[0], contents=contents).encode()

    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(members):
            info = zipfile.ZipInfo(f"{FOLDER}/{name}", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, members[name])
    tmp.replace(out)
    return [f"{FOLDER}/{name}" for name in sorted(members)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path,
                        default=ROOT / "_build" / "html" / DOWNLOADS["bundle"])
    args = parser.parse_args(argv)
    names = build_bundle(args.out)
    size = args.out.stat().st_size
    print(f"course bundle: {args.out} ({len(names)} files, {size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
