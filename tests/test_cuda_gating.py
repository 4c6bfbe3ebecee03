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


def _magic_notebook():
    nb = nbformat.v4.new_notebook()
    cuda = nbformat.v4.new_code_cell(
        "%%requires_cuda\n# Copy bandwidth on 1 GiB buffers\nx = torch.ones(1, device='cuda')")
    cuda.metadata["tags"] = ["requires-cuda"]
    nb.cells = [nbformat.v4.new_code_cell("%load_ext bufferbook.cuda_cells\nimport torch"), cuda,
                nbformat.v4.new_code_cell("print('after the CUDA cell')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_run_all_finishes_on_a_cpu_with_a_note_in_the_cuda_cell():
    """Jupyter's Run All (nbclient here) does not stop at a CUDA cell on a machine without CUDA."""
    import torch
    from nbclient import NotebookClient

    from bufferbook.cuda_cells import NOTE_PREFIX, cell_text, has_gpu_output, skip_note
    if torch.cuda.is_available():
        pytest.skip("real GPU: the cell runs instead")
    nb = _magic_notebook()
    NotebookClient(nb, kernel_name="python3").execute()
    note = cell_text(nb.cells[1])
    assert note == skip_note(nb.cells[1].source) + "\n"
    assert note.startswith(NOTE_PREFIX) and "Copy bandwidth on 1 GiB buffers" in note
    assert cell_text(nb.cells[2]) == "after the CUDA cell\n"
    assert not has_gpu_output(nb.cells[1])


def test_gpu_outputs_are_told_apart_from_the_note():
    from bufferbook.cuda_cells import has_gpu_output
    cell = nbformat.v4.new_code_cell("%%requires_cuda\n# x")
    assert not has_gpu_output(cell)  # never executed
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="4.2 TB/s\n")]
    assert not has_gpu_output(cell)  # stray output without the run header
    cell.outputs[0].text = "Ran on CUDA: NVIDIA H200, torch 2.11.0, CUDA 12.8, 2026-12-01\n4.2\n"
    assert has_gpu_output(cell)


def test_with_cuda_reported_the_cell_runs_and_its_error_fails_the_cell():
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    nb = _magic_notebook()
    nb.cells[0].source += "\ntorch.cuda.is_available = lambda: True  # pretend a GPU"
    nb.cells[1].source = "%%requires_cuda\n# ran\nprint('cell body ran')\n1 / 0"
    with pytest.raises(CellExecutionError) as info:
        NotebookClient(nb, kernel_name="python3").execute()
    assert "the CUDA cell above failed" in str(info.value)
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert printed.startswith("Ran on CUDA: unknown device, torch ")  # no real device here
    assert "cell body ran" in printed
