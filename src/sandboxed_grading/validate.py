"""``nbgrader validate`` that tells the truth about hidden tests.

Stock nbgrader prints "Success! Your notebook passes all the tests." when the *visible* tests
pass, although the hidden ones (most of the points here) have not run: a notebook that scores 6
of 9 gets that line. ``truthful_validate`` replaces that one message (nbgrader has no setting for
it); every other message, and what validate checks, stay nbgrader's.
"""

SUCCESS = ("Your notebook passes its visible tests. The hidden tests run only when your notebook "
           "is graded, on inputs you have not seen: passing here does not mean full marks.\n")


def truthful_validate():
    """Patch nbgrader's Validator (idempotent); called by sandboxed_grading.configure."""
    from nbgrader.validator import Validator

    if getattr(Validator._print_num_failed, "truthful", False):
        return
    original = Validator._print_num_failed

    def _print_num_failed(self, num_failed):
        if num_failed == 0 and not self.invert:
            self.stream.write(SUCCESS)
        else:
            original(self, num_failed)

    _print_num_failed.truthful = True
    Validator._print_num_failed = _print_num_failed
