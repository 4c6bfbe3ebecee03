"""Root pytest configuration shared by unit tests and nbval runs.

CUDA-only notebook cells carry the cell tag `requires-cuda`. Without a CUDA device they are
skipped (and reported as skipped); on a GPU runner they run like every other cell. With
REQUIRE_CUDA=1 (the GPU CI job) a missing CUDA device is an error, never a silent skip.
"""
import os

import pytest

CUDA_TAG = "requires-cuda"


def _cuda_available():
    import torch
    return torch.cuda.is_available()


# The longest tests (each grades many notebooks in sandboxes, or drives a browser), started
# first so that no worker is left running one of them alone at the end of the run.
LONG_FIRST = ("tests/test_grading_attacks.py", "tests/test_grading_roundtrip.py",
              "tests/test_grading_parallel.py", "tests/test_browser.py",
              "tests/test_grading_postgres.py", "tests/test_grading_dask.py")


def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist, the tests of one file run on one worker, in order: a notebook's cells
    share a kernel, and a module's fixtures (a sample book, a DDP process group) are built once.
    The long tests of LONG_FIRST are scheduled one by one, so that they spread out, and first:
    xdist would otherwise hand out the files with the most tests first (--loadscope-reorder),
    which puts every one-test scope, the longest ones among them, at the end of the run."""
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep the order pytest_collection_modifyitems made

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return nodeid if path in LONG_FIRST else path

    return FileScheduling(config, log)


def _start_order(item):
    path = item.nodeid.split("::", 1)[0]
    return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)


SHARED_ENV = "BUFFERBOOK_TEST_SHARED"  # read by tests/nbgrader_course.py


def pytest_configure(config):
    """A folder the whole session shares (xdist workers inherit the variable): the grading tests
    keep the demo assignment's reference verdicts there (tests/nbgrader_course.py)."""
    if SHARED_ENV not in os.environ:
        import tempfile
        os.environ[SHARED_ENV] = config._bufferbook_shared = tempfile.mkdtemp(
            prefix="bufferbook-tests-")


def pytest_unconfigure(config):
    shared = getattr(config, "_bufferbook_shared", None)
    if shared:
        import shutil
        shutil.rmtree(shared, ignore_errors=True)
        del os.environ[SHARED_ENV]


def pytest_collection_modifyitems(config, items):
    items.sort(key=_start_order)  # stable: a notebook's cells keep their order
    if _cuda_available():
        return
    if os.environ.get("REQUIRE_CUDA") == "1":
        raise pytest.UsageError("REQUIRE_CUDA=1 but torch sees no CUDA device: CUDA cells would skip")
    skip = pytest.mark.skip(reason=f"cell tagged {CUDA_TAG!r} needs a CUDA device")
    for item in items:
        cell = getattr(item, "cell", None)  # nbval items carry their notebook cell
        if cell is not None and CUDA_TAG in cell.get("metadata", {}).get("tags", []):
            item.add_marker(skip)
