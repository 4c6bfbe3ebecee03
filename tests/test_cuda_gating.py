"""The conftest hook skips cells tagged `requires-cuda` without a GPU and runs them with one."""
import shutil
from pathlib import Path

import nbformat
import pytest

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[1]


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    plain = nbformat.v4.new_code_cell("print(1 + 1)", execution_count=1)
    plain.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    cuda = nbformat.v4.new_code_cell("import torch\nprint(torch.ones(1, device='cuda').item())",
                                     execution_count=2)
    cuda.metadata["tags"] = ["requires-cuda"]
    cuda.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1.0\n")]
    nb.cells = [plain, cuda]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _run(pytester, cuda_available):
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")
    if cuda_available:  # pretend a GPU is present: the tagged cell must then run (and fail here)
        conftest = pytester.path / "conftest.py"
        conftest.write_text(conftest.read_text().replace(
            "def _cuda_available():", "def _cuda_available():\n    return True\n\ndef _unused():"))
    _notebook(pytester.path / "demo.ipynb")
    return pytester.runpytest_subprocess("--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
                                         "demo.ipynb")


def test_cuda_cell_is_skipped_without_gpu(pytester):
    pytest.importorskip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the skip path is not taken")
    result = _run(pytester, cuda_available=False)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*1 passed, 1 skipped*"])


def test_cuda_cell_runs_when_gpu_reported(pytester):
    """With a GPU reported, the tagged cell is not skipped: on this CPU machine it then fails."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("real GPU: covered by the GPU job")
    result = _run(pytester, cuda_available=True)
    result.assert_outcomes(passed=1, failed=1)


def test_require_cuda_turns_a_missing_gpu_into_an_error(pytester, monkeypatch):
    """The GPU CI job sets REQUIRE_CUDA=1: on a machine without CUDA the run must fail, not skip."""
    import torch
    if torch.cuda.is_available():
        pytest.skip("real GPU: the error path is not taken")
    monkeypatch.setenv("REQUIRE_CUDA", "1")
    result = _run(pytester, cuda_available=False)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*REQUIRE_CUDA=1 but torch sees no CUDA device*"])
