"""Keep every submission gradable, on its merits, and every folder a student controls harmless.

* ``clean_before_grading`` (``Autograde.pre_convert_hook``): before nbgrader reads a submitted
  folder, moves links, special files, over-deep folders and oversized files out of it into
  ``course/quarantine/`` (nothing is deleted), and marks the submission "in progress".
  ``finish_grading`` (``post_convert_hook``) clears the mark.
* ``GuardedNotebookExporter`` (``Autograde.exporter_class``): on start, regrades submissions a
  killed run left half done; a submission that cannot be read is graded as the released notebook
  without answers (0, with the reason) instead of being dropped or stopping the run.
* ``RebuildNotebook`` (first sanitize step): rebuilds the submission on the assignment's cells,
  so honest slips are graded on their merits: a deleted or edited locked cell comes back, an
  answer is found by its grade id (or, in a notebook without nbgrader metadata, by the names it
  defines), a duplicated cell or one with an unknown grade id is kept as an ordinary cell.
"""
import ast
import copy
import hashlib
import json
import os
import re
import time

import nbformat
import sqlalchemy
from nbconvert.exporters import NotebookExporter
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions, NbGraderPreprocessor

from . import report, trees
from .sandbox import SandboxUnavailable

_active = {}  # "config": the running autograde's config (set by GuardedNotebookExporter)


def state_dir(config):
    """The folder beside the gradebook holding reports, quarantine and run state (course/)."""
    return os.path.dirname(report.default_directory(CourseDirectory(config=config)))


def _marker(config, assignment, student):
    name = hashlib.sha256(f"{assignment}\0{student}".encode()).hexdigest()[:32]
    return os.path.join(state_dir(config), "in-progress", name + ".json")


def recover_interrupted(config, log=None):
    """Submissions a killed grading run left half graded: delete their autograded folder so this
    run grades them again. Returns [(assignment, student)]."""
    folder = os.path.join(state_dir(config), "in-progress")
    if not os.path.isdir(folder):
        return []
    coursedir = CourseDirectory(config=config)
    recovered = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        try:
            with open(path, encoding="utf-8") as fh:
                mark = json.load(fh)
            dest = coursedir.format_path(coursedir.autograded_directory, mark["student"],
                                         mark["assignment"])
            # the killed run may have been anywhere, even between removing the old autograded
            # folder and writing the new one: flagged either way
            if os.path.lexists(dest):
                trees.remove_tree(dest)
            recovered.append((mark["assignment"], mark["student"]))
            if log:
                log.warning("grading of %s/%s was interrupted earlier: grading it again",
                            mark["student"], mark["assignment"])
            os.unlink(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if log:
                log.warning("could not recover %s: %s", path, exc)
    return recovered


def start_run(config, log=None):
    """A grading run on this course starts: submissions a killed run left half graded are
    recovered (once per process and course: a parallel grader records many submissions)."""
    _active["config"] = config
    folder = state_dir(config)
    done = _active.setdefault("started", set())
    if folder not in done:
        done.add(folder)
        _active["recovered"] = set(recover_interrupted(config, log))
        from .limits import remove_stale_groups
        remove_stale_groups()


def _submission_of(folder):
    """(assignment, student) of a submitted folder .../<student>/<assignment>."""
    return os.path.basename(folder), os.path.basename(os.path.dirname(folder))


def clean_before_grading(assignment=None, student=None, notebooks=(), **_):
    """pre_convert_hook: mark the submission in progress, then move out of its submitted folder
    everything that is not a plain file or folder within bounds (see trees.clean_submission)."""
    config = _active.get("config")
    for folder in sorted({os.path.dirname(os.path.abspath(n)) for n in notebooks}):
        aid, sid = _submission_of(folder)
        resources = {"nbgrader": {"assignment": aid, "student": sid, "notebook": "*"}}
        report.reset(resources)
        if (aid, sid) in _active.get("recovered", ()):
            report.flag(resources, "interrupted", "an earlier grading run was killed while "
                        "grading this submission; it was graded again from the start")
        if config is None:
            continue
        marker = _marker(config, aid, sid)
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "w", encoding="utf-8") as fh:
            json.dump({"assignment": aid, "student": sid, "started": time.time()}, fh)
        quarantine = os.path.join(state_dir(config), "quarantine", aid, sid)
        keep = [os.path.basename(n) for n in notebooks] + ["timestamp.txt"]
        try:
            moved = trees.clean_submission(folder, quarantine, keep=keep)
        except Exception as exc:  # noqa: BLE001 (never leave a folder nbgrader cannot walk)
            moved = [(name, f"moved with everything else ({type(exc).__name__})")
                     for name in trees.quarantine_everything(folder, quarantine, keep=keep)]
        for path, reason in moved:
            report.flag(resources, "quarantined file", f"{path}: {reason}; moved to "
                        f"{os.path.relpath(quarantine, state_dir(config))}, not graded")


def finish_grading(assignment=None, student=None, notebooks=(), **_):
    """post_convert_hook: the submission was graded to the end; clear its in-progress mark."""
    config = _active.get("config")
    if config is None:
        return
    for folder in sorted({os.path.dirname(os.path.abspath(n)) for n in notebooks}):
        try:
            os.unlink(_marker(config, *_submission_of(folder)))
        except FileNotFoundError:
            pass


class GuardedNotebookExporter(NotebookExporter):
    """NotebookExporter that grades an unreadable submission as the release without answers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if type(self.parent).__name__ == "Autograde":
            start_run(self.config, self.log)

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
        except Exception as exc:  # noqa: BLE001
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
        kernelspec = source.kernelspec and json.loads(source.kernelspec)
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": kernelspec})
        for c in source.source_cells:
            meta = {"grade": c.name in points, "grade_id": c.name, "locked": c.locked,
                    "solution": c.name in solutions, "schema_version": 3, "task": False}
            if c.name in points:
                meta["points"] = points[c.name]
            make = (nbformat.v4.new_code_cell if c.cell_type == "code"
                    else nbformat.v4.new_markdown_cell)
            cell = make(c.source if c.locked else "# (the submitted notebook could not be read)",
                        metadata={"nbgrader": meta})
            if c.locked:
                hide._remove_hidden_test_region(cell)
            nb.cells.append(cell)
    return nb


# --- rebuilding a submission on the assignment's cells ------------------------------------------

def _nbgrader_meta(cell):
    meta = cell.get("metadata", {})
    found = meta.get("nbgrader") if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else {}


def _gid(cell):
    gid = _nbgrader_meta(cell).get("grade_id")
    return gid if isinstance(gid, str) else None


def defined_names(source):
    """Top-level names a code cell defines (functions, classes, assignments)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set(re.findall(r"^(?:def|class)\s+([A-Za-z_]\w*)", source, re.M))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _plain(cell):
    """The cell as an ordinary cell: no nbgrader metadata, no outputs."""
    cell = copy.deepcopy(cell)
    if isinstance(cell.get("metadata"), dict):
        cell["metadata"].pop("nbgrader", None)
    else:
        cell["metadata"] = {}
    return cell


def rebuild(submitted, source, stub):
    """The submission rebuilt on ``source``'s cells; returns (notebook, [repair notes]).

    ``stub(cell)`` gives an answer cell as released. Every cell of ``source`` that has a grade
    id appears once, in order; answer cells carry the student's text, found by grade id, else
    (no nbgrader metadata) by the names they define or by position; the student's other cells
    follow the cell they followed in the submission, as ordinary cells."""
    notes = []
    src_cells = [c for c in source.cells if _gid(c)]
    src_ids = [_gid(c) for c in src_cells]
    answers = {_gid(c) for c in src_cells if _nbgrader_meta(c).get("solution")}
    sub = submitted.cells
    mapped = {}          # source grade id -> index in submission
    taken = set()
    candidates = {}
    for i, cell in enumerate(sub):
        gid = _gid(cell)
        if gid in src_ids and cell.get("cell_type") == src_cells[src_ids.index(gid)].cell_type:
            candidates.setdefault(gid, []).append(i)
        elif gid is not None and gid not in src_ids:
            notes.append(f"a cell with grade id {gid!r}, which the assignment does not have, "
                         "was kept as an ordinary cell")
    for gid, found in candidates.items():
        if gid in answers:  # the last one the student changed (later definitions win)
            changed = [i for i in found if sub[i].source.strip() != stub(gid).source.strip()]
            pick = (changed or found)[-1]
        else:
            pick = found[0]
        mapped[gid] = pick
        taken.add(pick)
        if len(found) > 1:
            notes.append(f"{len(found) - 1} more cell(s) with grade id {gid!r} were kept as "
                         "ordinary cells")
    released = {gid: _released_source(c) for gid, c in zip(src_ids, src_cells)}
    if not mapped:  # a notebook without nbgrader metadata: match locked cells by their text
        for gid, cell in zip(src_ids, src_cells):
            if gid in answers:
                continue
            for i, other in enumerate(sub):
                if i not in taken and other.get("cell_type") == cell.cell_type and \
                        other.get("source", "").strip() == released[gid].strip():
                    mapped[gid] = i
                    taken.add(i)
                    break
    by_names = by_position = 0
    for gid, cell in zip(src_ids, src_cells):
        if gid not in answers or gid in mapped:
            continue
        wanted = defined_names(cell.source) if cell.cell_type == "code" else set()
        pick = None
        if wanted:
            fits = [i for i, other in enumerate(sub) if i not in taken
                    and other.get("cell_type") == "code" and wanted <= defined_names(other.source)]
            pick = fits[-1] if fits else None
            by_names += pick is not None
        if pick is None:
            before = src_ids[src_ids.index(gid) - 1] if src_ids.index(gid) else None
            after = mapped.get(before, -1) + 1 if before else 0
            if after < len(sub) and after not in taken and sub[after].get("cell_type") == cell.cell_type \
                    and (before is None or before in mapped):
                pick = after
                by_position += 1
        if pick is not None:
            mapped[gid] = pick
            taken.add(pick)
    if by_names or by_position:
        notes.append(f"{by_names + by_position} answer(s) had no grading metadata and were found "
                     "by the names they define or by their position")

    out = nbformat.v4.new_notebook(metadata=copy.deepcopy(submitted.get("metadata", {})))
    extras = {}          # submission index of the mapped cell they follow (-1: the top)
    last = -1
    for i, cell in enumerate(sub):
        if i in taken:
            last = i
        else:
            extras.setdefault(last, []).append(i)
    out.cells += [_plain(sub[i]) for i in extras.get(-1, [])]
    for gid, cell in zip(src_ids, src_cells):
        if gid in mapped:
            chosen = copy.deepcopy(sub[mapped[gid]])
            chosen["metadata"] = {**(chosen.get("metadata") if isinstance(chosen.get("metadata"), dict)
                                     else {}), "nbgrader": copy.deepcopy(_nbgrader_meta(cell))}
            out.cells.append(chosen)
            out.cells += [_plain(sub[i]) for i in extras.get(mapped[gid], [])]
        else:
            restored = stub(gid) if gid in answers else copy.deepcopy(cell)
            out.cells.append(restored)
            notes.append(f"{gid} was missing and was put back from the assignment"
                         + (" (empty answer)" if gid in answers else ""))
    return out, notes


def _released_source(cell):
    copied = copy.deepcopy(cell)
    ClearHiddenTests()._remove_hidden_test_region(copied)
    return copied.source


class RebuildNotebook(NbGraderPreprocessor):
    """First sanitize step: rebuild the submission on the source notebook's cells (see
    ``rebuild``) and record what was repaired and which locked cells were edited."""

    def preprocess(self, nb, resources):
        coursedir = CourseDirectory(config=self.config)
        nbg = resources["nbgrader"]
        path = os.path.join(coursedir.format_path(coursedir.source_directory, ".", nbg["assignment"]),
                            f"{nbg['notebook']}.ipynb")
        if not os.path.isfile(path):
            return nb, resources
        source = nbformat.read(path, as_version=4)
        clear = ClearSolutions(config=self.config)
        by_id = {_gid(c): c for c in source.cells if _gid(c)}

        def stub(gid):
            cell = copy.deepcopy(by_id[gid])
            clear._replace_solution_region(cell, "python")
            return cell

        edited, relabelled = [], []
        for cell in nb.cells:
            gid = _gid(cell)
            if gid not in by_id:
                continue
            if _nbgrader_meta(by_id[gid]).get("locked") and \
                    cell.get("source", "").strip() != _released_source(by_id[gid]).strip():
                edited.append(gid)
            theirs, ours = _nbgrader_meta(cell), _nbgrader_meta(by_id[gid])
            if any(_as_number(theirs.get(k)) != _as_number(ours.get(k))
                   for k in ("grade", "solution", "locked", "points")):
                relabelled.append(gid)
        rebuilt, notes = rebuild(nb, source, stub)
        for note in notes:
            report.flag(resources, "repaired notebook", note)
        for gid in dict.fromkeys(edited):
            report.flag(resources, "tampered cell", "a locked cell was edited; the original "
                        "was put back", gid)
        for gid in dict.fromkeys(relabelled):
            report.flag(resources, "tampered cell", "its grading metadata (grade, points, "
                        "locked or solution) was edited; the original was put back", gid)
        return rebuilt, resources


def _as_number(value):
    """Metadata values compared as nbgrader reads them (False == 0, "2" == 2.0)."""
    try:
        return float(value or 0)
    except (TypeError, ValueError):
        return value
