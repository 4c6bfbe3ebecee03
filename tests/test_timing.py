"""bufferbook.timing (chapter 5) as a package: one idea per module, every name in one place.

The chapter, its exercise, the planted wrong answers and the benchmark script import from
``bufferbook.timing``; the modules behind it are tested in tests/test_timing_<module>.py.
"""
import ast
import importlib
from pathlib import Path

import pytest

import bufferbook.timing as timing

ROOT = Path(__file__).resolve().parents[1]
USERS = [ROOT / "chapters" / "05_cuda_timing_lab.py", ROOT / "benchmarks" / "buffer_timing.py",
         *sorted((ROOT / "solutions" / "ch05_timing").glob("*.py")),
         ROOT / "tests" / "planted" / "ch05_timing.py"]
MODULES = ["clocks", "device", "experiments", "figures", "kernels", "machine", "memory",
           "report", "targets", "timers", "traffic", "updates", "widget"]


def _imported_names(path):
    """Names a file imports from bufferbook.timing (its code, and code inside its strings)."""
    source = path.read_text(encoding="utf8")
    sources = [source]
    for node in ast.walk(ast.parse(source)):  # planted answers are code in strings
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            sources.append(node.value)
    names = set()
    for text in sources:
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        names |= {alias.name for node in ast.walk(tree)
                  if isinstance(node, ast.ImportFrom) and node.module == "bufferbook.timing"
                  for alias in node.names}
    return names


@pytest.mark.parametrize("path", USERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_name_its_users_import_is_there(path):
    names = _imported_names(path)
    missing = sorted(n for n in names if not hasattr(timing, n))
    assert not missing, f"{path.name} imports {missing}, which bufferbook.timing lacks"


def test_the_chapter_and_the_exercise_really_import_from_the_package():
    assert "SimulatedDevice" in _imported_names(ROOT / "solutions" / "ch05_timing" /
                                                "ch05_timing.py")
    assert {"benchmark", "launch_bound_picker", "targets"} <= _imported_names(USERS[0])


def test_all_lists_every_public_name_once_and_each_comes_from_one_module():
    assert len(timing.__all__) == len(set(timing.__all__))
    for name in timing.__all__:
        obj = getattr(timing, name)
        if callable(obj):  # functions and classes say where they live
            assert obj.__module__.startswith("bufferbook.timing."), name


@pytest.mark.parametrize("module", MODULES)
def test_each_module_has_a_docstring_naming_chapter_5(module):
    mod = importlib.import_module(f"bufferbook.timing.{module}")
    assert mod.__doc__ and mod.__doc__.startswith("Chapter 5"), module
    assert f"| {module} " in timing.__doc__, f"{module} missing from the package's table"
    public = [getattr(mod, n) for n in dir(mod) if not n.startswith("_")
              and callable(getattr(mod, n)) and getattr(getattr(mod, n), "__module__", "")
              == mod.__name__]
    undocumented = [f.__name__ for f in public if not (f.__doc__ or "").startswith("Chapter 5")]
    assert not undocumented, f"{module}: docstrings not pointing to chapter 5: {undocumented}"
