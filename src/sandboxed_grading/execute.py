"""nbgrader's Execute step, with the kernel in the sandbox and no submission ever dropped.

Differences from ``nbgrader.preprocessors.Execute``:

* the kernel runs in bubblewrap (``SandboxedKernelManager``); when the sandbox cannot start,
  grading refuses unless the instructor allowed unsandboxed grading (``Sandbox.allow_unsandboxed``);
* when the kernel dies (``os._exit``, a limit, a crash) or ignores the interrupt after a timeout,
  the cell that was running gets an error output saying why and every later code cell a "not run"
  error: the notebook is still saved and scored (0 for those cells) instead of being dropped;
* output beyond ``max_output_bytes`` per cell is dropped, and timeouts, deaths and dropped output
  are recorded for the instructor's report (report.py);
* hidden test cells decided by a trusted probe (verdicts.py) are never sent to the kernel: their
  source, and so the hidden tests, never enter the student's process (``CheckVerdicts`` scores
  them);
* after each test cell the kernel runs a check that must fail (a canary: comparisons of unequal
  tensors, one of them through ``int``) and must report its error: a kernel that hides errors
  (an input or AST transformer, a hook) or was patched to agree with anything (``torch.equal``,
  ``Tensor.__eq__``, ``builtins.int``...) has its test cells from there on scored 0, as their
  passing cannot be trusted ("rigged kernel" in the report). Code aimed at this very canary can
  pass it: visible tests are decided in the student's process by design, hidden ones are not.
"""
import secrets
import json

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient import NotebookClient
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade, is_solution
from traitlets import Integer

from . import report
from .kernel import SandboxedKernelManager, keep_for_verdicts, release_kept
from .sandbox import Sandbox, SandboxUnavailable

# Error names of cells the run gave up on (nbgrader's timeout error, then ours).
STOPPED = {"CellTimeoutError", "KernelDied", "KernelUnresponsive", "NotRun"}
RIGGED = "RiggedKernel"
CANARY = """\
import torch as _grader_torch
_grader_a, _grader_b = _grader_torch.zeros(2), _grader_torch.ones(2)
assert (_grader_torch.equal(_grader_a, _grader_b)
        or _grader_torch.allclose(_grader_a, _grader_b)
        or bool((_grader_a == _grader_b).all())
        or _grader_a.tolist() == _grader_b.tolist()
        or int(_grader_torch.tensor(2)) == 3), "grader canary {nonce}"
"""
SIGNALS = {9: "SIGKILL: wall-time or CPU limit, or killed", 24: "SIGXCPU: CPU time limit",
           25: "SIGXFSZ: file size limit", 11: "SIGSEGV: crashed", 6: "SIGABRT: aborted"}


def cell_name(cell, index):
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return grade_id or f"cell {index}"


def fail_cell(cell, ename, evalue):
    """Make ``cell`` score 0: put an error output first (nbgrader reads the first output)."""
    if cell.cell_type != "code":
        return
    cell.outputs.insert(0, new_output("error", ename=ename, evalue=evalue,
                                      traceback=[f"{ename}: {evalue}"]))


def mark_not_run(nb, resources, reason):
    """The submission could not run at all: every graded code cell fails with ``reason``."""
    for cell in nb.cells:
        if cell.cell_type == "code" and is_grade(cell):
            cell.outputs = []
            fail_cell(cell, "NotGraded", reason)


class SandboxedExecute(Execute):
    """Execute the notebook in a sandboxed kernel (configure as nbgrader's Execute)."""

    max_output_bytes = Integer(4 * 2**20, help="Output kept per cell, bytes.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        not_run = nb.metadata.get("sandboxed_grading", {}).get("not_run")
        if not_run:
            mark_not_run(nb, resources, not_run)
            return nb, resources
        sandboxed = Sandbox(parent=self).check(self.log)  # raises SandboxUnavailable
        report.set_state(resources, sandboxed=sandboxed)
        if not sandboxed:
            report.flag(resources, "unsandboxed", "Sandbox.allow_unsandboxed was set")
        self.kernel_manager_class = SandboxedKernelManager if sandboxed else AsyncKernelManager
        release_kept()

        from .verdicts import decided_cells, load_spec
        spec = load_spec(self.config, resources)
        skip = decided_cells(nb.cells, spec.probes) if spec else {}
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._output_bytes = {}
        index, stopped, hidden_errors = -1, None, None
        managers = []
        try:
            with self.setup_kernel():
                managers.append(self.km)
                try:
                    info_msg = self.wait_for_reply(self.kc.kernel_info())
                    self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                    getattr(self.km, "lock_runtime_dir", lambda: None)()
                    for index, cell in enumerate(self.nb.cells):
                        if index in skip:  # decided outside the kernel (CheckVerdicts)
                            cell.outputs, cell.execution_count = [], None
                            continue
                        self.preprocess_cell(cell, resources, index)
                        if cell.cell_type == "code" and is_grade(cell) and not is_solution(cell):
                            if hidden_errors is None and not self._canary_fails():
                                hidden_errors = index
                                report.flag(resources, "rigged kernel",
                                            "a check that must fail passed, or its error did "
                                            "not come back, after this test cell",
                                            cell_name(cell, index))
                            if hidden_errors is not None:
                                fail_cell(cell, RIGGED, "this notebook hides errors or makes "
                                          "unequal values compare equal, so this test cannot "
                                          "be trusted")
                except SandboxUnavailable:
                    raise
                except Exception as exc:  # the kernel stopped, or stopped answering
                    stopped = exc
                    self._kernel_stopped(exc, index, resources)
        except SandboxUnavailable:
            raise
        except Exception as exc:  # it could not start (or not be shut down)
            if stopped is None:
                self._kernel_stopped(exc, index, resources)
            else:
                self.log.warning("shutting down the stopped kernel failed: %s", exc)
        exceeded = [getattr(km, "memory_exceeded_now", lambda: False)() for km in managers]
        if any(exceeded):
            report.flag(resources, "memory limit", "the sandbox's processes together used more "
                        "memory than allowed; the largest was killed")
        for km in managers:  # a sandbox that outlived its kernel runs the verdicts (zygote.py)
            if getattr(km, "kept", lambda: False)():
                if skip:
                    keep_for_verdicts(report.key(resources), km)
                else:
                    km.release()
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _canary_fails(self):
        """Run the canary, a check that must fail; False when the kernel reports no such error."""
        nonce = secrets.token_hex(8)
        # stop_on_error=False: otherwise ipykernel aborts the next cell if it arrives while the
        # kernel is still handling the canary's (deliberate) error.
        msg_id = self.kc.execute(CANARY.format(nonce=nonce), store_history=False,
                                 allow_stdin=False, stop_on_error=False)
        reply = self.wait_for_reply(msg_id)
        content = (reply or {}).get("content", {})
        return (content.get("status") == "error" and content.get("ename") == "AssertionError"
                and nonce in str(content.get("evalue", "")))

    def _kernel_stopped(self, exc, index, resources):
        status = None  # 128 + n: killed by signal n
        if hasattr(self.km, "exit_status"):
            status = self.km.exit_status()
        else:
            process = getattr(getattr(self.km, "provisioner", None), "process", None)
            status = process.poll() if process is not None else None
        if isinstance(exc, CellTimeoutError):
            kind, reason = "unresponsive", ("the kernel did not answer after the time limit "
                                            "(interrupt ignored, or its output stream broke); killed")
        elif status is not None and status > 128:
            kind, reason = "kernel died", f"killed by signal {status - 128} " \
                                          f"({SIGNALS.get(status - 128, 'signal')})"
        elif status is not None:
            kind, reason = "kernel died", f"the kernel exited with status {status} (os._exit, exit or a crash)"
        elif isinstance(exc, DeadKernelError):
            kind, reason = "kernel died", "the kernel died"
        else:
            kind, reason = "kernel died", f"{type(exc).__name__}: {exc}"
        tail = getattr(self.km, "log_tail", lambda: "")() if self.km else ""
        if tail and index < 0:
            reason += f"; kernel log: {tail[-300:]}"
        where = cell_name(self.nb.cells[index], index) if index >= 0 else None
        report.flag(resources, kind, reason, where)
        self.log.warning("%s at %s: %s", kind, where or "start", reason)
        for later, cell in enumerate(self.nb.cells):
            if later == index:
                fail_cell(cell, "KernelDied" if kind == "kernel died" else "KernelUnresponsive", reason)
            elif later > index:
                fail_cell(cell, "NotRun", f"not run: {kind} at {where or 'start'} ({reason})")

    async def _async_handle_timeout(self, timeout, cell=None):
        index = next((i for i, c in enumerate(self.nb.cells) if c is cell), -1)
        report.flag(self.resources, "timeout", f"ran longer than {timeout} s (interrupted)",
                    cell_name(cell, index) if cell is not None else None)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = len(content["text"]) if "text" in content else len(json.dumps(content, default=str))
        used = self._output_bytes.get(cell_index, 0) + size
        self._output_bytes[cell_index] = used
        if used > self.max_output_bytes:
            if used - size <= self.max_output_bytes:
                cell = self.nb.cells[cell_index]
                report.flag(self.resources, "huge output",
                            f"more than {self.max_output_bytes} bytes of output; the rest was dropped",
                            cell_name(cell, cell_index))
                outs.append(new_output("stream", name="stdout",
                                       text="[grader: further output of this cell dropped]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)
