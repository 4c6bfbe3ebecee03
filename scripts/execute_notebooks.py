"""Execute notebooks in place with nbclient, keeping widget state, so committed outputs are fresh.

Usage: python scripts/execute_notebooks.py NOTEBOOK.ipynb [...]
Each notebook runs in its own folder with the current environment's kernel; a failing cell stops
that notebook with the cell's error, and the file on disk is left as it was. Without a CUDA device,
cells tagged `requires-cuda` are not run and keep their committed (GPU-recorded) outputs.
"""
import os
import sys

import nbformat
from nbclient import NotebookClient


def execute_in_place(path, timeout=600):
    import torch
    nb = nbformat.read(path, as_version=4)
    skip_tag = "skip-execution" if torch.cuda.is_available() else "requires-cuda"
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                            skip_cells_with_tag=skip_tag,
                            resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
    client.execute()
    nbformat.write(nb, path)


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
