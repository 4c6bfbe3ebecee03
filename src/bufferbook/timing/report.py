"""Chapter 5: what the lab prints beside every measurement, and its tables.

- `device_name`: a readable name for a GPU, the CPU or the simulated device.
- `run_header`: device, torch version and date, printed next to every measured figure.
- `format_table`: rows (dicts) as an aligned text table.
"""
import datetime
import platform

import torch

from bufferbook.timing.clocks import is_cuda
from bufferbook.timing.device import SimulatedDevice


def device_name(device=None):
    """Chapter 5: a readable name for ``device`` (GPU model, CPU, or the simulated device)."""
    if isinstance(device, SimulatedDevice):
        return f"{device.name} {device!r}"
    if is_cuda(device):
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"CPU {platform.machine()} ({threads} thread{'s' if threads > 1 else ''})"


def run_header(device=None):
    """Chapter 5: the line printed beside every measured figure: device, torch version, date."""
    return f"{device_name(device)} | torch {torch.__version__} | {datetime.date.today().isoformat()}"


def format_table(rows, columns=None):
    """Chapter 5: rows (dicts) as an aligned text table; floats get 1 decimal (3 significant if < 10)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:,.1f}"
        return str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values):  # first column left-aligned, the others right-aligned
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                         for i, (v, w) in enumerate(zip(values, widths)))
    return "\n".join(line(values) for values in [columns, *cells])
