"""Helpers for the probes of a ``verdicts.py`` (imported before any student code runs).

The functions here hold references to torch's and Python's own functions taken at import time, so
a student who later replaces ``nn.Module.state_dict`` or ``builtins.isinstance`` changes what
their own code sees, not what these helpers report.
"""
from builtins import AttributeError, Exception, IndexError, KeyError, RuntimeError  # noqa: A004
from builtins import TypeError, ValueError, isinstance, sorted, type  # noqa: A004

from torch import nn

_named_buffers = nn.Module.named_buffers
_named_parameters = nn.Module.named_parameters
_state_dict = nn.Module.state_dict
KNOWN_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError)


def raises(fn, *args, **kwargs):
    """The outcome of ``fn(*args, **kwargs)``: "ok", or the builtin error class it raised
    ("ValueError", ...; a student's own class named ValueError reports as "Exception")."""
    try:
        fn(*args, **kwargs)
    except KNOWN_ERRORS as exc:
        for cls in KNOWN_ERRORS:
            if isinstance(exc, cls):
                return cls.__name__
    except Exception:  # noqa: BLE001 (any other error is an answer too)
        return "Exception"
    return "ok"


def buffer_names(module):
    """Sorted dotted names of the module's registered buffers."""
    return sorted(name for name, _ in _named_buffers(module))


def parameter_names(module):
    """Sorted dotted names of the module's parameters."""
    return sorted(name for name, _ in _named_parameters(module))


def buffers(module):
    """{dotted name: tensor} of the registered buffers, as torch itself lists them."""
    return dict(_named_buffers(module))


def parameters(module):
    """{dotted name: parameter} as torch itself lists them."""
    return dict(_named_parameters(module))


def state(module):
    """{key: tensor} of torch's own state_dict of the module (a student override is bypassed)."""
    return dict(_state_dict(module))


def kind(value):
    """The type name of a value (to return what a function gave back without the object)."""
    return type(value).__name__
