"""The nbgrader CLI and the parallel grader for tests, without their second of imports per call.

`bin/nbgrader` is three lines: import `nbgrader.apps.nbgraderapp`, call its `main()`, exit with
what it returns. The import is about 1.1 s of CPU (nbgrader's package imports its Jupyter server
extensions), and the grading tests run the CLI some forty times on a 2-core machine. Here each
call runs the same `main()` (or `python -m sandboxed_grading.parallel`) in a process forked from
a multiprocessing forkserver that imported both once per test worker: the command's own code,
config loading, sandboxes and subprocesses are what `bin/nbgrader` runs; only the import is
shared. Output goes to files and comes back as a `subprocess.CompletedProcess`.

Tests that kill or interrupt a run, or run one beside another, start the real executable with
`subprocess.Popen` instead (tests/test_grading_attacks.py, test_grading_parallel.py,
test_grading_postgres.py).
"""
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile

PRELOAD = ["nbgrader.apps.nbgraderapp", "sandboxed_grading.parallel"]
_context = None


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _exit_status(code):
    if code is None:
        return 0
    return code if isinstance(code, int) else 1   # sys.exit("message") prints it and exits 1


def _run(cwd, argv, env, out, err):
    """In the forked child: become the command (cwd, environment, argv, standard streams)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, out), (2, err)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_TRUNC), fd)
    status = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]  # run_module puts the module's path in sys.argv[0]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            from nbgrader.apps.nbgraderapp import main
            status = _exit_status(main())
    except SystemExit as exc:
        status = _exit_status(exc.code)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (a crash reads as it would from the executable)
        import traceback
        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run(cwd, argv, env, timeout):
    """Run ``argv`` (``[path of bin/nbgrader, args...]`` or ``["-m", module, args...]``) in
    ``cwd`` with exactly ``env``; a CompletedProcess with text stdout and stderr."""
    with tempfile.TemporaryDirectory(prefix="warm-cli-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for path in (out, err):
            open(path, "w").close()
        process = _forkserver().Process(target=_run, args=(str(cwd), list(argv), dict(env), out, err))
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(argv, timeout)
        with open(out, encoding="utf8", errors="replace") as f_out, \
                open(err, encoding="utf8", errors="replace") as f_err:
            stdout, stderr = f_out.read(), f_err.read()
    shown = [sys.executable, *argv] if argv[0] == "-m" else list(argv)
    return subprocess.CompletedProcess(shown, process.exitcode, stdout, stderr)
