"""Cheating at autograding, and honest slips, tried against the real nbgrader with this repo's config.

Every attack a dishonest student can plant in a notebook or a submitted folder
(tests/fixtures/grading/attacks.py) is graded in a temporary course, in one autograde call:
input and AST transformers, pre_run_cell and sys.settrace hooks, monkeypatched torch and
builtins, reading solutions/ and the gradebook, writing outside the submission, the network, a
submitted symlink, a submitted and a generated directory tree 1,500 levels deep with links to the
instructor's files, a stack walk for the verdict request, a script in Markdown, a grade id that
writes Markdown, a full disk, memory over the sandbox's cap, forged verdict records, fork and
memory bombs, huge output, os._exit, an endless cell that ignores interrupts, tampered and
deleted test cells, invalid JSON. Each must score what attacks.expected_demo says (never a hidden
point for a wrong answer), honest slips (deleted, duplicated and unknown cells, a notebook without
metadata) keep full marks, no submission is dropped, the report names every flagged one, and the
feedback pages run no script, load nothing from the network and show no hidden test. A run killed
with kill -9 is resumed. (Every assignment in solutions/ also gets a forger that hides its errors
and patches torch over answers that fail only the hidden tests, graded with the assignment's
other submissions in tests/test_grading_roundtrip.py: it must get 0.)

Needs bubblewrap (scripts/system-deps.sh installs it); without it these tests skip, except under
CI=true where they fail.
"""
import json
import os
import re
import stat
import socket
import subprocess
import sys
import threading
import time

import nbformat
from nbgrader.api import Gradebook, MissingEntry

from nbgrader_course import (BIN, DEMO_TIMEOUT, ROOT, active_content, demo_course, nbgrader,
                             require_sandbox, scores, submit_demo)
from sandboxed_grading.report import escape
from sandboxed_grading.verdicts import CheckVerdicts

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "grading"))
import attacks  # noqa: E402

TIMEOUT = DEMO_TIMEOUT  # seconds per cell for the demo batch (honest cells need far less)
SLOW_TIMEOUT = 8    # for the two submissions that never finish a cell


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


from sandboxed_grading.trees import walk  # noqa: E402


def tree_problems(folder):
    """Links, special files and over-deep folders below ``folder`` (never followed)."""
    from sandboxed_grading.trees import find_escapes
    return find_escapes(folder, max_depth=32) if folder.exists() else []


def seeds_of(course):
    """The demo's per-question seeds, as the grader derives them from the course secret."""
    checker = CheckVerdicts(config=load_config(course))
    from nbgrader.coursedir import CourseDirectory
    coursedir = CourseDirectory(config=checker.config)
    return [str(checker._seed(coursedir, f"demo/demo/q{n}")) for n in (1, 2, 3)]


def memory_cap_kind():
    """The sandbox-wide memory cap this machine gives the grader ("cgroup v1", "watchdog"...)."""
    from sandboxed_grading.limits import SandboxGroup
    group = SandboxGroup(2**30, 8)
    group.stop()
    return group.kind


def load_config(course):
    from traitlets.config.loader import PyFileConfigLoader
    cwd = os.getcwd()
    os.chdir(course)
    try:
        return PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    finally:
        os.chdir(cwd)


# Each expensive batch is one test (with subtests), so that pytest-xdist never grades it twice.

def test_every_attack_on_the_demo_assignment(tmp_path, subtests):
    """One autograde call grades the honest, blank and every dishonest or sloppy demo submission;
    the two that never finish a cell are graded meanwhile, with a short timeout, in a second
    course. Then one generate_feedback call, whose pages are checked too."""
    require_sandbox()
    listener = Listener()
    course, slow = demo_course(tmp_path / "main"), demo_course(tmp_path / "slow")
    secret = course / "course" / "verdict-secret"
    source = course / "solutions" / "demo" / "demo.ipynb"
    source_mode = stat.S_IMODE(source.stat().st_mode)
    subs, slow_subs = attacks.demo_submissions(listener.port), attacks.demo_slow_submissions()
    del subs["custom exception handler"]  # no effect even on stock nbgrader (compare_stock.py)
    submit_demo(course, subs)
    submit_demo(slow, slow_subs)
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
    memory_cap = memory_cap_kind()

    for student in subs:
        with subtests.test(msg=student):
            assert got[student] is not None, f"{student}: dropped from the gradebook"
            assert got[student] == attacks.expected_demo(student, memory_cap), (
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
        for student in ("honest", "blank", "edge-case miss", "lurker"):
            assert kinds(report[student]) == set(), f"{student} flagged: {report[student]}"
        for student in ("input transformer", "AST transformer", "pre_run_cell hook", "sys.settrace hook",
                        "monkeypatched torch", "monkeypatched builtins", "forged-records"):
            assert "rigged kernel" in kinds(report[student]), f"{student}: {report[student]}"
        expected = {"suicide": "kernel died", "bombs": "huge output", "invalid-json": "invalid notebook",
                    "forged-records": "forged record", "symlink": "quarantined file",
                    "vandal": "quarantined file", "hog": "memory limit"}
        for student, kind in expected.items():
            assert kind in kinds(report[student]), f"{student}: {report[student]}"
        for student in ("sloppy", "fresh-notebook"):
            assert kinds(report[student]) == {"repaired notebook"}, report[student]
        assert {"repaired notebook", "tampered cell"} <= kinds(report["tamper"])
        tampered = {f.get("cell") for f in report["tamper"]["demo"]["flags"]}
        assert {"q2_visible", "q3_hidden"} <= tampered, report["tamper"]
        verdicts = report["edge-case miss"]["demo"]["verdicts"]
        assert verdicts["q1"].startswith("checks that failed: the blended values"), verdicts
        for student in report:
            flagged = bool(kinds(report[student])) or any(
                v != "pass" for v in report[student]["demo"]["verdicts"].values())
            assert (f"### {escape(student)} / demo" in markdown) == flagged, student

    with subtests.test(msg=f"the memory cap holds for the sandbox as a whole ({memory_cap})"):
        out = nbformat.read(course / "course" / "autograded" / "hog" / "demo" / "demo.ipynb", 4)
        printed = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
        held = re.search(r"held 1.2 GiB at once: (\d) of 4", printed)
        if memory_cap.startswith("cgroup"):  # the children were killed, the kernel went on
            assert held and int(held.group(1)) < 3, printed[-500:]
        else:                                # the watchdog killed the whole sandbox
            assert not held and "kernel died" in kinds(report["hog"]), printed[-500:]

    with subtests.test(msg="the verdicts ran in the kernel's sandbox, after everything it left"):
        # torch imported once per submission (sandboxed_grading/zygote.py); the lurker's
        # process and files were gone before the hidden tests entered its sandbox (it scored
        # full marks above), and it could not open the memory of the process that runs them.
        for student in ("honest", "lurker", "edge-case miss", "vandal"):
            assert report[student]["demo"]["verdicts_in"] == "the kernel's sandbox", student
        out = nbformat.read(course / "course" / "autograded" / "lurker" / "demo" / "demo.ipynb", 4)
        printed = "".join(o.get("text", "") for c in out.cells for o in c.get("outputs", []))
        assert printed.count("refused:") == 2 and "LEAK" not in printed, printed[-500:]
        assert report["blank"]["demo"]["verdicts_in"] is None, "a blank notebook needs none"

    with subtests.test(msg="student code saw no solution, no gradebook, no network"):
        assert listener.received == [], "student code reached the network"
        outside = [rel for rel, _, _ in walk(course, max_depth=12)
                   if rel.endswith("PWNED") and not rel.startswith("course/autograded")]
        assert outside == [], f"student code wrote outside its folder: {outside}"
        assert manual_scores(course) == [], "student code rewrote its grades in the gradebook"

    with subtests.test(msg="nothing outside a submission was changed, copied or linked"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, "the verdict secret was chmod-ed"
        assert stat.S_IMODE(source.stat().st_mode) == source_mode, "the source was chmod-ed"
        autograded = course / "course" / "autograded"
        assert tree_problems(autograded) == [], "links or deep trees in autograded/"
        sizes = {s: sum(f.stat().st_size for f in (autograded / s).rglob("*") if f.is_file())
                 for s in subs if (autograded / s).exists()}
        assert max(sizes.values()) < 2**20, f"the disk filler left files behind: {sizes}"
        quarantine = course / "course" / "quarantine" / "demo" / "vandal"
        assert quarantine.is_dir() and (course / "course" / "submitted" / "vandal" / "demo" /
                                        "demo.ipynb").is_file(), "moved, not lost"
        assert tree_problems(course / "course" / "submitted") == [], "submitted/ cleaned"

    with subtests.test(msg="the report escapes what students control"):
        assert "\n### honest / demo" not in markdown, "a grade id wrote a heading"
        assert "<!--" not in markdown and "<script" not in markdown

    with subtests.test(msg="the verdict process exposes nothing"):
        probe_lines = [line.strip() for line in (attacks.DEMO / "verdicts.py").read_text().splitlines()
                       if "ns[" in line]
        leaked = [word for word in (*probe_lines, *seeds_of(course)) if word in markdown
                  or word in json.dumps(report)]
        assert leaked == [], f"the report shows {leaked}"

    with subtests.test(msg="feedback: safe to open, offline, no hidden tests, no secrets"):
        nbgrader(course, "generate_feedback", "demo")
        feedback = course / "course" / "feedback"
        pages = {p.parts[-3]: p.read_text() for p in feedback.glob("*/demo/demo.html")}
        assert set(pages) == set(subs), set(subs) - set(pages)
        hidden_source = [line.strip() for line in (attacks.DEMO / "verdicts.py").read_text().splitlines()
                         if "ns[" in line]
        forbidden = [secret.read_text().strip(), *seeds_of(course), *hidden_source]
        for student, page in pages.items():
            found = [word for word in forbidden if word in page] + active_content(page)
            assert found == [], f"{student}'s feedback contains {found}"
        assert "Hidden tests of question 1 passed" in pages["honest"]
        assert "checks that failed: the blended values" in pages["edge-case miss"]
        assert tree_problems(feedback) == []
        files = [p for p in feedback.rglob("*") if p.is_file()]
        assert all(p.suffix in (".html", ".txt") for p in files), files

    with subtests.test(msg="regrading gives the same grades and verdicts"):
        nbgrader(course, "autograde", "demo", "--force", "--student=honest", f"--Execute.timeout={TIMEOUT}",
                 check=False)
        assert demo_scores(course, subs) == got
        again, _ = read_report(course)
        assert again["honest"]["demo"]["graded_at"] != report["honest"]["demo"]["graded_at"], "regraded"
        assert again["honest"]["demo"]["verdicts"] == report["honest"]["demo"]["verdicts"] == {
            "q1": "pass", "q2": "pass", "q3": "pass"}
    from sandboxed_grading.trees import remove_tree
    remove_tree(course / "course" / "quarantine")  # 1,500 levels: pytest's own cleanup recurses


def test_a_killed_run_is_resumed(tmp_path):
    """kill -9 while a submission is being graded: the next run grades it again, from the start,
    and says so (stock nbgrader skips it: its autograded folder exists)."""
    require_sandbox()
    course = demo_course(tmp_path)
    submit_demo(course, {"first": (attacks.demo_solutions(), None)})
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([str(BIN / "nbgrader"), "autograde", "demo", f"--Execute.timeout={TIMEOUT}"],
                            cwd=course, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    half_done = course / "course" / "autograded" / "first" / "demo" / "demo.ipynb"
    deadline = time.monotonic() + 300
    while not half_done.exists() and time.monotonic() < deadline:  # sanitized, now executing
        time.sleep(0.05)
    os.killpg(proc.pid, 9)
    proc.wait()
    assert half_done.exists(), "the run was killed before it reached the first submission"
    again = nbgrader(course, "autograde", "demo", f"--Execute.timeout={TIMEOUT}", check=False)
    assert "Skipping existing assignment" not in again.stdout + again.stderr
    assert demo_scores(course, ["first"]) == {"first": attacks.FULL}
    report, _ = read_report(course)
    assert "interrupted" in kinds(report["first"]), report["first"]
    assert not list((course / "course" / "in-progress").glob("*")), "marks cleared"


def test_no_sandbox_refuses_unless_the_instructor_allows_it(tmp_path):
    require_sandbox()
    course = demo_course(tmp_path)
    submit_demo(course, {"honest": (attacks.demo_solutions(), None)})
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
