"""Planted wrong answers for assignment ch02_replacement (used by tests/test_grading_roundtrip.py).

Each one is a mistake a student would really make; it must fail every test cell of its own
question (visible and hidden) and no other question's.
"""

WRONG_ANSWERS = {
    # The chapter's main trap (section 2.1): "just assign a new tensor". The module's buffers
    # are right, still registered and persistent, but every reference held before is stale.
    "q1": '''def reset_stats_(module):
    """Reset ``running_mean`` to 0, ``running_var`` to 1 and ``num_batches_tracked`` to 0."""
    if module.running_mean is None:
        raise ValueError("this module does not track running statistics")
    module.running_mean = torch.zeros_like(module.running_mean)
    module.running_var = torch.ones_like(module.running_var)
    module.num_batches_tracked = torch.zeros_like(module.num_batches_tracked)
''',
    # Section 2.6: load_state_dict(assign=True) rebinds each buffer to the checkpoint's own
    # tensor, so the module takes the checkpoint's dtype and loses the buffer objects. The
    # selection of keys and both error checks are right.
    "q2": '''def load_buffers_(module, checkpoint):
    """Load the persistent buffers of ``module`` from ``checkpoint``; return their names."""
    buffers = dict(module.named_buffers())
    names = [name for name in module.state_dict() if name in buffers]
    for name in names:
        if name not in checkpoint:
            raise KeyError(name)
        if checkpoint[name].shape != buffers[name].shape:
            raise ValueError(name)
    module.load_state_dict({name: checkpoint[name] for name in names}, strict=False, assign=True)
    return names
''',
    # Section 2.4: register_buffer again defaults to persistent=True, so a non-persistent
    # buffer silently joins the state_dict. Everything else is right.
    "q3": '''def grow_buffer_(module, name, length):
    """Replace buffer ``name`` by a longer tensor: old rows first, zeros after."""
    prefix, _, leaf = name.rpartition(".")
    owner = module.get_submodule(prefix) if prefix else module
    if leaf not in owner._buffers:
        raise KeyError(name)
    old = owner._buffers[leaf]
    if length < old.shape[0]:
        raise ValueError(name)
    new = torch.zeros((length, *old.shape[1:]), dtype=old.dtype, device=old.device)
    new[: old.shape[0]] = old
    owner.register_buffer(leaf, new)
    return new
''',
}
