"""The first process of a submission's sandbox: torch is imported once, for the kernel and for
the verdict process (book/grading-safely.md, "What it costs").

Without it, every answered submission starts two Python processes that import torch (about 2 s
of CPU each): the kernel and, later, the verdict process. Here the sandbox starts this module
instead of the kernel. It imports torch (``--preload``) and the verdict code, *before any student
code runs*, then forks:

* the child becomes the Jupyter kernel (ipykernel, as ``python -m ipykernel_launcher`` would
  start it), with everything of this module closed and forgotten;
* the parent stays, made non-dumpable (no process of the same uid may read its memory or open
  its files through ``/proc``, nor ptrace it), and waits for the kernel to exit. Then it kills
  every other process left in the sandbox (what the kernel forked), empties the working folder,
  ``/tmp`` and ``/dev/shm``, copies the submission back from the read-only seed, and only then
  reads the verdict request (the probes' source and seeds) from the grader. From there on it is
  exactly the standalone verdict process (``probes.run``) in a fresh copy of the folder.

The hidden tests therefore enter the sandbox only once nothing that ran in the kernel is left:
what the kernel printed reached the notebook before they existed there, and nothing that runs
after them can reach the notebook or the feedback. The student's code in the verdict process can
do what it could do in a fresh verdict process, no more.

It talks to the grader over one Unix socket inherited from it (``--link-fd``), one JSON object per
line: ``{"kernel_exit": status}`` (128 + n for a signal n, as ``timeout`` reports it), then
``{"ready": true}`` or ``{"ready": false, "why": ...}``; then it reads the request until the
grader shuts down its side, and writes the records (probes.py), ``{"done": true}`` last. When
anything here fails, the grader falls back to a fresh verdict process (verdicts.py).
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading

PR_SET_DUMPABLE = 4
SEED_MOUNT = "/sandbox-seed"   # sandbox.SEED_MOUNT (not imported: this runs before any import)
SWEEP_SECONDS = 10   # how long killed processes may take to be gone


def command(kernel_cmd, link_fd, preload, package_root):
    """The argv that starts this module in place of ``python -m ipykernel_launcher ...``, or
    None when ``kernel_cmd`` is another kind of kernel."""
    if len(kernel_cmd) < 3 or kernel_cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    boot = (f"import sys; sys.path.insert(0, {package_root!r}); "
            "from sandboxed_grading.zygote import main; main()")
    return [kernel_cmd[0], "-c", boot, f"--link-fd={link_fd}", f"--preload={','.join(preload)}",
            f"--package-root={package_root}", "--", *kernel_cmd[3:]]


def _options(argv):
    options, rest = {}, []
    for index, arg in enumerate(argv):
        if arg == "--":
            rest = argv[index + 1:]
            break
        name, _, value = arg.partition("=")
        options[name.lstrip("-")] = value
    return options, rest


def _send(link, **message):
    link.sendall((json.dumps(message) + "\n").encode())


def main():
    # jupyter_client interrupts (and, before a shutdown, always interrupts) the kernel's whole
    # process group: this process must live through it; the kernel gets its usual disposition.
    kernel_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
    options, kernel_args = _options(sys.argv[1:])
    import socket
    link = socket.socket(fileno=int(options["link-fd"]))
    for name in filter(None, options.get("preload", "").split(",")):
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 (the kernel will report it when a cell imports it)
            pass
    from . import probes, probing  # noqa: F401  (the verdict code, before any student code)
    from IPython.core.interactiveshell import InteractiveShell  # noqa: F401
    if threading.active_count() != 1:  # forking a threaded process is not safe: no zygote
        link.close()
        signal.signal(signal.SIGINT, kernel_sigint)
        _become_kernel(options, kernel_args)
    pid = os.fork()
    if pid == 0:
        link.close()
        signal.signal(signal.SIGINT, kernel_sigint)
        _become_kernel(options, kernel_args)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    try:
        _verdicts(link, pid)
    finally:
        os._exit(0)


def _become_kernel(options, kernel_args):
    """Run ipykernel here, as ``python -m ipykernel_launcher <kernel_args>`` would have."""
    import runpy
    root = options.get("package-root")
    if root in sys.path:
        sys.path.remove(root)
    sys.path = [os.getcwd() if p == "" else p for p in sys.path]  # as -m puts it
    for name in [n for n in sys.modules if n == "sandboxed_grading" or n.startswith("sandboxed_grading.")]:
        del sys.modules[name]
    sys.argv = ["ipykernel_launcher", *kernel_args]
    code = 0
    try:
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _verdicts(link, kernel_pid):
    _, status = os.waitpid(kernel_pid, 0)
    code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    _send(link, kernel_exit=code)
    why = _sweep() or _fresh_folders()
    _send(link, ready=why is None, **({"why": why} if why else {}))
    if why:
        return
    chunks = []
    while True:
        chunk = link.recv(1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    request = b"".join(chunks)
    del chunks
    if not request:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what the cells print goes nowhere, never into the records
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.path = [p for p in sys.path if p != ""]  # as in the standalone process (python -I)
    from .probes import run
    run(request, link.makefile("w", encoding="utf-8"))


def _ancestors():
    found, pid = set(), os.getpid()
    while pid > 1:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found | {1}


def _sweep():
    """Kill every process of the sandbox but this one and its ancestors (the sandbox's own
    helpers). None when none is left, else why not."""
    import time
    keep = _ancestors()
    deadline = time.monotonic() + SWEEP_SECONDS
    while time.monotonic() < deadline:
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in keep:
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if state in ("Z", "X"):
                continue
            alive.append(int(entry))
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass
        while True:  # reap what was ours
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not alive:
            return None
        time.sleep(0.01)  # SIGKILL takes effect when the process next runs
    return "processes the kernel left could not all be stopped"


def _mount_points():
    points = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 4:
                    points.add(fields[4].replace("\\040", " "))
    except OSError:
        pass
    return points


def _empty(folder, mounts):
    """Remove everything in ``folder`` but mount points and the folders leading to them (the
    sandbox's own mounts, such as the working folder). None, or why not."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    doomed = []
    for name in names:
        path = os.path.join(folder, name)
        if path in mounts:
            continue
        if any(m.startswith(path + "/") for m in mounts):
            why = _empty(path, mounts)
            if why:
                return why
            continue
        doomed.append(path)
    if doomed:
        subprocess.run(["chmod", "-R", "u+rwx", "--", *doomed], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        subprocess.run(["rm", "-rf", "--", *doomed], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        if any(os.path.lexists(path) for path in doomed):
            return f"could not empty {folder}"
    return None


def _fresh_folders():
    """The working folder as submitted, an empty /tmp and /dev/shm. None, or why not."""
    if not os.path.isdir(SEED_MOUNT):
        return "no seed folder to copy the submission from"
    mounts = _mount_points()
    for folder in (os.getcwd(), "/tmp", "/dev/shm"):
        why = _empty(folder, mounts)
        if why:
            return why
    copied = subprocess.run(["cp", "-R", "-P", f"{SEED_MOUNT}/.", "."], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, check=False)
    return None if copied.returncode == 0 else "could not copy the submission again"
