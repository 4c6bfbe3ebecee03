"""bufferbook.timing.report (chapter 5): the run header and text tables."""
import torch

from bufferbook.timing import format_table, run_header

from simulated import sim


def test_format_table_aligns_columns():
    text = format_table([{"op": "a", "us": 1.5, "n": 3}, {"op": "longer", "us": 1234.56, "n": 10}])
    lines = text.splitlines()
    assert lines[0].split() == ["op", "us", "n"]
    assert len({len(line) for line in lines}) == 1
    assert "1.5" in lines[1] and "1,234.6" in lines[2]
    assert format_table([]) == ""


def test_run_header_names_device_torch_version_and_date():
    import datetime
    header = run_header("cpu")
    assert header.startswith("CPU ") and f"torch {torch.__version__}" in header
    assert datetime.date.today().isoformat() in header
    assert run_header(sim()).startswith("simulated device SimulatedDevice(launch_us=5")


def test_format_table_uses_the_given_columns_and_fills_missing_cells():
    text = format_table([{"op": "a", "x": 1.0, "y": 2.0}, {"op": "b", "x": 3.0}], ["op", "y"])
    assert text.splitlines() == ["op  y", "a   2", "b    "]  # 2.0 to 3 significant digits
