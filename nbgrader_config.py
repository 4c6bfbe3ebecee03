"""nbgrader configuration: run plain `nbgrader ...` from the repository root.

Layout (see README, "Instructors"):
  solutions/<assignment>/       instructor source (committed)
  exercises/<assignment>/       student release made by `nbgrader generate_assignment` (committed)
  course/                       git-ignored workspace: submissions, autograded, feedback, gradebook
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "bufferbook"
c.CourseDirectory.root = HERE
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = os.path.join("course", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("course", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("course", "feedback")
c.CourseDirectory.solution_directory = os.path.join("course", "solution")
c.CourseDirectory.source_with_tests_directory = os.path.join("course", "source_with_tests")
# SQLite cannot create the gradebook's folder: make the (git-ignored) workspace on first use.
os.makedirs(os.path.join(HERE, "course"), exist_ok=True)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "course", "gradebook.db")
# Paired jupytext sources (*.py) are the instructor's review copy: never release them.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# `nbgrader zip_collect <assignment>`: put the files or zip archives downloaded from your LMS in
# course/downloaded/<assignment>/archive/, each notebook named <student_id>__<assignment>.ipynb
# (a student's own zip: <student_id>__<assignment>.zip). sandboxed_grading.collect checks names,
# owners and sizes (book/grading-safely.md, "Collecting submissions").
c.ZipCollectApp.downloaded_directory = os.path.join("course", "downloaded")
# `nbgrader export` writes here, inside the git-ignored workspace (not the repository root).
c.ExportPlugin.to = os.path.join(HERE, "course", "grades.csv")

# Each cell gets this long when grading; an infinite loop fails its cell, grading goes on.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True


# What replaces a solution region in the student release. Each question says what the code must
# do; the answer cell keeps only its signature and docstring.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError(\"write your answer here\")"
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# ---- Sandboxed autograding (src/sandboxed_grading; instructor guide: book/grading-safely.md) ----
# Student code runs in bubblewrap (no network, no solutions/, course/ or home; a tmpfs copy of
# its folder; caps on memory and processes of the whole sandbox, disk, file size and time).
# Hidden test cells (qN_hidden) never run in the student's kernel: solutions/<aid>/verdicts.py
# probes are compared with the reference solution outside it. Submitted folders are cleaned
# before nbgrader reads them (links, deep trees, huge files go to course/quarantine/); missing,
# duplicated or unknown cells are repaired; dead kernels and unreadable notebooks are scored 0
# instead of dropped; a killed run is resumed; course/reports/<aid>.md explains every flag.
# zip_collect, feedback (offline, escaped, no hidden tests), the release (no jupytext pairing)
# and validate (no false "Success") are configured here too.
# No sandbox here? Grading refuses; SANDBOXED_GRADING_ALLOW_UNSANDBOXED=1 overrides (unsafe).
from sandboxed_grading import configure as _sandboxed_grading  # noqa: E402

_sandboxed_grading(c)
# ---- end of sandboxed autograding ----
