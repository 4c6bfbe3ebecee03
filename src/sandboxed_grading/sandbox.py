"""Build the bubblewrap command that runs student code, and say whether it can run here.

What the sandboxed process sees (everything else does not exist for it):

* read-only: ``/usr`` (``/bin``, ``/lib``... as on the host), a few files of ``/etc``, the Python
  installation and virtual environment running the grader, and the folders its ``.pth`` files add
  (an editable install such as ``src/``);
* its working folder: a private tmpfs of ``work_size`` bytes holding a copy of the submission
  (``seed``), made inside the sandbox before the kernel starts. Nothing written there reaches
  the host: the autograded and feedback folders only ever hold what nbgrader copied itself;
* read-write: only the folders the caller names (the kernel's socket folder), and a private
  ``/tmp`` tmpfs of ``tmp_size`` bytes;
* no network (a private, empty network namespace), no other process (private pid namespace).

Limits: ``prlimit`` caps each process (address space, processes, file size, open files, CPU
seconds), ``timeout`` the wall time, and a ``limits.SandboxGroup`` the memory and processes of the
whole sandbox together. As root the code runs as a fresh unprivileged uid (so the process limit
counts only its own processes); as another user it runs as that user.
"""
import itertools
import os
import shutil
import subprocess
import sys
import warnings

from traitlets import Bool, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

ALLOW_ENV = "SANDBOXED_GRADING_ALLOW_UNSANDBOXED"
ETC_FILES = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group",
             "nsswitch.conf", "fonts", "mime.types", "ssl/openssl.cnf"]
SEED_MOUNT = "/sandbox-seed"  # where the host folder to copy is shown, read-only
_uids = itertools.count()


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot start and the instructor did not allow grading without it."""


def _truthy(value):
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


def python_paths():
    """Folders the grader's Python needs: its prefixes and the folders its ``.pth`` files add."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    import site
    for site_dir in site.getsitepackages():
        if not os.path.isdir(site_dir):
            continue
        for name in sorted(os.listdir(site_dir)):
            if not name.endswith(".pth"):
                continue
            with open(os.path.join(site_dir, name), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith(("#", "import")) and os.path.isdir(line):
                        paths.add(os.path.abspath(line))
    return sorted(os.path.realpath(p) for p in paths)


def sandbox_python():
    """This interpreter as the sandbox sees it: through the real path of its environment
    (a ``.venv`` that is itself a symlink is shown at its real path only)."""
    return os.path.join(os.path.realpath(sys.prefix), "bin", os.path.basename(sys.executable))


def _ancestors(path):
    parts = os.path.realpath(path).strip(os.sep).split(os.sep)
    return [os.sep + os.sep.join(parts[:i]) for i in range(1, len(parts))]


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Sandbox(LoggingConfigurable):
    """Settings of the sandbox (``c.Sandbox.<name>`` in nbgrader_config.py)."""

    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    memory_limit = Integer(3 * 2**30, help="Address-space limit of each process, bytes "
                                           "(RLIMIT_AS).").tag(config=True)
    total_memory = Integer(3 * 2**30, help="Memory of all the sandbox's processes together, "
                                           "bytes (cgroup, else a watchdog).").tag(config=True)
    max_processes = Integer(64, help="Processes and threads (RLIMIT_NPROC).").tag(config=True)
    max_file_size = Integer(64 * 2**20, help="Largest file it may write, bytes (RLIMIT_FSIZE).").tag(config=True)
    max_open_files = Integer(256, help="Open file descriptors (RLIMIT_NOFILE).").tag(config=True)
    cpu_time = Integer(900, help="CPU seconds per process (RLIMIT_CPU).").tag(config=True)
    wall_time = Integer(1800, help="Seconds before the whole sandbox is killed.").tag(config=True)
    tmp_size = Integer(256 * 2**20, help="Size of the private /tmp, bytes.").tag(config=True)
    work_size = Integer(256 * 2**20, help="Size of the tmpfs working folder (the copy of the "
                                          "submission), bytes.").tag(config=True)
    extra_ro_paths = List(Unicode(), help="More host folders to show read-only.").tag(config=True)
    hidden_paths = List(Unicode(), help="Host folders never to show, even below a shown folder.").tag(config=True)
    allow_unsandboxed = Bool(
        help=f"Grade without the sandbox when it cannot start (also: {ALLOW_ENV}=1). Unsafe: "
             "student code then runs with the grader's rights; every report says so.",
    ).tag(config=True)

    @default("allow_unsandboxed")
    def _allow_default(self):
        return _truthy(os.environ.get(ALLOW_ENV, ""))

    _status = {}  # (bwrap, ...) -> None when it works, else the reason; cached per process

    def unavailable_reason(self):
        """None when the sandbox starts here; otherwise why not (checked once per process)."""
        key = (self.bwrap, sys.executable, os.getuid())
        if key not in Sandbox._status:
            Sandbox._status[key] = self._self_test()
        return Sandbox._status[key]

    def _self_test(self):
        if shutil.which(self.bwrap) is None:
            return f"{self.bwrap!r} not found (install the Debian package bubblewrap)"
        probe = "import socket, sys; s = socket.socket(); s.settimeout(2)\n" \
                "try:\n    s.connect(('1.1.1.1', 53)); sys.exit(3)\nexcept OSError:\n    pass"
        try:
            run = subprocess.run(self.command([sys.executable, "-I", "-c", probe], cwd="/tmp", uid=self.new_uid()),
                                 capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"sandbox self-test failed: {exc}"
        if run.returncode == 3:
            return "sandbox self-test reached the network"
        if run.returncode != 0:
            return f"sandbox self-test exited {run.returncode}: {run.stderr.strip()[-500:]}"
        return None

    def check(self, log=None):
        """Return True when sandboxed, False when the instructor allowed running unsandboxed.

        Raises SandboxUnavailable otherwise: grading refuses rather than run student code with
        the grader's rights.
        """
        reason = self.unavailable_reason()
        if reason is None:
            return True
        if not self.allow_unsandboxed:
            raise SandboxUnavailable(
                f"the grading sandbox cannot start ({reason}); refusing to run student code "
                f"unsandboxed. Fix the sandbox, or set {ALLOW_ENV}=1 (or "
                "c.Sandbox.allow_unsandboxed = True) to grade without it at your own risk.")
        message = f"grading WITHOUT the sandbox ({reason}): {ALLOW_ENV} / allow_unsandboxed is set"
        (log.warning if log else warnings.warn)(message)
        return False

    def new_uid(self):
        """A fresh unprivileged uid for one sandbox when we are root (None otherwise)."""
        if os.getuid() != 0:
            return None
        return 200000 + (os.getpid() % 4096) * 64 + next(_uids) % 64

    def _nproc_limit(self, uid):
        if uid is not None:
            return self.max_processes
        # Without root the limit counts all of this user's processes: add the ones running now.
        mine = 0
        for pid in os.listdir("/proc"):
            try:
                mine += pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == os.getuid()
            except OSError:
                pass
        return self.max_processes + mine

    @default("hidden_paths")
    def _hidden_default(self):
        from nbgrader.coursedir import CourseDirectory
        cd = CourseDirectory(config=self.config)
        steps = (cd.source_directory, cd.submitted_directory, cd.autograded_directory,
                 cd.feedback_directory, cd.solution_directory, cd.source_with_tests_directory)
        paths = [os.path.join(cd.root, step) for step in steps if step]
        if cd.db_url.startswith("sqlite:///") and cd.db_url != "sqlite:///:memory:":
            paths.append(os.path.dirname(cd.db_url[len("sqlite:///"):]))
        return paths + [os.path.expanduser("~")]

    def group(self, uid=None):
        """A fresh memory and process cap for one sandbox (see limits.SandboxGroup)."""
        from .limits import SandboxGroup
        return SandboxGroup(self.total_memory, self._nproc_limit(uid))

    def command(self, argv, *, cwd, seed=None, writable=(), readonly=(), uid=None, env=None,
                wall_time=None):
        """The full command line running ``argv`` in the sandbox, in ``cwd``.

        ``seed``: a host folder copied into a fresh tmpfs mounted at ``cwd`` before ``argv``
        starts (``cwd`` on the host is then never written); ``writable``/``readonly``: host
        folders to show at the same path; ``uid``: the uid to run as (root only, see new_uid);
        ``env``: extra environment variables; ``wall_time``: seconds (default: the wall_time
        setting).
        """
        args = [self.bwrap, "--die-with-parent", "--unshare-ipc", "--unshare-pid",
                "--unshare-net", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if os.getuid() != 0:
            args.append("--unshare-user")
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = "/" + top
            if os.path.islink(host):
                args += ["--symlink", os.readlink(host), host]
            elif os.path.isdir(host):
                args += ["--ro-bind", host, host]
        for name in ETC_FILES:
            args += ["--ro-bind-try", "/etc/" + name, "/etc/" + name]
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(self.tmp_size), "--tmpfs", "/tmp"]
        shown = python_paths() + [os.path.realpath(p) for p in (*self.extra_ro_paths, *readonly)]
        writable = [os.path.realpath(p) for p in writable]
        cwd = os.path.realpath(cwd)
        mounts = [p for p in (*shown, *writable, *([cwd] if seed else []))
                  if not p.startswith("/usr/")]
        parents = {os.path.dirname(p) for p in mounts}
        for parent in sorted({a for p in parents for a in _ancestors(p)} | parents):
            # bwrap makes missing parent folders 0700; the sandbox user must be able to pass
            # through them (but not list them).
            args += ["--perms", "0711", "--dir", parent]
        for path in dict.fromkeys(shown):
            if os.path.exists(path) and not path.startswith("/usr/"):
                args += ["--ro-bind", path, path]
        for path in self.hidden_paths:  # mask what lies below a shown folder
            if os.path.isdir(path) and any(_inside(path, s) and not _inside(s, path) for s in shown):
                args += ["--tmpfs", os.path.realpath(path)]
        for path in writable:
            args += ["--bind", path, path]
        if seed is not None:
            args += ["--ro-bind", os.path.realpath(seed), SEED_MOUNT,
                     "--perms", "1777", "--size", str(self.work_size), "--tmpfs", cwd]
        argv = list(argv)
        if argv and argv[0] == sys.executable:
            argv[0] = sandbox_python()
        env = {
            "PATH": f"{os.path.dirname(sandbox_python())}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "USER": "student",
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "MPLBACKEND": "Agg",
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "IPYTHONDIR": "/tmp/.ipython", "MPLCONFIGDIR": "/tmp/.matplotlib",
            "NBGRADER_EXECUTION": "autograde", "SANDBOXED_GRADING": "1", **(env or {}),
        }
        args += ["--chdir", cwd, "--clearenv"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        limits = [shutil.which("prlimit") or "prlimit",
                  f"--as={self.memory_limit}", f"--nproc={self._nproc_limit(uid)}",
                  f"--fsize={self.max_file_size}", f"--nofile={self.max_open_files}",
                  f"--cpu={self.cpu_time}", f"--core=0", "--"]
        wall = [shutil.which("timeout") or "timeout", "--foreground", "-s", "KILL", str(wall_time or self.wall_time)]
        drop = []
        if uid is not None:
            drop = [shutil.which("setpriv") or "setpriv", f"--reuid={uid}", f"--regid={uid}",
                    "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        if seed is not None:  # copy the submission into the tmpfs, then start argv
            argv = ["/bin/sh", "-c", f'cp -R -P {SEED_MOUNT}/. . '
                    '&& exec "$@"', "sandbox-start", *argv]
        return args + ["--"] + limits + wall + drop + list(argv)


def chown_tree(path, uid, gid):
    """Give ``path`` and everything below it (never following links) to ``uid:gid``."""
    from .trees import walk
    os.lchown(path, uid, gid)
    for rel, kind, _ in walk(path, max_depth=64):
        if kind in ("file", "dir", "link"):
            try:
                os.lchown(os.path.join(path, rel), uid, gid)
            except (FileNotFoundError, OSError):
                pass
