"""bufferbook.timing.targets (chapter 5): one source of truth for what a GPU should show.

The chapter's GPU cells, benchmarks/buffer_timing.py and benchmarks/README.md must all use the
thresholds defined there: the chapter and the script by name, the README word for word.
"""
import re
from pathlib import Path

import nbformat

from bufferbook.timing import targets
from bufferbook.timing.targets import TARGETS, target_bullets, target_lines

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "chapters" / "05_cuda_timing_lab.ipynb"  # nbformat: no jupytext on a GPU box
SCRIPT = ROOT / "benchmarks" / "buffer_timing.py"
README = ROOT / "benchmarks" / "README.md"
CONSTANTS = sorted(name for name, value in vars(targets).items()
                   if name.isupper() and isinstance(value, float))


def test_every_constant_is_a_target_with_a_sentence_showing_its_value():
    thresholds = sorted(t.threshold for t in TARGETS)
    assert thresholds == sorted(getattr(targets, name) for name in CONSTANTS)
    for t in TARGETS:
        assert f"{t.threshold:g}" in t.sentence() and "{" not in t.sentence()
    assert len(target_lines()) == len(TARGETS)
    assert target_lines()[0].startswith(TARGETS[0].section + "  ")


def test_readme_quotes_the_benchmark_targets_word_for_word():
    text = README.read_text(encoding="utf8")
    block = re.search(r"<!-- targets:.*?-->\n(.*?)<!-- end targets -->", text, re.S)
    assert block, "benchmarks/README.md lost its targets block"
    assert block.group(1).splitlines() == target_bullets(), (
        "benchmarks/README.md is out of date: paste bufferbook.timing.targets.target_bullets()")
    assert [t.benchmark for t in TARGETS].count(True) == len(target_bullets()) == 3


def test_the_benchmark_script_uses_the_constants_and_defines_none_of_its_own():
    source = SCRIPT.read_text(encoding="utf8")
    assert "from bufferbook.timing.targets import" in source
    for name in ("SINGLE_KERNEL_MIN_PCT", "TIMER_MAX_DIFF_PCT", "FOREACH_MIN_SPEEDUP"):
        assert name in source
    assert not re.search(r"^[A-Z_]+(?:PCT|SPEEDUP|RATIO|FACTOR|FRACTION\w*) = ", source, re.M)


def test_every_gpu_cell_threshold_comes_from_the_constants():
    """Each constant is used by the chapter's CUDA cells, and those cells compare measured
    values only against named thresholds, exact counts or other measured values."""
    cells = [c.source for c in nbformat.read(CHAPTER, as_version=4).cells
             if "requires-cuda" in c.metadata.get("tags", [])]
    code = "\n".join(cells)
    missing = [name for name in CONSTANTS if f"targets.{name}" not in code]
    assert not missing, f"constants the GPU cells do not use: {missing}"
    literal = re.compile(r"[<>]=?\s*\(?\s*\d"                  # x >= 90
                         r"|(?<![\w*.])\d+(?:\.\d+)?\s*\*(?!\*)"  # 1.5 * x
                         r"|(?<!\*)\*\s*\d")                       # x * 5
    own = [line for line in code.splitlines()
           if line.lstrip().startswith("assert") and literal.search(line)]
    assert not own, f"GPU cells with their own thresholds: {own}"
    assert literal.search("assert x >= 90") and literal.search("assert a * 5 <= b")
    assert literal.search("assert t <= 1.2 * u") and not literal.search("assert n >= m / 2**20")
