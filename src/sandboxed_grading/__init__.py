"""Grading students and instructors can trust, on top of nbgrader: student code runs in
bubblewrap, hidden tests are decided outside the student's process, honest slips are graded on
their merits, and nothing a student submits can reach another student or the instructor's files.

One call in ``nbgrader_config.py`` turns it on (see ``configure``); the instructor guide page
``book/grading-safely.md`` explains the design, the settings and how to write ``verdicts.py``.

Modules: ``sandbox`` (the bubblewrap command and its limits), ``limits`` (memory and process cap
of a whole sandbox), ``trees`` (walking and cleaning student folders), ``kernel`` (a kernel
manager starting ipykernel in the sandbox), ``execute`` (nbgrader's Execute step, sandboxed),
``probes`` (the verdict process, run in the sandbox), ``probing`` (helpers for verdicts.py),
``verdicts`` (the trusted comparison that scores hidden tests), ``guard`` (cleaning, rebuilding
and recovering submissions), ``report`` (the instructor's per-assignment report), ``feedback``
(safe, private feedback pages), ``collect`` (safe zip_collect), ``release`` and ``validate``
(what students get), ``student_tools`` (hiding the instructor tools from students' JupyterLab).
"""


def configure(c):
    """Set up nbgrader in config ``c``: autograde in the sandbox, safe collection, private
    feedback, a clean release and a truthful validate.

    Autograde, sanitize: RebuildNotebook runs first. Autograde: SandboxedExecute replaces
    Execute, CheckVerdicts follows it, WriteReport follows SaveAutoGrades. Unreadable
    submissions are graded as empty notebooks (GuardedNotebookExporter); submitted folders are
    cleaned before nbgrader reads them and marked in progress until graded (the hooks).
    """
    from nbgrader.converters.autograde import Autograde
    from nbgrader.converters.generate_assignment import GenerateAssignment
    from nbgrader.preprocessors import Execute, SaveAutoGrades

    from .collect import SafeCollector, SafeExtractor
    from .execute import SandboxedExecute
    from .feedback import configure_feedback
    from .guard import (GuardedNotebookExporter, RebuildNotebook, clean_before_grading,
                        finish_grading)
    from .release import StripPairing
    from .report import WriteReport
    from .validate import truthful_validate
    from .verdicts import CheckVerdicts

    traits = Autograde.class_traits()
    sanitize = [RebuildNotebook] + list(traits["sanitize_preprocessors"].default())
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
    c.Autograde.pre_convert_hook = clean_before_grading
    c.Autograde.post_convert_hook = finish_grading
    c.OverwriteCells.add_missing_cells = False  # RebuildNotebook puts missing cells back

    release = list(GenerateAssignment.class_traits()["preprocessors"].default())
    c.GenerateAssignment.preprocessors = release + [StripPairing]

    c.ZipCollectApp.extractor_plugin = SafeExtractor
    c.ZipCollectApp.collector_plugin = SafeCollector

    configure_feedback(c)
    truthful_validate()
