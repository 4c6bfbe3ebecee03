"""nbgrader's formgrader for the instructor, in an environment whose JupyterLab hides it from
students (student_tools.py; book/instructor-guide.md, "Grade the predict-and-explain answers").

    python -m sandboxed_grading.formgrader [Jupyter Server options]

starts a Jupyter Server in the current folder (the course root, where nbgrader_config.py is)
with the formgrader extension enabled for this server only, then open
``http://localhost:8888/formgrader`` (the URL with its token is printed). The settings under
``.venv/etc/jupyter`` that hide the tools stay as they are: a plain ``jupyter lab`` (what
students run) still has no formgrader. It reads the gradebook at ``db_url``, SQLite or
PostgreSQL alike.
"""
import sys

EXTENSION = "nbgrader.server_extensions.formgrader"


def argv_for(argv):
    """Jupyter Server's command line: the formgrader extension on, then ``argv``."""
    return [f"--ServerApp.jpserver_extensions={EXTENSION}=True", "--no-browser", *argv]


def main(argv=None):
    from jupyter_server.serverapp import ServerApp
    ServerApp.launch_instance(argv=argv_for(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
