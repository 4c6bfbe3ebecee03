"""Chapter 5, "The CUDA timing lab": timing buffer updates, GPU or not.

A CUDA kernel launch returns before the kernel has run, so a host clock read
right after the call measures the launch, not the work. One idea per module;
every public name is also importable from ``bufferbook.timing`` (the chapter,
its exercise and the benchmark script do that).

| module      | holds                                           | section |
|-------------|-------------------------------------------------|---------|
| traffic     | bytes an update must move, achieved GB/s        | 5.3     |
| device      | SimulatedDevice: an asynchronous device, no GPU | 5.1     |
| clocks      | one clock interface: CPU, CUDA, simulated       | 5.2     |
| timers      | the naive timer (the bug), the lab's benchmark  | 5.1-5.2 |
| kernels     | CUDA graphs, the profiler: launches vs kernels  | 5.5-5.7 |
| memory      | bytes allocated, CUDA peak memory, page faults  | 5.4     |
| updates     | BufferUpdates and what each section times       | 5.3-5.6 |
| experiments | those updates timed into rows                   | 5.3-5.6 |
| machine     | last-level cache, demo sizes, our CPU share     | 5.2-5.4 |
| targets     | what the GPU cells expect, defined once         | 5.2-5.8 |
| report      | run header (device, torch, date), text tables   | all     |
| figures     | the bar charts                                  | 5.2-5.3 |
| widget      | section 5.7's sliders over the simulated device | 5.7     |

Times are in seconds unless a name says ``_us``; bandwidth in GB/s, where
1 GB = 10**9 bytes.
"""
from bufferbook.timing.clocks import CudaClock, HostClock, clock, is_cuda
from bufferbook.timing.device import (EVENT_NOT_READY, SimEvent, SimGraph, SimKernel,
                                      SimulatedDevice)
from bufferbook.timing.experiments import (bandwidth_rows, copy_ceiling_gbs, out_of_place_rows,
                                           timing_rows)
from bufferbook.timing.figures import bandwidth_figure, timing_methods_figure
from bufferbook.timing.kernels import (count_kernels, graph_replay, kernel_names, kernel_time_s,
                                       launch_bound_report)
from bufferbook.timing.machine import (beyond_cache_numel, cpu_share, last_level_cache_bytes,
                                       parse_cache_size)
from bufferbook.timing.memory import allocated_bytes, minor_page_faults, peak_extra_bytes
from bufferbook.timing.report import device_name, format_table, run_header
from bufferbook.timing.targets import TARGETS, target_lines
from bufferbook.timing.timers import (Timing, benchmark, benchmark_interleaved, compare_timers,
                                      naive_time, synchronized_time, torch_benchmark_median)
from bufferbook.timing.traffic import ACCESSES, achieved_gbs, bytes_moved
from bufferbook.timing.updates import (BufferUpdates, buffer_update_ops, cpu_bandwidth_ops,
                                       indexed_update_ops, out_of_place_ops, small_buffer_ops)
from bufferbook.timing.widget import (is_launch_bound, launch_bound_picker, simulated_timings,
                                      timings_alt, timings_state_html)

__all__ = [
    "ACCESSES", "BufferUpdates", "EVENT_NOT_READY", "CudaClock", "HostClock", "SimEvent", "SimGraph", "SimKernel",
    "SimulatedDevice", "TARGETS", "Timing", "achieved_gbs", "allocated_bytes",
    "bandwidth_figure", "bandwidth_rows", "benchmark", "benchmark_interleaved",
    "beyond_cache_numel", "buffer_update_ops", "bytes_moved", "clock", "compare_timers",
    "copy_ceiling_gbs", "count_kernels", "cpu_bandwidth_ops", "cpu_share", "device_name",
    "format_table", "graph_replay", "indexed_update_ops", "is_cuda", "is_launch_bound",
    "kernel_names", "kernel_time_s", "last_level_cache_bytes", "launch_bound_picker",
    "launch_bound_report", "minor_page_faults", "naive_time", "out_of_place_ops",
    "out_of_place_rows", "parse_cache_size", "peak_extra_bytes", "run_header",
    "simulated_timings", "small_buffer_ops", "synchronized_time", "target_lines",
    "timing_methods_figure", "timing_rows", "timings_alt", "timings_state_html",
    "torch_benchmark_median",
]
