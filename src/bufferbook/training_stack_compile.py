"""Chapter 6, sections 6.5-6.6: buffers under ``torch.compile`` and ``torch.export``.

- `use_temporary_compile_cache`: keep TorchInductor's compiled code in the system's temporary
  folder (never in the repository), unless ``TORCHINDUCTOR_CACHE_DIR`` says otherwise.
- `IntStepCounter`, `TensorStepCounter`: a step counter as a Python int vs as a buffer.
- `count_compilations`: how many graphs Dynamo compiled for a module over some calls, and why
  it recompiled, read from torch's own counters (``torch._dynamo.utils.counters``) and guard
  failure records, not from timing.
- `signature_rows`: an exported program's inputs and outputs, kind by kind (section 6.6).
"""
import contextlib
import logging
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

CACHE_FOLDER = "bufferbook-inductor"


def use_temporary_compile_cache():
    """Chapter 6, section 6.5: the folder TorchInductor caches compiled code in, outside the repo.

    Sets ``TORCHINDUCTOR_CACHE_DIR`` to ``<temp folder>/bufferbook-inductor`` unless it is
    already set, and returns the folder. Call it before the first ``torch.compile``.
    """
    default = os.path.join(tempfile.gettempdir(), CACHE_FOLDER)
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default)


class IntStepCounter(nn.Module):
    """Chapter 6, section 6.5: counts calls in a Python int attribute."""

    def __init__(self):
        super().__init__()
        self.steps = 0

    def forward(self, x):
        self.steps += 1
        return x * 2


class TensorStepCounter(nn.Module):
    """Chapter 6, section 6.5: counts calls in a ``long`` buffer."""

    def __init__(self):
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.steps.add_(1)
        return x * 2


@dataclass
class CompileCount:
    """What `count_compilations` read from torch's counters."""
    graphs: int                   # graphs Dynamo compiled (counters["stats"]["unique_graphs"])
    limit_hit: bool               # Dynamo gave up: recompile limit reached, frame runs eagerly
    guards: list = field(default_factory=list)  # guard that failed, one per recompilation
    hint: str = ""                # torch's hint attached to the failed guard, if any


_REASON = re.compile(r"^\d+/\d+: (?P<guard>.*?)\s+#")
_HINT = re.compile(r"\(HINT: (?P<hint>.*)\)\s*$")


@contextlib.contextmanager
def _quiet_dynamo():
    """No recompile-limit warnings on the page: the counters report them instead."""
    torch._logging.set_logs(dynamo=logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch._logging.set_logs()


def count_compilations(module, calls=6, backend="eager", make_input=lambda: torch.randn(3)):
    """Chapter 6, section 6.5: compile ``module``, call it ``calls`` times, count the graphs.

    Starts from a clean Dynamo state (``torch._dynamo.reset()``), so counts from earlier
    compilations do not leak in. The ``eager`` backend runs Dynamo's capture and guards, which
    decide recompilation, without generating code. Returns a `CompileCount`.
    """
    from torch._dynamo.utils import counters, guard_failures

    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(module, backend=backend)
    with _quiet_dynamo():
        for _ in range(calls):
            compiled(make_input())
    guards, hint = [], ""
    for reasons in guard_failures.values():
        for reason in reasons:
            first_line = reason.splitlines()[0]
            match = _REASON.match(first_line)
            if match and match["guard"] not in guards:
                guards.append(match["guard"])
            found = _HINT.search(first_line)
            hint = hint or (found["hint"] if found else "")
    limit_hit = any("recompile limit" in key.lower() for key in counters["unimplemented"])
    return CompileCount(graphs=counters["stats"]["unique_graphs"], limit_hit=limit_hit,
                        guards=guards, hint=hint)


def signature_rows(exported):
    """Chapter 6, section 6.6: ``[(direction, kind, name, target)]`` of an ExportedProgram.

    ``direction`` is ``"input"`` or ``"output"``; ``kind`` is torch's ``InputKind`` or
    ``OutputKind`` name (``BUFFER``, ``USER_INPUT``, ``BUFFER_MUTATION``, ``USER_OUTPUT`` ...);
    ``target`` is the buffer's name for buffer entries, else None.
    """
    signature = exported.graph_signature
    rows = [("input", spec.kind.name, spec.arg.name, spec.target)
            for spec in signature.input_specs]
    rows += [("output", spec.kind.name, spec.arg.name, spec.target)
             for spec in signature.output_specs]
    return rows
