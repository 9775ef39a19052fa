"""Fixtures for tests that need jupyter-collaboration rooms and a second Y client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from httpx_ws import aconnect_ws
from pycrdt import Provider
from pycrdt.websocket.websocket import HttpxWebsocket

from ecode_jupyter.pytest_plugin import ecode_token_for


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


async def eventually(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"never happened: {what}")
