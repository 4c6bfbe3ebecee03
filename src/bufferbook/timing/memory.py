"""Chapter 5, section 5.4: the memory an update costs.

- `allocated_bytes`: bytes of new tensor storage the aten ops of a call allocate (any device).
- `peak_extra_bytes`: peak CUDA memory a call adds above what was in use (CUDA only).
- `minor_page_faults`: page faults a call causes on the CPU: one per page of fresh memory the
  operating system hands out and the call writes for the first time.
"""
import torch


def allocated_bytes(fn):
    """Chapter 5, section 5.4: bytes of new tensor storage the aten ops run by ``fn`` allocate.

    Counted with a ``TorchDispatchMode``: every op output whose storage is not one of the op's
    inputs' is a fresh allocation. Works on any device; an in-place update allocates 0 bytes.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    def storages(tree):
        return {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in tree_leaves(tree) if isinstance(t, torch.Tensor)}

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            seen = storages((args, kwargs))
            Counter.total += sum(n for ptr, n in storages(out).items() if ptr not in seen)
            return out

    with Counter():
        fn()
    return Counter.total


def peak_extra_bytes(fn, device="cuda"):
    """Chapter 5, section 5.4 (CUDA only): peak bytes allocated by ``fn`` above what was in use.

    ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
    """
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def minor_page_faults(fn):
    """Chapter 5, section 5.4: minor page faults of this process while ``fn`` runs (Linux, CPU).

    Memory fresh from the operating system is mapped lazily: the first write to each page
    faults, and the kernel supplies a zeroed page. A tensor allocated from fresh memory and
    then written costs about one fault per page (4 KiB, or 2 MiB with transparent huge pages);
    reusing memory the process already touched costs none. Read with ``getrusage``, so faults
    of other threads of the process count too (a few, at most, when nothing else runs).
    """
    import resource  # Unix only: imported here so the rest of the lab runs anywhere

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
