"""Grading on a Dask distributed cluster (python -m sandboxed_grading.parallel --dask ADDRESS;
book/instructor-guide.md, "Grading on several machines"), with a LocalCluster of 2 worker
processes.

A job carries everything a worker needs: one built from a copy of the course that is deleted
before the job runs is still graded, with its hidden tests. Then the demo submissions are graded
through the cluster and the coordinator records them in the course: the scores are those of
sandboxed grading. Fails, never skips, under CI=true when the sandbox or the cluster cannot
start.
"""
import shutil

import pytest

from nbgrader_course import (DEMO_TIMEOUT, _attacks, demo_course, gradebook_state, require,
                             require_sandbox, submit_demo)

attacks = _attacks()


@pytest.fixture
def cluster():
    try:
        import dask
        from distributed import Client, LocalCluster
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
            local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None)
    except Exception as exc:  # noqa: BLE001 (skip or, under CI, fail with the reason)
        require("a Dask LocalCluster", f"{type(exc).__name__}: {exc}")
    client = Client(local)
    try:
        yield client
    finally:
        client.close()
        local.close()


def test_a_dask_cluster_grades_without_the_course_folder(tmp_path, monkeypatch, cluster):
    require_sandbox()
    from sandboxed_grading import parallel, worker
    sol, wrong = attacks.demo_solutions(), attacks.DEMO_WRONG
    subs = {"honest": (sol, None), "blank": ({}, None), "edge-case miss": (wrong, None),
            "invalid-json": (None, "invalid")}
    course = demo_course(tmp_path / "course")
    submit_demo(course, subs)

    copy = shutil.copytree(course, tmp_path / "copy", symlinks=True)
    monkeypatch.chdir(copy)
    app = parallel._load("demo", [f"--Execute.timeout={DEMO_TIMEOUT}"])
    context = worker.make_context(app.config, app.coursedir, "demo")
    job = {"student": "honest", "files": worker.pack_folder(copy / "course" / "submitted" /
                                                             "honest" / "demo")}
    shutil.rmtree(copy)
    result = cluster.submit(worker.grade_or_raise, job, context, pure=False).result(timeout=600)
    assert set(result["notebooks"]) == {"demo"} and result["error"] is None
    assert result["report"]["demo"]["verdicts"] == {"q1": "pass", "q2": "pass", "q3": "pass"}
    assert result["report"]["demo"]["state"]["verdicts_in"] == "the kernel's sandbox"

    monkeypatch.chdir(course)
    app = parallel._load("demo", [f"--Execute.timeout={DEMO_TIMEOUT}"])
    assert parallel.Coordinator(app, lambda ctx: parallel.DaskWorkers(cluster, ctx)).run() == 0
    state = gradebook_state(f"sqlite:///{course / 'course' / 'gradebook.db'}", "demo", subs)
    for student in subs:
        assert {gid: g[0] for gid, g in state[student]["grades"].items()} == \
            attacks.expected_demo(student), student
    assert not list((course / "course" / "in-progress").glob("*"))
