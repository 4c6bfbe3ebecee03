"""The grading function that runs anywhere: a local worker process or a Dask worker on another
machine (book/instructor-guide.md, "Grading in parallel"). No shared filesystem is assumed.

``grade(job, context)`` gets one submission's files (bytes) and the assignment's ``context``
(built once by the coordinator, ``make_context``: the nbgrader config, the instructor source of
the assignment, a scratch gradebook holding the assignment, the verdict secret and the cached
reference verdicts). It grades the submission in a private scratch course with nbgrader's own
Autograde converter, running the expensive steps only (sanitizing, the sandboxed kernel, the
hidden-test verdicts: ``REMOTE_STEPS``), and returns each notebook as graded and what the report
must say about it. The coordinator (parallel.py) then runs the remaining steps, which write the
gradebook, the report and the autograded folder, with nbgrader's converter on the real course.

A worker needs the repository, its ``.venv`` and bubblewrap; nothing of the course.
"""
import copy
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings

from nbgrader.preprocessors import SaveAutoGrades
from sqlalchemy.exc import SAWarning

from . import report

# Autograde steps after which the notebook goes back to the coordinator: everything up to (not
# including) the first step that writes the gradebook.
FIRST_LOCAL_STEP = SaveAutoGrades
_courses = {}  # context key -> scratch course root, one per process and assignment version


def split_steps(steps):
    """(remote steps, local steps) of an autograde preprocessor list."""
    steps = list(steps)
    cut = steps.index(FIRST_LOCAL_STEP) if FIRST_LOCAL_STEP in steps else len(steps)
    return steps[:cut], steps[cut:]


def pack_folder(folder, skip=()):
    """A folder's plain files as {relative path: bytes} (links and special files are never read:
    the coordinator cleaned the folder first)."""
    files = {}
    for base, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(base, d)))
        for name in sorted(names):
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder)
            if rel in skip or os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as fh:
                files[rel] = fh.read()
    return files


def unpack_folder(files, folder):
    """Write {relative path: bytes} below ``folder`` (no path may leave it)."""
    root = os.path.realpath(folder)
    for rel, data in files.items():
        path = os.path.realpath(os.path.join(root, rel))
        if not path.startswith(root + os.sep):
            raise ValueError(f"{rel!r} leaves the folder")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)


def scratch_gradebook(db_url, assignment):
    """Bytes of a new SQLite gradebook that holds ``assignment`` as the gradebook at ``db_url``
    does (its notebooks and cells, no student), for a worker's scratch course."""
    import sqlite3

    from nbgrader.api import Gradebook
    from sqlalchemy import text
    with tempfile.TemporaryDirectory(prefix="scratch-gradebook-") as tmp:
        path = os.path.join(tmp, "gradebook.db")
        with Gradebook(db_url) as src:
            version = src.db.execute(text("SELECT version_num FROM alembic_version")).scalar()
        with sqlite3.connect(path) as con:  # nbgrader would ask alembic (a new process) for it
            con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
            con.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (version,))
        with Gradebook(db_url) as src, Gradebook(f"sqlite:///{path}") as dst:
            found = src.find_assignment(assignment)
            dst.update_or_create_assignment(assignment, duedate=found.duedate)
            for nb in found.notebooks:
                dst.update_or_create_notebook(nb.name, assignment, kernelspec=nb.kernelspec)
                for cell in nb.grade_cells:
                    dst.update_or_create_grade_cell(cell.name, nb.name, assignment,
                                                    max_score=cell.max_score,
                                                    cell_type=cell.cell_type)
                for cell in nb.solution_cells:
                    dst.update_or_create_solution_cell(cell.name, nb.name, assignment)
                for cell in nb.task_cells:
                    dst.update_or_create_task_cell(cell.name, nb.name, assignment,
                                                   max_score=cell.max_score,
                                                   cell_type=cell.cell_type)
                for cell in nb.source_cells:
                    dst.update_or_create_source_cell(cell.name, nb.name, assignment,
                                                     cell_type=cell.cell_type, locked=cell.locked,
                                                     source=cell.source, checksum=cell.checksum)
        with open(path, "rb") as fh:
            return fh.read()


def make_context(config, coursedir, assignment):
    """What every worker needs to grade ``assignment`` (a picklable dict; see ``grade``)."""
    from .guard import state_dir
    source = coursedir.format_path(coursedir.source_directory, ".", assignment)
    cache = os.path.join(state_dir(config), "verdict-cache", assignment)
    secret_path = os.path.join(state_dir(config), "verdict-secret")
    context = {
        "assignment": assignment,
        "config": copy.deepcopy(config),
        "source": pack_folder(source),
        "gradebook": scratch_gradebook(coursedir.db_url, assignment),
        "secret": open(secret_path, "rb").read() if os.path.exists(secret_path) else None,
        "reference": pack_folder(cache, skip={".lock"}) if os.path.isdir(cache) else {},
    }
    digest = hashlib.sha256()
    for key in ("source", "reference"):
        for rel, data in sorted(context[key].items()):
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    digest.update(context["gradebook"] + (context["secret"] or b""))
    digest.update(json.dumps(str(sorted(config.items())), default=str).encode())
    context["key"] = f"{assignment}-{digest.hexdigest()[:16]}"
    return context


def _scratch_course(context):
    """This process's scratch course for ``context`` (made on first use)."""
    root = _courses.get(context["key"])
    if root and os.path.isdir(root):
        return root
    root = tempfile.mkdtemp(prefix=f"grading-{context['assignment']}-")
    aid = context["assignment"]
    unpack_folder(context["source"], os.path.join(root, "solutions", aid))
    course = os.path.join(root, "course")
    os.makedirs(course, mode=0o700)
    if context["secret"] is not None:
        fd = os.open(os.path.join(course, "verdict-secret"), os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(context["secret"])
    cache = os.path.join(course, "verdict-cache", aid)
    os.makedirs(cache, mode=0o700)
    unpack_folder(context["reference"], cache)
    _courses[context["key"]] = root
    return root


def _config_for(context, root, student):
    from traitlets.config import Config
    from nbgrader.converters import Autograde
    config = Config(copy.deepcopy(context["config"]))
    config.CourseDirectory.root = root
    config.CourseDirectory.db_url = "sqlite:///" + os.path.join(root, "course", "gradebook.db")
    config.CourseDirectory.assignment_id = context["assignment"]
    config.CourseDirectory.student_id = student
    config.CourseDirectory.notebook_id = "*"
    config.BaseConverter.force = config.Autograde.force = True
    config.WriteReport.directory = os.path.join(root, "course", "reports")
    config.CheckVerdicts.secret_file = ""
    steps = config.Autograde.autograde_preprocessors \
        if "autograde_preprocessors" in config.Autograde \
        else Autograde.class_traits()["autograde_preprocessors"].default()
    config.Autograde.autograde_preprocessors = split_steps(steps)[0]
    return config


def grade(job, context):
    """Grade one submission; return {"notebooks": {name: JSON text}, "report": {name: entry},
    "seconds", "worker", "error"}. ``job``: {"student", "files": {relative path: bytes}}."""
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    start = time.monotonic()
    aid, student = context["assignment"], job["student"]
    root = _scratch_course(context)
    submitted = os.path.join(root, "course", "submitted", student, aid)
    autograded = os.path.join(root, "course", "autograded", student, aid)
    from .trees import remove_tree
    for folder in (submitted, autograded):
        if os.path.lexists(folder):
            remove_tree(folder)
    unpack_folder(job["files"], submitted)
    with open(os.path.join(root, "course", "gradebook.db"), "wb") as fh:
        fh.write(context["gradebook"])  # a fresh scratch gradebook for every submission
    config = _config_for(context, root, student)
    coursedir = CourseDirectory(config=config)
    log = io.StringIO()
    logger = logging.getLogger(f"sandboxed_grading.worker.{os.getpid()}")
    logger.handlers[:] = [logging.StreamHandler(log)]
    logger.propagate, logger.level = False, logging.INFO
    converter = Autograde(coursedir=coursedir, config=config, log=logger)
    cwd = os.getcwd()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SAWarning)  # nbgrader's session warnings, each call
            converter.start()
    except Exception as exc:  # noqa: BLE001 (reported to the coordinator, which retries)
        log.write(f"{type(exc).__name__}: {exc}\n")
    finally:
        os.chdir(cwd)
    notebooks, entries = {}, {}
    if os.path.isdir(autograded):
        for name in sorted(os.listdir(autograded)):
            if name.endswith(".ipynb"):
                with open(os.path.join(autograded, name), encoding="utf-8") as fh:
                    notebooks[name[:-len(".ipynb")]] = fh.read()
    for name in notebooks:
        resources = {"nbgrader": {"assignment": aid, "student": student, "notebook": name}}
        entries[name] = report.export(resources)
        report.reset(resources)
    report.reset({"nbgrader": {"assignment": aid, "student": student, "notebook": "*"}})
    for folder in (submitted, autograded):
        if os.path.lexists(folder):
            remove_tree(folder)
    error = None
    if not notebooks:
        lines = [line for line in log.getvalue().splitlines() if line.strip()]
        error = (lines[-1] if lines else "no notebook was graded")[:500]
    return {"student": student, "notebooks": notebooks, "report": entries, "error": error,
            "reference": {} if context["reference"] else reference_entries(root, aid),
            "seconds": time.monotonic() - start, "worker": os.uname().nodename}


class GradingFailed(RuntimeError):
    """A worker could not grade a submission (the coordinator reports it, never a silent 0)."""


def grade_or_raise(job, context):
    """``grade``, raising GradingFailed when no notebook came out (so that the engine retries)."""
    result = grade(job, context)
    if result["error"]:
        raise GradingFailed(result["error"])
    return result


def reference_entries(root, assignment):
    """The verdict-cache entries a scratch course computed (to send back to the coordinator)."""
    cache = os.path.join(root, "course", "verdict-cache", assignment)
    return pack_folder(cache, skip={".lock"}) if os.path.isdir(cache) else {}


def forget(context_key):
    """Remove this process's scratch course of ``context_key``."""
    root = _courses.pop(context_key, None)
    if root:
        shutil.rmtree(root, ignore_errors=True)
