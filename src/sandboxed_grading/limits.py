"""One cap on the memory and processes of a whole sandbox, not of each process.

``prlimit`` limits each process (its address space, its CPU time), and a child inherits a fresh
allowance: four children of 1.2 GiB each pass a 3 GiB per-process limit. A ``SandboxGroup`` caps
the sandbox as a whole, with the best mechanism this machine offers:

* ``cgroup v2`` or ``cgroup v1`` (the ``memory`` and ``pids`` controllers), when the grader may
  create a child group: the kernel enforces ``memory`` (every process of the sandbox and the
  files it writes into its tmpfs folders, together) and ``pids``;
* otherwise a watchdog thread that adds up the resident memory of the sandbox's processes every
  ``poll_s`` seconds and kills the whole sandbox when the sum passes the cap. Processes are
  then capped by ``RLIMIT_NPROC`` (per uid: a fresh uid per sandbox when grading as root).

``describe()`` says which one is in force; the report prints it.
"""
import os
import signal
import threading
import time

CGROUP_ROOT = "/sys/fs/cgroup"
PREFIX = "sandboxed-grading"
_counter = iter(range(1, 1 << 30))


def _own_cgroup(controller=None):
    """This process's cgroup path for ``controller`` (v1), or its v2 path (controller None)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if controller is None and controllers == "":
            return path
        if controller is not None and controller in names:
            return path
    return None


def _write(path, value):
    with open(path, "w", encoding="ascii") as fh:
        fh.write(str(value))


def _read(path, default=""):
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read()
    except OSError:
        return default


class SandboxGroup:
    """A memory and process cap for one sandbox. Use ``start(pid)`` from the sandbox's first
    process (``preexec``) or right after it started, ``stop()`` when it is done."""

    def __init__(self, memory_bytes, max_pids, poll_s=0.2):
        self.memory_bytes, self.max_pids, self.poll_s = memory_bytes, max_pids, poll_s
        self.paths = []          # cgroup folders, when cgroups are used
        self.kind = "watchdog"
        self.exceeded = False    # the watchdog killed the sandbox, or the cgroup OOM-killed
        self._stop = threading.Event()
        self._thread = None
        self._root_pid = None
        self._setup_cgroup()

    # -- cgroups --------------------------------------------------------------------------------
    def _setup_cgroup(self):
        name = f"{PREFIX}-{os.getpid()}-{next(_counter)}"
        v2 = os.path.join(CGROUP_ROOT, "cgroup.controllers")
        try:
            if os.path.exists(v2):
                self._setup_v2(name)
            elif os.path.isdir(os.path.join(CGROUP_ROOT, "memory")):
                self._setup_v1(name)
        except OSError:
            self._remove_dirs()
            self.paths, self.kind = [], "watchdog"

    def _setup_v2(self, name):
        parent = os.path.join(CGROUP_ROOT, (_own_cgroup() or "/").lstrip("/"))
        wanted = {"memory", "pids"}
        enabled = set(_read(os.path.join(parent, "cgroup.subtree_control")).split())
        if not wanted <= enabled:
            _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids")
        path = os.path.join(parent, name)
        os.mkdir(path)
        self.paths = [path]
        _write(os.path.join(path, "memory.max"), self.memory_bytes)
        _write(os.path.join(path, "memory.swap.max"), 0) if os.path.exists(
            os.path.join(path, "memory.swap.max")) else None
        _write(os.path.join(path, "pids.max"), self.max_pids)
        self.kind = "cgroup v2"

    def _setup_v1(self, name):
        paths = []
        for controller in ("memory", "pids"):
            own = (_own_cgroup(controller) or "/").lstrip("/")
            path = os.path.join(CGROUP_ROOT, controller, own, name)
            os.mkdir(path)
            paths.append(path)
            self.paths = paths
        memory, pids = paths
        _write(os.path.join(memory, "memory.limit_in_bytes"), self.memory_bytes)
        swap = os.path.join(memory, "memory.memsw.limit_in_bytes")
        if os.path.exists(swap):
            try:
                _write(swap, self.memory_bytes)
            except OSError:
                pass
        _write(os.path.join(pids, "pids.max"), self.max_pids)
        if int(_read(os.path.join(memory, "memory.limit_in_bytes"), "0") or 0) > self.memory_bytes:
            raise OSError("the memory limit did not take")
        self.kind = "cgroup v1"

    def join(self, pid=None):
        """Move ``pid`` (default: the calling process) into the group. Safe in a preexec_fn."""
        pid = os.getpid() if pid is None else pid
        for path in self.paths:
            _write(os.path.join(path, "cgroup.procs"), pid)

    # -- lifetime -------------------------------------------------------------------------------
    def start(self, pid):
        """The sandbox's first process is ``pid``: watch it (watchdog mode)."""
        self._root_pid = pid
        if self.kind == "watchdog":
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()

    def stop(self):
        """Kill what is left of the sandbox and remove the group."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.paths:
            self.exceeded = self.exceeded or self._oom_killed()
            for _ in range(50):
                pids = [p for p in _read(os.path.join(self.paths[0], "cgroup.procs")).split() if p]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                time.sleep(0.05)
        self._remove_dirs()

    def _remove_dirs(self):
        for path in self.paths:
            try:
                os.rmdir(path)
            except OSError:
                pass

    def _oom_killed(self):
        if self.kind == "cgroup v2":
            events = _read(os.path.join(self.paths[0], "memory.events"))
            return any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0"
                       for line in events.splitlines() if line.strip())
        if self.kind == "cgroup v1":
            control = _read(os.path.join(self.paths[0], "memory.oom_control"))
            for line in control.splitlines():
                if line.startswith("oom_kill ") and line.split()[1] != "0":
                    return True
            return _read(os.path.join(self.paths[0], "memory.failcnt"), "0").strip() not in ("", "0")
        return False

    def memory_used(self):
        """Bytes in use by the sandbox now (cgroup counter, or the sum of resident sets)."""
        if self.kind == "cgroup v2":
            return int(_read(os.path.join(self.paths[0], "memory.current"), "0") or 0)
        if self.kind == "cgroup v1":
            return int(_read(os.path.join(self.paths[0], "memory.usage_in_bytes"), "0") or 0)
        return sum(_rss(pid) for pid in descendants(self._root_pid)) if self._root_pid else 0

    def _watch(self):
        while not self._stop.wait(self.poll_s):
            pids = descendants(self._root_pid)
            if not pids:
                return
            if sum(_rss(pid) for pid in pids) > self.memory_bytes:
                self.exceeded = True
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                return

    def describe(self):
        gib = self.memory_bytes / 2**30
        if self.kind.startswith("cgroup"):
            return (f"{self.kind}: {gib:g} GiB of memory for all processes of the sandbox "
                    f"(tmpfs files included), at most {self.max_pids} processes and threads")
        return (f"watchdog: the sandbox is killed when its processes' resident memory passes "
                f"{gib:g} GiB in all (checked every {self.poll_s:g} s; tmpfs files not counted); "
                f"processes capped per uid by RLIMIT_NPROC")


def descendants(root):
    """``root`` and every process below it (from /proc; empty when ``root`` is gone)."""
    if root is None:
        return []
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        try:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    if not os.path.exists(f"/proc/{root}"):
        return []
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _rss(pid):
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def remove_stale_groups():
    """Remove empty groups left by a grader that was killed (best effort)."""
    for base in (CGROUP_ROOT, os.path.join(CGROUP_ROOT, "memory"), os.path.join(CGROUP_ROOT, "pids")):
        own = _own_cgroup(None if base == CGROUP_ROOT else os.path.basename(base))
        parent = os.path.join(base, (own or "/").lstrip("/"))
        try:
            names = [n for n in os.listdir(parent) if n.startswith(PREFIX + "-")]
        except OSError:
            continue
        for name in names:
            pid = name.split("-")[2] if name.count("-") >= 3 else ""
            if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
                continue  # its grader is still running
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass
