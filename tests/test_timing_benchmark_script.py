"""benchmarks/buffer_timing.py (chapter 5's measurements as one script), CPU mode."""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_script_cpu_mode_writes_the_json_structure(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "buffer_timing.py"), "--cpu", "--json", str(out),
         "--bandwidth-numel", "4096", "--timer-numel", "4096", "--n-small", "4",
         "--small-numel", "64", "--index-numel", "256", "--index-updates", "1024",
         "--repeats", "3", "--min-run-time", "0.01"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["mode"] == "cpu" and data["targets_apply"] is False
    assert data["torch"] == torch.__version__ and data["device"].startswith("CPU")
    assert {"date", "config", "ceiling_gbs", "bandwidth", "timers", "small_buffers", "indexed",
            "memory", "targets"} <= set(data)
    assert [r["op"] for r in data["bandwidth"]] == ["copy_", "add_", "add (out of place)",
                                                   "lerp_", "mul_ + add_"]
    assert set(data["timers"]) == {"naive (no sync)", "host clock + sync", "events (lab timer)",
                                   "torch.utils.benchmark"}
    assert data["memory"]["out of place bytes"] == 4096 * 4 and data["memory"]["in place bytes"] == 0
    names = [t["name"] for t in data["targets"]]
    assert len(names) == 5 and all({"value", "threshold", "pass"} <= set(t) for t in data["targets"])
    assert all(isinstance(t["pass"], bool) for t in data["targets"])
    assert "PASS" in proc.stdout or "FAIL" in proc.stdout
    assert data["config"]["bandwidth_numel"] == 4096
