"""Feedback pages students can open safely and that give nothing of the hidden tests away.

``PrivateFeedback`` (a ``GenerateFeedback`` preprocessor, before the HTML export) removes any
hidden-test region from the cells and replaces what a hidden test cell printed (a traceback
quotes the failing line and its inputs) by one line; hidden tests decided by verdicts.py already
carry only their verdict in words. It drops widget state (the page would load the widget manager
from a CDN) and widget views.

``configure`` sets the HTML side: nbconvert's ``sanitize_html`` for outputs, and the template
``templates/sandboxed_feedback`` (nbgrader's, with escaped grade ids, sanitized Markdown and no
MathJax script), so the page loads nothing from the network and runs no student script.
"""
import os

from nbformat.v4 import new_output
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def nbgrader_templates():
    """nbgrader's own template folder (the feedback template extends its classic base)."""
    import nbgrader
    return os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader",
                        "templates")


class PrivateFeedback(NbGraderPreprocessor):
    """Strip hidden tests (source and what they printed) and widget state from feedback."""

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                data.pop(WIDGET_VIEW)
                data.setdefault("text/plain", "[interactive widget]")
        if is_grade(cell) and not is_solution(cell) and \
                ClearHiddenTests()._remove_hidden_test_region(cell):
            failed = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            cell.outputs = [new_output("error", ename="HiddenTestFailed",
                                       evalue="a hidden test failed",
                                       traceback=["HiddenTestFailed: a hidden test failed"])
                            ] if failed else []
        return cell, resources


def configure_feedback(c):
    """GenerateFeedback settings: PrivateFeedback, sanitized HTML, the offline template."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    c.GenerateFeedback.preprocessors = [GetGrades, PrivateFeedback, CSSHTMLHeaderPreprocessor]
    c.HTMLExporter.sanitize_html = True
    c.HTMLExporter.template_name = "sandboxed_feedback"
    c.HTMLExporter.extra_template_basedirs = [TEMPLATES, nbgrader_templates()]
    # where the template's bootstrap.min.css is inlined from (GenerateFeedback sets the same)
    c.HTMLExporter.extra_template_paths = [os.path.join(
        os.path.dirname(nbgrader_templates()), "static", "node_modules", "bootstrap", "dist", "css")]
