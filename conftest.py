"""Root pytest configuration shared by unit tests and nbval runs.

CUDA-only notebook cells carry the cell tag `requires-cuda`. Without a CUDA device they are
skipped (and reported as skipped); on a GPU runner they run like every other cell.
"""
import pytest

CUDA_TAG = "requires-cuda"


def _cuda_available():
    import torch
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason=f"cell tagged {CUDA_TAG!r} needs a CUDA device")
    for item in items:
        cell = getattr(item, "cell", None)  # nbval items carry their notebook cell
        if cell is not None and CUDA_TAG in cell.get("metadata", {}).get("tags", []):
            item.add_marker(skip)
