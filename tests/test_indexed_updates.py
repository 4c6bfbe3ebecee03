"""Tests for bufferbook.indexed_updates (chapter 4), against plain Python loops as reference."""
import random

import matplotlib
import numpy as np
import pytest
import torch

from bufferbook.indexed_updates import (METHODS, ClassMeanTable, Counter, comparison_html,
                                        compare_index_updates, count_up, counts_figure,
                                        format_table, repeats_note)
from bufferbook.widget_states import text_html

matplotlib.use("Agg")


def loop_accumulate(size, indices, value):
    """Reference: add ``value`` once per occurrence, one index at a time."""
    out = [0] * size
    for i in indices:
        out[i] += value
    return out


def loop_assign(size, indices, value):
    """Reference: set each mentioned slot to ``value`` (duplicates do not matter)."""
    out = [0] * size
    for i in indices:
        out[i] = value
    return out


ACCUMULATING = ("index_add_", "index_put_(accumulate=True)", "scatter_add_", "expected")
NON_ACCUMULATING = ("buf[idx] = value", "buf[idx] += value")


@pytest.mark.parametrize("size, indices, value", [
    (5, [1, 3, 3, 0], 1),
    (4, [2, 2, 2, 2, 2], 3),
    (6, [], 7),
    (3, [0, 1, 2], -4),
    (8, [7, 0, 7, 0, 5, 7], 2),
])
def test_compare_index_updates_matches_loops(size, indices, value):
    results = compare_index_updates(size, indices, value)
    assert list(results) == list(METHODS) + ["expected"]
    for name in ACCUMULATING:
        assert results[name].tolist() == loop_accumulate(size, indices, value), name
        assert results[name].dtype == torch.long
    for name in NON_ACCUMULATING:
        assert results[name].tolist() == loop_assign(size, indices, value), name
        assert results[name].dtype == torch.long


def test_compare_index_updates_random_duplicates():
    rng = random.Random(4)
    for _ in range(20):
        size = rng.randint(1, 10)
        indices = [rng.randrange(size) for _ in range(rng.randint(0, 30))]
        value = rng.randint(-5, 5)
        results = compare_index_updates(size, indices, value)
        assert results["index_add_"].tolist() == loop_accumulate(size, indices, value)
        assert results["buf[idx] += value"].tolist() == loop_assign(size, indices, value)


def test_duplicates_make_the_two_families_differ():
    results = compare_index_updates(5, [1, 3, 3, 0], 1)
    assert results["buf[idx] += value"][3].item() == 1
    assert results["index_add_"][3].item() == 2
    assert not torch.equal(results["buf[idx] += value"], results["index_add_"])
    # without duplicates they agree
    distinct = compare_index_updates(5, [1, 3, 0], 1)
    assert all(torch.equal(distinct[m], distinct["expected"]) for m in METHODS)


def test_each_method_gets_its_own_buffer():
    results = compare_index_updates(3, [0], 1)
    ptrs = {results[name].data_ptr() for name in results}
    assert len(ptrs) == len(results)


@pytest.mark.parametrize("size, indices", [(3, [3]), (3, [-1]), (2, [0, 1, 5])])
def test_compare_index_updates_rejects_out_of_range(size, indices):
    with pytest.raises(ValueError, match=r"outside \[0, "):
        compare_index_updates(size, indices, 1)


@pytest.mark.parametrize("value", [0.5, True, "1"])
def test_compare_index_updates_rejects_non_int_value(value):
    with pytest.raises(TypeError, match="value must be an int"):
        compare_index_updates(3, [0], value)


def test_compare_index_updates_rejects_empty_size():
    with pytest.raises(ValueError, match="size must be at least 1"):
        compare_index_updates(0, [], 1)


def test_format_table_marks_lost_rows():
    table = format_table(compare_index_updates(5, [1, 3, 3, 0], 1))
    lines = table.splitlines()
    assert len(lines) == 2 + len(METHODS) + 1
    verdicts = {line.split("|")[0].strip(): line.rsplit("|", 1)[1].strip() for line in lines[2:]}
    assert verdicts == {"buf[idx] = value": "LOST", "buf[idx] += value": "LOST",
                        "index_add_": "ok", "index_put_(accumulate=True)": "ok",
                        "scatter_add_": "ok", "expected": ""}
    cells = lines[2 + METHODS.index("index_add_")].split("|")[1].split()
    assert cells == ["1", "1", "0", "2", "0"]


def test_format_table_all_ok_without_duplicates():
    table = format_table(compare_index_updates(4, [0, 2], 5))
    assert "LOST" not in table
    assert table.count(" ok") == len(METHODS)


def test_repeats_note_names_each_repeated_index():
    assert repeats_note([1, 3, 3, 0]) == ("repeated: 3 (2 times); "
                                          "assignment keeps one write per slot")
    assert repeats_note([4, 0, 4, 0, 4]).startswith("repeated: 0 (2 times), 4 (3 times);")
    assert repeats_note([0, 1, 2]) == "no index repeats: every method agrees"
    assert repeats_note([]) == "no index repeats: every method agrees"


@pytest.mark.parametrize("indices, value", [((1, 3, 3, 0), 1), ((2, 2, 2, 2), -2), ((), 3)])
def test_comparison_html_is_the_table_and_the_note(indices, value):
    html = comparison_html(indices, value)
    table = format_table(compare_index_updates(5, indices, value))
    assert html == text_html(table + "\n\n" + repeats_note(indices))
    assert ("LOST" in html) == (len(set(indices)) < len(indices))


def test_comparison_html_refuses_indices_outside_the_buffer():
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        comparison_html((5,), 1)


def numpy_count_up(start, steps, dtype):
    """Reference: the same counter in numpy, one scalar addition per step."""
    counter, values = dtype(start), []
    for _ in range(steps):
        counter = dtype(counter + dtype(1))
        values.append(int(counter))
    return values


@pytest.mark.parametrize("start", [2**24 - 3, 2**24, 2**24 + 2, 2**24 + 6, 2**25, 2**25 + 4])
def test_count_up_matches_numpy_float32_and_exact_ints(start):
    assert count_up(start, 4, torch.float32) == numpy_count_up(start, 4, np.float32)
    assert count_up(start, 4, torch.float64) == [start + k for k in range(1, 5)]
    assert count_up(start, 4, torch.long) == [start + k for k in range(1, 5)]


def test_count_up_float32_stalls_at_2_to_the_24():
    assert count_up(2**24 - 2, 4, torch.float32) == [2**24 - 1, 2**24, 2**24, 2**24]
    assert count_up(2**24 + 2, 3, torch.float32) == [2**24 + 4] * 3


def test_counts_figure_draws_both_bar_series():
    import matplotlib.pyplot as plt

    fig = counts_figure([3, 0, 5], [1, 0, 1])
    ax = fig.axes[0]
    heights = [[bar.get_height() for bar in group] for group in ax.containers]
    assert heights == [[3, 0, 5], [1, 0, 1]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "Counter (index_add_)", "counts[ids] += 1"]
    assert ax.get_ylim()[1] > 5
    plt.close(fig)


def test_counter_counts_every_occurrence():
    torch.manual_seed(0)
    counter = Counter(10)
    seen = []
    for _ in range(5):
        ids = torch.randint(0, 10, (4, 7))
        out = counter(ids)
        assert out is ids
        seen.extend(ids.flatten().tolist())
    reference = [seen.count(i) for i in range(10)]
    assert counter.counts.tolist() == reference
    assert torch.equal(counter.counts, torch.bincount(torch.tensor(seen), minlength=10))
    assert sum(reference) == 5 * 4 * 7


def test_counter_buffer_is_long_registered_and_updated_in_place():
    counter = Counter(4)
    before = counter.counts
    counter(torch.tensor([3, 3, 3]))
    assert counter.counts is before
    assert counter.counts.dtype == torch.long
    assert dict(counter.named_buffers()).keys() == {"counts"}
    assert list(counter.parameters()) == []
    assert counter.state_dict()["counts"].tolist() == [0, 0, 0, 3]


def test_counter_accepts_int32_ids_and_stays_long():
    counter = Counter(3)
    counter(torch.tensor([0, 2, 2], dtype=torch.int32))
    assert counter.counts.tolist() == [1, 0, 2]
    assert counter.counts.dtype == torch.long


def test_counter_keeps_long_under_half_and_double():
    counter = Counter(3)
    counter(torch.tensor([1, 1]))
    assert counter.half().counts.dtype == torch.long
    assert counter.double().counts.dtype == torch.long
    assert counter.counts.tolist() == [0, 2, 0]


def test_counter_reset_and_out_of_range():
    counter = Counter(3)
    counter(torch.tensor([0, 1]))
    counter.reset()
    assert counter.counts.tolist() == [0, 0, 0]
    with pytest.raises(IndexError):
        counter(torch.tensor([3]))


def loop_class_means(batches, num_classes, dim):
    """Reference: per-class mean of every row seen, NaN for classes never seen."""
    sums = [[0.0] * dim for _ in range(num_classes)]
    counts = [0] * num_classes
    for features, labels in batches:
        for row, label in zip(features.tolist(), labels.tolist()):
            counts[label] += 1
            for j in range(dim):
                sums[label][j] += row[j]
    return [[s / counts[c] if counts[c] else float("nan") for s in sums[c]]
            for c in range(num_classes)], counts


def test_class_mean_table_matches_loop():
    torch.manual_seed(1)
    table = ClassMeanTable(num_classes=4, dim=3)
    batches = []
    for _ in range(6):
        labels = torch.randint(0, 3, (9,))  # class 3 never appears
        features = torch.randn(9, 3)
        batches.append((features, labels))
        table(features, labels)
    means, counts = loop_class_means(batches, 4, 3)
    assert table.counts.tolist() == counts
    assert counts[3] == 0
    expected = torch.tensor(means)
    assert torch.allclose(table.means(), expected, equal_nan=True, atol=1e-5)
    assert torch.isnan(table.means()[3]).all()
    assert not torch.isnan(table.means()[:3]).any()


def test_class_mean_table_counts_repeated_labels_in_one_batch():
    table = ClassMeanTable(2, 1)
    table(torch.tensor([[1.0], [3.0], [8.0]]), torch.tensor([0, 0, 1]))
    assert table.counts.tolist() == [2, 1]
    assert table.means().flatten().tolist() == [2.0, 8.0]


def test_class_mean_table_eval_does_not_update():
    table = ClassMeanTable(2, 1)
    table(torch.tensor([[4.0]]), torch.tensor([1]))
    table.eval()
    out = table(torch.tensor([[100.0]]), torch.tensor([1]))
    assert table.counts.tolist() == [0, 1]
    assert out[1].item() == 4.0


def test_class_mean_table_buffers_stay_out_of_autograd():
    table = ClassMeanTable(2, 2)
    features = torch.randn(3, 2, requires_grad=True)
    table(features, torch.tensor([0, 1, 1]))
    assert not table.sums.requires_grad
    assert table.sums.grad_fn is None
    assert dict(table.named_buffers()).keys() == {"sums", "counts"}
    assert table.counts.dtype == torch.long
