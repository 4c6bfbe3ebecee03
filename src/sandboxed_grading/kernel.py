"""A Jupyter kernel manager that starts ipykernel inside the sandbox (see sandbox.py).

The kernel has no network, so client and kernel talk over ZMQ's ``ipc`` transport: Unix sockets
in a private folder, the only host folder the sandbox may write, and only until the kernel has
answered its first request (``lock_runtime_dir``; as root). The kernel works in a tmpfs copy of
the submission folder, so nothing it writes reaches the host. Its own stdout/stderr go to a log
file in the socket folder (at most ``Sandbox.max_file_size``), never to the instructor's
terminal. Memory and processes of the whole sandbox are capped by a ``SandboxGroup``.
"""
import os
import shutil
import signal
import tempfile

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from traitlets import Any, Integer

from .sandbox import Sandbox, chown_tree


def _ignore_sigint():
    # jupyter interrupts a kernel by sending SIGINT to its process group; bwrap itself must not
    # die of it. ipykernel installs its own SIGINT handler while a cell runs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class SandboxedKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernel runs in bubblewrap, connected over ipc sockets."""

    sandbox = Any(None, help="The Sandbox settings (default: from config).")
    max_message_bytes = Integer(16 * 2**20, help="Larger kernel messages are dropped.").tag(config=True)

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
        cmd = self.sandbox.command(kernel_cmd, cwd=cwd, seed=cwd, writable=[self.runtime_dir],
                                   uid=self.uid)
        try:
            await super()._async_launch_kernel(cmd, **kw)
        finally:
            kw["stdout"].close()
        process = getattr(self.provisioner, "process", None)
        if process is not None:
            group.start(process.pid)

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
        if not restart:
            self.release()

    cleanup_resources = _async_cleanup_resources  # nbclient calls this name

    def release(self):
        """Stop what is left of the sandbox and remove the socket folder."""
        if self.group is not None:
            self.group.stop()
            self.memory_exceeded = self.memory_exceeded or self.group.exceeded
            self.group = None
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
