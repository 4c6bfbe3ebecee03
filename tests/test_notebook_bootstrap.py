"""Every notebook starts with the bootstrap cell of scripts/notebook_bootstrap.py, and the cell
does what it says: nothing where `bufferbook` imports, an install from the configured repository
in Colab, and elsewhere a short message (no traceback) that says how to get the course bundle.

Without `bufferbook` is simulated by a package of that name, first on the kernel's path, whose
import raises ImportError. Colab is simulated by a `google.colab` module and a recording
`subprocess.check_call` (no network).
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import notebook_bootstrap as bootstrap  # noqa: E402

NOTEBOOKS = sorted([*ROOT.glob("chapters/*.ipynb"), *ROOT.glob("solutions/*/*.ipynb"),
                    *ROOT.glob("exercises/*/*.ipynb")])
SAMPLE_REPO = "https://github.com/example-org/sample-repo"


@pytest.fixture
def hidden_bufferbook(tmp_path):
    """A folder holding a `bufferbook` whose import fails, as on a machine without it."""
    shadow = tmp_path / "shadow"
    (shadow / "bufferbook").mkdir(parents=True)
    (shadow / "bufferbook" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'bufferbook'\", name='bufferbook')\n")
    return shadow


def _config(tmp_path, url):
    path = tmp_path / "_config.yml"
    path.write_text(f"repository:\n  url: {json.dumps(url)}\n  branch: main\n")
    return path


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_first_code_cell_is_the_bootstrap_cell(path):
    nb = nbformat.read(path, as_version=4)
    assert bootstrap.matches(nb, bootstrap.cell_source()), (
        f"{path.relative_to(ROOT)}: the first code cell is not scripts/notebook_bootstrap.py's "
        "cell for this _config.yml; run `python scripts/notebook_bootstrap.py` and then "
        "`make notebooks release`")


def test_cell_fits_80_columns_and_is_removed_from_the_page(tmp_path):
    for url in ("", SAMPLE_REPO):
        source = bootstrap.cell_source(_config(tmp_path, url))
        assert max(len(line) for line in source.splitlines()) <= 80
        assert source.startswith(bootstrap.MARKER)
    assert "remove-cell" in bootstrap.TAGS


def test_apply_inserts_before_the_first_code_cell_and_refreshes_in_place(tmp_path):
    chapter = sorted(ROOT.glob("chapters/*.ipynb"))[0]
    nb = nbformat.read(chapter, as_version=4)
    nb.cells = [c for c in nb.cells if not bootstrap.is_bootstrap(c)]
    first_code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    old = bootstrap.cell_source(_config(tmp_path, ""))
    assert bootstrap.apply(nb, old)
    assert bootstrap.is_bootstrap(nb.cells[first_code]) and bootstrap.matches(nb, old)
    count = len(nb.cells)
    assert not bootstrap.apply(nb, old)  # idempotent
    new = bootstrap.cell_source(_config(tmp_path, SAMPLE_REPO))
    assert bootstrap.apply(nb, new) and len(nb.cells) == count  # refreshed, not added
    assert bootstrap.matches(nb, new) and SAMPLE_REPO in bootstrap.first_code_cell(nb).source


def test_update_writes_the_notebook_and_its_paired_source(tmp_path):
    """On a copy of a chapter pair: the .ipynb and, through jupytext, the .py get the cell."""
    chapter = sorted(ROOT.glob("chapters/*.ipynb"))[0]
    ipynb = tmp_path / chapter.name
    ipynb.write_bytes(chapter.read_bytes())
    py = ipynb.with_suffix(".py")
    py.write_bytes(chapter.with_suffix(".py").read_bytes())
    os.utime(py, (1, 1))  # older than the notebook, as after `make notebooks`
    source = bootstrap.cell_source(_config(tmp_path, SAMPLE_REPO))
    bootstrap.update([ipynb], source)
    for path in (ipynb, py):
        assert bootstrap.matches(jupytext.read(path), source), path.name


def _execute(source, shadow):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source),
                                         nbformat.v4.new_code_cell("print('next cell ran')")])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(shadow), old) if p)
    try:
        with pytest.raises(CellExecutionError):
            NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return nb


def test_without_bufferbook_the_first_output_says_how_to_get_it(tmp_path, hidden_bufferbook):
    nb = _execute(bootstrap.cell_source(_config(tmp_path, SAMPLE_REPO)), hidden_bufferbook)
    [output] = nb.cells[0].outputs
    assert output.output_type == "error"
    shown = "\n".join(output.traceback)
    words = " ".join(shown.split())
    assert "'Course bundle (.zip)'" in words and "pip install -r requirements.txt" in words
    assert "Traceback" not in shown and "File " not in shown and "line " not in shown
    assert not nb.cells[1].outputs  # Run All stops here


def _run_as_colab(source, shadow):
    """Run the cell in a plain Python with `google.colab` present and pip recorded."""
    script = textwrap.dedent(f"""
        import json, subprocess, sys, types
        sys.path.insert(0, {str(shadow)!r})
        sys.modules["google"] = types.ModuleType("google")
        sys.modules["google.colab"] = types.ModuleType("google.colab")
        calls = []
        def check_call(command, **kwargs):
            calls.append(command)
            sys.path.remove({str(shadow)!r})  # "installed": the real package imports now
            for name in [m for m in sys.modules if m.startswith("bufferbook")]:
                del sys.modules[name]
        subprocess.check_call = check_call
        try:
            exec(compile({source!r}, "cell", "exec"), {{}})
            outcome = "ok"
        except Exception as error:
            outcome = type(error).__name__
        print(json.dumps({{"calls": calls, "outcome": outcome}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_in_colab_it_installs_bufferbook_from_the_configured_repository(tmp_path,
                                                                      hidden_bufferbook):
    result = _run_as_colab(bootstrap.cell_source(_config(tmp_path, SAMPLE_REPO)),
                           hidden_bufferbook)
    assert result["outcome"] == "ok"
    assert result["calls"] == [[sys.executable, "-m", "pip", "install", "-q",
                                f"bufferbook @ git+{SAMPLE_REPO}@main"]]


def test_in_colab_without_a_repository_it_explains_instead(tmp_path, hidden_bufferbook):
    result = _run_as_colab(bootstrap.cell_source(_config(tmp_path, "")), hidden_bufferbook)
    assert result == {"calls": [], "outcome": "BufferbookMissing"}


def test_with_bufferbook_the_cell_prints_nothing():
    source = bootstrap.cell_source()
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0 and done.stdout == "" and done.stderr == ""
