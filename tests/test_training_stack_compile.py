"""Tests for bufferbook.training_stack_compile (chapter 6): compile counters, export rows."""
import os
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from bufferbook.training_stack_compile import (CACHE_FOLDER, IntStepCounter,
                                               TensorStepCounter, count_compilations,
                                               signature_rows, use_temporary_compile_cache)

ROOT = Path(__file__).resolve().parents[1]


def test_compile_cache_goes_to_the_temp_folder_unless_set(monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    folder = use_temporary_compile_cache()
    assert folder == os.path.join(tempfile.gettempdir(), CACHE_FOLDER)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == folder
    assert ROOT not in Path(folder).resolve().parents
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/somewhere/else")
    assert use_temporary_compile_cache() == "/somewhere/else"


def test_counters_count_calls_like_eager():
    as_int, as_buffer = IntStepCounter(), TensorStepCounter()
    for _ in range(3):
        assert torch.equal(as_int(torch.ones(2)), torch.full((2,), 2.0))
        as_buffer(torch.ones(2))
    assert as_int.steps == 3 and as_buffer.steps.item() == 3
    assert as_buffer.steps.dtype == torch.long
    assert list(dict(as_buffer.named_buffers())) == ["steps"]
    assert list(dict(as_int.named_buffers())) == []


def test_an_int_attribute_recompiles_once_per_value():
    module = IntStepCounter()
    count = count_compilations(module, calls=5)
    assert count.graphs == 5 and not count.limit_hit
    assert count.guards == [f"self.steps == {k}" for k in range(4)]
    assert "convert this integer into a tensor" in count.hint
    assert module.steps == 5            # the compiled calls ran the Python update


def test_a_buffer_compiles_once_and_is_updated_in_place():
    module = TensorStepCounter()
    storage = module.steps.data_ptr()
    count = count_compilations(module, calls=7)
    assert (count.graphs, count.guards, count.hint, count.limit_hit) == (1, [], "", False)
    assert module.steps.item() == 7 and module.steps.data_ptr() == storage


def test_recompile_limit_is_reported():
    count = count_compilations(IntStepCounter(), calls=torch._dynamo.config.recompile_limit + 2)
    assert count.limit_hit
    assert count.graphs == torch._dynamo.config.recompile_limit


def test_counts_start_from_a_clean_state():
    first = count_compilations(IntStepCounter(), calls=3)
    second = count_compilations(IntStepCounter(), calls=3)
    assert first.graphs == second.graphs == 3
    assert first.guards == second.guards


def test_count_compilations_passes_the_inputs_it_is_given():
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(tuple(x.shape))
            return x + 1

    count_compilations(Recorder(), calls=2, make_input=lambda: torch.zeros(2, 5))
    assert seen and set(seen) == {(2, 5)}


class _Total(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("total", torch.zeros(()))
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x):
        self.total.add_(x.sum())
        return x * self.scale


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # torch-internal
def test_signature_rows_list_inputs_then_outputs_with_buffer_targets():
    exported = torch.export.export(_Total(), (torch.ones(3),))
    rows = signature_rows(exported)
    assert rows[:3] == [("input", "BUFFER", "b_total", "total"),
                        ("input", "BUFFER", "b_scale", "scale"),
                        ("input", "USER_INPUT", "x", None)]
    functional = signature_rows(exported.run_decompositions())
    mutations = [r for r in functional if r[1] == "BUFFER_MUTATION"]
    assert len(mutations) == 1 and mutations[0][0] == "output" and mutations[0][3] == "total"
    assert [r[1] for r in functional if r[0] == "output"][-1] == "USER_OUTPUT"
