"""The writer against a real jupyter-collaboration room and a second Y client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jupyter_ydoc import YNotebook, YUnicode
from pycrdt import Text

from ecode_jupyter.workspace.collab import JupyterLiveDocuments
from ecode_jupyter.workspace.writer import FileChange, WorkspaceWriter

from .collab_support import Connect, collab_client, ecode_extra_config, eventually

__all__ = ["collab_client", "ecode_extra_config"]  # fixtures used by the tests below


def _writer(jp_serverapp: Any, root: Path, changes: list[FileChange]) -> WorkspaceWriter:
    live = JupyterLiveDocuments(jp_serverapp.web_app.settings, Path(jp_serverapp.root_dir))
    return WorkspaceWriter(root, live=live, on_change=changes.append)


async def test_text_edit_reaches_a_second_client_and_keeps_its_concurrent_edit(
    jp_serverapp: Any, jp_root_dir: Path, collab_client: Connect
) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    (project / "app.py").write_text("line1\nline2\nline3\n")
    changes: list[FileChange] = []
    writer = _writer(jp_serverapp, project, changes)
    human = YUnicode()
    async with collab_client("text", "file", "proj/app.py", human):
        assert human.get() == "line1\nline2\nline3\n"
        # The person types at the end while the tool edits the first line: concurrent edits.
        human_text = human.ydoc.get("source", type=Text)
        human_text.insert(len(str(human_text).encode()), "line4 typed by a person\n")
        change = await writer.edit_text("app.py", lambda old: (old or "").replace("line1", "LINE1"))
        expected = "LINE1\nline2\nline3\nline4 typed by a person\n"
        await eventually(lambda: human.get() == expected, "the person sees the tool's edit")
        live = await writer.read_text("app.py")
        assert live == expected
        # Written through the room, and saved at once (not after the 30 s autosave).
        assert change.live and change.action == "modified" and "+LINE1" in change.diff
        assert "LINE1" in (project / "app.py").read_text()
        await eventually(
            lambda: (project / "app.py").read_text() in (expected, "LINE1\nline2\nline3\n"),
            "disk has the tool's edit",
        )
    assert [c.path for c in changes] == ["app.py"]


async def test_whole_file_write_touches_only_changed_spans(
    jp_serverapp: Any, jp_root_dir: Path, collab_client: Connect
) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    original = "".join(f"row {i}\n" for i in range(50))
    (project / "data.txt").write_text(original)
    writer = _writer(jp_serverapp, project, [])
    human = YUnicode()
    deltas: list[Any] = []
    async with collab_client("text", "file", "proj/data.txt", human):
        # Keep the subscription referenced, or it is collected and stops observing.
        subscription = human.ydoc.get("source", type=Text).observe(
            lambda event: deltas.append(event.delta)
        )
        new = original.replace("row 2\n", "row two\n").replace("row 40\n", "row forty\n")
        await writer.write_text("data.txt", new)
        await eventually(lambda: human.get() == new, "the person sees the new text")
        assert subscription is not None
    # Only the changed words travelled; rows 3..39 were never deleted and re-inserted.
    inserted = [op["insert"] for delta in deltas for op in delta if "insert" in op]
    assert sorted(inserted) == ["forty", "two"]


async def test_notebook_cell_edit_reaches_a_second_client(
    jp_serverapp: Any, jp_root_dir: Path, collab_client: Connect
) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "id": "first",
                "metadata": {},
                "source": "x = 1",
                "outputs": [],
                "execution_count": None,
            }
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (project / "analysis.ipynb").write_text(json.dumps(nb))
    writer = _writer(jp_serverapp, project, [])
    human = YNotebook()
    async with collab_client("json", "notebook", "proj/analysis.ipynb", human):
        assert human.get_cell(0)["source"] == "x = 1"
        change = await writer.edit_notebook_cell("analysis.ipynb", 0, source="x = 2")
        await eventually(lambda: human.get_cell(0)["source"] == "x = 2", "cell edit seen")
        await writer.edit_notebook_cell(
            "analysis.ipynb", 1, action="insert", source="## Results", cell_type="markdown"
        )
        await eventually(lambda: human.cell_number == 2, "inserted cell seen")
        assert human.get_cell(1)["cell_type"] == "markdown"
        assert change.live
        on_disk = json.loads((project / "analysis.ipynb").read_text())
        sources = [c["source"] for c in on_disk["cells"]]
        # The room saves through nbformat, which may store sources as lists of lines.
        assert ["".join(s) if isinstance(s, list) else s for s in sources] == [
            "x = 2",
            "## Results",
        ]


async def test_file_without_a_room_is_written_to_disk(jp_serverapp: Any, jp_root_dir: Path) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    writer = _writer(jp_serverapp, project, [])
    change = await writer.write_text("fresh.txt", "hello\n")
    assert not change.live and change.action == "created"
    assert (project / "fresh.txt").read_text() == "hello\n"
    ydoc_ext = jp_serverapp.web_app.settings["jupyter_server_ydoc"]
    # Looking for a live document never opened a room.
    assert not ydoc_ext.ywebsocket_server.rooms


async def test_whole_notebook_write_keeps_cells_and_reaches_the_editor(
    jp_serverapp: Any, jp_root_dir: Path, collab_client: Connect
) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    cells = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {},
            "source": f"x{i} = {i}",
            "outputs": [],
            "execution_count": None,
        }
        for i in range(3)
    ]
    nb = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (project / "nb.ipynb").write_text(json.dumps(nb))
    writer = _writer(jp_serverapp, project, [])
    human = YNotebook()
    async with collab_client("json", "notebook", "proj/nb.ipynb", human):
        source_before = human.ycells[2]["source"]
        edited = json.loads(json.dumps(nb))
        edited["cells"][2]["source"] = "x2 = 'two'"
        edited["cells"].insert(
            0, {"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# Title"}
        )
        change = await writer.write_text("nb.ipynb", json.dumps(edited))
        assert change.live and change.action == "modified"
        await eventually(lambda: human.cell_number == 4, "the new cell is seen")
        await eventually(lambda: human.get_cell(3)["source"] == "x2 = 'two'", "edit seen")
        assert human.get_cell(0)["source"] == "# Title"
        # The edited cell is the same shared text, changed in place, not a replaced cell.
        assert str(source_before) == "x2 = 'two'"
