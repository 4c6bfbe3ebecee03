"""Planted wrong answers for assignment ch05_timing (used by tests/test_grading_roundtrip.py).

Each one is a mistake a student would really make; it must fail every test cell of its own
question (visible and hidden) and no other question's.
"""

WRONG_ANSWERS = {
    # The chapter's main trap (section 5.1): host clock around the call, no synchronize. On an
    # asynchronous device it measures the launch (5 µs), not the work.
    "q1": '''def time_per_call(device, fn, warmup=2, repeats=5):
    """Median seconds per call of ``fn`` on ``device``."""
    if repeats < 1 or warmup < 0:
        raise ValueError("need repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = device.now()
        fn()
        samples.append(device.now() - start)
    return statistics.median(samples)
''',
    # Section 5.7's trap, handed in unchanged apart from the n check: events around a loop of
    # tiny ops measure the launch rate, not the kernel.
    "q2": '''def kernel_time_per_op(device, fn, n=100):
    """Kernel seconds per call of ``fn``."""
    if n < 1:
        raise ValueError("n must be at least 1")
    fn()
    device.synchronize()
    start = device.record_event()
    for _ in range(n):
        fn()
    end = device.record_event()
    device.synchronize()
    return device.elapsed_s(start, end) / n
''',
    # Counts only the buffer itself (numel * element size), not every read and write.
    "q3": '''def bandwidth_report(op, numel, dtype, seconds, ceiling_gbs):
    """(achieved GB/s, fraction of the ceiling)."""
    if op not in ACCESSES:
        raise ValueError(f"unknown op {op!r}")
    if seconds <= 0 or ceiling_gbs <= 0:
        raise ValueError("seconds and ceiling_gbs must be positive")
    nbytes = numel * torch.empty(0, dtype=dtype).element_size()
    achieved = nbytes / seconds / 1e9
    return achieved, achieved / ceiling_gbs
''',
}
