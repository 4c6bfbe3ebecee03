"""The pieces of sandboxed_grading that need no kernel, each against the attack or slip it stops:
the trusted comparison and its words, forged records, the verdict program, folder walks that
survive 3,000-level trees and never follow links, the report's escaping, rebuilding honest
slips, zip_collect's refusals, the sandbox-wide memory cap, the feedback template, the release
metadata, validate's message, hiding the instructor tools; and every assignment's probes against
its planted wrong answers for several seeds (without the sandbox).
"""
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import zipfile

import jupytext
import nbformat
import pytest
import torch

from nbgrader_course import (ASSIGNMENTS, ROOT, active_content, answer_cell, nbgrader,
                             planted_wrong_answers)
from sandboxed_grading import guard, report, trees
from sandboxed_grading.probes import encode
from sandboxed_grading.verdicts import (CheckVerdicts, compare, decided_cells, differences,
                                        error_words, probe_names, steps, tolerance)

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "grading"))
import attacks  # noqa: E402


def tensor(values, dtype="torch.float32"):
    return {"tensor": {"dtype": dtype, "shape": [len(values)], "values": values}}


# --- the trusted comparison ---------------------------------------------------------------------

def test_compare_names_where_values_differ_never_the_values():
    want = {"dict": {"x": tensor([1.0, 2.0]), "n": 3, "ok": True}}
    assert compare(want, want, 1e-5, 1e-6) is None
    assert compare({"dict": {"x": tensor([1.0, 2.0000001]), "n": 3, "ok": True}}, want, 1e-5, 1e-6) is None
    assert compare({"dict": {"x": tensor([1.0, 2.5]), "n": 3, "ok": True}}, want, 1e-5, 1e-6) == \
        "result['x']: 1 of 2 values differ"
    forged_dtype = {"dict": {"x": tensor([1.0, 2.0], "def q1(ns, rng): secret"), "n": 3, "ok": True}}
    assert compare(forged_dtype, want, 1e-5, 1e-6) == "result['x']: different dtype", \
        "a dtype string from the student's process is never repeated"
    assert compare({"dict": {"x": tensor([1.0, 2.0]), "n": 3, "ok": 1}}, want, 1e-5, 1e-6) is not None, \
        "True and 1 are different answers"
    assert compare({"float": "nan"}, {"float": "nan"}, 1e-5, 1e-6) is None
    assert compare({"float": 1.0}, {"float": "nan"}, 1e-5, 1e-6) is not None


def test_differences_are_the_reference_checks_in_words():
    want = encode({"the blended values": torch.tensor([1.0, 2.0]), "returns None": True,
                   "the output": torch.tensor([3.0])})
    got = encode({"the blended values": torch.tensor([1.0, 2.5]), "returns None": True,
                  "the output": torch.tensor([3.0]), "extra key from a forger": 1})
    assert differences(want, want, 1e-5, 1e-6) == []
    assert differences(got, want, 1e-5, 1e-6) == [("the blended values", "1 of 2 values differ")]
    missing = encode({"returns None": True})
    assert [check for check, _ in differences(missing, want, 1e-5, 1e-6)] == [
        "the blended values", "the output"]
    assert differences({"list": []}, want, 1e-5, 1e-6) == [("the result", "not a dict")]


def test_error_words_repeat_only_builtin_exception_names():
    assert "NotImplementedError" in error_words("NotImplementedError")
    assert "ValueError" in error_words("ValueError")
    assert "define" in error_words("NameError")
    smuggled = "seed=12345 def q1"
    assert smuggled not in error_words(smuggled) and "exception" in error_words(smuggled)


def test_a_verdict_never_repeats_text_from_the_verdict_process():
    from types import SimpleNamespace

    from sandboxed_grading.verdicts import ProbeRun
    reference = ProbeRun({"q1": {"question": "q1", "ok": True, "value": encode({"out": 1.0})}},
                         [], True, "")
    spec = SimpleNamespace(rtol=1e-5, atol=1e-6)
    for error in ("ValueError: seed=123 def q1", "SeedIs123", "ValueError"):
        run = ProbeRun({"q1": {"question": "q1", "ok": False, "error": error}}, [], True, "")
        words, detail = CheckVerdicts()._judge("q1", reference, run, set(), spec, {})
        assert "123" not in words + detail and "def q1" not in words + detail, (words, detail)
    assert detail == "raised ValueError" and "ValueError" in words


def test_duplicate_or_stray_records_are_forgeries():
    record = json.dumps({"question": "q1", "ok": True, "value": 1})
    run = CheckVerdicts._parse(f"{record}\n{record}\nnot json\n{{\"done\": true}}\n".encode(), "")
    assert run.finished and run.records["q1"]["value"] == 1
    assert run.forged == ["q1: more than one record", "line 3: not a record"]
    late = CheckVerdicts._parse(f"{{\"done\": true}}\n{record}\n".encode(), "")
    assert late.records == {} and late.forged == ["line 2: record after the end"]


def test_hidden_cells_are_decided_by_probes_and_never_run_by_the_verdict_process():
    nb = jupytext.read(attacks.DEMO / "demo.py")
    decided = decided_cells(nb.cells, ["q1", "q2", "q3"])
    assert sorted(decided.values()) == ["q1", "q2", "q3"]
    assert all(nb.cells[i].metadata.nbgrader["grade_id"].endswith("_hidden") for i in decided)
    assert decided_cells(nb.cells, ["q1"]) == {i: q for i, q in decided.items() if q == "q1"}
    program = steps(nb.cells, ["q1", "q2", "q3"], {"q1": 1, "q2": 2, "q3": 3})
    probes = [i for i, step in enumerate(program) if "probe" in step]
    cells = [step["cell"] for step in program if "cell" in step]
    assert [program[i]["probe"] for i in probes] == ["q1", "q2", "q3"]
    assert not any("assert" in c or "Hidden tests" in c for c in cells), "no test cell runs there"
    assert "def ema_update" in program[probes[0] - 1]["cell"]


# --- folders a student controls -----------------------------------------------------------------

@pytest.fixture
def deep_tmp(tmp_path):
    """tmp_path, emptied by trees.remove_tree afterwards: pytest's own cleanup recurses and
    fails on the 3,000-level trees of these tests."""
    yield tmp_path
    for child in tmp_path.iterdir():
        trees.remove_tree(child)


def test_cleaning_moves_links_deep_trees_and_huge_files_out_and_loses_nothing(deep_tmp):
    tmp_path = deep_tmp
    secret = tmp_path / "secret"
    secret.write_text("instructor only")
    secret.chmod(0o600)
    folder = tmp_path / "submitted" / "alice" / "hw"
    (folder / "data" / "ok").mkdir(parents=True)
    (folder / "hw.ipynb").write_text("{}")
    (folder / "data" / "ok" / "table.csv").write_text("1,2\n")
    attacks.make_deep_tree(folder, 3000, {"secret": secret})     # deeper than PATH_MAX allows by name
    (folder / "notes.txt").symlink_to(secret)
    os.mkfifo(folder / "pipe")
    (folder / "big.bin").write_bytes(b"x" * 2048)
    moved = trees.clean_submission(folder, tmp_path / "quarantine", keep=["hw.ipynb"],
                                   max_file_bytes=1024)
    reasons = dict(moved)
    assert reasons["notes.txt"] == "a symbolic link" and reasons["pipe"] == "a special file"
    assert reasons["big.bin"] == "a file over 0 MiB" or "big.bin" in reasons
    assert any(path.count("/") == 7 and "deeper than 8" in why for path, why in moved)
    assert trees.find_escapes(folder) == []
    assert [rel for rel, kind, _ in trees.walk(folder) if kind == "file"] == [
        "data/ok/table.csv", "hw.ipynb"]
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_text() == "instructor only"
    manifest = json.loads(next((tmp_path / "quarantine").glob("*/manifest.json")).read_text())
    assert {entry["path"] for entry in manifest["entries"]} == set(reasons), "listed, not lost"
    trees.remove_tree(tmp_path / "quarantine")
    assert not (tmp_path / "quarantine").exists() and secret.exists(), "links removed, not followed"


def test_walks_never_follow_a_linked_folder(tmp_path):
    outside = tmp_path / "outside"
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "private.txt").write_text("x")
    folder = tmp_path / "sub"
    folder.mkdir()
    (folder / "link").symlink_to(outside)
    assert list(trees.walk(folder)) == [("link", "link", len(str(outside)))]
    trees.remove_tree(folder)
    assert (outside / "inner" / "private.txt").exists()


# --- the report --------------------------------------------------------------------------------

def test_the_report_escapes_student_text():
    resources = {"nbgrader": {"assignment": "hw", "student": "bob\n### mallory / hw", "notebook": "hw"}}
    report.reset(resources)
    report.flag(resources, "repaired notebook", f"grade id {attacks.FORGED_GRADE_ID!r}",
                attacks.FORGED_GRADE_ID)
    data = {"bob\n### mallory / hw": {"hw": {"flags": report.flags(resources), "verdicts": {},
                                             "sandboxed": True, "score": 1, "max_score": 2}}}
    text = report.render("hw", data)
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) == 4, headings  # title, flagged, bob's, kinds
    assert "<!--" not in text and "\n### honest" not in text and "\n### mallory" not in text


# --- rebuilding honest slips --------------------------------------------------------------------

def demo_release():
    """The demo's source and its release, made in process (no nbgrader run)."""
    from nbgrader.preprocessors import ClearSolutions
    source = jupytext.read(attacks.DEMO / "demo.py")
    clear = ClearSolutions()
    release = nbformat.from_dict(json.loads(json.dumps(source)))
    for cell in release.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            clear._replace_solution_region(cell, "python")
    return source, release, clear


def rebuilt(submission):
    source, release, clear = demo_release()
    by_id = {c.metadata.nbgrader["grade_id"]: c for c in release.cells}
    return guard.rebuild(submission, source,
                         lambda gid: nbformat.from_dict(json.loads(json.dumps(by_id[gid]))))


def ids(nb):
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.cells]


def test_rebuild_restores_deleted_cells_and_keeps_extra_ones_as_ordinary_cells():
    source, release, _ = demo_release()
    solutions = {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells
                 if c.metadata.nbgrader.get("solution")}
    sub = nbformat.from_dict(json.loads(json.dumps(release)))
    for cell in sub.cells:
        cell.source = solutions.get(cell.metadata.nbgrader["grade_id"], cell.source)
    sub.cells = [c for c in sub.cells if c.metadata.nbgrader["grade_id"] != "q2_visible"]
    sub.cells.insert(3, nbformat.from_dict(json.loads(json.dumps(sub.cells[3]))))  # duplicate
    sub.cells.append(nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {
        "grade_id": "my_notes", "solution": True, "grade": False, "locked": False}}))
    nb, notes = rebuilt(sub)
    assert [i for i in ids(nb) if i] == [i for i in ids(source) if i], "every cell once, in order"
    assert ids(nb).count(None) == 2, "the duplicate and the unknown cell stay, as ordinary cells"
    assert nb.cells[-1].source == "x = 1"
    assert any("q2_visible was missing" in n for n in notes)
    assert any("'my_notes'" in n for n in notes) and any("more cell(s)" in n for n in notes)


def test_rebuild_finds_answers_in_a_notebook_without_metadata():
    source, release, _ = demo_release()
    solutions = {c.metadata.nbgrader["grade_id"]: c.source for c in source.cells
                 if c.metadata.nbgrader.get("solution")}
    fresh = nbformat.v4.new_notebook()
    for cell in release.cells:
        text = solutions.get(cell.metadata.nbgrader["grade_id"], cell.source)
        fresh.cells.append(nbformat.v4.new_code_cell(text) if cell.cell_type == "code"
                           else nbformat.v4.new_markdown_cell(text))
    fresh.cells.insert(2, nbformat.v4.new_code_cell("helper = 2  # my own cell"))
    nb, notes = rebuilt(fresh)
    answers = {i: c.source for i, c in zip(ids(nb), nb.cells) if i in solutions}
    assert answers == solutions
    assert "helper = 2  # my own cell" in [c.source for c in nb.cells]
    assert any("found by the names they define" in n for n in notes)


def test_an_answer_written_below_the_untouched_stub_is_the_answer():
    source, release, _ = demo_release()
    sub = nbformat.from_dict(json.loads(json.dumps(release)))
    answer = [c.source for c in source.cells if c.metadata.nbgrader["grade_id"] == "q3_answer"][0]
    index = ids(sub).index("q3_answer")
    sub.cells.insert(index + 1, nbformat.v4.new_code_cell(answer))
    nb, _ = rebuilt(sub)
    position = ids(nb).index("q3_answer")
    assert nb.cells[position + 1].source == answer, "it still runs after the stub"


# --- zip_collect --------------------------------------------------------------------------------

def test_zip_collect_refuses_bad_names_impersonation_duplicates_and_bombs(tmp_path):
    shutil_copy = __import__("shutil").copy
    shutil_copy(ROOT / "nbgrader_config.py", tmp_path)
    (tmp_path / "solutions" / "demo").mkdir(parents=True)
    nbformat.write(attacks.demo_source(), tmp_path / "solutions" / "demo" / "demo.ipynb")
    nbgrader(tmp_path, "generate_assignment", "demo", "--force")
    text = nbformat.writes(attacks.demo_source())
    archive = tmp_path / "course" / "downloaded" / "demo" / "archive"
    archive.mkdir(parents=True)
    (archive / "..__demo.ipynb").write_text(text)
    (archive / "alice__demo.ipynb").write_text(text)
    with zipfile.ZipFile(archive / "mallory__demo.zip", "w") as zf:
        zf.writestr("bob__demo.ipynb", text)                 # submitting for bob
        zf.writestr("mallory__demo.ipynb", text)
        zf.writestr("../../../escaped__demo.ipynb", text)   # leaving the folder
    for part in ("part1", "part2"):                          # one student twice
        with zipfile.ZipFile(archive / f"{part}.zip", "w") as zf:
            zf.writestr("carol__demo.ipynb", text)
    with zipfile.ZipFile(archive / "dave__demo.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("dave__demo.ipynb", "w", force_zip64=True) as fh:
            for _ in range(100):                             # 100 MiB from about 0.1 MiB
                fh.write(b"0" * 2**20)
    assert (archive / "dave__demo.zip").stat().st_size < 2**20  # over the 64 MiB per file
    run = nbgrader(tmp_path, "zip_collect", "demo", check=False)
    log = run.stdout + run.stderr
    submitted = sorted(p.relative_to(tmp_path / "course").as_posix()
                       for p in (tmp_path / "course").rglob("*.ipynb") if "downloaded" not in p.parts)
    assert submitted == ["submitted/alice/demo/demo.ipynb", "submitted/carol/demo/demo.ipynb",
                         "submitted/mallory/demo/demo.ipynb"], log
    assert "Refused" in log and "names student bob" in log
    assert "leaves the archive's folder" in log and "a second submission" in log
    assert "expands to" in log and "..__demo.ipynb: the name must be" in log
    extracted = tmp_path / "course" / "downloaded" / "demo" / "extracted"
    assert sum(p.stat().st_size for p in extracted.rglob("*") if p.is_file()) < 2**20
    assert not list(tmp_path.rglob("escaped__demo.ipynb"))


# --- the sandbox-wide memory cap ----------------------------------------------------------------

@pytest.mark.parametrize("mechanism", ["best available", "watchdog"])
def test_children_cannot_add_up_past_the_memory_cap(mechanism):
    from sandboxed_grading.limits import SandboxGroup
    group = SandboxGroup(400 * 2**20, 32)
    if mechanism == "watchdog":
        group._remove_dirs()
        group.paths, group.kind = [], "watchdog"
    code = ("import os, time\nkids = []\nfor _ in range(4):\n    pid = os.fork()\n"
            "    if pid == 0:\n        b = bytearray(150 * 2**20)\n"
            "        for i in range(0, len(b), 4096):\n            b[i] = 1\n"
            "        time.sleep(1.5)\n        os._exit(0)\n    kids.append(pid)\n"
            "print(sum(os.waitpid(p, 0)[1] == 0 for p in kids))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            preexec_fn=group.join if group.paths else None)
    group.start(proc.pid)
    out, _ = proc.communicate(timeout=60)
    group.stop()
    assert group.exceeded, group.describe()
    assert proc.returncode != 0 or int(out) < 3, (group.kind, out)


# --- what students get --------------------------------------------------------------------------

def test_feedback_template_sanitizes_and_loads_nothing(tmp_path):
    from nbconvert.exporters import HTMLExporter
    from traitlets.config import Config

    from sandboxed_grading.feedback import PrivateFeedback, configure_feedback
    c = Config()
    configure_feedback(c)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(attacks.XSS),
                nbformat.v4.new_code_cell("x", metadata={"nbgrader": {
                    "grade": True, "solution": False, "locked": True, "points": 1,
                    "grade_id": "<img src=x onerror=alert(1)>", "score": 1}}, outputs=[
                    nbformat.v4.new_output("display_data", data={
                        "text/html": "<script>alert('out')</script><b>ok</b>",
                        "application/javascript": "alert('js')"})]),
                nbformat.v4.new_code_cell("### BEGIN HIDDEN TESTS\nassert f(41) == 42\n"
                                          "### END HIDDEN TESTS", metadata={"nbgrader": {
                                              "grade": True, "solution": False, "points": 1,
                                              "grade_id": "q9_hidden", "locked": True,
                                              "score": 0}},
                                          outputs=[nbformat.v4.new_output(
                                              "error", ename="AssertionError",
                                              evalue="f(41) gave 0", traceback=["f(41) == 42"])])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb, _ = PrivateFeedback().preprocess(nb, {})
    exporter = HTMLExporter(config=c)
    html, _ = exporter.from_notebook_node(nb, resources={"nbgrader": {
        "notebook": "hw", "score": 1, "max_score": 2, "late_penalty": 0}})
    assert active_content(html) == []
    assert "f(41)" not in html, "the hidden test's source and inputs"
    assert "HiddenTestFailed" in html


def test_the_release_carries_no_jupytext_pairing():
    for aid in ASSIGNMENTS:
        nb = nbformat.read(ROOT / "exercises" / aid / f"{aid}.ipynb", as_version=4)
        assert "jupytext" not in nb.metadata, aid


def test_validate_says_the_hidden_tests_have_not_run():
    from nbgrader.validator import Validator

    from sandboxed_grading.validate import SUCCESS, truthful_validate
    truthful_validate()
    validator = Validator()
    validator.stream = io.StringIO()
    validator._print_num_failed(0)
    assert validator.stream.getvalue() == SUCCESS and "Success!" not in SUCCESS
    validator._print_num_failed(2)
    assert "VALIDATION FAILED ON 2 CELL(S)" in validator.stream.getvalue()


def test_instructor_tools_are_hidden_from_students(tmp_path):
    from sandboxed_grading.student_tools import hide_instructor_tools
    from jupyter_server.config_manager import BaseJSONConfigManager
    (tmp_path / "etc" / "jupyter" / "labconfig").mkdir(parents=True)
    (tmp_path / "etc" / "jupyter" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": ["other-extension"]}))
    page, server = hide_instructor_tools(str(tmp_path))
    hide_instructor_tools(str(tmp_path))  # twice: nothing changes
    folder = tmp_path / "etc" / "jupyter"
    installed = sys.prefix + "/etc/jupyter/jupyter_server_config.d/nbgrader.json"
    (folder / "jupyter_server_config.d" / "nbgrader.json").write_text(open(installed).read())
    merged = BaseJSONConfigManager(config_dir=str(folder)).get("jupyter_server_config")
    extensions = merged["ServerApp"]["jpserver_extensions"]   # .d files merged in name order
    assert extensions == dict.fromkeys(extensions, False) and len(extensions) == 4, extensions
    lab = json.loads(open(page).read())["disabledExtensions"]
    assert lab == {"other-extension": True, "@jupyter/nbgrader": True}


# --- every assignment's probes, without the sandbox ---------------------------------------------

def load_verdicts(spec):
    """The namespace of a verdicts.py source, as the verdict process builds it (trusted code)."""
    namespace = {"__name__": "verdicts"}
    exec(compile(spec, "verdicts.py", "exec"), namespace)
    return namespace


def run_here(cells, spec, probes, seed):
    """The verdict process's work, in this process (trusted code only: the reference solution and
    the planted answers): run the cells, then each probe; {question: encoded result or error}."""
    namespace, results = {"__name__": "__main__"}, {}
    spec_namespace = load_verdicts(spec)
    for step in steps(cells, probes, {q: seed + i for i, q in enumerate(probes)}):
        with contextlib.redirect_stdout(io.StringIO()):
            if "cell" in step:
                try:  # as in a notebook, a failing cell does not stop the next ones
                    exec(compile(step["cell"], "<cell>", "exec"), namespace)
                except Exception:  # noqa: BLE001
                    pass
                continue
            random.seed(step["seed"])
            torch.manual_seed(step["seed"])
            rng = torch.Generator().manual_seed(step["seed"])
            try:
                results[step["probe"]] = encode(spec_namespace[step["probe"]](namespace, rng))
            except Exception as exc:  # noqa: BLE001 (a wrong answer may raise anything)
                results[step["probe"]] = f"raised {type(exc).__name__}"
    return results, namespace


def visible_test_passes(nb, question, namespace):
    cell = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") ==
            f"{question}_visible"][0]
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(cell.source, "<visible>", "exec"), namespace)
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_probes_catch_every_planted_wrong_answer_for_every_seed(aid):
    """verdicts.py must tell each planted wrong answer from the solution whatever the secret seed,
    and only in that answer's question; a HIDDEN_ONLY answer passes its visible test."""
    spec = (ROOT / "solutions" / aid / "verdicts.py").read_text()
    probes = probe_names(spec)
    defaults = CheckVerdicts()
    rtol, atol = tolerance(spec, defaults.rtol, defaults.atol)
    source = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    hidden_only = planted_wrong_answers(aid, "HIDDEN_ONLY")
    assert set(hidden_only) == set(probes), f"{aid}: one HIDDEN_ONLY answer per question"
    for seed in (1, 2_000_003, 987_654_321):
        reference, _ = run_here(source.cells, spec, probes, seed)
        assert not any(isinstance(v, str) for v in reference.values()), f"{aid}: {reference}"
        for kind in ("WRONG_ANSWERS", "HIDDEN_ONLY"):
            for q, wrong in planted_wrong_answers(aid, kind).items():
                nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
                answer_cell(nb, q).source = wrong
                got, namespace = run_here(nb.cells, spec, probes, seed)
                differs = {p for p in probes
                           if isinstance(got[p], str) or differences(got[p], reference[p], rtol, atol)}
                assert differs == {q}, f"{aid} {kind}, seed {seed}: {q}'s answer changed {differs}"
                if kind == "HIDDEN_ONLY" and seed == 1:
                    assert visible_test_passes(nb, q, namespace), f"{aid}: {q} fails its visible test"


def test_the_written_out_sgd_step_of_ch01_probes_is_torch_optim_sgd():
    """ch01's verdicts.py steps parameters by hand (torch.optim would import torch._dynamo in
    every verdict process): the values must be those torch.optim.SGD gives."""
    spec = load_verdicts((ROOT / "solutions" / "ch01_buffers" / "verdicts.py").read_text())
    for seed in range(3):
        torch.manual_seed(seed)
        by_hand = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        by_sgd = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        by_sgd.load_state_dict(by_hand.state_dict())
        x = torch.randn(5, 3)
        for model in (by_hand, by_sgd):
            model(x).pow(2).sum().backward()
        by_hand[0].bias.grad = None  # a parameter without a gradient is left alone
        by_sgd[0].bias.grad = None
        start = by_hand[0].weight.detach().clone()
        spec["sgd_step"](by_hand.parameters(), lr=0.5)
        torch.optim.SGD(by_sgd.parameters(), lr=0.5).step()
        assert not torch.equal(by_hand[0].weight, start), "the step moved the weight"
        for key, value in by_sgd.state_dict().items():
            assert torch.equal(by_hand.state_dict()[key], value), key
