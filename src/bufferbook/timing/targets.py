"""Chapter 5: what the lab expects on a CUDA GPU, defined once.

These are hypotheses, not results: the simulated device and the physics of each update predict
them, and no GPU run has confirmed them yet. The chapter's ``requires-cuda`` cells assert them,
``benchmarks/buffer_timing.py`` reports PASS or FAIL against the ones marked for it, and
``benchmarks/README.md`` quotes those word for word (``tests/test_timing_targets.py`` checks).
Change a threshold here and every one of them follows.

- The constants: one threshold each, named for what it bounds.
- `TARGETS`: each threshold with its chapter section and a sentence saying what it means.
- `target_lines`: those sentences, for printing; `target_bullets`: for the README.
"""
from dataclasses import dataclass

NAIVE_MAX_FRACTION = 0.5             # naive timer / event time, 64M-element add_ (5.2)
TIMER_MAX_DIFF_PCT = 5.0             # lab timer against torch.utils.benchmark, same add_ (5.2)
SINGLE_KERNEL_MIN_PCT = 90.0         # lerp_, add_, copy_: % of the copy ceiling (5.3)
TWO_KERNEL_MAX_PCT = 75.0            # mul_ + add_: % of the copy ceiling; the model says 60 (5.3)
OUT_OF_PLACE_MAX_RATIO = 1.25        # buf = buf + y against buf.add_(y), either way round (5.4)
FOREACH_MIN_SPEEDUP = 5.0            # _foreach_lerp_ against a Python loop, 200 buffers (5.5)
INDEX_PUT_MIN_SLOWDOWN = 2.0         # index_put_(accumulate=True) / index_add_, random (5.6)
LAUNCH_BOUND_MIN_RATIO = 1.5         # events over a loop / kernel time, 1M-element add_ (5.7)
GRAPH_MAX_FACTOR = 2.0               # graph replay within this factor of the kernel time (5.7)
COMPILED_MAX_FRACTION_OF_EAGER = 0.8  # compiled mul_ + add_ / eager mul_ + add_ (5.8)
COMPILED_MAX_FRACTION_OF_LERP = 1.2   # compiled mul_ + add_ / lerp_ (5.8)


@dataclass(frozen=True)
class Target:
    """Chapter 5: one GPU expectation: its section, its threshold and what it means."""
    section: str
    threshold: float
    text: str              # a sentence with ``{t}`` where the threshold goes
    benchmark: bool = False  # also checked by benchmarks/buffer_timing.py

    def sentence(self):
        return self.text.format(t=f"{self.threshold:g}")


TARGETS = (
    Target("5.2", NAIVE_MAX_FRACTION,
           "the naive timer reads less than {t} of the event time on a 64M-element add_"),
    Target("5.2", TIMER_MAX_DIFF_PCT,
           "the lab's timer is within {t} % of torch.utils.benchmark's median on a "
           "64M-element add_", benchmark=True),
    Target("5.3", SINGLE_KERNEL_MIN_PCT,
           "single-kernel updates (lerp_, add_, copy_) reach at least {t} % of the copy "
           "bandwidth measured in the same run, on 1 GiB float32 buffers", benchmark=True),
    Target("5.3", TWO_KERNEL_MAX_PCT,
           "the two-kernel EMA (mul_ + add_) reaches at most {t} % of that copy bandwidth"),
    Target("5.4", OUT_OF_PLACE_MAX_RATIO,
           "buf = buf + y and buf.add_(y) on a 1 GiB buffer take the same time to within a "
           "factor {t} (the caching allocator reuses the freed block)"),
    Target("5.5", FOREACH_MIN_SPEEDUP,
           "torch._foreach_lerp_ is at least {t}x faster than a Python loop of lerp_ over "
           "200 buffers of 16K elements", benchmark=True),
    Target("5.6", INDEX_PUT_MIN_SLOWDOWN,
           "index_put_(accumulate=True) takes at least {t}x the time of index_add_ on 16M "
           "random indices (it sorts them first)"),
    Target("5.7", LAUNCH_BOUND_MIN_RATIO,
           "events over a loop of 1M-element add_ read at least {t}x the profiler's kernel "
           "time (launch-bound)"),
    Target("5.7", GRAPH_MAX_FACTOR,
           "graph replay of that loop comes within a factor {t} of the kernel time"),
    Target("5.8", COMPILED_MAX_FRACTION_OF_EAGER,
           "torch.compile's mul_ + add_ takes at most {t} of the eager two-kernel time"),
    Target("5.8", COMPILED_MAX_FRACTION_OF_LERP,
           "torch.compile's mul_ + add_ takes at most {t} of lerp_'s time"),
)


def target_lines(benchmark_only=False):
    """Chapter 5: one line per target, ``"5.3  single-kernel updates ..."``."""
    return [f"{t.section}  {t.sentence()}" for t in TARGETS
            if t.benchmark or not benchmark_only]


def target_bullets(benchmark_only=True):
    """Chapter 5: the Markdown bullets ``benchmarks/README.md`` quotes, one per target."""
    return [f"- {t.sentence()} (section {t.section})" for t in TARGETS
            if t.benchmark or not benchmark_only]
