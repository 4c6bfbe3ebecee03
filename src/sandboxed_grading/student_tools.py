"""Hide nbgrader's instructor tools from the JupyterLab students use.

Installing nbgrader (the course needs it to grade) also enables, for everyone using the same
environment, its JupyterLab extension (Create Assignment, Formgrader, the exchange's assignment
list, and a Validate button that announces "Success!" while hidden tests have not run) and its
server extensions. Students hand in their ``.ipynb`` files; they need none of it.

    python -m sandboxed_grading.student_tools [PREFIX]

writes, under ``PREFIX/etc/jupyter`` (default: this environment's ``sys.prefix``), the two
standard Jupyter config files that disable them: ``labconfig/page_config.json``
(``disabledExtensions``) and ``jupyter_server_config.d/zz-no-nbgrader-tools.json``. The
command-line ``nbgrader`` is unaffected. To get the tools back, delete those entries.
"""
import json
import os
import sys

LAB_EXTENSION = "@jupyter/nbgrader"
SERVER_EXTENSIONS = ("nbgrader.server_extensions.formgrader",
                     "nbgrader.server_extensions.assignment_list",
                     "nbgrader.server_extensions.course_list",
                     "nbgrader.server_extensions.validate_assignment")
SERVER_FILE = "zz-no-nbgrader-tools.json"


def hide_instructor_tools(prefix=sys.prefix):
    """Write the two config files under ``prefix``; return their paths."""
    etc = os.path.join(prefix, "etc", "jupyter")
    page = os.path.join(etc, "labconfig", "page_config.json")
    os.makedirs(os.path.dirname(page), exist_ok=True)
    config = {}
    if os.path.exists(page):
        with open(page, encoding="utf-8") as fh:
            config = json.load(fh)
    disabled = config.setdefault("disabledExtensions", {})
    if isinstance(disabled, list):
        disabled = config["disabledExtensions"] = dict.fromkeys(disabled, True)
    disabled[LAB_EXTENSION] = True
    with open(page, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2)
    server = os.path.join(etc, "jupyter_server_config.d", SERVER_FILE)
    os.makedirs(os.path.dirname(server), exist_ok=True)
    with open(server, "w", encoding="utf-8") as fh:
        json.dump({"ServerApp": {"jpserver_extensions": dict.fromkeys(SERVER_EXTENSIONS, False)}},
                  fh, indent=2)
    return page, server


if __name__ == "__main__":
    for path in hide_instructor_tools(*sys.argv[1:2]):
        print("wrote", path)
