"""Cheating at autograding, tried against the real `nbgrader autograde` with this repo's config.

Every attack a dishonest student can plant in a notebook (tests/fixtures/grading/attacks.py) is
graded in a temporary course: input and AST transformers, a custom exception handler, pre_run_cell
and sys.settrace hooks, monkeypatched torch and builtins, reading solutions/ and the gradebook,
writing outside the submission, the network, a submitted symlink, forged verdict records, fork
and memory bombs, huge output, os._exit, an endless cell that ignores interrupts, tampered and
deleted test cells, invalid JSON. Each must score 0 on the questions it attacks, while the honest
solution keeps full marks, no submission is dropped, and the report names every flagged one.
Then every assignment in solutions/ gets a forger that swallows its test errors and patches torch
over the planted wrong answers: its verdicts.py must take all the points away.

Needs bubblewrap (scripts/system-deps.sh installs it); without it these tests skip, except under
CI=true where they fail.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import jupytext
import nbformat
import pytest
from nbgrader.api import Gradebook, MissingEntry

from nbgrader_course import (ASSIGNMENTS, BIN, ROOT, answer_cell, nbgrader, planted_wrong_answers,
                             scores, submit)
from sandboxed_grading.sandbox import Sandbox
from sandboxed_grading.verdicts import CheckVerdicts, compare, probe_names, steps, tolerance

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "grading"))
import attacks  # noqa: E402

TIMEOUT = 30        # seconds per cell for the demo batch (honest cells need far less)
SLOW_TIMEOUT = 8    # for the two submissions that never finish a cell


def require_sandbox():
    reason = Sandbox().unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must exercise the grading sandbox, but it cannot start: {reason}")
    pytest.skip(f"grading sandbox unavailable: {reason} (run scripts/system-deps.sh as root)")


def demo_course(path):
    """A course like the repo's, with the demo assignment from tests/fixtures/grading/demo."""
    (path / "solutions" / "demo").mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", path)
    nbformat.write(attacks.demo_source(), path / "solutions" / "demo" / "demo.ipynb")
    shutil.copy(attacks.DEMO / "verdicts.py", path / "solutions" / "demo" / "verdicts.py")
    nbgrader(path, "generate_assignment", "demo", "--force")
    return path


def submit_all(course, subs):
    for student, (answers, edit) in subs.items():
        attacks.write_submission(course, "demo", student, answers or {}, edit,
                                 course / "exercises" / "demo" / "demo.ipynb",
                                 course / "solutions" / "demo" / "demo.ipynb")


def demo_scores(course, students):
    """{student: {grade_id: score}}, None for a submission missing from the gradebook."""
    out = {}
    for student in students:
        try:
            out[student] = scores(course, "demo", [student])[student]
        except MissingEntry:
            out[student] = None
    return out


def manual_scores(course):
    """Manual scores anywhere in the gradebook (nobody graded by hand here: student code wrote them)."""
    with Gradebook(f"sqlite:///{course / 'course' / 'gradebook.db'}") as gb:
        return [g.manual_score for s in gb.assignment_submissions("demo") for n in s.notebooks
                for g in n.grades if g.manual_score is not None]


class Listener:
    """A TCP server on localhost that records whatever student code sends it."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.received.append(conn.recv(1 << 20))


def read_report(course):
    folder = course / "course" / "reports"
    return json.loads((folder / "demo.json").read_text()), (folder / "demo.md").read_text()


def kinds(entry):
    return {f["kind"] for f in entry["demo"]["flags"]}


# Each expensive batch is one test (with subtests), so that pytest-xdist never grades it twice.

def test_every_attack_on_the_demo_assignment(tmp_path, subtests):
    """One autograde call grades the honest, blank and every dishonest demo submission; the two
    that never finish a cell are graded meanwhile, with a short timeout, in a second course."""
    require_sandbox()
    listener = Listener()
    course, slow = demo_course(tmp_path / "main"), demo_course(tmp_path / "slow")
    subs, slow_subs = attacks.demo_submissions(listener.port), attacks.demo_slow_submissions()
    del subs["custom exception handler"]  # no effect even on stock nbgrader (compare_stock.py)
    submit_all(course, subs)
    submit_all(slow, slow_subs)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    slow_run = subprocess.Popen([str(BIN / "nbgrader"), "autograde", "demo", f"--Execute.timeout={SLOW_TIMEOUT}"],
                                cwd=slow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    nbgrader(course, "autograde", "demo", f"--Execute.timeout={TIMEOUT}", check=False)
    print(f"sandboxed autograde: {len(subs)} submissions in {time.monotonic() - start:.0f} s")
    slow_run.wait(timeout=600)
    listener.sock.close()
    got = demo_scores(course, subs)
    report, markdown = read_report(course)

    for student in subs:
        with subtests.test(msg=student):
            assert got[student] is not None, f"{student}: dropped from the gradebook"
            assert got[student] == attacks.expected_demo(student), (
                f"{student}: {got[student]}; report: {report.get(student)}")

    slow_got, (slow_report, _) = demo_scores(slow, slow_subs), read_report(slow)
    for student, kind in (("sleeper", "timeout"), ("deaf", "unresponsive")):
        with subtests.test(msg=student):
            assert slow_got[student] is not None, f"{student}: dropped from the gradebook"
            assert slow_got[student] == attacks.expected_demo(student), slow_report.get(student)
            assert kind in kinds(slow_report[student]), slow_report[student]

    with subtests.test(msg="every submission reported, flagged ones with their reason"):
        assert set(report) == set(subs)
        unsandboxed = {s for s in report if report[s]["demo"]["sandboxed"] is not True}
        assert unsandboxed == {"invalid-json"}, "everything else ran in the sandbox (nothing of it ran)"
        for student in ("honest", "blank"):
            assert kinds(report[student]) == set(), f"{student} flagged: {report[student]}"
        for student in ("input transformer", "AST transformer", "pre_run_cell hook", "sys.settrace hook",
                        "monkeypatched torch", "monkeypatched builtins"):
            assert "verdict overruled" in kinds(report[student]), f"{student}: {report[student]}"
        expected = {"suicide": "kernel died", "bombs": "huge output", "invalid-json": "invalid notebook",
                    "forged-records": "forged record", "symlink": "sandbox violation",
                    "snoop": "sandbox violation"}
        for student, kind in expected.items():
            assert kind in kinds(report[student]), f"{student}: {report[student]}"
        assert {"deleted cell", "tampered cell"} <= kinds(report["tamper"])
        tampered = {f.get("cell") for f in report["tamper"]["demo"]["flags"]}
        assert {"q1_hidden", "q2_visible", "q3_hidden"} <= tampered
        for student in report:
            assert (f"### {student} / demo" in markdown) == bool(kinds(report[student])), student

    with subtests.test(msg="student code saw no solution, no gradebook, no network"):
        assert listener.received == [], "student code reached the network"
        outside = [p for p in course.rglob("PWNED") if "autograded" not in p.parts]
        assert outside == [], f"student code wrote outside its folder: {outside}"
        assert not (course / "course" / "autograded" / "snoop" / "demo" / "escape").exists(), "link kept"
        assert not (course / "course" / "submitted" / "symlink" / "demo" / "notes.txt").is_symlink()
        assert manual_scores(course) == [], "student code rewrote its grades in the gradebook"

    with subtests.test(msg="regrading gives the same grades and verdicts"):
        nbgrader(course, "autograde", "demo", "--force", "--student=honest", f"--Execute.timeout={TIMEOUT}",
                 check=False)
        assert demo_scores(course, subs) == got
        again, _ = read_report(course)
        assert again["honest"]["demo"]["graded_at"] != report["honest"]["demo"]["graded_at"], "regraded"
        assert again["honest"]["demo"]["verdicts"] == report["honest"]["demo"]["verdicts"] == {
            "q1": "pass", "q2": "pass", "q3": "pass"}


def test_no_sandbox_refuses_unless_the_instructor_allows_it(tmp_path):
    require_sandbox()
    course = demo_course(tmp_path)
    submit_all(course, {"honest": (attacks.demo_solutions(), None)})
    missing = "--Sandbox.bwrap=/nonexistent/bwrap"
    refused = nbgrader(course, "autograde", "demo", missing, check=False)
    assert refused.returncode != 0
    assert "refusing to run student code unsandboxed" in refused.stdout + refused.stderr
    assert not (course / "course" / "autograded" / "honest" / "demo" / "demo.ipynb").exists()
    report, _ = read_report(course)
    assert [f["kind"] for f in report["honest"]["demo"]["flags"]] == ["refused"]

    env = dict(os.environ, SANDBOXED_GRADING_ALLOW_UNSANDBOXED="1",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    allowed = subprocess.run([str(BIN / "nbgrader"), "autograde", "demo", "--force", missing,
                              f"--Execute.timeout={TIMEOUT}"], cwd=course, env=env,
                             capture_output=True, text=True, timeout=600)
    assert "grading WITHOUT the sandbox" in allowed.stdout + allowed.stderr
    assert demo_scores(course, ["honest"])["honest"] == attacks.FULL
    report, markdown = read_report(course)
    assert report["honest"]["demo"]["sandboxed"] is False
    assert report["honest"]["demo"]["verdicts"] == {"q1": "pass", "q2": "pass", "q3": "pass"}
    assert "unsandboxed" in kinds(report["honest"])
    assert "| honest | demo | 5 / 5 | **NO** |" in markdown


def test_forged_passes_lose_every_point_in_every_assignment(tmp_path, subtests):
    """For every assignment in solutions/ (one course, one autograde call): the planted wrong
    answers behind an AST transformer that swallows every error, and patched torch. The notebook's
    own tests all pass, so only the assignment's verdicts.py can take the points away."""
    require_sandbox()
    assert ASSIGNMENTS, "no assignment found in solutions/"
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    for aid in ASSIGNMENTS:
        shutil.copytree(ROOT / "solutions" / aid, tmp_path / "solutions" / aid)
    nbgrader(tmp_path, "generate_assignment", "*", "--force")
    for aid in ASSIGNMENTS:
        forger = nbformat.read(tmp_path / "exercises" / aid / f"{aid}.ipynb", as_version=4)
        for q, source in planted_wrong_answers(aid).items():
            answer_cell(forger, q).source = source
        first = answer_cell(forger, "q1")
        first.source = attacks.PAYLOADS["AST transformer"] + attacks.PAYLOADS["monkeypatched torch"] + first.source
        submit(tmp_path, aid, "forger", forger)
    run = nbgrader(tmp_path, "autograde", "*", f"--Execute.timeout={TIMEOUT}", check=False)
    for aid in ASSIGNMENTS:
        with subtests.test(msg=aid):
            assert (ROOT / "solutions" / aid / "verdicts.py").is_file(), f"solutions/{aid}/verdicts.py is missing"
            assert planted_wrong_answers(aid), f"tests/planted/{aid}.py is missing"
            got = scores(tmp_path, aid, ["forger"])["forger"]
            assert sum(got.values()) == 0, f"{aid}: the forger kept {got}\n{run.stderr[-3000:]}"
            entry = json.loads((tmp_path / "course" / "reports" / f"{aid}.json").read_text())["forger"][aid]
            assert entry["verdicts"] and all(v.startswith("fail") for v in entry["verdicts"].values()), entry
            assert "verdict overruled" in {f["kind"] for f in entry["flags"]}, "the notebook's own tests passed"


# --- the trusted comparison, without nbgrader ----------------------------------------------------

def test_compare_names_the_difference_never_the_expected_values():
    def tensor(values, dtype="torch.float32"):
        return {"tensor": {"dtype": dtype, "shape": [len(values)], "values": values}}
    want = {"dict": {"x": tensor([1.0, 2.0]), "n": 3, "ok": True}}
    assert compare(want, want, 1e-5, 1e-6) is None
    assert compare({"dict": {"x": tensor([1.0, 2.0000001]), "n": 3, "ok": True}}, want, 1e-5, 1e-6) is None
    assert compare({"dict": {"x": tensor([1.0, 2.5]), "n": 3, "ok": True}}, want, 1e-5, 1e-6) == \
        "result['x']: 1 of 2 values differ"
    assert "dtype torch.float64" in compare({"dict": {"x": tensor([1.0, 2.0], "torch.float64"), "n": 3, "ok": True}},
                                            want, 1e-5, 1e-6)
    assert compare({"dict": {"x": tensor([1.0, 2.0]), "n": 3, "ok": 1}}, want, 1e-5, 1e-6) is not None, \
        "True and 1 are different answers"
    assert compare({"dict": {"x": tensor([1.0, 2.0]), "n": 3}}, want, 1e-5, 1e-6) == "result: different keys"
    assert compare({"float": "nan"}, {"float": "nan"}, 1e-5, 1e-6) is None
    assert compare({"float": 1.0}, {"float": "nan"}, 1e-5, 1e-6) is not None


def test_duplicate_or_stray_records_are_forgeries():
    record = json.dumps({"question": "q1", "ok": True, "value": 1})
    run = CheckVerdicts._parse(f"{record}\n{record}\nnot json\n{{\"done\": true}}\n".encode(), "")
    assert run.finished and run.records["q1"]["value"] == 1
    assert run.forged == ["q1: more than one record", "line 3: not a record"]
    late = CheckVerdicts._parse(f"{{\"done\": true}}\n{record}\n".encode(), "")
    assert late.records == {} and late.forged == ["line 2: record after the end"]


def test_probes_run_after_their_questions_last_test_cell():
    nb = jupytext.read(attacks.DEMO / "demo.py")
    program = steps(nb.cells, ["q1", "q2", "q3"], {"q1": 1, "q2": 2, "q3": 3})
    probes = [i for i, step in enumerate(program) if "probe" in step]
    cells = [step["cell"] for step in program if "cell" in step]
    assert [program[i]["probe"] for i in probes] == ["q1", "q2", "q3"]
    assert not any("assert" in c for c in cells), "test cells are not run by the verdict process"
    assert "def ema_update" in program[probes[0] - 1]["cell"]
    assert "class CallCounter" in program[probes[1] - 1]["cell"]


def run_probes_here(cells, spec, probes, seed):
    """The verdict process's work, in this process (trusted code only: the reference solution and
    the planted answers): run the cells, then each probe; {question: encoded result or error}."""
    import contextlib
    import io
    import random

    import torch
    from sandboxed_grading.probes import encode

    namespace, results = {"__name__": "__main__"}, {}
    spec_namespace = {"__name__": "verdicts"}
    exec(compile(spec, "verdicts.py", "exec"), spec_namespace)
    for step in steps(cells, probes, {q: seed + i for i, q in enumerate(probes)}):
        with contextlib.redirect_stdout(io.StringIO()):
            if "cell" in step:
                try:  # as in a notebook, a failing cell does not stop the next ones
                    exec(compile(step["cell"], "<cell>", "exec"), namespace)
                except Exception:  # noqa: BLE001
                    pass
                continue
            random.seed(step["seed"])
            torch.manual_seed(step["seed"])
            rng = torch.Generator().manual_seed(step["seed"])
            try:
                results[step["probe"]] = encode(spec_namespace[step["probe"]](namespace, rng))
            except Exception as exc:  # noqa: BLE001 (a wrong answer may raise anything)
                results[step["probe"]] = f"raised {type(exc).__name__}"
    return results


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_each_probe_catches_its_planted_wrong_answer_for_every_seed(aid):
    """verdicts.py must tell each planted wrong answer from the solution whatever the secret seed,
    and only in that answer's question (checked for several seeds, without the sandbox)."""
    spec = (ROOT / "solutions" / aid / "verdicts.py").read_text()
    probes = probe_names(spec)
    defaults = CheckVerdicts()
    rtol, atol = tolerance(spec, defaults.rtol, defaults.atol)
    source = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    for seed in (1, 2_000_003, 987_654_321):
        reference = run_probes_here(source.cells, spec, probes, seed)
        assert not any(isinstance(v, str) for v in reference.values()), f"{aid}: {reference}"
        for q, wrong in planted_wrong_answers(aid).items():
            nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
            answer_cell(nb, q).source = wrong
            got = run_probes_here(nb.cells, spec, probes, seed)
            differs = {p for p in probes if isinstance(got[p], str) or compare(got[p], reference[p], rtol, atol)}
            assert differs == {q}, f"{aid}, seed {seed}: the wrong answer to {q} changed the verdicts of {differs}"
