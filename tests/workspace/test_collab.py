"""The writer against a real jupyter-collaboration room and a second Y client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from httpx_ws import aconnect_ws
from jupyter_ydoc import YNotebook, YUnicode
from pycrdt import Provider, Text
from pycrdt.websocket.websocket import HttpxWebsocket

from ecode_jupyter.pytest_plugin import ecode_token_for
from ecode_jupyter.workspace.collab import JupyterLiveDocuments
from ecode_jupyter.workspace.writer import FileChange, WorkspaceWriter


@pytest.fixture
def ecode_extra_config(tmp_path: Path, jp_root_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {
                "ecode_jupyter": True,
                "jupyter_server_ydoc": True,
                "jupyter_server_fileid": True,
            }
        },
        "SQLiteYStore": {"db_path": str(tmp_path / "ystore.db")},
        "BaseFileIdManager": {
            "root_dir": str(jp_root_dir),
            "db_path": str(tmp_path / "fileid.db"),
            "db_journal_mode": "OFF",
        },
        # A long autosave delay shows the writer does not wait for it to reach the disk.
        "YDocExtension": {"document_save_delay": 30, "document_cleanup_delay": 60},
    }


Connect = Callable[[str, str, str, Any], Any]


@pytest.fixture
def collab_client(jp_fetch: Any, jp_http_port: int, jp_base_url: str) -> Connect:
    """Open ``path`` as a second editor would: a session, then the room's WebSocket."""

    @asynccontextmanager
    async def connect(fmt: str, kind: str, path: str, doc: Any) -> AsyncIterator[Provider]:
        resp = await jp_fetch(
            "api/collaboration/session",
            path,
            method="PUT",
            body=json.dumps({"format": fmt, "type": kind}),
        )
        session = json.loads(resp.body)
        room = f"{fmt}:{kind}:{session['fileId']}"
        # Built by hand: jp_ws_fetch escapes ':' and would open an empty transient room.
        url = (
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/collaboration/room/{room}"
            f"?sessionId={session['sessionId']}"
        )
        headers = {"Authorization": f"token {ecode_token_for('alice')}"}
        async with (
            aconnect_ws(url, headers=headers) as ws,
            Provider(doc.ydoc, HttpxWebsocket(ws, room)) as provider,
        ):
            await asyncio.wait_for(provider.synced.wait(), 10)
            yield provider

    return connect


async def _eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never happened: {what}")


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
        await _eventually(lambda: human.get() == expected, "the person sees the tool's edit")
        live = await writer.read_text("app.py")
        assert live == expected
        # Written through the room, and saved at once (not after the 30 s autosave).
        assert change.live and change.action == "modified" and "+LINE1" in change.diff
        assert "LINE1" in (project / "app.py").read_text()
        await _eventually(
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
        await _eventually(lambda: human.get() == new, "the person sees the new text")
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
        await _eventually(lambda: human.get_cell(0)["source"] == "x = 2", "cell edit seen")
        await writer.edit_notebook_cell(
            "analysis.ipynb", 1, action="insert", source="## Results", cell_type="markdown"
        )
        await _eventually(lambda: human.cell_number == 2, "inserted cell seen")
        assert human.get_cell(1)["cell_type"] == "markdown"
        assert change.live
        on_disk = json.loads((project / "analysis.ipynb").read_text())
        sources = [c["source"] for c in on_disk["cells"]]
        # The room saves through nbformat, which may store sources as lists of lines.
        assert ["".join(s) if isinstance(s, list) else s for s in sources] == [
            "x = 2",
            "## Results",
        ]


async def test_file_without_a_room_is_written_to_disk(
    jp_serverapp: Any, jp_root_dir: Path
) -> None:
    project = jp_root_dir / "proj"
    project.mkdir()
    writer = _writer(jp_serverapp, project, [])
    change = await writer.write_text("fresh.txt", "hello\n")
    assert not change.live and change.action == "created"
    assert (project / "fresh.txt").read_text() == "hello\n"
    ydoc_ext = jp_serverapp.web_app.settings["jupyter_server_ydoc"]
    # Looking for a live document never opened a room.
    assert not ydoc_ext.ywebsocket_server.rooms
