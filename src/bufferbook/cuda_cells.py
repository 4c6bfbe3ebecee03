"""Cells that need a CUDA GPU: run them where there is one, print a note where there is not.

A chapter cell that needs a GPU carries the cell tag ``requires-cuda`` and starts with the cell
magic ``%%requires_cuda`` (loaded once per notebook with ``%load_ext bufferbook.cuda_cells``):

    %%requires_cuda
    # Bandwidth of each update on 1 GiB buffers, against the copy ceiling
    ...

- With CUDA, the magic first prints where and when the cell ran (``run_header``: device name,
  torch and CUDA versions, date), then runs the cell as usual (an error in it fails the cell).
- Without CUDA (Jupyter on a laptop, the CPU CI runner), it prints a note saying the cell needs
  a CUDA GPU and what it measures (the cell's first comment line), so *Run All* finishes.
- Under pytest, nbval skips tagged cells without CUDA (``conftest.py``), so their committed
  outputs (recorded on a GPU, or the note) are never compared on a CPU.
- ``scripts/execute_notebooks.py`` keeps outputs recorded on a GPU when it re-executes a notebook
  on a CPU (``has_gpu_output``), and lets the magic print its note into cells that have none.

Used by chapters 2, 3 and 5 (section "Cells that need a GPU" of chapter 5 explains it).
"""
CUDA_TAG = "requires-cuda"
NOTE_PREFIX = "Needs a CUDA GPU"
RUN_PREFIX = "Ran on CUDA:"


def describe(cell_source):
    """What a CUDA cell measures: its first comment line, without the ``#``."""
    for line in cell_source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            return stripped.lstrip("#").strip()
    return "a CUDA-only check"


def skip_note(cell_source):
    """The note printed instead of running a CUDA cell on a machine without CUDA."""
    return (f"{NOTE_PREFIX}: torch sees no CUDA device here, so this cell did not run.\n"
            f"On a GPU it shows: {describe(cell_source)}.")


def run_header():
    """The first output line of a CUDA cell that ran: device, versions and date."""
    import datetime

    import torch
    try:
        device = torch.cuda.get_device_name()
    except Exception:  # noqa: BLE001 - a header must never fail the cell
        device = "unknown device"
    return (f"{RUN_PREFIX} {device}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"{datetime.date.today().isoformat()}")


def requires_cuda(line, cell):
    """Cell magic ``%%requires_cuda``: run the cell with CUDA, else print ``skip_note``."""
    import torch
    from IPython import get_ipython

    if not torch.cuda.is_available():
        print(skip_note(cell))
        return
    print(run_header())
    result = get_ipython().run_cell(cell, store_history=False)
    if not result.success:  # the traceback is shown above; fail this cell too
        raise RuntimeError("the CUDA cell above failed") from None


def load_ipython_extension(ipython):
    """``%load_ext bufferbook.cuda_cells`` registers ``%%requires_cuda``."""
    ipython.register_magic_function(requires_cuda, magic_kind="cell")


def is_cuda_cell(cell):
    """True for a notebook code cell (nbformat) tagged ``requires-cuda``."""
    return cell.get("cell_type") == "code" and CUDA_TAG in cell.get("metadata", {}).get(
        "tags", [])


def cell_text(cell):
    """Everything a code cell printed or displayed, as one string (text outputs only)."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(_join(output.get("text", "")))
        elif "data" in output:
            parts.append(_join(output["data"].get("text/plain", "")))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return "".join(parts)


def has_gpu_output(cell):
    """True when a ``requires-cuda`` cell holds outputs from a real GPU run.

    Those start with ``run_header``'s line; an unexecuted cell, the note of a run without CUDA,
    or stray outputs (e.g. left by a jupytext sync) do not.
    """
    return cell_text(cell).startswith(RUN_PREFIX)


def _join(text):
    return "".join(text) if isinstance(text, list) else text
