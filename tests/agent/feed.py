"""Helpers for agent tests: wait for a run, read its feed over REST or a WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from ecode_jupyter.pytest_plugin import ecode_token_for

FINAL = {"completed", "failed", "cancelled", "interrupted"}


async def wait_final(ecode_api: Any, run_id: str, *, user: str = "alice") -> dict[str, Any]:
    """Poll the run until its status is final; returns it (pytest-timeout bounds the wait)."""
    while True:
        resp = await ecode_api("GET", f"runs/{run_id}", user=user)
        assert resp.status == 200, resp.body
        if resp.body["status"] in FINAL:
            return dict(resp.body)
        await asyncio.sleep(0.05)


async def events(ecode_api: Any, run_id: str, *, after: int = 0, user: str = "alice") -> list[dict]:
    resp = await ecode_api("GET", f"runs/{run_id}/events?after={after}", user=user)
    assert resp.status == 200, resp.body
    return list(resp.body["events"])


async def open_feed(
    port: int, base_url: str, run_id: str, *, after: int = 0, user: str = "alice"
) -> WebSocketClientConnection:
    url = f"ws://127.0.0.1:{port}{base_url}api/ecode/runs/{run_id}/events?after={after}"
    request = HTTPRequest(url, headers={"Authorization": f"token {ecode_token_for(user)}"})
    return await websocket_connect(request)


async def read_feed(ws: WebSocketClientConnection, limit: int | None = None) -> list[dict]:
    """Messages until the server closes the feed (or ``limit`` messages)."""
    got: list[dict] = []
    while limit is None or len(got) < limit:
        message = await ws.read_message()
        if message is None:
            break
        got.append(json.loads(message))
    return got


def of_type(feed: list[dict], type_: str) -> list[dict]:
    return [e for e in feed if e["type"] == type_]
