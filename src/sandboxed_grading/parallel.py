"""Grade an assignment's submissions in parallel, on this machine or on a Dask cluster
(book/instructor-guide.md, "Grading in parallel").

    python -m sandboxed_grading.parallel ASSIGNMENT [--workers N] [nbgrader autograde options]
    python -m sandboxed_grading.parallel ASSIGNMENT --dask tcp://HOST:8786 [...]

The result is what ``nbgrader autograde ASSIGNMENT`` writes (the gradebook, ``autograded/``, the
report), from the same steps: this process (the coordinator) cleans each submitted folder and
sends its files to a worker, which runs the expensive steps in a private scratch course (the
sandboxed kernel and the hidden-test verdicts, worker.py); the coordinator then runs the steps
that write, with nbgrader's own converter on the real course, one submission at a time (one
writer: SQLite is enough). Workers are processes forked from this one (``--workers``, default:
one per core) or the workers of a Dask cluster (``--dask``): no shared filesystem is needed.

Each submission's line is printed when it is recorded, under a progress bar with an ETA. A
submission whose worker crashed or failed is tried once more; if that fails too it is reported
as "not graded" with the reason (never a silent 0), and the command exits with status 1. A run
stopped by Ctrl-C or ``kill`` leaves every submission either recorded or marked in progress: the
next run (this command or ``nbgrader autograde``) grades the rest.
"""
import argparse
import collections
import glob
import multiprocessing
import multiprocessing.connection
import os
import sys
import time

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from . import report, worker

_results = {}         # (assignment, student, notebook) -> the worker's graded notebook (JSON)
_entries = {}         # (assignment, student, notebook) -> the worker's report entry
_submission_flags = {}  # (assignment, student) -> flags the coordinator raised when cleaning


class UseWorkerResult(NbGraderPreprocessor):
    """The coordinator's only sanitize step: the notebook as the worker graded it (sanitized,
    executed, verdicts decided), with what the worker's report said about it."""

    def preprocess(self, nb, resources):
        key = report.key(resources)
        report.restore(resources, _entries.get(key, {}))
        return nbformat.reads(_results[key], as_version=4), resources


def restore_submission_flags(assignment=None, student=None, notebooks=(), **_):
    """pre_convert_hook of the recording converter: what cleaning the folder flagged (the folder
    was cleaned, and marked in progress, when it was sent)."""
    from .guard import _submission_of
    for folder in sorted({os.path.dirname(os.path.abspath(n)) for n in notebooks}):
        aid, sid = _submission_of(folder)
        resources = {"nbgrader": {"assignment": aid, "student": sid, "notebook": "*"}}
        report.reset(resources)
        for entry in _submission_flags.get((aid, sid), []):
            report.flag(resources, entry["kind"], entry["detail"], entry.get("cell"))


# --- engines: where the jobs run -----------------------------------------------------------------

PR_SET_PDEATHSIG = 1

def _serve(conn, context):
    """A local worker process: grade the jobs that come down ``conn``."""
    import ctypes
    import signal

    from . import guard
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the coordinator
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the coordinator, which stops us
    guard._active.clear()  # forked from the coordinator: its course is not ours
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = worker.grade_or_raise(job, context)
        except BaseException as exc:  # noqa: B036 (sent to the coordinator, which retries)
            result = {"student": job["student"], "error": f"{type(exc).__name__}: {exc}"[:500]}
        conn.send(result)


class LocalWorkers:
    """``n`` worker processes forked from this one (nbgrader is imported once, here). A job
    whose worker failed or died is tried once more, on a fresh worker."""

    attempts = 2

    def __init__(self, n, context):
        self.fork = multiprocessing.get_context("fork")
        self.context, self.idle, self.busy = context, [], {}
        for _ in range(n):
            self._spawn()

    def _spawn(self):
        mine, theirs = self.fork.Pipe()
        process = self.fork.Process(target=_serve, args=(theirs, self.context), daemon=True)
        process.start()
        theirs.close()
        self.idle.append((process, mine))

    def run(self, jobs):
        """Yield (job, result) as jobs finish; a result with "error" after the last attempt."""
        jobs, retries = iter(jobs), collections.deque()
        more = True
        while more or retries or self.busy:
            while self.idle and (retries or more):
                if retries:
                    job, attempt = retries.popleft()
                else:
                    job, attempt = next(jobs, None), 1
                    if job is None:
                        more = False
                        break
                process, conn = self.idle.pop()
                conn.send(job)
                self.busy[conn] = (process, job, attempt)
            if not self.busy:
                continue
            sentinels = {process.sentinel: conn for conn, (process, _, _) in self.busy.items()}
            ready = multiprocessing.connection.wait([*self.busy, *sentinels])
            done = {r if r in self.busy else sentinels[r] for r in ready}
            for conn in done:
                process, job, attempt = self.busy.pop(conn)
                result = None
                try:
                    if conn.poll():
                        result = conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is None:  # the worker died
                    process.join(5)
                    conn.close()
                    self._spawn()
                    result = {"student": job["student"],
                              "error": f"the worker process died (exit code {process.exitcode})"}
                else:
                    self.idle.append((process, conn))
                if result.get("error") and attempt < self.attempts:
                    retries.append((job, attempt + 1))
                    yield job, {**result, "retrying": True}
                    continue
                yield job, result

    def close(self):
        for process, conn in self.idle + [(p, c) for c, (p, _, _) in self.busy.items()]:
            conn.close()
            process.kill()
            process.join(5)


class DaskWorkers:
    """The workers of a Dask cluster (``distributed.Client``). Dask retries a failed job once
    (``retries=1``), and a job whose worker died once (``distributed.scheduler.allowed-failures``,
    which the test cluster sets to 1)."""

    def __init__(self, client, context):
        self.client = client
        self.context = client.scatter(context, broadcast=True, hash=False)

    def run(self, jobs):
        from distributed import as_completed
        jobs = list(jobs)
        futures = {self.client.submit(worker.grade_or_raise, job, self.context, pure=False,
                                      retries=1, key=f"grade-{job['student']}-{os.urandom(4).hex()}"):
                   job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            if future.status == "finished":
                yield job, future.result()
            else:
                error = future.exception()
                yield job, {"student": job["student"], "error": f"{type(error).__name__}: {error}"[:500]}
            future.release()

    def close(self):
        pass


# --- the coordinator -----------------------------------------------------------------------------

def _load(assignment, argv):
    from nbgrader.apps import AutogradeApp
    app = AutogradeApp()
    app.initialize(argv)
    app.coursedir.assignment_id = assignment
    return app


def submissions(coursedir, assignment, force, log):
    """[(student, submitted folder)] to grade, as nbgrader autograde would pick them."""
    found = []
    pattern = coursedir.format_path(coursedir.submitted_directory, coursedir.student_id, assignment)
    for folder in sorted(glob.glob(pattern)):
        if not glob.glob(os.path.join(folder, coursedir.notebook_id + ".ipynb")):
            continue
        student = os.path.basename(os.path.dirname(folder))
        dest = coursedir.format_path(coursedir.autograded_directory, student, assignment)
        if os.path.exists(dest) and not force:
            log.info("Skipping existing assignment: %s", dest)
            continue
        found.append((student, folder))
    return found


def prepare_reference(config, coursedir, assignment, log):
    """Compute (or find cached) the reference verdicts here, when the sandbox starts here."""
    from .sandbox import Sandbox
    from .verdicts import CheckVerdicts
    if Sandbox(config=config).unavailable_reason() is not None:
        log.info("no sandbox here: the workers compute the reference verdicts")
        return
    checker = CheckVerdicts(config=config, log=log)
    source = coursedir.format_path(coursedir.source_directory, ".", assignment)
    for path in sorted(glob.glob(os.path.join(source, "*.ipynb"))):
        notebook = os.path.splitext(os.path.basename(path))[0]
        checker.prepare_reference(assignment, notebook)


class Coordinator:
    """Sends the submissions of one assignment to workers and records what comes back."""

    def __init__(self, app, engine_factory, out=sys.stderr):
        self.app, self.config, self.coursedir = app, app.config, app.coursedir
        self.assignment = self.coursedir.assignment_id
        self.engine_factory, self.out, self.log = engine_factory, out, app.log
        self.not_graded, self.recorded = {}, []

    def run(self):
        import warnings

        from sqlalchemy.exc import SAWarning

        from .guard import clean_before_grading, start_run
        warnings.simplefilter("ignore", SAWarning)  # nbgrader's own session warnings, each call
        aid = self.assignment
        start_run(self.config, self.log)
        force = bool(self.config.Autograde.get("force") or self.config.BaseConverter.get("force"))
        todo = submissions(self.coursedir, aid, force, self.log)
        if not todo:
            print(f"nothing to grade for {aid}", file=self.out)
            return 0
        prepare_reference(self.config, self.coursedir, aid, self.log)
        context = worker.make_context(self.config, self.coursedir, aid)
        engine = self.engine_factory(context)
        def jobs():  # each folder is cleaned and marked in progress when it is sent
            for student, folder in todo:
                notebooks = sorted(glob.glob(os.path.join(folder, self.coursedir.notebook_id
                                                          + ".ipynb")))
                clean_before_grading(assignment=aid, student=student, notebooks=notebooks)
                star = {"nbgrader": {"assignment": aid, "student": student, "notebook": "*"}}
                _submission_flags[(aid, student)] = report.flags(star)
                yield {"student": student, "files": worker.pack_folder(folder)}

        progress = Progress(len(todo), self.out)
        try:
            for job, result in engine.run(jobs()):
                if result.get("retrying"):
                    progress.line(f"{job['student']}: worker failed ({result['error']}); "
                                  "trying once more")
                    continue
                self._store_reference(result)
                if result.get("error"):
                    self._not_graded(job["student"], result["error"])
                    progress.done(job["student"], None, result)
                else:
                    score = self._record(job["student"], result)
                    progress.done(job["student"], score, result)
        except KeyboardInterrupt:
            progress.line(f"interrupted: {len(self.recorded)} of {len(todo)} recorded; run the "
                          "same command again to grade the rest")
            raise
        finally:
            engine.close()
            progress.close()
        for student, why in sorted(self.not_graded.items()):
            print(f"NOT GRADED: {student}: {why}", file=self.out)
        return 1 if self.not_graded else 0

    def _store_reference(self, result):
        """Keep reference verdicts a worker computed (this machine could not)."""
        from .guard import state_dir
        if not result.get("reference"):
            return
        folder = os.path.join(state_dir(self.config), "verdict-cache", self.assignment)
        if not os.path.isdir(folder) or not os.listdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
            worker.unpack_folder(result["reference"], folder)

    def _record(self, student, result):
        """Run nbgrader's converter on the real course for this submission, with the worker's
        notebooks in place of the expensive steps; return the score from the gradebook."""
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.converters import Autograde
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config
        aid = self.assignment
        for name, text in result["notebooks"].items():
            _results[(aid, student, name)] = text
            _entries[(aid, student, name)] = result["report"].get(name, {})
        config = Config(self.config)
        steps = config.Autograde.autograde_preprocessors \
            if "autograde_preprocessors" in config.Autograde \
            else Autograde.class_traits()["autograde_preprocessors"].default()
        config.Autograde.sanitize_preprocessors = [UseWorkerResult]
        config.Autograde.autograde_preprocessors = worker.split_steps(steps)[1]
        config.Autograde.pre_convert_hook = restore_submission_flags
        config.CourseDirectory.student_id = student
        config.CourseDirectory.assignment_id = aid
        config.BaseConverter.force = config.Autograde.force = True
        coursedir = CourseDirectory(config=config)
        converter = Autograde(coursedir=coursedir, config=config, log=_quiet_log())
        cwd = os.getcwd()
        try:
            converter.start()
        finally:
            os.chdir(cwd)
            for name in result["notebooks"]:
                _results.pop((aid, student, name), None)
                _entries.pop((aid, student, name), None)
        self.recorded.append(student)
        try:
            with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
                sub = gb.find_submission(aid, student)
                return sub.score, sub.max_score
        except MissingEntry:
            return None

    def _not_graded(self, student, why):
        """Nothing recorded, said in the report and at the end; the next run grades it."""
        from .guard import finish_grading
        aid = self.assignment
        self.not_graded[student] = why
        folder = self.coursedir.format_path(self.coursedir.submitted_directory, student, aid)
        notebooks = sorted(glob.glob(os.path.join(folder, self.coursedir.notebook_id + ".ipynb")))
        for path in notebooks:
            name = os.path.splitext(os.path.basename(path))[0]
            resources = {"nbgrader": {"assignment": aid, "student": student, "notebook": name}}
            report.reset(resources)
            report.flag(resources, "not graded", f"not graded: {why}")
            report.save(report.reports_dir(self.config), resources)
        finish_grading(assignment=aid, student=student, notebooks=notebooks)


def _quiet_log():
    """The recording converters' log: errors only (each submission gets its own line)."""
    import logging
    log = logging.getLogger("sandboxed_grading.record")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[record | %(levelname)s] %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.ERROR)
    return log


class Progress:
    """A progress bar with an ETA (tqdm, on a terminal), and one line per recorded submission
    (with the ETA too, for logs)."""

    def __init__(self, total, out):
        import tqdm
        tqdm.tqdm.monitor_interval = 0  # no monitor thread: workers may be forked later
        self.bar = tqdm.tqdm(total=total, file=out, unit="submission", dynamic_ncols=True,
                             disable=not getattr(out, "isatty", lambda: False)(),
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
        self.out, self.total, self.count, self.start = out, total, 0, time.monotonic()

    def line(self, text):
        if self.bar.disable:
            print(text, file=self.out, flush=True)
        else:
            self.bar.write(text, file=self.out)

    def done(self, student, score, result):
        self.count += 1
        width = len(str(self.total))
        if score is None:
            what = "NOT GRADED: " + str(result.get("error", "no score"))[:200]
        else:
            what = f"{score[0]:g} / {score[1]:g}"
        kinds = sorted({f["kind"] for entry in result.get("report", {}).values()
                        for f in entry.get("flags", [])})
        flagged = f"  flagged: {', '.join(kinds)}" if kinds else ""
        seconds = result.get("seconds")
        took = f"  {seconds:.1f} s on {result.get('worker', '?')}" if seconds else ""
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.count * (self.total - self.count)
        self.line(f"[{self.count:>{width}}/{self.total}] {student}: {what}{flagged}{took}"
                  f"  (ETA {int(eta) // 60}:{int(eta) % 60:02d})")
        self.bar.update(1)

    def close(self):
        self.bar.close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m sandboxed_grading.parallel",
        description="Grade an assignment's submissions in parallel (any other option is "
                    "nbgrader autograde's: --student, --force, --Execute.timeout=...).")
    parser.add_argument("assignment")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                       help="local worker processes (default: one per core)")
    where.add_argument("--dask", metavar="ADDRESS",
                       help="grade on the Dask cluster whose scheduler is at ADDRESS")
    args, rest = parser.parse_known_args(argv)
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, stop)  # `kill` stops like Ctrl-C: workers stopped, state kept
    app = _load(args.assignment, rest)
    if args.dask:
        from distributed import Client
        client = Client(args.dask)

        def factory(context):
            return DaskWorkers(client, context)
    else:
        def factory(context):
            return LocalWorkers(max(1, args.workers), context)
    try:
        return Coordinator(app, factory).run()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
