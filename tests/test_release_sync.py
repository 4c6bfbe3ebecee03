"""exercises/ is exactly what `nbgrader generate_assignment` makes from solutions/ today."""
import filecmp

import pytest

from nbgrader_course import ASSIGNMENTS, ROOT, make_course


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_committed_release_matches_generated(tmp_path, aid):
    generated = make_course(tmp_path, aid) / "exercises" / aid
    committed = ROOT / "exercises" / aid
    assert committed.is_dir(), f"exercises/{aid} missing: run `make release` and commit it"
    assert _files(committed) == _files(generated), "release files differ: run `make release`"
    for name in _files(generated):
        assert filecmp.cmp(committed / name, generated / name, shallow=False), (
            f"exercises/{aid}/{name} is stale: run `make release` and commit it")


def test_every_assignment_is_released():
    released = sorted(p.name for p in (ROOT / "exercises").iterdir() if p.is_dir())
    assert released == ASSIGNMENTS
