"""Chapter 5, section 5.7: the lab's widget: launch-bound or kernel-bound, on the simulated device.

- `simulated_timings`: µs per call of an op on a fresh `SimulatedDevice`, by timing method.
- `timings_alt`: what the figure of one state shows, in words (its alt text).
- `timings_state_html`: one state (an op size and a launch cost) as a figure with alt text.
- `launch_bound_picker`: every state of `WIDGET_SIZES` x `WIDGET_LAUNCHES_US`, switched by two
  sliders (``bufferbook.widget_states.state_picker``), so the static page works too.
"""
import torch

from bufferbook.timing.device import SimulatedDevice
from bufferbook.timing.figures import timing_methods_figure
from bufferbook.timing.kernels import launch_bound_report
from bufferbook.timing.timers import naive_time
from bufferbook.timing.traffic import bytes_moved

#: Op sizes the widget offers (label, float32 elements): from launch-bound to kernel-bound.
WIDGET_SIZES = (("4K", 1 << 12), ("256K", 1 << 18), ("1M", 1 << 20), ("16M", 1 << 24))
#: Launch costs the widget offers (label, µs).
WIDGET_LAUNCHES_US = (("1 µs", 1.0), ("5 µs", 5.0), ("10 µs", 10.0), ("20 µs", 20.0))


def simulated_timings(numel, launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0, n=100,
                      op="add_", dtype=torch.float32):
    """Chapter 5, section 5.7 (the widget): µs per ``op`` call on a fresh `SimulatedDevice`, by method.

    Keys: ``naive (no sync)``, ``events over a loop``, ``graph replay``, ``kernel (profiler)``.
    Kernel-bound (kernel longer than a launch): the last three agree. Launch-bound: events over a
    loop read ``launch_us``, graph replay and the profiler read the kernel.
    """
    dev = SimulatedDevice(launch_us=launch_us, bandwidth_gbs=bandwidth_gbs,
                          kernel_floor_us=kernel_floor_us)
    fn = dev.op(op, numel, dtype)
    naive = naive_time(fn, dev, repeats=5).median
    dev.synchronize()
    report = launch_bound_report(fn, dev, n=n, repeats=5)
    return {"naive (no sync)": naive * 1e6, **{k: v * 1e6 for k, v in report.items()}}


def is_launch_bound(numel, launch_us=5.0, bandwidth_gbs=4000.0, kernel_floor_us=2.0, op="add_",
                    dtype=torch.float32):
    """Chapter 5, section 5.7: True when one launch takes longer than the kernel it starts."""
    dev = SimulatedDevice(launch_us=launch_us, bandwidth_gbs=bandwidth_gbs,
                          kernel_floor_us=kernel_floor_us)
    return launch_us > dev.kernel_us(bytes_moved(op, numel, dtype))


def timings_alt(numel, launch_us, timings_us):
    """Chapter 5, section 5.7: the alt text of one widget state: the bars, and what they mean."""
    bars = ", ".join(f"{name} {us:.3g}" for name, us in timings_us.items())
    if is_launch_bound(numel, launch_us):
        verdict = ("Launch-bound: events over a loop read the launch cost, while graph replay "
                   "and the profiler read the shorter kernel.")
    else:
        verdict = ("Kernel-bound: events over a loop, graph replay and the profiler all read "
                   "the kernel time; only the naive timer reads the launch.")
    return (f"Bars of microseconds per call for a simulated add_ on {numel:,} float32 "
            f"elements with {launch_us:g} microsecond launches: {bars}. {verdict}")


def timings_state_html(numel, launch_us):
    """Chapter 5, section 5.7: one widget state: `timing_methods_figure` as an image with alt."""
    from bufferbook.widget_states import figure_html

    timings = simulated_timings(numel, launch_us=launch_us)
    fig = timing_methods_figure(timings, f"simulated add_, {numel:,} float32 elements, "
                                         f"launch {launch_us:g} µs")
    return figure_html(fig, timings_alt(numel, launch_us, timings))


def launch_bound_picker(sizes=WIDGET_SIZES, launches_us=WIDGET_LAUNCHES_US):
    """Chapter 5, section 5.7: two sliders (op size, launch cost) over every rendered state.

    Each of the ``len(sizes) * len(launches_us)`` states is computed when the cell runs, so
    the sliders work on the static page (``bufferbook.widget_states.state_picker``).
    """
    import ipywidgets as widgets

    from bufferbook.widget_states import state_picker

    controls = {
        "numel": widgets.SelectionSlider(options=list(sizes), value=sizes[1][1],
                                         description="op size"),
        "launch_us": widgets.SelectionSlider(options=list(launches_us),
                                             value=launches_us[1][1], description="launch"),
    }
    return state_picker(timings_state_html, controls)
