"""A Jupyter kernel manager that starts ipykernel inside the sandbox (see sandbox.py).

The kernel has no network, so client and kernel talk over ZMQ's ``ipc`` transport: Unix sockets
in a private folder, the only host folder the sandbox may write, and only until the kernel has
answered its first request (``lock_runtime_dir``; as root). The kernel works in a tmpfs copy of
the submission folder, so nothing it writes reaches the host. Its own stdout/stderr go to a log
file in the socket folder (at most ``Sandbox.max_file_size``), never to the instructor's
terminal. Memory and processes of the whole sandbox are capped by a ``SandboxGroup``.

The sandbox's first process is the zygote (zygote.py): it imports torch once, forks the kernel,
and once the kernel has exited becomes the verdict process of the same submission. The kernel
counts as alive while the zygote has not reported its exit; after that, the sandbox is kept
(``verdict_link``) for ``CheckVerdicts``, which sends the request and then ``release()``s it.
"""
import json
import os
import select
import shutil
import signal
import socket
import tempfile
import time

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from traitlets import Any, Bool, Integer, List, Unicode

from .sandbox import Sandbox, chown_tree
from . import zygote

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ignore_sigint():
    # jupyter interrupts a kernel by sending SIGINT to its process group; bwrap itself must not
    # die of it. ipykernel installs its own SIGINT handler while a cell runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SandboxedKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernel runs in bubblewrap, connected over ipc sockets."""

    sandbox = Any(None, help="The Sandbox settings (default: from config).")
    max_message_bytes = Integer(16 * 2**20, help="Larger kernel messages are dropped.").tag(config=True)
    use_zygote = Bool(True, help="Start the kernel from a zygote that imports `preload` once for "
                                 "the kernel and the verdict process (zygote.py).").tag(config=True)
    preload = List(Unicode(), default_value=["torch"],
                   help="Modules the zygote imports before forking the kernel.").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.sandbox is None:
            self.sandbox = Sandbox(parent=self)
        self.runtime_dir = tempfile.mkdtemp(prefix="sandboxed-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self.runtime_dir, "socket")
        self.connection_file = os.path.join(self.runtime_dir, "connection.json")
        self.log_path = os.path.join(self.runtime_dir, "kernel.log")
        self.uid = self.sandbox.new_uid()
        self.group = None
        self.memory_exceeded = False
        self.link = None            # the grader's end of the socket to the zygote
        self.link_buffer = b""
        self.link_closed = False
        self.kernel_exit = None     # the kernel's exit status, as the zygote reported it
        self.zygote_why = ""         # why not, when it is not ready
        self.zygote_ready = None           # the zygote's answer once the kernel was gone: True / False
        self.sandbox_process = None  # bwrap, once the kernel inside it has exited

    def client(self, **kwargs):
        # A private context whose sockets refuse messages over max_message_bytes: a student
        # printing gigabytes cannot fill the grader's memory.
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        kwargs.setdefault("context", context)
        client = super().client(**kwargs)
        client._created_context = True  # the client destroys it when it goes away
        return client

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        cwd = os.path.realpath(kw.get("cwd") or os.getcwd())
        if self.uid is not None:
            chown_tree(self.runtime_dir, self.uid, self.uid)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        kw["stdout"] = kw["stderr"] = open(self.log_path, "ab")
        self.group = self.sandbox.group(self.uid)
        group = self.group

        def preexec():
            _ignore_sigint()
            group.join()

        kw["preexec_fn"] = preexec
        if any("ipykernel" in arg for arg in kernel_cmd):
            # Large outputs are sent zero-copy by default, which needs a helper thread; a student
            # who used up the process limit would then corrupt the kernel's message stream.
            kernel_cmd = [*kernel_cmd, "--Session.copy_threshold=2147483647"]
        sandbox_end = None
        readonly = []
        if self.use_zygote:
            grader_end, sandbox_end = socket.socketpair()
            wrapped = zygote.command(kernel_cmd, sandbox_end.fileno(), self.preload, PACKAGE_ROOT)
            if wrapped is None:
                grader_end.close()
                sandbox_end.close()
                sandbox_end = None
            else:
                kernel_cmd, readonly = wrapped, [PACKAGE_ROOT]
                kw["pass_fds"] = (sandbox_end.fileno(),)
                self.link = grader_end
                grader_end.setblocking(False)
        cmd = self.sandbox.command(kernel_cmd, cwd=cwd, seed=cwd, writable=[self.runtime_dir],
                                   readonly=readonly, uid=self.uid)
        try:
            await super()._async_launch_kernel(cmd, **kw)
        finally:
            kw["stdout"].close()
            if sandbox_end is not None:
                sandbox_end.close()
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            group.start(process.pid)

    # -- the zygote ------------------------------------------------------------------------------
    def poll_link(self, timeout=0.0):
        """Read what the zygote sent (waiting up to ``timeout`` s for something to arrive)."""
        if self.link is None or self.link_closed:
            return
        if timeout and not select.select([self.link], [], [], timeout)[0]:
            return
        while True:
            try:
                chunk = self.link.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.link_closed = True
                break
            self.link_buffer += chunk
            if len(self.link_buffer) > 65536:  # the zygote sends two short lines
                self.link_closed = True
                break
        while b"\n" in self.link_buffer and self.zygote_ready is None:
            line, self.link_buffer = self.link_buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                self.link_closed = True
                break
            if isinstance(message, dict) and isinstance(message.get("kernel_exit"), int):
                self.kernel_exit = message["kernel_exit"]
            elif isinstance(message, dict) and "ready" in message:
                self.zygote_ready = message["ready"] is True
                self.zygote_why = str(message.get("why", ""))[:200]

    def _detach(self):
        """The kernel has exited but its sandbox (the zygote) lives on: from now on jupyter_client
        sees no kernel process, and the sandbox is ours (``release``)."""
        provisioner = self.provisioner
        if provisioner is not None and getattr(provisioner, "process", None) is not None:
            self.sandbox_process = provisioner.process
            provisioner.process = None

    async def _async_is_alive(self):
        self.poll_link()
        if self.kernel_exit is not None:
            self._detach()
            return False
        return await super()._async_is_alive()

    is_alive = _async_is_alive

    def exit_status(self):
        """The kernel's exit status (128 + n when killed by signal n), None while it runs."""
        if self.kernel_exit is not None:
            return self.kernel_exit
        process = getattr(self.provisioner, "process", None)
        return process.poll() if process is not None else None

    def verdict_link(self, timeout=30.0):
        """The socket to a zygote ready to run the verdicts of this submission, or None (the
        zygote is gone, failed, or did not get ready within ``timeout`` s)."""
        if self.sandbox_process is None or self.link is None:
            return None
        deadline = time.monotonic() + timeout
        while self.zygote_ready is None and not self.link_closed and time.monotonic() < deadline:
            if self.sandbox_process.poll() is not None:
                self.poll_link()
                break
            self.poll_link(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
        if not self.zygote_ready or self.link_closed or self.sandbox_process.poll() is not None:
            return None
        self.link.setblocking(True)
        return self.link

    def kept(self):
        """Whether the sandbox outlived its kernel (so that the verdicts can run in it)."""
        return (self.sandbox_process is not None and self.sandbox_process.poll() is None
                and not self.link_closed)

    def memory_exceeded_now(self):
        """Whether the sandbox passed its memory cap so far (without stopping it)."""
        group = self.group
        return self.memory_exceeded or bool(group and (group.exceeded or group._oom_killed()))

    def lock_runtime_dir(self):
        """The kernel has bound its sockets: from now on the sandbox may not create files in the
        socket folder (root only; the kernel log stays capped by RLIMIT_FSIZE)."""
        if self.uid is None:
            return
        for name in ("", "connection.json"):
            path = os.path.join(self.runtime_dir, name)
            if os.path.exists(path):
                os.lchown(path, 0, 0)
        os.chmod(self.runtime_dir, 0o755)

    def log_tail(self, limit=2000):
        """The end of the kernel's own output (printable characters only)."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self.log_path) - limit))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "".join(ch for ch in text if ch.isprintable() or ch == "\n").strip()

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if not restart and not self.kept():
            self.release()

    cleanup_resources = _async_cleanup_resources  # nbclient calls this name

    def release(self):
        """Stop what is left of the sandbox and remove the socket folder."""
        if self.group is not None:
            self.group.stop()
            self.memory_exceeded = self.memory_exceeded or self.group.exceeded
            self.group = None
        process, self.sandbox_process = self.sandbox_process, None
        if process is not None:
            for kill in (lambda: os.killpg(process.pid, signal.SIGKILL), process.kill):
                try:
                    kill()
                except OSError:
                    pass
            try:
                process.wait(timeout=10)
            except Exception:  # noqa: BLE001
                pass
        if self.link is not None:
            self.link.close()
            self.link, self.link_closed = None, True
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


_kept = {}  # (assignment, student, notebook) -> SandboxedKernelManager kept for its verdicts


def keep_for_verdicts(key, manager):
    """Hand the sandbox of a finished kernel to CheckVerdicts (which ``take_kept``s it)."""
    release_kept()  # anything a failed grading left behind
    _kept[key] = manager


def take_kept(key):
    """The kept sandbox of this notebook (None when there is none); the caller releases it."""
    return _kept.pop(key, None)


def release_kept():
    """Stop every kept sandbox nobody took."""
    while _kept:
        _kept.popitem()[1].release()
