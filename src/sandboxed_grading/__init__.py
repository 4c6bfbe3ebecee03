"""Sandboxed autograding for nbgrader: student code runs in bubblewrap, hidden checks are decided
outside the student's process, and no submission is dropped without a reason.

One call in ``nbgrader_config.py`` turns it on (see ``configure``); the instructor guide page
``book/grading-safely.md`` explains the design, the settings and how to write ``verdicts.py``.

Modules: ``sandbox`` (the bubblewrap command and its limits), ``kernel`` (a kernel manager
starting ipykernel in it), ``execute`` (nbgrader's Execute step, sandboxed, surviving dead
kernels), ``probes`` (the verdict process, run in the sandbox), ``verdicts`` (the trusted
comparison step), ``guard`` (unreadable and tampered submissions), ``report`` (the instructor's
per-assignment report).
"""


def configure(c):
    """Set up nbgrader's ``autograde`` in config ``c`` to grade in the sandbox.

    Sanitize: DetectTampering runs first. Autograde: SandboxedExecute replaces Execute,
    CheckVerdicts follows it, WriteReport follows SaveAutoGrades. Unreadable submissions are
    graded as empty notebooks (GuardedNotebookExporter); submitted symlinks are deleted first.
    """
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute, SaveAutoGrades

    from .execute import SandboxedExecute
    from .guard import DetectTampering, GuardedNotebookExporter, quarantine_links
    from .report import WriteReport
    from .verdicts import CheckVerdicts

    traits = Autograde.class_traits()
    sanitize = [DetectTampering] + list(traits["sanitize_preprocessors"].default())
    autograde = []
    for step in traits["autograde_preprocessors"].default():
        if step is Execute:
            autograde += [SandboxedExecute, CheckVerdicts]
        else:
            autograde.append(step)
        if step is SaveAutoGrades:
            autograde.append(WriteReport)
    c.Autograde.sanitize_preprocessors = sanitize
    c.Autograde.autograde_preprocessors = autograde
    c.Autograde.exporter_class = GuardedNotebookExporter
    c.Autograde.pre_convert_hook = quarantine_links
