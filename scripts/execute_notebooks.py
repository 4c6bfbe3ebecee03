"""Execute notebooks in place with nbclient, keeping widget state, so committed outputs are fresh.

Usage: python scripts/execute_notebooks.py NOTEBOOK.ipynb [...]
Each notebook runs in its own folder with the current environment's kernel; a failing cell stops
that notebook with the cell's error, and the file on disk is left as it was. Without a CUDA device,
cells tagged `requires-cuda` that hold outputs recorded on a GPU are not run and keep them; the
others run, and their `%%requires_cuda` magic prints its note (bufferbook.cuda_cells).
"""
import os
import sys

import nbformat
from nbclient import NotebookClient

from bufferbook.cuda_cells import has_gpu_output, is_cuda_cell

KEEP = "keep-gpu-output"  # transient tag: never written to disk


def execute_in_place(path, timeout=600):
    import torch
    nb = nbformat.read(path, as_version=4)
    kept = [] if torch.cuda.is_available() else [
        c for c in nb.cells if is_cuda_cell(c) and has_gpu_output(c)]
    for cell in kept:
        cell.metadata.setdefault("tags", []).append(KEEP)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            record_timing=False,  # no timestamps: quieter diffs
                            skip_cells_with_tag=KEEP,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    try:
        client.execute()
    finally:
        for cell in kept:
            cell.metadata["tags"].remove(KEEP)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merged_streams(cell.outputs)
    nbformat.write(nb, path)


def merged_streams(outputs):
    """One output per run of stdout (or stderr) text, however the kernel chunked it."""
    merged = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.output_type == "stream" and previous is not None
                and previous.output_type == "stream" and previous.name == output.name):
            previous.text += output.text
        else:
            merged.append(output)
    return merged


if __name__ == "__main__":
    failed = []
    for path in sys.argv[1:]:
        print(f"executing {path}", flush=True)
        try:
            execute_in_place(path)
        except Exception as exc:  # report every notebook, then fail
            print(f"FAILED {path}: {type(exc).__name__}: {str(exc)[-2000:]}", file=sys.stderr)
            failed.append(path)
    sys.exit(1 if failed else 0)
