"""Fixtures for the project-kernel tests: the tool-layer server, and the Jupyter API and
kernel WebSocket as Lab uses them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

# Shared with tests/tools rather than copied: the same server, client and project helpers.
from tools.conftest import make_project, mcp_connect, mcp_url
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from ecode_jupyter.pytest_plugin import ecode_token_for

__all__ = ["make_project", "mcp_connect", "mcp_url"]

JupyterCall = Callable[..., Awaitable[tuple[int, Any]]]
WsExecute = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def ecode_workspace_root(jp_root_dir: Path) -> Path:
    # As a user's server has it by default: the workspaces inside Jupyter's root folder, so a
    # notebook in a project's folder is a path the contents and sessions APIs can name.
    root = jp_root_dir / "ecode-projects"
    root.mkdir()
    return root


@pytest.fixture
def jupyter_api(http_server_client: Any, jp_http_port: int, jp_base_url: str) -> JupyterCall:
    """``await jupyter_api("POST", "sessions", body, user="alice")`` → (status, JSON)."""

    async def call(
        method: str, path: str, body: Any = None, *, user: str = "alice"
    ) -> tuple[int, Any]:
        request = HTTPRequest(
            f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/{path}",
            method=method,
            headers={"Authorization": f"token {ecode_token_for(user)}"},
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            allow_nonstandard_methods=True,
            request_timeout=120,
        )
        answer = await AsyncHTTPClient().fetch(request, raise_error=False)
        return answer.code, (json.loads(answer.body) if answer.body else None)

    return call


@pytest.fixture
def ws_execute(http_server_client: Any, jp_http_port: int, jp_base_url: str) -> WsExecute:
    """Run code over a kernel's WebSocket as Lab does; → {"stdout", "status", "error"}."""

    async def execute(kernel_id: str, code: str, *, user: str = "alice") -> dict[str, Any]:
        session = uuid.uuid4().hex
        url = (
            f"ws://127.0.0.1:{jp_http_port}{jp_base_url}api/kernels/{kernel_id}/channels"
            f"?session_id={session}"
        )
        request = HTTPRequest(url, headers={"Authorization": f"token {ecode_token_for(user)}"})
        conn = await websocket_connect(request)
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": session,
            "username": user,
            "version": "5.3",
            "date": "",
        }
        content = {"code": code, "silent": False, "store_history": True, "allow_stdin": False}
        conn.write_message(
            json.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        out: dict[str, Any] = {"stdout": "", "status": None, "error": None}
        idle = False
        try:
            while not (idle and out["status"]):
                raw = await conn.read_message()
                assert raw is not None, "the kernel WebSocket closed"
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out["stdout"] += msg["content"]["text"]
                elif kind == "error":
                    out["error"] = f"{msg['content']['ename']}: {msg['content']['evalue']}"
                elif kind == "execute_reply":
                    out["status"] = msg["content"]["status"]
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
        finally:
            conn.close()
        return out

    return execute
