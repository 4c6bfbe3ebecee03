"""exercises/ is exactly what `nbgrader generate_assignment` makes from solutions/ today.

Runs nbgrader's own API in-process, in a temporary course holding the repo's nbgrader_config.py
and a copy of solutions/ (one process for all assignments keeps this fast).
"""
import filecmp
import os
import shutil

from nbgrader.apps import NbGraderAPI
from traitlets.config.loader import PyFileConfigLoader

from nbgrader_course import ASSIGNMENTS, BIN, ROOT


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_committed_release_matches_generated(tmp_path, monkeypatch):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # nbgrader runs alembic
    api = NbGraderAPI(config=PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config())

    stale = []
    for aid in ASSIGNMENTS:
        result = api.generate_assignment(aid, force=True)
        assert result["success"], f"generate_assignment {aid} failed:\n{result['log']}"
        generated, committed = tmp_path / "exercises" / aid, ROOT / "exercises" / aid
        if not committed.is_dir() or _files(committed) != _files(generated):
            stale.append(f"{aid}: files differ")
            continue
        stale += [f"{aid}/{name}" for name in _files(generated)
                  if not filecmp.cmp(committed / name, generated / name, shallow=False)]
    assert not stale, f"stale release (run `make release` and commit exercises/): {stale}"


def test_every_assignment_is_released():
    released = sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())
    assert released == ASSIGNMENTS
