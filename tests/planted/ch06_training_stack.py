"""Planted wrong answers for ch06_training_stack: mistakes students really make, each the
trap chapter 6 teaches.

``WRONG_ANSWERS`` fail the visible and the hidden tests of their question;
``HIDDEN_ONLY`` pass the visible test and fail only the hidden ones (see
tests/planted/ch01_buffers.py).
"""

_ROPE_INIT = '''class RopeTable(nn.Module):
    def __init__(self, dim, base=10000.0):
        super().__init__()
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", rope_inv_freq(dim, base), persistent=False)
'''

WRONG_ANSWERS = {
    # Section 6.3's non-fix: cast back in forward. model.to(torch.bfloat16) has already
    # rounded the buffer, and .float() cannot bring the digits back.
    "q1": _ROPE_INIT + '''
    def forward(self, positions):
        return torch.outer(positions.float(), self.inv_freq.float())
''',
    # Section 6.4's pitfall: meta, to_empty, load the checkpoint, and stop there. "All keys
    # matched successfully", but the non-persistent buffers hold unwritten memory.
    "q2": '''def materialize(build, checkpoint):
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    model.load_state_dict(checkpoint)
    return model
''',
    # The whole state dict averaged, as in a model soup: parameters are not buffers, and
    # each rank's own must be left alone.
    "q3": '''def sync_buffers(model, states, how):
    synced = [dict(state) for state in states]
    for name in states[0]:
        values = [state[name] for state in states]
        if how == "average" and values[0].is_floating_point():
            agreed = torch.stack(values).mean(0)
        else:
            agreed = values[0]
        for state in synced:
            state[name] = agreed.clone()
    return synced
''',
}

HIDDEN_ONLY = {
    # The cast the visible test makes is handled, by overriding .to() only. But .half(),
    # .double(), to_empty() and a parent model's .to() call _apply, never this .to().
    "q1": _ROPE_INIT + '''
    def forward(self, positions):
        return torch.outer(positions.float(), self.inv_freq)

    def to(self, *args, **kwargs):
        super().to(*args, **kwargs)
        self.inv_freq = rope_inv_freq(self.dim, self.base, device=self.inv_freq.device)
        return self
''',
    # Right for a checkpoint that fits; with strict=False a missing or unexpected key is
    # returned in the result, which nobody reads, instead of raised (section 6.9).
    "q2": '''def materialize(build, checkpoint):
    with torch.device("meta"):
        model = build()
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_buffers"):
            module.reset_buffers()
    model.load_state_dict(checkpoint, strict=False)
    return model
''',
    # Every buffer averaged, integers through float and back to their dtype: right while the
    # ranks' counters agree (the visible test), wrong for rank-local pointers and counts.
    "q3": '''def sync_buffers(model, states, how):
    names = [name for name, _ in model.named_buffers() if name in states[0]]
    synced = [dict(state) for state in states]
    for name in names:
        values = [state[name] for state in states]
        if how == "average":
            agreed = torch.stack([v.double() for v in values]).mean(0)
            agreed = agreed.to(values[0].dtype)
        else:
            agreed = values[0].clone()
        for state in synced:
            state[name] = agreed.clone()
    return synced
''',
}
