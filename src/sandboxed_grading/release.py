"""What the student release must not carry: the jupytext pairing of the instructor's notebook.

The solution notebooks are paired with a ``.py`` file (``metadata.jupytext.formats``). Released
as is, every save in a student's JupyterLab (with jupytext installed, as here) writes a stray
``.py`` beside the exercise. ``StripPairing`` (last ``GenerateAssignment`` step) drops that
metadata from the release.
"""
from nbgrader.preprocessors import NbGraderPreprocessor


class StripPairing(NbGraderPreprocessor):
    """Remove ``metadata.jupytext`` from the released notebook."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("jupytext", None)
        return nb, resources
