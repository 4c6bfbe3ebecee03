"""A Jupyter kernel manager that starts ipykernel inside the sandbox (see sandbox.py).

The kernel has no network, so client and kernel talk over ZMQ's ``ipc`` transport: Unix sockets
in a private folder that is the only other folder (besides the submission's) the sandbox may
write. The kernel's own stdout/stderr go to a log file there, never to the instructor's terminal.
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
        self._owners = {}

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
        writable = [cwd, self.runtime_dir]
        if self.uid is not None:
            for path in writable:
                st = os.lstat(path)
                self._owners[path] = (st.st_uid, st.st_gid)
                chown_tree(path, self.uid, self.uid)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        kw["stdout"] = kw["stderr"] = open(self.log_path, "ab")
        kw["preexec_fn"] = _ignore_sigint
        if any("ipykernel" in arg for arg in kernel_cmd):
            # Large outputs are sent zero-copy by default, which needs a helper thread; a student
            # who used up the process limit would then corrupt the kernel's message stream.
            kernel_cmd = [*kernel_cmd, "--Session.copy_threshold=2147483647"]
        cmd = self.sandbox.command(kernel_cmd, cwd=cwd, writable=writable, uid=self.uid)
        try:
            await super()._async_launch_kernel(cmd, **kw)
        finally:
            kw["stdout"].close()

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
        """Give the folders back to their owners and remove the socket folder."""
        for path, (uid, gid) in self._owners.items():
            if os.path.isdir(path):
                chown_tree(path, uid, gid)
        self._owners = {}
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
