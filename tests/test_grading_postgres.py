"""The gradebook on PostgreSQL (``c.CourseDirectory.db_url = "postgresql+psycopg2://..."``;
book/instructor-guide.md, "A PostgreSQL gradebook"), against a real server from Debian's
packages, started here in a temporary data directory as an unprivileged user, reachable only
through a Unix socket in that directory, and stopped afterwards (tests/postgres_server.py).

Every command works on it: generate_assignment, autograde, two parallel graders at once on
different students (nothing lost, in the gradebook or the report), generate_feedback, export,
and the formgrader (python -m sandboxed_grading.formgrader, whose API lists the same scores).
Student code cannot reach the server. Fails, never skips, under CI=true when PostgreSQL or the
sandbox cannot start.
"""
import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import nbformat
import pytest

from nbgrader_course import (BIN, DEMO_TIMEOUT, _attacks, demo_course, gradebook_state, grading,
                             nbgrader, require, require_sandbox, submit_demo)
from postgres_server import PostgresServer, PostgresUnavailable

attacks = _attacks()
TIMEOUT = f"--Execute.timeout={DEMO_TIMEOUT}"  # the demo courses' reference verdicts are for it


@pytest.fixture(scope="module")
def postgres():
    server = PostgresServer()
    try:
        server.__enter__()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        require("a PostgreSQL server", str(exc))
    try:
        yield server
    finally:
        server.__exit__(None, None, None)


def snoop(folder):
    """An answer that tries to reach the gradebook's server, by its socket and by TCP."""
    return textwrap.dedent(f"""\
        import socket
        for family, address in ((socket.AF_UNIX, {os.path.join(folder, '.s.PGSQL.5432')!r}),
                                (socket.AF_INET, ("127.0.0.1", 5432))):
            try:
                socket.socket(family).connect(address)
                print("REACHED", address)
            except OSError as exc:
                print("refused", type(exc).__name__)
        """)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def formgrader_scores(course, timeout=120):
    """{student: score} from the formgrader's API, served by python -m sandboxed_grading.formgrader."""
    port, token = free_port(), os.urandom(8).hex()
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    server = subprocess.Popen([sys.executable, "-m", "sandboxed_grading.formgrader", "--allow-root",
                               f"--port={port}", f"--IdentityProvider.token={token}",
                               "--ServerApp.port_retries=0"], cwd=course, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/formgrader/api/submissions/demo",
                headers={"Authorization": f"token {token}"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return {s["student"]: s["score"] for s in json.load(response)}
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_every_command_on_a_postgresql_gradebook(tmp_path, postgres):
    require_sandbox()
    db_url = postgres.create_database("gradebook")
    course = demo_course(tmp_path / "course", db_url=db_url)
    sol, wrong = attacks.demo_solutions(), attacks.DEMO_WRONG
    subs = {"honest": (sol, None), "blank": ({}, None), "edge-case miss": (wrong, None),
            "mallory": ({"q1_answer": snoop(postgres.folder)}, None), "late": (sol, None)}
    submit_demo(course, subs)

    nbgrader(course, "autograde", "demo", "--student=honest", TIMEOUT, check=False)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    first = subprocess.Popen([sys.executable, "-m", "sandboxed_grading.parallel", "demo",
                              "--workers", "1", "--student=[bem]*", TIMEOUT], cwd=course, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = grading(course, "demo", "--workers", "1", "--student=late", TIMEOUT)
    first_log = first.communicate(timeout=900)[0]
    assert first.returncode == 0 and second.returncode == 0, (first_log + second.stderr)[-3000:]

    state = gradebook_state(db_url, "demo", subs)
    scores = {s: sum(g[0] for g in state[s]["grades"].values()) for s in subs}
    assert scores == {"honest": 5, "blank": 0, "edge-case miss": 2, "mallory": 0, "late": 5}
    report = json.loads((course / "course" / "reports" / "demo.json").read_text())
    assert set(report) == set(subs), "two graders at once: no report entry lost"
    assert not (course / "reports").exists(), "state stays in course/, beside the submissions"

    graded = nbformat.read(course / "course" / "autograded" / "mallory" / "demo" / "demo.ipynb", 4)
    out = "".join(o.get("text", "") for c in graded.cells for o in c.get("outputs", []))
    assert "REACHED" not in out and out.count("refused") == 2, f"the server is out of reach: {out}"

    nbgrader(course, "generate_feedback", "demo")
    pages = sorted(p.parts[-3] for p in (course / "course" / "feedback").glob("*/demo/demo.html"))
    assert pages == sorted(subs)
    nbgrader(course, "export")
    with open(course / "course" / "grades.csv") as fh:
        rows = {r["student_id"]: float(r["raw_score"]) for r in csv.DictReader(fh)}
    assert rows == scores
    assert formgrader_scores(course) == scores
