"""How fast a course is graded: stock nbgrader, sandboxed serial, sandboxed parallel, Dask.

    python benchmarks/grading_throughput.py [--assignment ch01_buffers] [--submissions 24]
                                            [--workers 2] [--json results.json]

Makes N synthetic submissions of one assignment (solved, blank, and a planted wrong answer from
tests/planted/<assignment>.py, in turn), grades them four ways from one run, each in a fresh
temporary course, and prints seconds per submission and the ratios, then the targets of issue 11
with PASS/FAIL and a projection for 1,000 submissions on 16 cores:

* stock nbgrader, serial: ``nbgrader autograde`` without ``sandboxed_grading.configure``, on a
  classic version of the assignment whose hidden test cells run the same probes
  (solutions/<assignment>/verdicts.py) in the student's kernel and assert that they match the
  reference solution's results: the same checks, the way stock nbgrader runs hidden tests;
* sandboxed, serial: ``nbgrader autograde`` with this repository's configuration;
* sandboxed, parallel: ``python -m sandboxed_grading.parallel --workers N``;
* Dask: the same command with ``--dask`` against a LocalCluster of N worker processes (started
  before the clock starts, as a cluster is started once for a course).

Every sandboxed course starts with the reference verdicts cached (they are computed once per
assignment and verdicts version, printed separately). Then one late student is graded in the
already graded sandboxed course, with ``nbgrader autograde --student`` and with the parallel
command. Scores (every autograded cell of every submission) must be identical in all four runs,
or the script exits with status 1. Timings are wall-clock seconds on this machine, printed with
its load average: on a shared machine they vary from run to run.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import nbformat  # noqa: E402
from nbgrader_course import (BIN, answer_cell, planted_wrong_answers, scores,  # noqa: E402
                             solved_release)

MARKER = "# ---- Sandboxed autograding"
SECRET = "benchmark-secret-" + "0" * 47
STOCK_HIDDEN = '''\
### BEGIN HIDDEN TESTS
# The same checks as solutions/{aid}/verdicts.py's {q}, in the student's kernel (stock nbgrader)
import json as _json, random as _random
import torch as _torch
from sandboxed_grading.probes import encode as _encode
from sandboxed_grading.verdicts import differences as _differences
_spec = {{"__name__": "verdicts"}}
exec(compile({spec!r}, "verdicts.py", "exec"), _spec)
_random.seed({seed})
_torch.manual_seed({seed})
_got = _encode(_spec[{q!r}](globals(), _torch.Generator().manual_seed({seed})))
_failed = _differences(_got, _json.loads({want!r}), {rtol!r}, {atol!r})
assert not _failed, "checks that failed: " + "; ".join(c for c, _ in _failed)
### END HIDDEN TESTS
'''


def env():
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",
                PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def run(course, *argv, check=False):
    start = time.monotonic()
    proc = subprocess.run(list(argv), cwd=course, env=env(), capture_output=True, text=True,
                          timeout=7200)
    seconds = time.monotonic() - start
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds, proc


def nbgrader(course, *args, check=False):
    return run(course, str(BIN / "nbgrader"), *args, check=check)


def parallel(course, *args):
    return run(course, sys.executable, "-m", "sandboxed_grading.parallel", *args)


def new_course(path, aid, stock_source=None):
    """A course laid out like the repo; ``stock_source``: the classic source notebook (stock
    configuration, hidden tests in the kernel)."""
    (path / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions" / aid, path / "solutions" / aid)
    config = (ROOT / "nbgrader_config.py").read_text()
    if stock_source is not None:
        config = config.split(MARKER)[0]
        nbformat.write(stock_source, path / "solutions" / aid / f"{aid}.ipynb")
        (path / "solutions" / aid / "verdicts.py").unlink()
    (path / "nbgrader_config.py").write_text(config)
    (path / "course").mkdir(exist_ok=True)
    secret = path / "course" / "verdict-secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    nbgrader(path, "generate_assignment", aid, "--force", check=True)
    return path


def reference(course, aid):
    """({question: seed}, {question: reference record}, rtol, atol, seconds to compute them)."""
    from traitlets.config.loader import PyFileConfigLoader
    from nbgrader.coursedir import CourseDirectory
    from sandboxed_grading.verdicts import CheckVerdicts, load_spec
    cwd = os.getcwd()
    os.chdir(course)
    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
        checker = CheckVerdicts(config=config)
        start = time.monotonic()
        run_ = checker.prepare_reference(aid, aid)
        seconds = time.monotonic() - start
        spec = load_spec(config, {"nbgrader": {"assignment": aid}})
        seeds = {q: checker._seed(CourseDirectory(config=config), f"{aid}/{aid}/{q}")
                 for q in spec.probes}
    finally:
        os.chdir(cwd)
    bad = [q for q in spec.probes if not run_.records.get(q, {}).get("ok")]
    if bad:
        raise SystemExit(f"the reference solution fails its own probes {bad}")
    return seeds, {q: run_.records[q]["value"] for q in spec.probes}, spec, seconds


def stock_source(aid, seeds, records, spec):
    """The source notebook with each probed hidden test cell running its probe in the kernel."""
    nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        q = gid[:-len("_hidden")] if gid.endswith("_hidden") else None
        if q in records:
            cell.source = STOCK_HIDDEN.format(aid=aid, q=q, spec=spec.source, seed=seeds[q],
                                              want=json.dumps(records[q]), rtol=spec.rtol,
                                              atol=spec.atol)
    return nb


def answers(aid, n):
    """[(student, {question: wrong answer} or "blank" or {})] for n synthetic submissions."""
    wrong = planted_wrong_answers(aid)
    questions = sorted(wrong)
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            out.append((f"s{i:03d}-solved", {}))
        elif kind == 1:
            out.append((f"s{i:03d}-blank", "blank"))
        else:
            q = questions[(i // 3) % len(questions)]
            out.append((f"s{i:03d}-wrong-{q}", {q: wrong[q]}))
    return out


def submit(course, aid, subs):
    for student, spec in subs:
        if spec == "blank":
            nb = nbformat.read(course / "exercises" / aid / f"{aid}.ipynb", as_version=4)
        else:
            nb = solved_release(course, aid)
            for q, source in spec.items():
                answer_cell(nb, q).source = source
        folder = course / "course" / "submitted" / student / aid
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{aid}.ipynb")


def autograded_scores(course, aid, students):
    """{student: {grade id: score}} of the autograded cells (manual answers left out)."""
    import warnings
    from sqlalchemy.exc import SAWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own session warnings
        got = scores(course, aid, students)
    source = nbformat.read(course / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    manual = {c.metadata.nbgrader["grade_id"] for c in source.cells
              if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "markdown"}
    return {s: {g: v for g, v in grades.items() if g not in manual} for s, grades in got.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="ch01_buffers")
    parser.add_argument("--submissions", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=60, help="seconds per cell")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    aid, n, workers = args.assignment, args.submissions, args.workers
    versions = {name: importlib.metadata.version(name)
                for name in ("nbgrader", "torch", "dask", "distributed")}
    print(f"{datetime.date.today()}  {platform.node()}  {os.cpu_count()} CPUs  "
          f"load {os.getloadavg()[0]:.2f}  " + "  ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"{aid}: {n} submissions (solved, blank, planted wrong in turn), {workers} workers, "
          f"cells time out after {args.timeout} s")
    timeout = f"--Execute.timeout={args.timeout}"
    subs = answers(aid, n)
    students = [s for s, _ in subs]
    tmp = Path(tempfile.mkdtemp(prefix="grading-throughput-"))
    results, times = {}, {}
    try:
        sandboxed = {mode: new_course(tmp / mode, aid)
                     for mode in ("sandboxed-serial", "parallel", "dask")}
        seeds, records, spec, cold = reference(sandboxed["sandboxed-serial"], aid)
        for mode in ("parallel", "dask"):  # the same cached reference verdicts in each course
            reference(sandboxed[mode], aid)
        stock = new_course(tmp / "stock", aid, stock_source(aid, seeds, records, spec))
        courses = {"stock": stock, **sandboxed}
        for course in courses.values():
            submit(course, aid, subs)

        times["stock"], _ = nbgrader(stock, "autograde", aid, timeout)
        times["sandboxed-serial"], _ = nbgrader(sandboxed["sandboxed-serial"], "autograde", aid,
                                                timeout)
        times["parallel"], proc = parallel(sandboxed["parallel"], aid, "--workers", str(workers),
                                           timeout)
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
        import dask
        from distributed import LocalCluster
        start = time.monotonic()
        with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                             dashboard_address=None) as cluster:
            cluster_start = time.monotonic() - start
            times["dask"], proc = parallel(sandboxed["dask"], aid, "--dask",
                                           cluster.scheduler_address, timeout)
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
        for mode, course in courses.items():
            results[mode] = autograded_scores(course, aid, students)

        late_course = sandboxed["sandboxed-serial"]
        submit(late_course, aid, [("late", {})])
        times["late (nbgrader autograde --student)"], _ = nbgrader(late_course, "autograde", aid,
                                                                   "--student=late", timeout)
        submit(sandboxed["parallel"], aid, [("late", {})])
        times["late (parallel --student)"], _ = parallel(sandboxed["parallel"], aid,
                                                         "--student=late", "--workers", "1",
                                                         timeout)
        # what any single call costs before it grades anything (start-up, sandbox check)
        times["start-up"], _ = nbgrader(late_course, "autograde", aid, "--student=nobody",
                                        timeout)
        late = {c: autograded_scores(sandboxed[c], aid, ["late"])["late"]
                for c in ("sandboxed-serial", "parallel")}
    finally:
        from sandboxed_grading.trees import remove_tree
        remove_tree(tmp)

    per = {mode: times[mode] / n for mode in ("stock", "sandboxed-serial", "parallel", "dask")}
    print()
    print("| grading | seconds | s per submission | vs stock | vs sandboxed serial |")
    print("|---|---|---|---|---|")
    labels = {"stock": "stock nbgrader, serial", "sandboxed-serial": "sandboxed, serial",
              "parallel": f"sandboxed, parallel ({workers} workers)",
              "dask": f"Dask LocalCluster ({workers} workers)"}
    for mode, label in labels.items():
        print(f"| {label} | {times[mode]:.1f} | {per[mode]:.2f} | "
              f"{per[mode] / per['stock']:.2f}x | {per[mode] / per['sandboxed-serial']:.2f}x |")
    for mode in ("late (nbgrader autograde --student)", "late (parallel --student)"):
        print(f"| one late student, {mode[6:-1]} | {times[mode]:.1f} | {times[mode]:.2f} | "
              f"{times[mode] / per['stock']:.2f}x | {times[mode] / per['sandboxed-serial']:.2f}x |")
    alone = times["late (nbgrader autograde --student)"]
    print(f"\none late student: {alone:.1f} s = {times['start-up']:.1f} s start-up of the command "
          f"(nothing to grade) + {alone - times['start-up']:.1f} s grading a solved submission; "
          f"the serial mean above mixes solved, blank (no verdict process) and wrong ones")
    print(f"reference verdicts (once per assignment and verdicts.py version): {cold:.1f} s; "
          f"Dask LocalCluster start-up: {cluster_start:.1f} s; load average now "
          f"{os.getloadavg()[0]:.2f}")

    same = all(results[mode] == results["stock"] for mode in results) and \
        late["sandboxed-serial"] == late["parallel"] == results["sandboxed-serial"][students[0]]
    speedup = times["sandboxed-serial"] / times["parallel"]
    best_late = min(times["late (nbgrader autograde --student)"], times["late (parallel --student)"])
    efficiency = speedup / workers
    projection = 1000 * per["sandboxed-serial"] / (16 * efficiency)
    targets = [
        ("sandboxed serial <= 1.15x stock nbgrader per submission",
         per["sandboxed-serial"] / per["stock"] <= 1.15, f"{per['sandboxed-serial'] / per['stock']:.2f}x"),
        (f"{workers} workers >= 1.8x the throughput of sandboxed serial", speedup >= 1.8,
         f"{speedup:.2f}x"),
        ("one late student <= 1.3x the per-submission time (sandboxed serial)",
         best_late <= 1.3 * per["sandboxed-serial"], f"{best_late / per['sandboxed-serial']:.2f}x"),
        ("projection: 1,000 submissions on 16 cores <= 10 min", projection <= 600,
         f"{projection / 60:.1f} min ({per['sandboxed-serial']:.2f} s per submission, parallel "
         f"efficiency {efficiency:.0%} as measured here with {workers} workers)"),
    ]
    print("\nTargets:")
    for name, ok, value in targets:
        print(f"- {'PASS' if ok else 'FAIL'}  {name}: {value}")
    print(f"\nscores identical in all four runs (and for the late student): {'yes' if same else 'NO'}")
    if not same:
        for mode in results:
            diff = {s: (results[mode][s], results["stock"][s]) for s in students
                    if results[mode][s] != results["stock"][s]}
            if diff:
                print(f"  {mode} differs from stock: {json.dumps(diff)[:2000]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "versions": versions, "assignment": aid, "submissions": n, "workers": workers,
            "seconds": times, "per_submission": per, "reference_seconds": cold,
            "targets": [{"name": t, "pass": ok, "value": v} for t, ok, v in targets],
            "scores_identical": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
