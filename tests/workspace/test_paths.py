from __future__ import annotations

from pathlib import Path

import pytest

from ecode_jupyter.exceptions import InvalidInput, PathOutsideWorkspace
from ecode_jupyter.workspace.paths import check_relative, resolve_in_workspace

from .hostile import CONTAINED_ODDITIES, hostile_paths, make_sandbox


def test_corpus_is_large_enough(tmp_path: Path) -> None:
    assert len(set(hostile_paths(make_sandbox(tmp_path)))) >= 30


def test_every_hostile_path_is_refused(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    for rel in hostile_paths(box):
        with pytest.raises(PathOutsideWorkspace) as info:
            resolve_in_workspace(box.root, rel)
        # An InvalidInput (400) with a message that names the reason.
        assert isinstance(info.value, InvalidInput)
        assert "refused" in info.value.message, rel


def test_contained_oddities_resolve_inside(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    real_root = box.root.resolve()
    for rel in CONTAINED_ODDITIES:
        path = resolve_in_workspace(box.root, rel)
        assert path == real_root or path.is_relative_to(real_root), rel


def test_sibling_with_shared_prefix_is_outside(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    # A string-prefix check would let "/ws/proj2" pass as inside "/ws/proj".
    assert str(box.sibling).startswith(str(box.root))
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(box.root, "link_sibling")


def test_symlink_inside_resolves_to_its_target(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    assert resolve_in_workspace(box.root, "link_inside") == (box.root / "inside.txt").resolve()


def test_workspace_reached_through_a_symlink(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    alias = tmp_path / "alias"
    alias.symlink_to(box.root)
    assert resolve_in_workspace(alias, "inside.txt") == (box.root / "inside.txt").resolve()
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(alias, "../proj2/secret.txt")


def test_dot_is_the_root_and_dotdot_inside_is_normalized(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    assert resolve_in_workspace(box.root, ".") == box.root.resolve()
    assert str(check_relative("a/./b/../c//d")) == "a/c/d"
