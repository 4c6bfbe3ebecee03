"""Planted wrong answers for ch05_timing: mistakes students really make.

``WRONG_ANSWERS`` fail the visible and the hidden tests of their question;
``HIDDEN_ONLY`` pass the visible test and fail only the hidden ones (see
tests/planted/ch01_buffers.py).
"""

WRONG_ANSWERS = {
    # The chapter's main trap: host clock around the call, no synchronize. On an
    # asynchronous device it measures the launch, not the update.
    "q1": '''def time_per_call(device, fn, warmup=2, repeats=5):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = device.now()
        fn()
        samples.append(device.now() - start)
    return statistics.median(samples)
''',
    # The colleague's version, handed in unchanged: events around a loop of tiny
    # updates measure the launch rate.
    "q2": '''def kernel_time_per_op(device, fn, n=100):
    fn()
    device.synchronize()
    start = device.record_event()
    for _ in range(n):
        fn()
    end = device.record_event()
    device.synchronize()
    return device.elapsed_s(start, end) / n
''',
    # Times the model and leaves the benchmark's buffer updates in it.
    "q3": '''def time_forward(model, x, warmup=1, repeats=5):
    samples = []
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)
''',
}

HIDDEN_ONLY = {
    # Synchronized, but without the warm-up calls: right on a device whose first
    # launch costs nothing extra (the visible test), wrong on one where it does.
    "q1": '''def time_per_call(device, fn, warmup=2, repeats=5):
    samples = []
    for _ in range(repeats):
        device.synchronize()
        start = device.now()
        fn()
        device.synchronize()
        samples.append(device.now() - start)
    return statistics.median(samples)
''',
    # Right for n = 100 only: divides by a fixed 100.
    "q2": '''def kernel_time_per_op(device, fn, n=100):
    def loop():
        for _ in range(n):
            fn()
    graph = device.capture(loop)
    graph.replay()
    start = device.record_event()
    graph.replay()
    end = device.record_event()
    device.synchronize()
    return device.elapsed_s(start, end) / 100
''',
    # Restores the state_dict: the persistent buffers come back, a non-persistent
    # one does not.
    "q3": '''def time_forward(model, x, warmup=1, repeats=5):
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    samples = []
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            samples.append(time.perf_counter() - start)
    model.load_state_dict(saved)
    return statistics.median(samples)
''',
}
