"""Planted wrong answers for ch02_replacement: mistakes students really make.

``WRONG_ANSWERS`` fail the visible and the hidden tests of their question;
``HIDDEN_ONLY`` pass the visible test and fail only the hidden ones (see
tests/planted/ch01_buffers.py).
"""

WRONG_ANSWERS = {
    # The chapter's main trap: "just assign a new tensor". The module's buffers are
    # right and registered, but every reference held before is stale.
    "q1": '''def reset_stats_(module):
    module.running_mean = torch.zeros_like(module.running_mean)
    module.running_var = torch.ones_like(module.running_var)
    module.num_batches_tracked = torch.zeros_like(module.num_batches_tracked)
''',
    # load_state_dict(assign=True) rebinds each buffer to the checkpoint's tensor:
    # the module takes the checkpoint's dtype and loses the buffer objects.
    "q2": '''def load_buffers_(module, checkpoint):
    buffers = dict(module.named_buffers())
    names = [name for name in module.state_dict() if name in buffers]
    module.load_state_dict({name: checkpoint[name] for name in names},
                           strict=False, assign=True)
    return names
''',
    # register_buffer again defaults to persistent=True: a non-persistent buffer
    # silently joins the state_dict.
    "q3": '''def grow_buffer_(module, name, length):
    prefix, _, leaf = name.rpartition(".")
    owner = module.get_submodule(prefix) if prefix else module
    old = owner._buffers[leaf]
    new = torch.zeros((length, *old.shape[1:]), dtype=old.dtype, device=old.device)
    new[: old.shape[0]] = old
    owner.register_buffer(leaf, new)
    return new
''',
}

HIDDEN_ONLY = {
    # Resets the float buffers in place but rebinds the counter: the visible test
    # only reads the counter's value.
    "q1": '''def reset_stats_(module):
    with torch.no_grad():
        module.running_mean.zero_()
        module.running_var.fill_(1)
    module.num_batches_tracked = torch.tensor(0)
''',
    # Loads every buffer it finds in the checkpoint, non-persistent ones included.
    "q2": '''def load_buffers_(module, checkpoint):
    names = []
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name in checkpoint:
                buffer.copy_(checkpoint[name])
                names.append(name)
    return names
''',
    # Right for a buffer of the module itself, wrong for a dotted name.
    "q3": '''def grow_buffer_(module, name, length):
    old = module._buffers[name]
    new = torch.zeros((length, *old.shape[1:]), dtype=old.dtype, device=old.device)
    new[: old.shape[0]] = old
    setattr(module, name, new)
    return new
''',
}
