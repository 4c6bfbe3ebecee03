"""Keep every submission in the gradebook, and notice tampering before nbgrader repairs it.

* ``GuardedNotebookExporter`` (``Autograde.exporter_class``): when a submission cannot be read or
  sanitized (invalid JSON, broken metadata, a cell claiming a newer nbgrader schema...), stock
  nbgrader drops it, or stops grading everyone. Here it is graded as the released notebook
  without answers: every graded cell scores 0 and the report says why.
* ``DetectTampering`` (first sanitize step): records locked cells that were edited or deleted and
  cells with grade ids the assignment does not have, and puts back the ``grade``/``points``
  metadata of graded cells, which nbgrader's OverwriteCells does not restore.
* ``quarantine_links`` (``Autograde.pre_convert_hook``): deletes symlinks and special files from
  the submitted folder before nbgrader copies its files (a link to the gradebook would be copied
  as the gradebook's content).
"""
import json
import os

import nbformat
import sqlalchemy
from nbconvert.exporters import NotebookExporter
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, NbGraderPreprocessor
from nbgrader.utils import is_grade

from . import report
from .sandbox import SandboxUnavailable, remove_escapes


class GuardedNotebookExporter(NotebookExporter):
    """NotebookExporter that grades an unreadable submission as the release without answers."""

    def from_filename(self, filename, resources=None, **kw):
        sanitizing = getattr(self.parent, "_sanitizing", True)
        if sanitizing and resources and "nbgrader" in resources:
            report.reset(resources)
        try:
            return super().from_filename(filename, resources=resources, **kw)
        except (SandboxUnavailable, sqlalchemy.exc.SQLAlchemyError, KeyboardInterrupt) as exc:
            if isinstance(exc, SandboxUnavailable) and resources and "nbgrader" in resources:
                report.flag(resources, "refused", str(exc))
                report.save(report.reports_dir(self.config), resources)
            raise
        except Exception as exc:
            if not resources or "nbgrader" not in resources:
                raise
            kind = "invalid notebook" if sanitizing else "grading error"
            reason = f"{type(exc).__name__}: {exc}"
            self.log.error("There was an error processing assignment: %s: %s; every graded cell "
                           "scores 0 (see the grading report)", filename, reason)
            report.flag(resources, kind, reason)
            if sanitizing:
                nb = released_skeleton(resources["nbgrader"], self.config)
            else:  # keep the sanitized cells, but run nothing
                nb = nbformat.read(filename, as_version=4)
            nb.metadata["sandboxed_grading"] = {"not_run": f"{kind}: {reason}"[:500]}
            return self.from_notebook_node(nb, resources=resources, **kw)


def released_skeleton(nbg, config):
    """The notebook's cells as released, without any answer: locked cells as students got them
    (hidden tests removed), answer cells empty. Stands in for a submission that cannot be read."""
    hide = ClearHiddenTests(config=config)
    with Gradebook(nbg["db_url"]) as gb:
        source = gb.find_notebook(nbg["notebook"], nbg["assignment"])
        points = {c.name: c.max_score for c in source.grade_cells}
        solutions = {c.name for c in source.solution_cells}
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": source.kernelspec and json.loads(source.kernelspec)})
        for c in source.source_cells:
            meta = {"grade": c.name in points, "grade_id": c.name, "locked": c.locked,
                    "solution": c.name in solutions, "schema_version": 3, "task": False}
            if c.name in points:
                meta["points"] = points[c.name]
            make = nbformat.v4.new_code_cell if c.cell_type == "code" else nbformat.v4.new_markdown_cell
            cell = make(c.source if c.locked else "# (the submitted notebook could not be read)",
                        metadata={"nbgrader": meta})
            if c.locked:
                hide._remove_hidden_test_region(cell)
            nb.cells.append(cell)
    return nb


class DetectTampering(NbGraderPreprocessor):
    """Sanitize step before OverwriteCells: record (and undo) edits to locked and graded cells."""

    def preprocess(self, nb, resources):
        nbg = resources["nbgrader"]
        try:
            with Gradebook(nbg["db_url"]) as gb:
                source = gb.find_notebook(nbg["notebook"], nbg["assignment"])
                cells = [(c.name, c.cell_type, c.source, c.locked) for c in source.source_cells]
                points = {c.name: c.max_score for c in source.grade_cells}
        except MissingEntry:
            return nb, resources
        hide = ClearHiddenTests(config=self.config)
        submitted = {}
        for cell in nb.cells:
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if grade_id:
                submitted.setdefault(grade_id, cell)
        known = {name for name, *_ in cells}
        for name in sorted(set(submitted) - known):
            report.flag(resources, "unknown cell", "nbgrader will ignore its grade id", name)
        for name, cell_type, source, locked in cells:
            cell = submitted.get(name)
            if cell is None:
                if locked or name in points:
                    report.flag(resources, "deleted cell", "missing from the submission", name)
                continue
            if locked:
                released = nbformat.NotebookNode(source=source, cell_type=cell_type, metadata={})
                hide._remove_hidden_test_region(released)
                if cell.get("source", "").strip() != released.source.strip():
                    report.flag(resources, "tampered cell", "its source was edited", name)
            meta = cell.metadata.nbgrader
            if name in points and (not is_grade(cell) or _points(meta) != points[name]):
                report.flag(resources, "tampered cell", "its grading metadata was edited", name)
                meta["grade"], meta["points"] = True, points[name]
        return nb, resources


def _points(meta):
    try:
        return float(meta.get("points"))
    except (TypeError, ValueError):
        return None


def quarantine_links(assignment=None, student=None, notebooks=(), **_):
    """pre_convert_hook: remove symlinks and special files from the submitted folders."""
    for folder in sorted({os.path.dirname(n) for n in notebooks}):
        resources = {"nbgrader": {"assignment": os.path.basename(folder),
                                  "student": os.path.basename(os.path.dirname(folder)),
                                  "notebook": "*"}}
        report.reset(resources)
        for name in remove_escapes(folder):
            report.flag(resources, "sandbox violation", f"submitted link or special file {name!r} deleted")
