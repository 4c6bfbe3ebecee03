"""bufferbook.timing.updates (chapter 5, sections 5.3-5.6): the updates the lab times."""
import pytest
import torch

from bufferbook.timing import (BufferUpdates, bandwidth_rows, buffer_update_ops,
                               bytes_moved, cpu_bandwidth_ops, indexed_update_ops,
                               out_of_place_ops, small_buffer_ops, timing_rows)

from simulated import close, sim


def test_buffer_updates_module_registers_its_buffer_and_updates_correctly():
    torch.manual_seed(0)
    a, b = BufferUpdates(100), BufferUpdates(100)
    assert [name for name, _ in a.named_buffers()] == ["buf"]
    x = torch.randn(100)
    a.ema_lerp_(x, 0.25)
    b.ema_mul_add_(x, 0.25)
    torch.testing.assert_close(a.buf, 0.25 * x)
    torch.testing.assert_close(b.buf, 0.25 * x)
    old = a.buf
    a.add_(x)
    assert a.buf is old
    a.add_out_of_place(x)
    assert a.buf is not old and dict(a.named_buffers())["buf"] is a.buf
    torch.testing.assert_close(a.buf, 2.25 * x)
    a.copy_(x)
    assert torch.equal(a.buf, x)


def test_buffer_update_ops_on_cpu_run_and_charge_one_kernel_bytes_to_the_two_kernel_ema():
    ops = buffer_update_ops(1000, "cpu")
    assert ops["mul_ + add_"][1] == bytes_moved("lerp_", 1000) == ops["lerp_"][1]
    assert ops["copy_"][1] == bytes_moved("copy_", 1000)
    for fn, _ in ops.values():
        fn()
    rows = bandwidth_rows(ops, "cpu", ceiling_gbs=1.0, warmup=1, repeats=3)
    assert all(r["GB/s"] > 0 and r["% of copy"] == 100 * r["GB/s"] for r in rows)


def test_small_buffer_ops_on_cpu_agree_and_graph_needs_a_gpu():
    loop_ops = small_buffer_ops(5, 16, "cpu")
    foreach_ops = small_buffer_ops(5, 16, "cpu")
    assert set(loop_ops) == {"python loop", "torch._foreach_lerp_"}
    bufs_loop = loop_ops["python loop"]()
    bufs_foreach = foreach_ops["torch._foreach_lerp_"]()
    assert len(bufs_loop) == 5
    for a, b in zip(bufs_loop, bufs_foreach):
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0
    with pytest.raises(ValueError, match="graph capture needs"):
        small_buffer_ops(2, 4, "cpu", graph=True)


def test_small_buffer_ops_on_the_simulated_device():
    dev = sim()
    ops = small_buffer_ops(200, 4096, dev)
    us = {r["op"]: r["median_us"] for r in timing_rows(ops, dev)}
    assert close(us["python loop"], 200 * dev.launch_us)
    assert us["torch._foreach_lerp_"] < us["python loop"] / 100
    kernel = dev.kernel_us(bytes_moved("lerp_", 4096))
    assert close(us["graph replay of the loop"], 200 * kernel, 1e-6)


def test_indexed_update_ops_all_equal_bincount():
    ops = indexed_update_ops(64, 1000, seed=3)
    results = [fn().clone() for fn in ops.values()]
    gen = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 64, (1000,), generator=gen)
    vals = torch.randint(0, 4, (1000,), generator=gen).float()
    expected = torch.bincount(idx, weights=vals, minlength=64).float()
    assert len(results) == 4 and all(torch.equal(r, expected) for r in results)


def test_scale_multiplies_the_buffer_in_place():
    m = BufferUpdates(4)
    m.buf.fill_(3.0)
    old = m.buf
    m.scale_(0.5)
    assert m.buf is old and torch.equal(m.buf, torch.full((4,), 1.5))


def test_cpu_bandwidth_ops_add_mul_with_copy_bytes_on_the_shared_buffer():
    m, x = BufferUpdates(1000), torch.rand(1000)
    ops = cpu_bandwidth_ops(1000, module=m, x=x)
    assert list(ops) == ["copy_", "add_", "add (out of place)", "lerp_", "mul_ + add_", "mul_"]
    assert ops["mul_"][1] == bytes_moved("copy_", 1000) == ops["copy_"][1]
    ops["copy_"][0]()
    assert torch.equal(m.buf, x)
    ops["mul_"][0]()
    torch.testing.assert_close(m.buf, 0.5 * x)
    assert len(cpu_bandwidth_ops(10)) == 6  # its own module and input by default


def test_out_of_place_ops_give_the_same_sum_three_ways():
    m, y = BufferUpdates(1000), torch.rand(1000)
    fns = out_of_place_ops(1000, module=m, y=y)
    assert list(fns) == ["buf.add_(y)", "buf = buf + y", "add(buf, y, out=spare)"]
    old = m.buf
    fns["buf.add_(y)"]()
    assert m.buf is old
    torch.testing.assert_close(m.buf, y)
    fns["buf = buf + y"]()
    assert m.buf is not old and dict(m.named_buffers())["buf"] is m.buf
    torch.testing.assert_close(m.buf, 2 * y)
    spare = fns["add(buf, y, out=spare)"]()
    torch.testing.assert_close(spare, 3 * y)
    torch.testing.assert_close(m.buf, 2 * y)  # out= leaves the buffer alone
    assert set(out_of_place_ops(10)) == set(fns)
