"""The instructor flow end to end with the real nbgrader CLI, in a temporary course.

For every assignment in solutions/, in one autograde call: the solution scores full marks on every
autograded cell (the "predict and explain" answer waits for the instructor), the blank release
scores 0, the planted wrong answers (tests/planted/<assignment>.py), in two notebooks (odd and
even questions), lose exactly their questions' points, and a forger gets 0: the answers that fail
only the hidden tests, behind an AST transformer that swallows every error and patched torch, so
that the notebook's own tests all pass and only the assignment's verdicts.py can take the points
away (flagged "rigged kernel"). Needs the grading sandbox, like every autograde here.
For chapter 1 also: a syntax error, an infinite loop (the cell times out, grading finishes), a
deleted test cell (restored and graded) and an invalid-JSON notebook (a clear error naming the
file; the other students are still graded); then feedback and the CSV export, checked.
"""
import csv
import json
import re
import zipfile

import nbformat
import pytest
from nbgrader.api import Gradebook

from nbgrader_course import (ASSIGNMENTS, ROOT, _attacks, answer_cell, graded_cells, make_course,
                             nbgrader, planted_wrong_answers, question_points, require_sandbox,
                             scores, solved_release, submit)

EDGE_CASE_ASSIGNMENT = "ch01_buffers"
CELL_TIMEOUT = 15  # seconds per cell in these tests; the course default is in nbgrader_config.py
LOOP_TIMEOUT = 8   # for the course with an endless loop (its honest cells need well under 1 s)



# --- the tests ----------------------------------------------------------------------------------

def manual_cells(nb):
    """Grade ids of the answers the instructor grades by hand (graded Markdown answers)."""
    return {c.metadata.nbgrader["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.metadata.nbgrader.get("solution")
            and c.cell_type == "markdown"}


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_solution_full_blank_zero_wrong_answers_lose_their_points_forger_gets_zero(tmp_path, aid):
    require_sandbox()
    assert (ROOT / "solutions" / aid / "verdicts.py").is_file(), (
        f"solutions/{aid}/verdicts.py is missing")
    course = make_course(tmp_path, aid)
    source = nbformat.read(course / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    manual = manual_cells(source)
    points = {gid: p for gid, p in graded_cells(source).items() if gid not in manual}
    total = sum(points.values())
    questions = sorted({gid.split("_")[0] for gid in points})
    assert len(questions) >= 3 and total > 0, f"{aid}: needs at least 3 graded questions"
    for q in questions:  # each question has a visible and a hidden test
        assert {f"{q}_visible", f"{q}_hidden"} <= set(points), f"{aid}: {q} needs both tests"
    assert len(manual) <= 1, f"{aid}: at most one hand-graded answer"

    wrong = planted_wrong_answers(aid)
    assert set(wrong) == set(questions), f"{aid}: one planted wrong answer per question"
    groups = {"odd": [q for i, q in enumerate(questions) if i % 2 == 0],
              "even": [q for i, q in enumerate(questions) if i % 2 == 1]}
    submit(course, aid, "solution", solved_release(course, aid))
    submit(course, aid, "blank", nbformat.read(course / "exercises" / aid / f"{aid}.ipynb", 4))
    for name, group in groups.items():
        nb = solved_release(course, aid)
        for q in group:
            answer_cell(nb, q).source = wrong[q]
        submit(course, aid, f"wrong-{name}", nb)
    forger = nbformat.read(course / "exercises" / aid / f"{aid}.ipynb", as_version=4)
    for q, wrong_source in planted_wrong_answers(aid, "HIDDEN_ONLY").items():
        answer_cell(forger, q).source = wrong_source
    payloads = _attacks().PAYLOADS
    first = answer_cell(forger, "q1")
    first.source = payloads["AST transformer"] + payloads["monkeypatched torch"] + first.source
    submit(course, aid, "forger", forger)

    run = nbgrader(course, "autograde", aid, f"--Execute.timeout={CELL_TIMEOUT}", check=False)
    students = ["solution", "blank", *(f"wrong-{name}" for name in groups), "forger"]
    got = scores(course, aid, students)
    auto = {s: {gid: v for gid, v in got[s].items() if gid not in manual} for s in students}

    assert auto["solution"] == {gid: float(p) for gid, p in points.items()}, "solution: full marks"
    assert sum(v or 0 for v in got["blank"].values()) == 0, f"blank release scored {got['blank']}"
    for name, group in groups.items():
        lost = {gid for gid, p in points.items() if auto[f"wrong-{name}"][gid] != p}
        assert lost == {g for g in points if g.split("_")[0] in group}, (
            f"wrong answers to {group} should lose exactly their tests, lost {sorted(lost)}")
    assert sum(v or 0 for v in got["forger"].values()) == 0, (
        f"the forger kept {got['forger']}\n{run.stderr[-3000:]}")
    entry = json.loads((course / "course" / "reports" / f"{aid}.json").read_text())["forger"][aid]
    assert entry["verdicts"] and all(v != "pass" for v in entry["verdicts"].values()), entry
    assert "rigged kernel" in {f["kind"] for f in entry["flags"]}, "the notebook's own tests passed"


@pytest.mark.skipif(EDGE_CASE_ASSIGNMENT not in ASSIGNMENTS, reason="chapter 1 assignment missing")
def test_broken_submissions_feedback_and_export(tmp_path):
    require_sandbox()
    aid = EDGE_CASE_ASSIGNMENT
    course = make_course(tmp_path, aid)
    source = nbformat.read(course / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    manual = manual_cells(source)
    points = {gid: p for gid, p in graded_cells(source).items() if gid not in manual}
    total = sum(points.values())

    # the solution comes in through zip_collect, as downloaded from an LMS
    archive = course / "course" / "downloaded" / aid / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        zf.writestr(f"solution__{aid}.ipynb", nbformat.writes(solved_release(course, aid)))
    nbgrader(course, "zip_collect", aid)
    assert (course / "course" / "submitted" / "solution" / aid / f"{aid}.ipynb").is_file()
    syntax = solved_release(course, aid)
    answer_cell(syntax, "q1").source = "def broken(:\n    pass"
    submit(course, aid, "syntax-error", syntax)
    loop = solved_release(course, aid)
    answer_cell(loop, "q1").source = "while True:\n    pass"
    submit(course, aid, "infinite-loop", loop)
    deleted = solved_release(course, aid)
    deleted.cells = [c for c in deleted.cells
                     if c.metadata.get("nbgrader", {}).get("grade_id") != "q2_visible"]
    submit(course, aid, "deleted-test", deleted)
    submit(course, aid, "invalid-json", '{"cells": [ this is not json')

    proc = nbgrader(course, "autograde", aid, f"--Execute.timeout={LOOP_TIMEOUT}", check=False)
    log = proc.stdout + proc.stderr
    assert re.search(r"error processing assignment.*invalid-json", log), "names the submission"
    assert "Notebook does not appear to be JSON" in log, "says what is wrong with it"
    graded = ["solution", "syntax-error", "infinite-loop", "deleted-test"]
    got = scores(course, aid, graded)

    q1 = question_points(source, "q1")
    got = {s: {gid: v for gid, v in grades.items() if gid not in manual} for s, grades in got.items()}
    assert sum(got["solution"].values()) == total
    assert sum(got["syntax-error"].values()) == total - q1, "a syntax error loses only q1"
    assert sum(got["infinite-loop"].values()) == total - q1, "a timeout loses only q1"
    assert got["deleted-test"]["q2_visible"] == points["q2_visible"], "deleted test restored"
    assert sum(got["deleted-test"].values()) == total
    with Gradebook(f"sqlite:///{course / 'course' / 'gradebook.db'}") as gb:
        ids = {s.student.id for s in gb.assignment_submissions(aid)}
    assert set(graded) <= ids, "the other students are graded despite the broken notebook"

    nbgrader(course, "generate_feedback", aid)
    for student in graded:
        html = course / "course" / "feedback" / student / aid / f"{aid}.html"
        assert html.is_file(), f"no feedback for {student}"
        score, out_of = re.search(r"Score: ([\d.]+) / ([\d.]+)", html.read_text()).groups()
        manual_points = sum(graded_cells(source)[gid] for gid in manual)
        assert (float(score), float(out_of)) == (sum(got[student].values()), total + manual_points)

    nbgrader(course, "export", "--to", str(course / "grades.csv"))
    with open(course / "grades.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    for student in graded:
        assert float(rows[student]["raw_score"]) == sum(got[student].values())
        assert float(rows[student]["max_score"]) == total + manual_points
    assert float(rows["invalid-json"]["score"]) == 0, "the broken submission is listed with 0"
