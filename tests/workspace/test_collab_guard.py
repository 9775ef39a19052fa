"""A project server's viewers read its collaboration rooms but cannot edit through them.

jupyter-collaboration authorizes opening a room, then applies every Y update a client sends.
On a hub project server (hub/server.py ``guard_collaboration_writes``) each room connection
asks the server's Authorizer for ``write`` on ``contents`` once; without it the client's
sync step 2 and updates are dropped. Attacked here with a real room, two pycrdt clients and
an Authorizer that makes bob a reader, as the hub's ProjectAuthorizer does for a viewer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from httpx_ws import aconnect_ws
from jupyter_server.auth.authorizer import Authorizer
from jupyter_ydoc import YUnicode
from pycrdt import Provider, Text
from pycrdt.websocket.websocket import HttpxWebsocket

from ecode_jupyter.hub.server import guard_collaboration_writes
from ecode_jupyter.pytest_plugin import ecode_token_for

from .collab_support import eventually


class BobReads(Authorizer):  # type: ignore[misc]
    """bob may read anything and write nothing; everyone else may do everything."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        return not (getattr(user, "username", "") == "bob" and action == "write")


@pytest.fixture
def ecode_extra_config(tmp_path: Path, jp_root_dir: Path) -> dict[str, Any]:
    guard_collaboration_writes()
    return {
        "ServerApp": {
            "jpserver_extensions": {
                "ecode_jupyter": True,
                "jupyter_server_ydoc": True,
                "jupyter_server_fileid": True,
            },
            "authorizer_class": BobReads,
        },
        "SQLiteYStore": {"db_path": str(tmp_path / "ystore.db")},
        "BaseFileIdManager": {
            "root_dir": str(jp_root_dir),
            "db_path": str(tmp_path / "fileid.db"),
            "db_journal_mode": "OFF",
        },
        "YDocExtension": {"document_save_delay": 0.2, "document_cleanup_delay": 60},
    }


@pytest.fixture
def room(jp_fetch: Any, jp_http_port: int, jp_base_url: str) -> Any:
    @asynccontextmanager
    async def connect(user: str, path: str, doc: YUnicode) -> AsyncIterator[Provider]:
        resp = await jp_fetch(
            "api/collaboration/session",
            path,
            method="PUT",
            body=json.dumps({"format": "text", "type": "file"}),
        )
        session = json.loads(resp.body)
        name = f"text:file:{session['fileId']}"
        url = (
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/collaboration/room/{name}"
            f"?sessionId={session['sessionId']}"
        )
        headers = {"Authorization": f"token {ecode_token_for(user)}"}
        async with (
            aconnect_ws(url, headers=headers) as ws,
            Provider(doc.ydoc, HttpxWebsocket(ws, name)) as provider,
        ):
            await asyncio.wait_for(provider.synced.wait(), 10)
            yield provider

    return connect


async def test_a_reader_sees_edits_but_cannot_make_them(room: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "notes.txt").write_text("shared\n")
    alice, bob = YUnicode(), YUnicode()
    async with room("alice", "notes.txt", alice), room("bob", "notes.txt", bob):
        assert bob.get() == "shared\n"
        # bob types: his own copy changes, nobody else's, and not the file.
        bob_text = bob.ydoc.get("source", type=Text)
        bob_text.insert(0, "BOB WAS HERE ")
        # alice types: bob sees it (a reader still follows the document).
        alice_text = alice.ydoc.get("source", type=Text)
        alice_text.insert(len(str(alice_text)), "alice adds a line\n")
        await eventually(lambda: "alice adds a line" in bob.get(), "bob sees alice's edit")
        await eventually(
            lambda: "alice adds a line" in (jp_root_dir / "notes.txt").read_text(),
            "alice's edit saved",
        )
        # Long enough for bob's update to have reached the room and been saved if it were
        # applied: alice's later edit is already on disk.
        await asyncio.sleep(0.5)
        assert "BOB WAS HERE" not in alice.get()
        assert "BOB WAS HERE" not in (jp_root_dir / "notes.txt").read_text()
