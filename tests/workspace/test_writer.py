from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ecode_jupyter.exceptions import Conflict, InvalidInput, NotFound, PathOutsideWorkspace
from ecode_jupyter.workspace import writer as writer_module
from ecode_jupyter.workspace.writer import FileChange, WorkspaceWriter

from .hostile import hostile_paths, make_sandbox


@pytest.fixture
def changes() -> list[FileChange]:
    return []


@pytest.fixture
def writer(tmp_path: Path, changes: list[FileChange]) -> WorkspaceWriter:
    root = tmp_path / "ws"
    root.mkdir()
    return WorkspaceWriter(root, on_change=changes.append)


async def test_create_then_modify_reports_changes(
    writer: WorkspaceWriter, changes: list[FileChange]
) -> None:
    created = await writer.write_text("src/app.py", "a\nb\nc\n")
    assert created.action == "created" and created.added == 3 and created.removed == 0
    assert (writer.root / "src" / "app.py").read_text() == "a\nb\nc\n"
    modified = await writer.write_text("src/app.py", "a\nB\nc\nd\n")
    assert (modified.action, modified.added, modified.removed) == ("modified", 2, 1)
    assert "-b\n+B\n" in modified.diff and "+d" in modified.diff
    assert [c.action for c in changes] == ["created", "modified"]
    assert changes[1].event_data() == {
        "path": "src/app.py",
        "action": "modified",
        "added": 2,
        "removed": 1,
        "diff": modified.diff,
    }


async def test_same_content_is_not_a_change(
    writer: WorkspaceWriter, changes: list[FileChange]
) -> None:
    await writer.write_text("x.txt", "same\n")
    again = await writer.write_text("x.txt", "same\n")
    assert again.action == "unchanged"
    assert len(changes) == 1


async def test_refuses_to_empty_a_file_unless_asked(writer: WorkspaceWriter) -> None:
    await writer.write_text("keep.txt", "precious\n")
    with pytest.raises(Conflict, match="allow_empty"):
        await writer.write_text("keep.txt", "")
    assert (writer.root / "keep.txt").read_text() == "precious\n"
    emptied = await writer.write_text("keep.txt", "", allow_empty=True)
    assert emptied.removed == 1
    assert (writer.root / "keep.txt").read_text() == ""
    # An empty new file is fine: nothing is lost.
    assert (await writer.write_text("new-empty.txt", "")).action == "created"


async def test_keeps_file_mode_and_leaves_no_temp_files(writer: WorkspaceWriter) -> None:
    script = writer.root / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o750)
    await writer.write_text("run.sh", "#!/bin/sh\necho bye\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o750
    assert sorted(p.name for p in writer.root.iterdir()) == ["run.sh"]


async def test_failed_write_leaves_the_old_file_whole(
    writer: WorkspaceWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = writer.root / "data.txt"
    target.write_text("old content\n")

    def exploding_replace(src: str, dst: str) -> None:
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(writer_module.os, "replace", exploding_replace)
    with pytest.raises(OSError, match="disk full"):
        await writer.write_text("data.txt", "new content\n")
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in writer.root.iterdir()) == ["data.txt"]


async def test_edit_text_transform_sees_current_content(writer: WorkspaceWriter) -> None:
    await writer.write_text("n.txt", "1")
    change = await writer.edit_text("n.txt", lambda old: str(int(old or "0") + 1))
    assert change.action == "modified"
    assert await writer.read_text("n.txt") == "2"


async def test_binary_file_is_not_read_as_text(writer: WorkspaceWriter) -> None:
    (writer.root / "img.bin").write_bytes(b"\xff\xd8\xff\x00binary")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        await writer.read_text("img.bin")
    with pytest.raises(Conflict):
        await writer.write_text("img.bin", "")
    replaced = await writer.write_text("img.bin", "now text\n")
    assert "binary content" in replaced.diff


async def test_delete(writer: WorkspaceWriter, changes: list[FileChange]) -> None:
    await writer.write_text("gone.txt", "x\ny\n")
    change = await writer.delete("gone.txt")
    assert (change.action, change.removed) == ("deleted", 2)
    assert not (writer.root / "gone.txt").exists()
    assert changes[-1].action == "deleted"
    with pytest.raises(NotFound):
        await writer.delete("gone.txt")
    (writer.root / "folder").mkdir()
    with pytest.raises(InvalidInput, match="directory"):
        await writer.delete("folder")
    with pytest.raises(InvalidInput):
        await writer.delete(".")


async def test_delete_symlink_removes_the_link_not_the_target(writer: WorkspaceWriter) -> None:
    (writer.root / "target.txt").write_text("keep me\n")
    os.symlink("target.txt", writer.root / "alias.txt")
    await writer.delete("alias.txt")
    assert not (writer.root / "alias.txt").is_symlink()
    assert (writer.root / "target.txt").read_text() == "keep me\n"


async def test_hostile_paths_never_touch_the_outside(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    before = box.snapshot()
    writer = WorkspaceWriter(box.root)
    for rel in hostile_paths(box):
        with pytest.raises(PathOutsideWorkspace):
            await writer.write_text(rel, "pwned\n")
        with pytest.raises(PathOutsideWorkspace):
            await writer.read_text(rel)
        with pytest.raises(PathOutsideWorkspace):
            await writer.delete(rel)
        with pytest.raises(PathOutsideWorkspace):
            await writer.edit_notebook_cell(rel, 0, action="insert", source="x")
    assert box.snapshot() == before
    assert not (box.outside / "not-there-yet.txt").exists()
    assert not (box.outside / "new_file.txt").exists()


def _notebook(cells: list[dict[str, object]], minor: int = 5) -> str:
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": minor})


async def test_notebook_cells_on_disk(writer: WorkspaceWriter) -> None:
    nb_path = writer.root / "nb.ipynb"
    nb_path.write_text(
        _notebook(
            [
                {
                    "cell_type": "code",
                    "id": "c1",
                    "metadata": {},
                    "source": "print(1)",
                    "outputs": [],
                    "execution_count": None,
                }
            ]
        )
    )
    change = await writer.edit_notebook_cell("nb.ipynb", 0, source="print(2)")
    assert (change.added, change.removed) == (1, 1) and "nb.ipynb#cell0" in change.diff
    await writer.edit_notebook_cell(
        "nb.ipynb", 1, action="insert", source="# Title", cell_type="markdown"
    )
    nb = await writer.read_notebook("nb.ipynb")
    assert [c["source"] for c in nb["cells"]] == ["print(2)", "# Title"]
    assert nb["cells"][0]["id"] == "c1" and nb["cells"][1]["cell_type"] == "markdown"
    await writer.edit_notebook_cell("nb.ipynb", 0, action="delete")
    nb = await writer.read_notebook("nb.ipynb")
    assert [c["source"] for c in nb["cells"]] == ["# Title"]
    with pytest.raises(InvalidInput, match="out of range"):
        await writer.edit_notebook_cell("nb.ipynb", 5, source="x")
    with pytest.raises(InvalidInput, match="needs a source"):
        await writer.edit_notebook_cell("nb.ipynb", 0)
    (writer.root / "bad.ipynb").write_text("{not json")
    with pytest.raises(InvalidInput, match="not a valid notebook"):
        await writer.read_notebook("bad.ipynb")


# A writer process that stops inside its write, after the data is in the temporary file
# and before the rename (os.fsync never returns), and says where it is.
_STUCK_WRITER = """
import os, sys, threading
from pathlib import Path
from ecode_jupyter.workspace import writer

def stuck(fd):
    print("writing", flush=True)
    threading.Event().wait()

writer.os.fsync = stuck
writer.atomic_write_bytes(Path(sys.argv[1]), b"new" * 100_000)
"""


def test_a_write_killed_mid_way_leaves_no_temporary_file(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    target = tmp_path / "big.txt"
    target.write_text("old\n")
    child = subprocess.Popen(
        [sys.executable, "-c", _STUCK_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
        temps = [p for p in tmp_path.iterdir() if p.name.startswith(".big.txt.")]
        assert len(temps) == 1
        # The writer is alive: its file is a write in progress, not litter.
        assert writer_module.remove_interrupted_writes(tmp_path) == []
        assert temps[0].exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # An older writer's leftover beside its target goes too; a look-alike alone stays.
    legacy = tmp_path / ".big.txt.k2j4h6g8.tmp"
    legacy.write_text("half")
    lookalike = tmp_path / ".notes.abcdefgh.tmp"
    lookalike.write_text("mine")
    removed = writer_module.remove_interrupted_writes(tmp_path)
    assert sorted(removed) == sorted([temps[0], legacy])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.abcdefgh.tmp", "big.txt"]
    assert target.read_text() == "old\n"
