"""Verdicts the student's code cannot forge: the ``CheckVerdicts`` autograde step.

An assignment opts in with a trusted spec, ``<source>/<assignment>/verdicts.py`` (never released:
nbgrader_config ignores ``*.py``; never visible in the sandbox). For each question ``qN`` it
defines a probe ``qN(ns, rng)`` that exercises the student's definitions in ``ns`` with inputs
drawn from the ``torch.Generator`` ``rng`` and returns plain data (tensors, numbers, strings,
lists, dicts). After the notebook ran, this step:

1. runs the student's cells (all but the test cells) and the probes in a fresh sandboxed process;
2. runs the source notebook's cells and the same probes, with the same seeds, in another one
   (once per assignment and grading run);
3. compares the two sets of records here, outside any student process;
4. on a mismatch, a missing or a forged record for ``qN``, puts an error output first in every
   test cell of ``qN`` (grade ids ``qN_...``): nbgrader then scores them 0, with the reason.

Seeds come from a secret file next to the gradebook: the same for every submission of an
assignment and every regrade (so grades are reproducible), unknown to students.
"""
import ast
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile

import nbformat
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.utils import determine_grade, is_grade, is_solution
from traitlets import Float, Integer, Unicode

from . import report
from .execute import STOPPED, fail_cell
from .sandbox import Sandbox

PROBE = re.compile(r"^q\d+$")
_reference_cache = {}


def probe_names(spec_source):
    """The probes a verdicts.py defines: its top-level functions named q1, q2, ..."""
    tree = ast.parse(spec_source)
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and PROBE.match(node.name)]


def tolerance(spec_source, rtol, atol):
    """``TOLERANCE = {"rtol": ..., "atol": ...}`` in verdicts.py overrides the defaults."""
    for node in ast.parse(spec_source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TOLERANCE" for t in node.targets):
            found = ast.literal_eval(node.value)
            return float(found.get("rtol", rtol)), float(found.get("atol", atol))
    return rtol, atol


def is_test_cell(cell):
    return is_grade(cell) and not is_solution(cell)


def stopped(cell):
    """Whether the notebook run gave up on this cell: it timed out, the kernel died or hung in
    it, or it never ran after that."""
    return any(o.get("output_type") == "error" and o.get("ename") in STOPPED for o in cell.get("outputs", []))


def question_of(cell):
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
    return grade_id.split("_", 1)[0] if "_" in grade_id else None


def steps(cells, probes, seeds):
    """The verdict process's program: every non-test code cell in order, and each probe right
    after the last test cell of its question (at the end when the question has none)."""
    last_test = {}
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and is_test_cell(cell) and question_of(cell) in probes:
            last_test[question_of(cell)] = index
    program = []
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and not is_test_cell(cell) and cell.source.strip():
            program.append({"cell": cell.source})
        program += [{"probe": q, "seed": seeds[q]} for q in probes if last_test.get(q) == index]
    program += [{"probe": q, "seed": seeds[q]} for q in probes if q not in last_test]
    return program


def compare(got, want, rtol, atol, where="result"):
    """None when ``got`` matches ``want`` (decoded probe records), else the first difference.

    The message names what differs but never the expected values."""
    if type(got) is not type(want):
        return f"{where}: different kind of value"
    if not isinstance(want, dict):
        return None if got == want else f"{where}: different value"
    if set(got) != set(want):
        return f"{where}: different kind of value"
    kind = next(iter(want), None)
    if kind == "float":
        return None if _close(got[kind], want[kind], rtol, atol) else f"{where}: different value"
    if kind == "tensor":
        g, w = got[kind], want[kind]
        if g.get("dtype") != w["dtype"]:
            return f"{where}: dtype {g.get('dtype')} where {w['dtype']} was expected"
        if g.get("shape") != w["shape"]:
            return f"{where}: shape {g.get('shape')} where {w['shape']} was expected"
        gv, wv = g.get("values"), w["values"]
        if not isinstance(gv, list) or len(gv) != len(wv):
            return f"{where}: wrong number of values"
        bad = sum(not _close(a, b, rtol, atol) for a, b in zip(gv, wv))
        return f"{where}: {bad} of {len(wv)} values differ" if bad else None
    if kind == "list":
        if not isinstance(got[kind], list) or len(got[kind]) != len(want[kind]):
            return f"{where}: wrong length"
        for i, (a, b) in enumerate(zip(got[kind], want[kind])):
            diff = compare(a, b, rtol, atol, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if kind == "dict":
        if not isinstance(got[kind], dict) or set(got[kind]) != set(want[kind]):
            return f"{where}: different keys"
        for k in want[kind]:
            diff = compare(got[kind][k], want[kind][k], rtol, atol, f"{where}[{k!r}]")
            if diff:
                return diff
        return None
    return None if got == want else f"{where}: different {kind}"


def _close(a, b, rtol, atol):
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str):
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


class ProbeRun:
    """The records of one verdict process: {question: record}, and what looked forged."""

    def __init__(self, records, forged, finished, log):
        self.records, self.forged, self.finished, self.log = records, forged, finished, log


class CheckVerdicts(NbGraderPreprocessor):
    """Autograde step (after Execute): fail a question's test cells when its probe disagrees
    with the reference solution's."""

    spec_name = Unicode("verdicts.py", help="File name of the spec in the source folder.").tag(config=True)
    secret_file = Unicode("", help="Seed secret (default: verdict-secret beside the gradebook).").tag(config=True)
    step_timeout = Integer(0, help="Seconds for each cell or probe in the verdict process "
                                   "(0: Execute.timeout).").tag(config=True)
    wall_time = Integer(600, help="Seconds for a whole verdict process.").tag(config=True)
    max_record_bytes = Integer(32 * 2**20, help="Records read from a verdict process.").tag(config=True)
    rtol = Float(1e-5, help="Relative tolerance for floats (verdicts.py TOLERANCE overrides).").tag(config=True)
    atol = Float(1e-6, help="Absolute tolerance for floats (verdicts.py TOLERANCE overrides).").tag(config=True)

    def preprocess(self, nb, resources):
        if nb.metadata.get("sandboxed_grading", {}).get("not_run"):
            return nb, resources
        coursedir = CourseDirectory(config=self.config)
        assignment, student, notebook = report.key(resources)
        source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
        spec_path = os.path.join(source_dir, self.spec_name)
        if not os.path.exists(spec_path):
            report.flag(resources, "no verdicts", f"{spec_path} does not exist")
            return nb, resources
        with open(spec_path, encoding="utf-8") as fh:
            spec = fh.read()
        probes = probe_names(spec)
        rtol, atol = tolerance(spec, self.rtol, self.atol)
        seeds = {q: self._seed(coursedir, f"{assignment}/{notebook}/{q}") for q in probes}
        source_nb = nbformat.read(os.path.join(source_dir, f"{notebook}.ipynb"), as_version=4)
        # A verdict can only take points away: questions whose tests all failed need no probe.
        failed = [q for q in probes if self._tests(nb, q) and not self._passed(nb, q)]
        for q in failed:
            report.set_verdict(resources, q, "fail: the notebook's tests failed")
        needed = [q for q in probes if q not in failed]
        if not needed:
            return nb, resources

        reference = self._reference(source_nb, spec, probes, seeds, source_dir)
        probes = needed
        path = resources.get("metadata", {}).get("path") or os.getcwd()
        # Cells that hung or killed the kernel (or never ran) are not run again.
        cells = [c for c in nb.cells if is_test_cell(c) or not stopped(c)]
        student_run = self._run(steps(cells, probes, seeds), spec, cwd=path)

        for forged in student_run.forged:
            report.flag(resources, "forged record", forged)
        for q in probes:
            want = reference.records.get(q)
            if want is None or not want["ok"]:
                why = want["error"] if want else "no record (the reference run stopped early)"
                report.flag(resources, "verdict unavailable", f"{q}: reference solution: {why}")
                report.set_verdict(resources, q, f"unavailable: {why}")
                continue
            got = student_run.records.get(q)
            if q in {f.split(":")[0] for f in student_run.forged}:
                reason = "forged or duplicated record"
            elif got is None:
                reason = ("no result: the verdict process stopped before this probe"
                          if not student_run.finished else "no result")
            elif not got["ok"]:
                reason = f"raised {got['error']}"
            else:
                try:
                    reason = compare(got["value"], want["value"], rtol, atol)
                except (AttributeError, KeyError, TypeError, ValueError):  # a forged record's shape
                    reason = "malformed result"
            reason = reason if reason is None else reason[:300]
            report.set_verdict(resources, q, "pass" if reason is None else f"fail: {reason}")
            if reason is not None:
                self._fail_question(nb, resources, q, reason)
        return nb, resources

    @staticmethod
    def _tests(nb, question):
        return [c for c in nb.cells if c.cell_type == "code" and is_test_cell(c) and question_of(c) == question]

    def _passed(self, nb, question):
        """Whether any test cell of ``question`` would score points as the notebook stands."""
        return any((determine_grade(c)[0] or 0) > 0 for c in self._tests(nb, question))

    def _fail_question(self, nb, resources, question, reason):
        if self._passed(nb, question):
            report.flag(resources, "verdict overruled",
                        f"the notebook's tests of {question} passed, the trusted check did not: {reason}")
        for cell in self._tests(nb, question):
            fail_cell(cell, "VerdictFailed", f"trusted check of {question} failed: {reason}")

    def _seed(self, coursedir, label):
        path = self.secret_file or os.path.join(os.path.dirname(report.default_directory(coursedir)),
                                                "verdict-secret")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        with open(path, encoding="utf-8") as fh:
            key = fh.read().strip().encode()
        return int.from_bytes(hmac.new(key, label.encode(), hashlib.sha256).digest()[:7], "big")

    def _reference(self, source_nb, spec, probes, seeds, source_dir):
        program = steps(source_nb.cells, probes, seeds)
        key = hashlib.sha256(json.dumps([program, spec]).encode()).hexdigest()
        if key not in _reference_cache:
            run = self._run(program, spec, cwd=source_dir)
            if run.forged:
                self.log.warning("reference run of %s: %s", source_dir, run.forged)
            if not run.finished:
                self.log.warning("reference run of %s stopped early: %s", source_dir, run.log[-1000:])
            _reference_cache[key] = run
        return _reference_cache[key]

    def _run(self, program, spec, cwd):
        """Run one verdict process on ``program``; return its ProbeRun."""
        sandbox = Sandbox(parent=self)
        from nbgrader.preprocessors import Execute
        step_timeout = self.step_timeout or Execute(config=self.config).timeout or 60
        request = json.dumps({"verdicts": spec, "steps": program, "path": cwd,
                              "step_timeout": step_timeout}).encode()
        argv = [sys.executable, "-I", "-m", "sandboxed_grading.probes"]
        if sandbox.check(self.log):
            cmd = sandbox.command(argv, cwd=cwd, readonly=[cwd], uid=sandbox.new_uid(),
                                  wall_time=self.wall_time)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:  # the instructor allowed grading without the sandbox
            cmd, env = argv, {**os.environ, "NBGRADER_EXECUTION": "autograde"}
        with tempfile.TemporaryDirectory(prefix="verdicts-") as tmp:
            out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                           cwd=cwd, env=env, start_new_session=True)
                try:
                    process.communicate(request, timeout=self.wall_time + 30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()
            with open(out_path, "rb") as fh:
                raw = fh.read(self.max_record_bytes)
            with open(err_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(err_path) - 2000))
                log = fh.read().decode("utf-8", "replace")
        return self._parse(raw, log)

    @staticmethod
    def _parse(raw, log):
        records, forged, finished = {}, [], False
        for number, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
            try:
                record = json.loads(line)
            except ValueError:
                forged.append(f"line {number}: not a record")
                continue
            if record == {"done": True} and not finished:
                finished = True
                continue
            q = record.get("question") if isinstance(record, dict) else None
            valid = (isinstance(q, str) and PROBE.match(q) and isinstance(record.get("ok"), bool)
                     and ("value" in record if record["ok"] else isinstance(record.get("error"), str)))
            if not valid or finished:
                forged.append(f"line {number}: " + ("record after the end" if finished else "malformed record"))
            elif q in records:
                forged.append(f"{q}: more than one record")
            else:
                records[q] = record
        return ProbeRun(records, forged, finished, log)
