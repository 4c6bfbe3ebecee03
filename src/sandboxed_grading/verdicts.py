"""Hidden points decided outside the student's process: the ``CheckVerdicts`` autograde step.

An assignment opts in with a trusted spec, ``<source>/<assignment>/verdicts.py`` (never released:
nbgrader_config ignores ``*.py``; never visible in the sandbox). For each question ``qN`` it
defines a probe ``qN(ns, rng)`` that exercises the student's definitions in ``ns`` with inputs
drawn from the ``torch.Generator`` ``rng`` and returns a dict: each key says in words what it
checks ("forward output after .double()"), each value is plain data computed by the student's
code. The test cell ``qN_hidden`` is then never run in the student's kernel
(``SandboxedExecute`` skips it); its points are decided here:

1. a sandboxed process runs the student's cells (all but the test cells) and the probes: the
   zygote of the submission's own sandbox once its kernel is gone (zygote.py), else a fresh one;
2. another one runs the source notebook's cells and the same probes with the same seeds: once
   per assignment, source and seed; its records are kept in ``<course>/verdict-cache/`` (beside
   the gradebook, never shown to the sandbox) and reused by every later call and student until
   the source notebook, verdicts.py, the seeds or the grading code change;
3. the two sets of records are compared here, outside any student process, key by key;
4. the hidden cell gets an error output naming the checks that differ (never their values), or a
   "passed" line. nbgrader then scores it. Visible test cells keep the score they earned.

Nothing the verdict process writes is shown to anyone: its records are compared, never printed;
of an error it raised, only a builtin exception name is kept. Seeds come from a secret file next
to the gradebook: the same for every submission of an assignment and every regrade.
"""
import ast
import builtins
import contextlib
import fcntl
import hashlib
import importlib.metadata
import hmac
import json
import math
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time

import nbformat
from nbformat.v4 import new_output
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Float, Integer, Unicode

from . import report
from .execute import STOPPED, fail_cell
from .kernel import take_kept
from .sandbox import Sandbox

PROBE = re.compile(r"^q\d+$")
HIDDEN = re.compile(r"^(q\d+)_hidden$")
BUILTIN_ERRORS = {name for name, value in vars(builtins).items()
                  if isinstance(value, type) and issubclass(value, BaseException)}
_reference_cache = {}


class Spec:
    """A parsed verdicts.py: its source, probe names and float tolerance."""

    def __init__(self, path, source, rtol, atol):
        self.path, self.source = path, source
        self.probes = probe_names(source)
        self.rtol, self.atol = tolerance(source, rtol, atol)


def load_spec(config, resources, name="verdicts.py", rtol=1e-5, atol=1e-6):
    """The assignment's Spec, or None when it has no verdicts.py."""
    coursedir = CourseDirectory(config=config)
    assignment = resources["nbgrader"]["assignment"]
    path = os.path.join(coursedir.format_path(coursedir.source_directory, ".", assignment), name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return Spec(path, fh.read(), rtol, atol)


def probe_names(spec_source):
    """The probes a verdicts.py defines: its top-level functions named q1, q2, ..."""
    tree = ast.parse(spec_source)
    return [node.name for node in tree.body
            if isinstance(node, ast.FunctionDef) and PROBE.match(node.name)]


def tolerance(spec_source, rtol, atol):
    """``TOLERANCE = {"rtol": ..., "atol": ...}`` in verdicts.py overrides the defaults."""
    for node in ast.parse(spec_source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "TOLERANCE"
                                                for t in node.targets):
            found = ast.literal_eval(node.value)
            return float(found.get("rtol", rtol)), float(found.get("atol", atol))
    return rtol, atol


def is_test_cell(cell):
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def grade_id(cell):
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "") or ""


def question_of(cell):
    gid = grade_id(cell)
    return gid.split("_", 1)[0] if "_" in gid else None


def decided_cells(cells, probes):
    """{index: question} of the hidden test cells whose points a probe decides."""
    return {i: HIDDEN.match(grade_id(c)).group(1) for i, c in enumerate(cells)
            if is_test_cell(c) and HIDDEN.match(grade_id(c))
            and HIDDEN.match(grade_id(c)).group(1) in probes}


def stopped(cell):
    """Whether the notebook run gave up on this cell: it timed out, the kernel died or hung in
    it, or it never ran after that."""
    return any(o.get("output_type") == "error" and o.get("ename") in STOPPED
               for o in cell.get("outputs", []))


def steps(cells, probes, seeds):
    """The verdict process's program: every non-test code cell in order, and each probe right
    after the last test cell of its question (at the end when the question has none)."""
    last_test = {}
    for index, cell in enumerate(cells):
        if is_test_cell(cell) and question_of(cell) in probes:
            last_test[question_of(cell)] = index
    program = []
    for index, cell in enumerate(cells):
        if cell.cell_type == "code" and not is_test_cell(cell) and cell.source.strip():
            program.append({"cell": cell.source})
        program += [{"probe": q, "seed": seeds[q]} for q in probes if last_test.get(q) == index]
    program += [{"probe": q, "seed": seeds[q]} for q in probes if q not in last_test]
    return program


# --- comparing records ---------------------------------------------------------------------------

def differences(got, want, rtol, atol):
    """[(check, detail)] for each top-level check of the reference ``want`` that ``got`` does
    not match. ``check`` is the reference's own key (words the instructor wrote); ``detail``
    names where it differs, never a value."""
    if not (isinstance(want, dict) and set(want) == {"dict"}):
        diff = compare(got, want, rtol, atol)
        return [] if diff is None else [("the result", diff)]
    if not (isinstance(got, dict) and set(got) == {"dict"} and isinstance(got["dict"], dict)):
        return [("the result", "not a dict")]
    found = []
    for key, value in want["dict"].items():
        if key not in got["dict"]:
            found.append((key, "missing"))
            continue
        diff = compare(got["dict"][key], value, rtol, atol, "")
        if diff is not None:
            found.append((key, diff))
    return found


def compare(got, want, rtol, atol, where="result"):
    """None when ``got`` matches ``want`` (decoded probe records), else where they first
    differ. The message never contains a value from either side."""
    if type(got) is not type(want):
        return f"{where}: different kind of value".lstrip(": ")
    if not isinstance(want, dict):
        return None if got == want else f"{where}: different value".lstrip(": ")
    if set(got) != set(want):
        return f"{where}: different kind of value".lstrip(": ")
    kind = next(iter(want), None)
    if kind == "float":
        ok = _close(got[kind], want[kind], rtol, atol)
        return None if ok else f"{where}: different value".lstrip(": ")
    if kind == "tensor":
        g, w = got[kind], want[kind]
        if not isinstance(g, dict):
            return f"{where}: different kind of value".lstrip(": ")
        if g.get("dtype") != w["dtype"]:
            return f"{where}: different dtype".lstrip(": ")
        if g.get("shape") != w["shape"]:
            return f"{where}: different shape".lstrip(": ")
        gv, wv = g.get("values"), w["values"]
        if not isinstance(gv, list) or len(gv) != len(wv):
            return f"{where}: wrong number of values".lstrip(": ")
        bad = sum(not _close(a, b, rtol, atol) for a, b in zip(gv, wv))
        return f"{where}: {bad} of {len(wv)} values differ".lstrip(": ") if bad else None
    if kind == "list":
        if not isinstance(got[kind], list) or len(got[kind]) != len(want[kind]):
            return f"{where}: wrong length".lstrip(": ")
        for i, (a, b) in enumerate(zip(got[kind], want[kind])):
            diff = compare(a, b, rtol, atol, f"{where}[{i}]")
            if diff:
                return diff
        return None
    if kind == "dict":
        if not isinstance(got[kind], dict) or set(got[kind]) != set(want[kind]):
            return f"{where}: different keys".lstrip(": ")
        for k in want[kind]:
            diff = compare(got[kind][k], want[kind][k], rtol, atol, f"{where}[{k!r}]")
            if diff:
                return diff
        return None
    return None if got == want else f"{where}: different {kind}".lstrip(": ")


def _close(a, b, rtol, atol):
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str):
        return a == b
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)


def error_words(error):
    """What a student reads when their code raised ``error`` (a class name from the untrusted
    process: only builtin exception names are repeated)."""
    name = error if isinstance(error, str) and error in BUILTIN_ERRORS else None
    if name == "NotImplementedError":
        return "the answer is not written yet (NotImplementedError)"
    if name in ("NameError", "AttributeError"):
        return f"the answer does not define what the question asks for ({name})"
    if name:
        return f"your code raised {name} during the hidden tests"
    return "your code raised an exception during the hidden tests"


class ProbeRun:
    """The records of one verdict process: {question: record}, and what looked forged."""

    def __init__(self, records, forged, finished, log):
        self.records, self.forged, self.finished, self.log = records, forged, finished, log
        self.where = "a fresh sandbox"  # or "the kernel's sandbox" (zygote.py)


class CheckVerdicts(NbGraderPreprocessor):
    """Autograde step (after Execute): score each hidden test cell by comparing its question's
    probe on the student's code with the reference solution's."""

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
        spec = load_spec(self.config, resources, self.spec_name, self.rtol, self.atol)
        if spec is None:
            report.flag(resources, "no verdicts", "the assignment has no verdicts.py")
            return nb, resources
        decided = decided_cells(nb.cells, spec.probes)
        questions = sorted(set(decided.values()), key=lambda q: int(q[1:]))
        for q in sorted({question_of(nb.cells[i]) for i, c in enumerate(nb.cells)
                         if is_test_cell(c) and HIDDEN.match(grade_id(c))} - set(questions)):
            report.flag(resources, "no verdicts", f"{q}: verdicts.py has no probe {q}; its hidden "
                        "tests ran in the student's kernel")
        if not questions:
            return nb, resources
        coursedir = CourseDirectory(config=self.config)
        assignment, student, notebook = report.key(resources)
        source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
        source_nb = nbformat.read(os.path.join(source_dir, f"{notebook}.ipynb"), as_version=4)

        outcome = {}
        kept = take_kept(report.key(resources))  # the submission's own sandbox, if it lives on
        try:
            if not self._answered(nb, source_nb):
                outcome = {q: ("no answer", None) for q in questions}
            else:
                outcome = self._verdicts(nb, resources, spec, questions, source_nb, source_dir,
                                         coursedir, kept)
        finally:
            if kept is not None:
                kept.release()

        for index, q in decided.items():
            words, detail = outcome[q]
            cell = nb.cells[index]
            cell.outputs = []
            if words is None:
                report.set_verdict(resources, q, "pass")
                cell.outputs.append(new_output(
                    "stream", name="stdout",
                    text=f"Hidden tests of question {q[1:]} passed (run by the grader).\n"))
            else:
                report.set_verdict(resources, q, words + (f" [{detail}]" if detail else ""))
                fail_cell(cell, "HiddenTestsFailed", f"question {q[1:]}: {words}")
        return nb, resources

    def _verdicts(self, nb, resources, spec, questions, source_nb, source_dir, coursedir, kept):
        """{question: (words or None, detail)} of an answered notebook."""
        assignment, _, notebook = report.key(resources)
        seeds = {q: self._seed(coursedir, f"{assignment}/{notebook}/{q}") for q in spec.probes}
        reference = self._reference(source_nb, spec, seeds, source_dir, coursedir,
                                    os.path.join(assignment, notebook))
        path = resources.get("metadata", {}).get("path") or os.getcwd()
        # Cells that hung or killed the kernel (or never ran) are not run again.
        cells = [c for c in nb.cells if is_test_cell(c) or not stopped(c)]
        run = self._run(steps(cells, questions, seeds), spec.source, cwd=path, kept=kept)
        report.set_state(resources, verdicts_in=run.where)
        for forged in run.forged:
            report.flag(resources, "forged record", forged)
        forged_questions = {f.split(":")[0] for f in run.forged}
        return {q: self._judge(q, reference, run, forged_questions, spec, resources)
                for q in questions}

    def _judge(self, q, reference, run, forged_questions, spec, resources):
        """(words for the student or None when it passed, detail for the instructor)."""
        want = reference.records.get(q)
        if want is None or not want["ok"]:
            why = (f"raised {want['error']}" if want else
                   "no record (the reference run stopped early)")
            report.flag(resources, "verdict unavailable", f"{q}: the reference solution {why}")
            return ("the grader's check of this question is broken; your instructor will "
                    "regrade it", why)
        got = run.records.get(q)
        if q in forged_questions:
            return "the hidden tests' process was tampered with", "forged or duplicated record"
        if got is None:
            if run.finished:
                return "the hidden tests did not run", "no record"
            return ("the hidden tests did not finish: your code ran too long, used too much "
                    "memory, or stopped the process", "verdict process stopped early")
        if not got["ok"]:
            error = got.get("error")
            shown = error if isinstance(error, str) and error in BUILTIN_ERRORS else "an exception"
            return error_words(error), f"raised {shown}"
        try:
            found = differences(got["value"], want["value"], spec.rtol, spec.atol)
        except (AttributeError, KeyError, TypeError, ValueError):  # a forged record's shape
            return "the hidden tests' process was tampered with", "malformed result"
        if not found:
            return None, None
        shown = [check for check, _ in found[:3]] + (["..."] if len(found) > 3 else [])
        words = "checks that failed: " + "; ".join(shown)
        detail = "; ".join(f"{check}: {where}" for check, where in found)[:300]
        return words[:400], detail

    def _answered(self, nb, source_nb):
        """False for a notebook whose every code answer cell is still the released stub and that
        has no code cell of its own: nothing to probe (a blank submission costs no verdict
        process). Markdown answers are never probed."""
        stubs = {}
        clear = ClearSolutions(config=self.config)
        for cell in source_nb.cells:
            if is_solution(cell) and cell.cell_type == "code":
                copy = nbformat.from_dict(json.loads(json.dumps(cell)))
                clear._replace_solution_region(copy, "python")
                stubs[grade_id(cell)] = copy.source.strip()
        # cells of the assignment without a grade id (a set-up cell) are not the student's own
        plain = {c.source.strip() for c in source_nb.cells if not grade_id(c)}
        for cell in nb.cells:
            gid = grade_id(cell)
            if gid in stubs:
                if cell.cell_type == "code" and cell.source.strip() != stubs[gid]:
                    return True
            elif not gid and cell.cell_type == "code" and cell.source.strip() \
                    and cell.source.strip() not in plain:
                return True
        return False

    def _seed(self, coursedir, label):
        path = self.secret_file or os.path.join(os.path.dirname(report.default_directory(coursedir)),
                                                "verdict-secret")
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:  # written whole before anyone may read it (graders may start together)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".secret-")
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                os.link(tmp, path)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="utf-8") as fh:
            key = fh.read().strip().encode()
        return int.from_bytes(hmac.new(key, label.encode(), hashlib.sha256).digest()[:7], "big")

    def _reference(self, source_nb, spec, seeds, source_dir, coursedir, where):
        """The reference solution's ProbeRun: from memory, from the course's verdict cache, or
        run now (and cached when it finished cleanly)."""
        program = steps(source_nb.cells, spec.probes, seeds)
        key = reference_key(program, spec.source, self._step_timeout())
        if key in _reference_cache:
            return _reference_cache[key]
        folder = os.path.join(os.path.dirname(report.default_directory(coursedir)),
                              "verdict-cache", where)
        with cache_lock(folder):
            run = read_cached(folder, key)
            if run is None:
                run = self._run(program, spec.source, cwd=source_dir)
                if run.forged:
                    self.log.warning("reference run of %s: %s", source_dir, run.forged)
                if not run.finished:
                    self.log.warning("reference run of %s stopped early: %s", source_dir,
                                     run.log[-1000:])
                elif not run.forged:
                    write_cached(folder, key, run)
        _reference_cache[key] = run
        return run

    def prepare_reference(self, assignment, notebook):
        """Compute (or find in the cache) the reference verdicts of one notebook now, as grading
        would (the parallel grader does this once, before sending any submission)."""
        spec = load_spec(self.config, {"nbgrader": {"assignment": assignment}}, self.spec_name,
                         self.rtol, self.atol)
        if spec is None:
            return None
        coursedir = CourseDirectory(config=self.config)
        source_dir = coursedir.format_path(coursedir.source_directory, ".", assignment)
        source_nb = nbformat.read(os.path.join(source_dir, f"{notebook}.ipynb"), as_version=4)
        seeds = {q: self._seed(coursedir, f"{assignment}/{notebook}/{q}") for q in spec.probes}
        return self._reference(source_nb, spec, seeds, source_dir, coursedir,
                               os.path.join(assignment, notebook))

    def _step_timeout(self):
        from nbgrader.preprocessors import Execute
        return self.step_timeout or Execute(config=self.config).timeout or 60

    def _run(self, program, spec_source, cwd, kept=None):
        """Run one verdict process on ``program``; return its ProbeRun. ``kept``: the kernel
        manager whose sandbox outlived its kernel (its zygote runs the request); when it is not
        ready, a fresh verdict process does."""
        request = json.dumps({"verdicts": spec_source, "steps": program,
                              "step_timeout": self._step_timeout()}).encode()
        link = kept.verdict_link() if kept is not None else None
        if link is not None:
            return self._run_in_zygote(link, kept, request)
        if kept is not None:
            kept.release()
        sandbox = Sandbox(parent=self)
        # This very copy of sandboxed_grading runs the probes, whatever ``-I`` would import.
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {package_root!r}); "
                "from sandboxed_grading.probes import main; main()"]
        group = None
        if sandbox.check(self.log):
            uid = sandbox.new_uid()
            group = sandbox.group(uid)
            cmd = sandbox.command(argv, cwd=cwd, seed=cwd, readonly=[package_root], uid=uid,
                                  wall_time=self.wall_time)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        else:  # the instructor allowed grading without the sandbox
            cmd, env = argv, {**os.environ, "NBGRADER_EXECUTION": "autograde"}
        with tempfile.TemporaryDirectory(prefix="verdicts-") as tmp:
            out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            with open(out_path, "wb") as out, open(err_path, "wb") as err:
                process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=out, stderr=err,
                                           cwd=cwd, env=env, start_new_session=True,
                                           preexec_fn=group.join if group else None)
                if group:
                    group.start(process.pid)
                try:
                    process.communicate(request, timeout=self.wall_time + 30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()
                finally:
                    if group:
                        group.stop()
            with open(out_path, "rb") as fh:
                raw = fh.read(self.max_record_bytes)
            with open(err_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(err_path) - 2000))
                log = fh.read().decode("utf-8", "replace")
        return self._parse(raw, log)

    def _run_in_zygote(self, link, kept, request):
        """Send ``request`` to the zygote, read its records until it closes the socket (or the
        wall time ends), then stop the sandbox."""
        deadline = time.monotonic() + self.wall_time
        raw = b""
        try:
            link.sendall(request)
            link.shutdown(socket.SHUT_WR)
            while len(raw) < self.max_record_bytes:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([link], [], [], left)[0]:
                    break
                chunk = link.recv(min(1 << 20, self.max_record_bytes - len(raw)))
                if not chunk:
                    break
                raw += chunk
        except OSError as exc:
            self.log.warning("verdict process: %s", exc)
        finally:
            kept.release()
        run = self._parse(raw, "")
        run.where = "the kernel's sandbox"
        return run

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
                forged.append(f"line {number}: " + ("record after the end" if finished
                                                     else "malformed record"))
            elif q in records:
                forged.append(f"{q}: more than one record")
            else:
                records[q] = record
        return ProbeRun(records, forged, finished, log)


# --- the reference verdicts, cached per assignment ----------------------------------------------

def _grading_code_version():
    """What else decides reference records: the probe runner, the probing helpers, torch and
    Python (their versions)."""
    here = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for name in ("probes.py", "probing.py"):
        with open(os.path.join(here, name), "rb") as fh:
            digest.update(fh.read())
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "?"
    digest.update(f"{torch_version} {sys.version}".encode())
    return digest.hexdigest()


def reference_key(program, spec_source, step_timeout):
    """Cache key of a reference run: its program (the source notebook's cells and the seeds),
    verdicts.py, the step timeout and the grading code."""
    return hashlib.sha256(json.dumps([program, spec_source, step_timeout,
                                      _grading_code_version()]).encode()).hexdigest()


@contextlib.contextmanager
def cache_lock(folder):
    """One reference run at a time per assignment, across processes (parallel graders)."""
    os.makedirs(os.path.dirname(os.path.dirname(folder)), mode=0o700, exist_ok=True)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_cached(folder, key):
    """The cached ProbeRun for ``key``, or None."""
    try:
        fd = os.open(os.path.join(folder, key + ".json"), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
            return ProbeRun(data["records"], [], True, "(cached)")
        except (ValueError, KeyError, TypeError):
            return None


def write_cached(folder, key, run):
    """Store a clean reference run (mode 0600) and drop the entries it replaces."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".entry-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"records": run.records}, fh)
    os.replace(tmp, os.path.join(folder, key + ".json"))
    for name in os.listdir(folder):
        if name.endswith(".json") and name != key + ".json":
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
