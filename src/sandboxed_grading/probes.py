"""The verdict process: ``main()`` of this module, run inside the sandbox by ``CheckVerdicts``
(or ``run()``, called by the zygote of the submission's own sandbox once its kernel is gone, see
zygote.py).

It reads one JSON request on stdin: the instructor's ``verdicts.py`` source and a list of steps,
each either a notebook cell to run (``{"cell": source}``) or a probe to call
(``{"probe": "q1", "seed": 123}``). Cells run in an IPython shell, one after the other, as in the
notebook but without its test cells. A probe ``qN(ns, rng)`` from verdicts.py gets the namespace
the cells built and a seeded ``torch.Generator`` (torch's and Python's global generators are
seeded the same way just before); what it returns is encoded as plain JSON and
written, one record per line, to the results stream (the original stdout). Everything the cells
print goes to stderr.

Nothing here is trusted: the student's code runs in this same process and may change anything in
it. The grader outside only compares the records with the reference solution's records, so
forging a record means computing the right answer, and it never shows a record's contents to
anyone: of a failed probe only the exception's class name is sent (and repeated only when it is
a builtin exception). The request is dropped once parsed, so student code walking up the stack
finds the verdicts' compiled functions and the current probe's seed, and no way to send them out.
"""
import json
import math
import os
import random
import signal
import sys


class StepTimeout(Exception):
    """A cell or probe ran past its time limit."""


def _alarm(signum, frame):
    raise StepTimeout("time limit reached")


def encode(value, depth=0):
    """Plain JSON for what a probe returns: None, bool, int, float, str, lists, tuples, dicts
    with str keys, torch tensors, dtypes and devices."""
    import torch
    if depth > 32:
        raise TypeError("probe result nested too deeply")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": value if math.isfinite(value) else repr(value)}
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.is_complex():
            raise TypeError("complex tensors are not supported in probe results")
        values = [v if isinstance(v, (bool, int)) or math.isfinite(v) else repr(v)
                  for v in t.flatten().tolist()]
        return {"tensor": {"dtype": str(t.dtype), "shape": list(t.shape), "values": values}}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value)}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, (list, tuple)):
        return {"list": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("probe result dicts need str keys")
        return {"dict": {k: encode(v, depth + 1) for k, v in value.items()}}
    raise TypeError(f"a probe may return only plain data, not {type(value).__name__}")


def main():
    """The standalone verdict process: the request on stdin, records on the original stdout."""
    request = sys.stdin.buffer.read()
    results = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # what the cells print goes to stderr, never into the results
    run(request, results)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter shutdown: with torch loaded it costs ~0.6 s of CPU


def run(request, results):
    """Run one request (JSON bytes) and write its records to ``results`` (a text stream).

    Also called by the zygote (zygote.py), in the kernel's sandbox once the kernel is gone."""
    request = json.loads(request)
    step_time = float(request.get("step_timeout", 60))
    signal.signal(signal.SIGALRM, _alarm)

    import torch  # noqa: F401  (imported before any student code runs)
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    spec = {"__name__": "verdicts"}
    exec(compile(request.pop("verdicts"), "verdicts.py", "exec"), spec)
    steps = request.pop("steps")
    del request
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    sys.path.insert(0, os.getcwd())

    while steps:
        step = steps.pop(0)
        signal.setitimer(signal.ITIMER_REAL, step_time)
        try:
            if "cell" in step:
                shell.run_cell(step["cell"], store_history=False)
                continue
            name = step["probe"]
            try:
                random.seed(step["seed"])        # global generators too: a probe that builds
                torch.manual_seed(step["seed"])  # nn.Linear layers gets the same weights each run
                rng = torch.Generator().manual_seed(int(step["seed"]))
                record = {"question": name, "ok": True, "value": encode(spec[name](shell.user_ns, rng))}
            except BaseException as exc:  # noqa: B036 (any failure is the probe's result)
                record = {"question": name, "ok": False, "error": type(exc).__name__[:60]}
            results.write(json.dumps(record) + "\n")
            results.flush()
        except StepTimeout:
            pass
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    results.write(json.dumps({"done": True}) + "\n")
    results.flush()


if __name__ == "__main__":
    main()
