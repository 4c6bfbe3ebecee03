"""What went wrong with each submission, kept for the instructor.

During grading the other steps call ``flag(resources, kind, detail, cell)``; the last step,
``WriteReport``, stores the notebook's flags, verdicts and score in
``<reports>/<assignment>.json`` and rewrites the readable ``<reports>/<assignment>.md``, which
lists every flagged submission with its reasons. Regrading a submission replaces its entry.

Everything a student controls (their id, grade ids, error text) is escaped before it goes into
the Markdown: it can neither add lines or headings nor open HTML comments or tags.
"""
import contextlib
import datetime
import fcntl
import html
import json
import re
import os
import tempfile

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

_flags = {}     # (assignment, student, notebook) -> [flag dicts]
_verdicts = {}  # (assignment, student, notebook) -> {question: text}
_state = {}     # (assignment, student, notebook) -> {"sandboxed": bool}

KINDS = {
    "timeout": "a cell ran past its time limit",
    "kernel died": "the kernel stopped (os._exit, crash, or a limit); later cells were not run",
    "unresponsive": "the kernel ignored the interrupt after a timeout and was killed",
    "memory limit": "the sandbox's processes together passed the memory cap",
    "huge output": "output beyond the limit was dropped",
    "rigged kernel": "a check that must fail passed, or its error was hidden (a hook, a "
                     "transformer, patched torch or builtins): test cells from there on score 0",
    "tampered cell": "a locked cell was edited (the original was put back)",
    "repaired notebook": "cells were missing, duplicated or without metadata; the notebook was "
                         "rebuilt on the assignment's cells and graded on its merits",
    "invalid notebook": "the submission could not be read; every graded cell scores 0",
    "forged record": "the verdict process sent records no probe wrote",
    "verdict unavailable": "the reference solution failed a probe: that question's hidden "
                           "tests score 0 until verdicts.py is fixed and the notebook regraded",
    "quarantined file": "a submitted file or folder was moved to course/quarantine, not graded",
    "interrupted": "an earlier grading run was killed while grading it; graded again",
    "unsandboxed": "graded WITHOUT the sandbox (instructor override)",
    "refused": "not graded: the sandbox cannot start",
    "no verdicts": "hidden tests without a probe in verdicts.py ran in the student's kernel",
    "grading error": "grading failed for this notebook; its graded cells score 0",
    "not graded": "the grading worker failed twice (crash, lost machine): nothing was recorded; "
                  "run the same command again",
}


def key(resources):
    nbg = resources["nbgrader"]
    return nbg["assignment"], nbg["student"], nbg["notebook"]


def reset(resources):
    """Forget what an earlier grading of this notebook recorded (regrading starts clean)."""
    for store in (_flags, _verdicts, _state):
        store.pop(key(resources), None)


def flag(resources, kind, detail, cell=None):
    """Record a problem with this notebook; ``kind`` is one of KINDS."""
    assert kind in KINDS, kind
    entry = {"kind": kind, "detail": _clean(detail)}
    if cell:
        entry["cell"] = _clean(cell, 120)
    found = _flags.setdefault(key(resources), [])
    if entry not in found:
        found.append(entry)


def flags(resources):
    """This notebook's flags, with those recorded for the whole submission (notebook "*")."""
    assignment, student, notebook = key(resources)
    return _flags.get((assignment, student, "*"), []) + _flags.get(key(resources), [])


def export(resources):
    """This notebook's flags, verdicts and state (a worker sends them to the coordinator)."""
    return {"flags": flags(resources), "verdicts": dict(_verdicts.get(key(resources), {})),
            "state": dict(_state.get(key(resources), {}))}


def restore(resources, entry):
    """Record for this notebook what ``export`` gave on a worker (after a reset)."""
    found = _flags.setdefault(key(resources), [])
    for item in entry.get("flags", []):
        if item not in found and item not in flags(resources):
            found.append(item)
    _verdicts.setdefault(key(resources), {}).update(entry.get("verdicts", {}))
    _state.setdefault(key(resources), {}).update(entry.get("state", {}))


def set_verdict(resources, question, text):
    _verdicts.setdefault(key(resources), {})[question] = _clean(text)


def set_state(resources, **state):
    _state.setdefault(key(resources), {}).update(state)


def _clean(text, limit=600):
    """Student-controlled text made safe to print: no control characters, bounded length."""
    text = "".join(ch if ch.isprintable() else " " for ch in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def default_directory(coursedir):
    """reports/ beside the SQLite gradebook (course/reports here); with another database
    (PostgreSQL), beside the submitted folder (course/reports too)."""
    db = coursedir.db_url
    if db.startswith("sqlite:///") and db != "sqlite:///:memory:":
        return os.path.join(os.path.dirname(db[len("sqlite:///"):]), "reports")
    submitted = os.path.join(coursedir.root, coursedir.submitted_directory)
    return os.path.join(os.path.dirname(os.path.normpath(submitted)), "reports")


def reports_dir(config):
    """Where the reports go: ``WriteReport.directory``, or the default."""
    from nbgrader.coursedir import CourseDirectory
    return WriteReport(config=config).directory or default_directory(CourseDirectory(config=config))


def save(directory, resources, score=None, max_score=None):
    """Store this notebook's entry and rewrite the assignment's report; return the .md path."""
    assignment, student, notebook = key(resources)
    os.makedirs(directory, exist_ok=True)
    with _locked(os.path.join(directory, f".{assignment}.lock")):  # concurrent graders
        return _save(directory, resources, score, max_score)


@contextlib.contextmanager
def _locked(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(directory, resources, score, max_score):
    assignment, student, notebook = key(resources)
    path = os.path.join(directory, f"{assignment}.json")
    data = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    data.setdefault(student, {})[notebook] = {
        "flags": flags(resources),
        "verdicts": dict(sorted(_verdicts.get(key(resources), {}).items())),
        "sandboxed": _state.get(key(resources), {}).get("sandboxed"),
        "verdicts_in": _state.get(key(resources), {}).get("verdicts_in"),
        "score": score, "max_score": max_score,
        "graded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    _write(path, json.dumps(data, indent=1, sort_keys=True))
    md = os.path.join(directory, f"{assignment}.md")
    _write(md, render(assignment, data))
    return md


def _write(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".report-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")


def escape(text, limit=600):
    """Text any student controls, made inert in Markdown and HTML: one line, control characters
    removed, HTML special characters as entities, Markdown punctuation backslash-escaped."""
    text = _clean(text, limit)
    return html.escape(_MARKDOWN.sub(r"\\\1", text), quote=False)


def render(assignment, data):
    """The Markdown report: a table of every graded notebook, then each flagged one in detail."""
    lines = [f"# Grading report: {escape(assignment)}", "",
             "Written by `sandboxed_grading` at every `nbgrader autograde`. A submission is "
             "flagged when its grading met one of the problems listed at the end.", "",
             "| student | notebook | score | sandboxed | flags |", "|---|---|---|---|---|"]
    flagged = []
    for student in sorted(data):
        for notebook, entry in sorted(data[student].items()):
            score = "" if entry["score"] is None else f"{entry['score']:g} / {entry['max_score']:g}"
            kinds = sorted({f["kind"] for f in entry["flags"]})
            sandboxed = {True: "yes", False: "**NO**", None: "-"}[entry["sandboxed"]]
            failed = {q: v for q, v in entry["verdicts"].items() if v != "pass"}
            lines.append(f"| {escape(student)} | {escape(notebook)} | {score} | {sandboxed} | "
                         f"{escape(', '.join(kinds) or 'none')} |")
            if entry["flags"] or failed:
                flagged.append((student, notebook, entry, failed))
    lines += ["", f"## Flagged submissions and failed hidden tests ({len(flagged)})", ""]
    for student, notebook, entry, failed in flagged:
        lines.append(f"### {escape(student)} / {escape(notebook)}")
        lines.append("")
        for f in entry["flags"]:
            where = f" (cell {escape(f['cell'])})" if f.get("cell") else ""
            lines.append(f"- **{escape(f['kind'])}**{where}: {escape(f['detail'])}")
        for q, text in failed.items():
            lines.append(f"- hidden tests of {escape(q)}: {escape(text)}")
        lines.append("")
    lines += ["## Kinds of flag", ""] + [f"- **{k}**: {v}" for k, v in KINDS.items()] + [""]
    return "\n".join(lines)


class WriteReport(NbGraderPreprocessor):
    """Last autograde step: store this notebook's flags, verdicts and score in the report."""

    directory = Unicode("", help="Where reports go (default: reports/ beside the gradebook).").tag(config=True)

    def preprocess(self, nb, resources):
        assignment, student, notebook = key(resources)
        score = max_score = None
        try:
            with Gradebook(resources["nbgrader"]["db_url"]) as gb:
                sub = gb.find_submission_notebook(notebook, assignment, student)
                score, max_score = sub.score, sub.max_score
        except MissingEntry:
            pass
        path = save(reports_dir(self.config), resources, score, max_score)
        if flags(resources):
            self.log.warning("%s/%s/%s flagged (%s): see %s", assignment, student, notebook,
                             ", ".join(sorted({f["kind"] for f in flags(resources)})), path)
        return nb, resources
