"""Parallel grading on one machine (python -m sandboxed_grading.parallel, book/instructor-guide.md
"Grading in parallel") against the real nbgrader, in temporary demo courses.

It must record what `nbgrader autograde` records (same gradebook rows and comments, report
entries, autograded notebooks, quarantine), for honest, blank, wrong, broken and tampered
submissions; a worker that crashes gets its submission tried once more, and a submission whose
worker keeps failing is reported "not graded" (no gradebook entry, exit status 1: never a silent
0) and graded by the next run; a coordinator killed with kill -9 leaves a state the next run
finishes. Needs bubblewrap: without it these tests skip, except under CI=true where they fail.
"""
import json
import os
import re
import signal
import subprocess
import sys

import nbformat

from nbgrader_course import (BIN, DEMO_TIMEOUT, _attacks, demo_course, gradebook_state, grading,
                             require_sandbox, submit_demo)

attacks = _attacks()
TIMEOUT = f"--Execute.timeout={DEMO_TIMEOUT}"  # the demo courses' reference verdicts are for it


def sqlite_url(course):
    return f"sqlite:///{course / 'course' / 'gradebook.db'}"


def report_entries(course):
    data = json.loads((course / "course" / "reports" / "demo.json").read_text())
    for student in data.values():
        for entry in student.values():
            entry.pop("graded_at")
    return data


def notebook_view(course, student):
    """The autograded notebook as a reader sees it: each cell's source and outputs."""
    path = course / "course" / "autograded" / student / "demo" / "demo.ipynb"
    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        outputs = [{k: v for k, v in o.items() if k not in ("execution_count", "metadata")}
                   for o in cell.get("outputs", [])]
        cells.append((cell.cell_type, cell.source, json.dumps(outputs, sort_keys=True)))
    return cells


def test_parallel_grading_records_what_autograde_records(tmp_path):
    require_sandbox()
    sol, wrong = attacks.demo_solutions(), attacks.DEMO_WRONG
    # (a wrong answer is "tamper"'s q3: its verdict is recorded like any other)
    subs = {"honest": (sol, None), "blank": ({}, None),
            "symlink": (dict.fromkeys(sol, attacks.read_linked_solution()), "symlink"),
            "tamper": ({**sol, "q3_answer": wrong["q3_answer"]}, "tamper"),
            "suicide": ({**sol, "q2_answer": attacks.SUICIDE}, None),
            "invalid-json": (None, "invalid")}
    serial, parallel = demo_course(tmp_path / "serial"), demo_course(tmp_path / "parallel")
    # (demo courses share one verdict secret: the same seeds, so the same hidden-test verdicts)
    submit_demo(serial, subs)
    submit_demo(parallel, subs)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    stock = subprocess.Popen([str(BIN / "nbgrader"), "autograde", "demo", TIMEOUT], cwd=serial,
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = grading(parallel, "demo", "--workers", "2", TIMEOUT)
    stock.wait(timeout=900)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]

    got = gradebook_state(sqlite_url(parallel), "demo", subs)
    assert got == gradebook_state(sqlite_url(serial), "demo", subs)
    for student in subs:
        want = attacks.expected_demo(student)
        assert {gid: g[0] for gid, g in got[student]["grades"].items()} == want, student
    assert report_entries(parallel) == report_entries(serial)
    for student in set(subs) - {"invalid-json"}:
        assert notebook_view(parallel, student) == notebook_view(serial, student), student
    for course in (serial, parallel):
        manifest = next((course / "course" / "quarantine" / "demo" / "symlink").glob("*/manifest.json"))
        assert [e["path"] for e in json.loads(manifest.read_text())["entries"]] == ["notes.txt"]
    lines = [line for line in log.splitlines() if re.match(r"\[\s*\d+/6\] ", line)]
    assert len(lines) == 6 and all("ETA" in line for line in lines), log[-2000:]
    assert any(line.startswith("[") and "honest: 5 / 5" in line for line in lines), lines
    assert not list((parallel / "course" / "in-progress").glob("*")), "marks cleared"


FAULTS = """\
import os
import sandboxed_grading.worker as worker

real = worker.grade_or_raise


def grade_or_raise(job, context):
    # the worker process dies: "crasher" on its first attempt, "doomed" on every one
    mark = os.path.join({folder!r}, job["student"])
    first = not os.path.exists(mark)
    open(mark, "a").close()
    if job["student"] == "doomed" or (job["student"] == "crasher" and first):
        os._exit(3)
    return real(job, context)


worker.grade_or_raise = grade_or_raise
"""


def test_crashes_are_retried_once_never_a_silent_zero_and_a_killed_run_resumes(tmp_path):
    require_sandbox()
    course = demo_course(tmp_path / "course")
    sol = attacks.demo_solutions()
    students = ["crasher", "doomed", "fine"]
    submit_demo(course, {s: (sol, None) for s in students})
    (tmp_path / "marks").mkdir()
    (tmp_path / "faults.py").write_text(FAULTS.format(folder=str(tmp_path / "marks")))
    faulty = subprocess.run(
        [sys.executable, "-c", "import sys, faults; from sandboxed_grading.parallel import main; "
         "sys.exit(main(sys.argv[1:]))", "demo", "--workers", "2", TIMEOUT],
        cwd=course, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                 PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
    log = faulty.stdout + faulty.stderr
    assert faulty.returncode == 1, log[-3000:]
    assert "crasher: worker failed (the worker process died (exit code 3)); trying once more" in log
    assert "NOT GRADED: doomed: the worker process died (exit code 3)" in log
    state = gradebook_state(sqlite_url(course), "demo", students)
    assert state["doomed"] is None, "nothing recorded for it: no silent 0"
    for student in ("crasher", "fine"):
        assert {gid: g[0] for gid, g in state[student]["grades"].items()} == attacks.FULL
    entry = report_entries(course)["doomed"]["demo"]
    assert [f["kind"] for f in entry["flags"]] == ["not graded"] and entry["score"] is None

    again = grading(course, "demo", "--workers", "2", TIMEOUT)  # no faults: grades doomed only
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert re.search(r"\[1/1\] doomed: 5 / 5", again.stdout + again.stderr)
    state = gradebook_state(sqlite_url(course), "demo", students)
    assert all(state[s] and sum(g[0] for g in state[s]["grades"].values()) == 5 for s in students)

    # kill -9 the coordinator (its workers die with it) once the first submission is recorded:
    # the second worker's submission is in flight
    proc = subprocess.Popen([sys.executable, "-m", "sandboxed_grading.parallel", "demo", "--force",
                             "--workers", "2", TIMEOUT], cwd=course, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}"))
    for line in proc.stdout:
        if line.startswith("[1/3]"):
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    left = {p.name for p in (course / "course" / "in-progress").glob("*")}
    assert left, "the submissions sent but not recorded are still marked in progress"
    resumed = grading(course, "demo", "--workers", "2", TIMEOUT)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    state = gradebook_state(sqlite_url(course), "demo", students)
    assert all(sum(g[0] for g in state[s]["grades"].values()) == 5 for s in students)
    interrupted = [s for s in students
                   if "interrupted" in {f["kind"] for f in report_entries(course)[s]["demo"]["flags"]}]
    assert len(interrupted) == len(left), (interrupted, left)
    assert not list((course / "course" / "in-progress").glob("*"))
