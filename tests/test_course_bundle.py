"""The course bundle (scripts/build_bundle.py) is complete and runs where it is unpacked.

It is built into a temporary folder and unpacked in another; then one chapter and one exercise
notebook run there (nbclient, a fresh kernel, the notebook's own folder as working directory)
against the bundle's own copy of `bufferbook`: the bundle's src/ comes first on the kernel's
PYTHONPATH, as `pip install -e .` from its requirements.txt would arrange, and an extra last cell
prints where `bufferbook` was imported from, which must be inside the unpacked bundle.
"""
import os
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_bundle  # noqa: E402

WHERE = "import bufferbook, os; print('BUFFERBOOK=' + os.path.realpath(bufferbook.__file__))"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "course.zip"
    names = build_bundle.build_bundle(out)
    unpacked = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unpacked)
    return names, unpacked / build_bundle.FOLDER


def _run(notebook, bundle_dir, allow_errors=False):
    """Execute a notebook of the unpacked bundle with its bufferbook; return it and the path
    bufferbook was imported from."""
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHERE))
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(bundle_dir / "src")  # only the bundle's package
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=allow_errors,
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    where = next((line.split("=", 1)[1] for line in printed.splitlines()
                  if line.startswith("BUFFERBOOK=")), None)
    return nb, where


def test_bundle_holds_every_listed_notebook_the_package_and_set_up(bundle):
    names, bundle_dir = bundle
    folder = build_bundle.FOLDER
    expected = {f"{folder}/{p.as_posix()}" for p in build_bundle.bundled_notebooks()}
    assert any(n.startswith(f"{folder}/chapters/") for n in expected)
    assert any(n.startswith(f"{folder}/exercises/") for n in expected)
    assert expected <= set(names)
    package = {f"{folder}/{p.relative_to(ROOT).as_posix()}" for p in build_bundle.package_files()}
    assert f"{folder}/src/bufferbook/__init__.py" in package and package <= set(names)
    requirements = (bundle_dir / "requirements.txt").read_text().split("\n")
    pins = [line for line in requirements if line and not line.startswith("#")]
    assert pins[-1] == "-e ."
    assert all("==" in line for line in pins[:-1]) and len(pins) == len(build_bundle.RUNTIME) + 1
    readme = (bundle_dir / "README.md").read_text()
    assert "python -m pip install -r requirements.txt" in readme
    assert (bundle_dir / "pyproject.toml").is_file()
    # Nothing of the repository's instructor side travels with it.
    assert not [n for n in names if "/solutions/" in n or "verdicts" in n or "/tests/" in n]


def test_a_chapter_runs_in_the_bundle_against_its_own_bufferbook(bundle):
    _, bundle_dir = bundle
    # The chapter with the fewest code cells: any one proves the bundle; this one is quickest.
    chapters = sorted((bundle_dir / "chapters").glob("*.ipynb"),
                      key=lambda p: (sum(c.cell_type == "code" for c in
                                         nbformat.read(p, as_version=4).cells), p.name))
    nb, where = _run(chapters[0], bundle_dir)
    assert where and Path(where).is_relative_to(bundle_dir.resolve()), where
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors


def test_an_exercise_runs_in_the_bundle_against_its_own_bufferbook(bundle):
    """The student notebook runs: imports work, the only errors are the unanswered questions
    (`raise NotImplementedError()` where it says YOUR CODE HERE) and what depends on them."""
    _, bundle_dir = bundle
    exercise = sorted((bundle_dir / "exercises").glob("*/*.ipynb"))[0]
    nb, where = _run(exercise, bundle_dir, allow_errors=True)
    assert where and Path(where).is_relative_to(bundle_dir.resolve()), where
    errors = [(c, o) for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    # Answer cells define stubs that raise NotImplementedError; the test cells under them call
    # the stubs. Any other error (an import, a missing file) is a broken bundle.
    assert errors, "an unanswered exercise fails its visible tests"
    assert {o.ename for _, o in errors} == {"NotImplementedError"}, [
        (o.ename, o.evalue) for _, o in errors]


def test_bundle_bytes_are_reproducible(tmp_path):
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    build_bundle.build_bundle(first)
    build_bundle.build_bundle(second)
    assert first.read_bytes() == second.read_bytes()


def test_build_fails_loudly_on_a_missing_pin(tmp_path, monkeypatch):
    monkeypatch.setattr(build_bundle, "RUNTIME", [*build_bundle.RUNTIME, "no-such-package-x"])
    with pytest.raises(Exception):
        build_bundle.build_bundle(tmp_path / "c.zip")
