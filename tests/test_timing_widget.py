"""bufferbook.timing.widget (chapter 5, section 5.7): launch-bound or kernel-bound, every state."""
from bufferbook.timing import (is_launch_bound, launch_bound_picker, simulated_timings,
                               timings_alt)

from simulated import close


def test_simulated_timings_launch_bound_below_the_crossover_kernel_bound_above():
    small = simulated_timings(1 << 12)
    assert close(small["events over a loop"], 5.0) and small["graph replay"] < 5.0
    assert close(small["graph replay"], small["kernel (profiler)"], 1e-6)
    big = simulated_timings(1 << 24)
    assert big["kernel (profiler)"] > 5.0
    assert close(big["events over a loop"], big["kernel (profiler)"], 1e-6)
    assert close(big["naive (no sync)"], 5.0)
    slower_launch = simulated_timings(1 << 12, launch_us=12.0)
    assert close(slower_launch["events over a loop"], 12.0)
    assert close(slower_launch["kernel (profiler)"], small["kernel (profiler)"], 1e-6)


def test_launch_bound_when_the_launch_outlasts_the_kernel():
    assert is_launch_bound(1 << 12, launch_us=5.0)       # kernel 2.01 µs
    assert not is_launch_bound(1 << 12, launch_us=1.0)
    assert not is_launch_bound(1 << 24, launch_us=20.0)  # kernel 52.3 µs
    timings = simulated_timings(1 << 16, launch_us=5.0)
    assert (timings["events over a loop"] > timings["kernel (profiler)"]) == \
        is_launch_bound(1 << 16, launch_us=5.0)


def test_alt_text_lists_every_bar_and_names_the_regime():
    timings = simulated_timings(1 << 12, launch_us=5.0)
    alt = timings_alt(1 << 12, 5.0, timings)
    assert "4,096 float32 elements with 5 microsecond launches" in alt
    assert all(f"{name} {us:.3g}" in alt for name, us in timings.items())
    assert "Launch-bound" in alt
    assert "Kernel-bound" in timings_alt(1 << 24, 5.0, simulated_timings(1 << 24))


def test_picker_has_every_state_with_its_own_figure_and_alt_text():
    import matplotlib
    matplotlib.use("Agg")
    from bufferbook.widget_states import shown_state
    sizes = (("4K", 1 << 12), ("16M", 1 << 24))
    launches = (("1 µs", 1.0), ("5 µs", 5.0), ("20 µs", 20.0))
    box = launch_bound_picker(sizes, launches)
    assert len(box.states) == 6
    for (i, j), state in box.states.items():
        numel, launch = sizes[i][1], launches[j][1]
        assert state.value.startswith('<img src="data:image/png;base64,')
        assert f'{numel:,} float32 elements with {launch:g} microsecond' in state.value
        bound = is_launch_bound(numel, launch)
        assert ("Launch-bound" in state.value) == bound
    assert len({s.value for s in box.states.values()}) == 6
    # the default state is the second option of each control
    assert "16,777,216 float32 elements with 5 microsecond" in shown_state(box).value
    box.children[0].children[0].index = 0
    assert "4,096 float32 elements with 5 microsecond" in shown_state(box).value
