"""Small helpers the chapters use to turn a claim into an executed check.

`error_message` runs a call that must fail and returns torch's own message, so a chapter can
quote it and assert it word for word (see any chapter's "exact error messages" section).
"""


def error_message(fn, *args, expected=Exception, **kwargs):
    """Call ``fn(*args, **kwargs)``, which must raise ``expected``; return ``str()`` of the error.

    Raises AssertionError if the call returns normally or raises another exception type, so a
    claim such as "this raises a KeyError" fails loudly when it stops being true.

    >>> error_message(int, "x", expected=ValueError)
    "invalid literal for int() with base 10: 'x'"
    """
    try:
        fn(*args, **kwargs)
    except expected as exc:
        return exc.args[0] if len(exc.args) == 1 and isinstance(exc.args[0], str) else str(exc)
    raise AssertionError(f"{getattr(fn, '__name__', fn)!r} did not raise {expected.__name__}")
