"""A temporary nbgrader course for tests: the repo's own nbgrader_config.py, a copy of one
assignment's instructor source, and the real nbgrader CLI (its `main()`, forked from a process that
imported it once: tests/warm_cli.py). Used by the grading tests and the release-sync test."""
import fcntl
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook

import warm_cli

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSIGNMENTS = sorted(p.name for p in (ROOT / "solutions").iterdir()
                     if (p / f"{p.name}.ipynb").is_file())


def require(what, reason):
    """A service a test needs cannot start (``reason`` is not None): skip, or fail under CI=true,
    where such a test must run."""
    if reason is None:
        return
    import pytest
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must exercise {what}, but it cannot start: {reason}")
    pytest.skip(f"{what} unavailable: {reason}")


def require_sandbox():
    from sandboxed_grading.sandbox import Sandbox
    reason = Sandbox().unavailable_reason()
    require("the grading sandbox", reason and f"{reason} (run scripts/system-deps.sh as root)")


def demo_course(path, db_url=None):
    """A course like the repo's with the demo assignment of tests/fixtures/grading/demo (five
    1-point tests, verdicts.py); ``db_url``: another gradebook than the course's SQLite file."""
    attacks = _attacks()
    (path / "solutions" / "demo").mkdir(parents=True)
    config = (ROOT / "nbgrader_config.py").read_text()
    if db_url:
        config += f"\nc.CourseDirectory.db_url = {db_url!r}\n"
    (path / "nbgrader_config.py").write_text(config)
    if not db_url:
        empty_gradebook(path)
    nbformat.write(attacks.demo_source(), path / "solutions" / "demo" / "demo.ipynb")
    shutil.copy(attacks.DEMO / "verdicts.py", path / "solutions" / "demo" / "verdicts.py")
    nbgrader(path, "generate_assignment", "demo", "--force")
    share_demo_reference(path)
    return path


# The demo courses of one test session share their verdict secret, so the demo's reference
# verdicts (for cells timing out after DEMO_TIMEOUT s) are computed once per session, by the first
# course that needs them, and copied into the others' course/verdict-cache, as a course that was
# graded before holds them. Courses of the real assignments (make_course) keep their own secret,
# written by the grader on first use.
DEMO_SECRET = "0123456789abcdef" * 4
DEMO_TIMEOUT = 30
SHARED_ENV = "BUFFERBOOK_TEST_SHARED"  # a folder for the session (conftest.py makes it)


def once_per_session(name, make):
    """The path of ``name`` in the session's shared folder, made by ``make(path)`` for the first
    caller (the others, in any xdist worker, wait on a lock); None outside a test session, or
    when ``make`` made nothing."""
    shared = os.environ.get(SHARED_ENV)
    if not shared or not os.path.isdir(shared):
        return None
    path = Path(shared) / name
    with open(Path(shared) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            make(path)
    return path if path.exists() else None


def share_demo_reference(course):
    state = course / "course"
    state.mkdir(exist_ok=True)
    secret = state / "verdict-secret"
    secret.write_text(DEMO_SECRET)
    secret.chmod(0o600)

    def compute(cache):
        code = ("import sys; from sandboxed_grading import parallel; "
                "app = parallel._load('demo', sys.argv[1:]); "
                "parallel.prepare_reference(app.config, app.coursedir, 'demo', app.log)")
        subprocess.run([sys.executable, "-c", code, f"--Execute.timeout={DEMO_TIMEOUT}"],
                       cwd=course, capture_output=True, timeout=600)
        if (state / "verdict-cache").is_dir():
            shutil.copytree(state / "verdict-cache", cache)

    cache = once_per_session("demo-verdict-cache", compute)
    if cache is not None and not (state / "verdict-cache").exists():
        shutil.copytree(cache, state / "verdict-cache")


def empty_gradebook(course):
    """Put an empty SQLite gradebook (nbgrader's tables and alembic version, no course data)
    where the course's config looks for it. nbgrader makes one on a course's first command by
    running `alembic heads` in a subprocess (1.5 s of CPU); here it is made once per session."""

    def make(template):
        partial = template.with_suffix(".partial")
        path = os.environ["PATH"]
        os.environ["PATH"] = f"{BIN}{os.pathsep}{path}"  # where nbgrader finds alembic
        try:
            with Gradebook(f"sqlite:///{partial}"):
                pass
        finally:
            os.environ["PATH"] = path
        partial.rename(template)

    template = once_per_session("empty-gradebook.db", make)
    if template is not None:
        (course / "course").mkdir(exist_ok=True)
        shutil.copyfile(template, course / "course" / "gradebook.db")


def submit_demo(course, subs):
    """Write demo submissions: {student: (answers by grade id, edit)} (see attacks.py)."""
    attacks = _attacks()
    for student, (answers, edit) in subs.items():
        attacks.write_submission(course, "demo", student, answers or {}, edit,
                                 course / "exercises" / "demo" / "demo.ipynb",
                                 course / "solutions" / "demo" / "demo.ipynb")


def _attacks():
    folder = str(ROOT / "tests" / "fixtures" / "grading")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import attacks
    return attacks


def grading(course, *args, env=None, timeout=900):
    """Run the parallel grader (python -m sandboxed_grading.parallel) in ``course``, as
    tests/warm_cli.py runs it."""
    env = dict(os.environ if env is None else env, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return warm_cli.run(course, ["-m", "sandboxed_grading.parallel", *args], env, timeout)


def gradebook_state(db_url, assignment, students):
    """What the gradebook holds for these students: {student: None (no submission) or
    {"timestamp", "grades": {grade id: (auto, manual, needs manual grade)}, "comments":
    {grade id: auto comment}}}."""
    from nbgrader.api import MissingEntry
    out = {}
    with Gradebook(db_url) as gb:
        for student in students:
            try:
                sub = gb.find_submission(assignment, student)
            except MissingEntry:
                out[student] = None
                continue
            grades, comments = {}, {}
            for nb in sub.notebooks:
                for g in nb.grades:
                    grades[g.name] = (g.auto_score, g.manual_score, g.needs_manual_grade)
                for c in nb.comments:
                    comments[c.name] = c.auto_comment
            out[student] = {"timestamp": sub.timestamp, "grades": grades, "comments": comments}
    return out


def nbgrader(course, *args, check=True):
    """Run the nbgrader CLI in ``course`` (which holds its own copy of nbgrader_config.py), as
    tests/warm_cli.py runs it."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    proc = warm_cli.run(course, [str(BIN / "nbgrader"), *args], env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_course(tmp_path, aid):
    """A course folder laid out like the repo: config, solutions/<aid>, then the generated release."""
    course = tmp_path / "course_root"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions" / aid, course / "solutions" / aid)
    empty_gradebook(course)
    nbgrader(course, "generate_assignment", aid, "--force")
    return course


def graded_cells(nb):
    """{grade_id: points} for every graded cell of a notebook."""
    return {c.metadata.nbgrader["grade_id"]: c.metadata.nbgrader.get("points", 0)
            for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")}


def question_points(nb, question):
    return sum(p for gid, p in graded_cells(nb).items() if gid.startswith(question + "_"))


def answer_cell(nb, question):
    matches = [c for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade_id") == f"{question}_answer"]
    assert len(matches) == 1, f"expected one cell with grade_id {question}_answer"
    return matches[0]


def solved_release(course, aid):
    """The student release with every answer cell filled in from the instructor source."""
    source = nbformat.read(course / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    release = nbformat.read(course / "exercises" / aid / f"{aid}.ipynb", as_version=4)
    for cell in release.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            src = [c for c in source.cells
                   if c.metadata.get("nbgrader", {}).get("grade_id") == meta["grade_id"]][0]
            cell.source = src.source
    return release


def submit(course, aid, student, nb_or_text):
    folder = course / "course" / "submitted" / student / aid
    folder.mkdir(parents=True)
    path = folder / f"{aid}.ipynb"
    if isinstance(nb_or_text, str):
        path.write_text(nb_or_text)
    else:
        nbformat.write(nb_or_text, path)


def scores(course, aid, students):
    """{student: {grade_id: score}} read from the gradebook (autograde's exit code is unreliable)."""
    out = {}
    with Gradebook(f"sqlite:///{course / 'course' / 'gradebook.db'}") as gb:
        for student in students:
            nb = gb.find_submission_notebook(aid, aid, student)
            out[student] = {g.name: g.score for g in nb.grades}
    return out


def planted_wrong_answers(aid, kind="WRONG_ANSWERS"):
    """{question: wrong answer cell source} from tests/planted/<aid>.py (it must exist):
    ``WRONG_ANSWERS`` fail the visible and the hidden tests, ``HIDDEN_ONLY`` only the hidden."""
    path = ROOT / "tests" / "planted" / f"{aid}.py"
    assert path.is_file(), f"{path} is missing: every assignment needs planted wrong answers"
    spec = importlib.util.spec_from_file_location(f"planted_{aid}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, kind)


def active_content(html):
    """What in an HTML page would run or fetch something: script elements, on* event handler
    attributes, and src/href URLs with a scheme (http:, https:, javascript:...)."""
    from html.parser import HTMLParser

    found = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag in ("script", "iframe", "object", "embed"):
                found.append(f"<{tag}>")
            for name, value in attrs:
                if name.startswith("on"):
                    found.append(f"<{tag} {name}=...>")
                if name in ("src", "href") and value and ":" in value.split("/")[0] \
                        and not value.startswith("data:image/"):
                    found.append(f"<{tag} {name}={value[:60]}>")

    Finder().feed(html)
    return found
