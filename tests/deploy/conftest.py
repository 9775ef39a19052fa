from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ecode_jupyter.deploy.gateway import AppGateway, start_gateway
from ecode_jupyter.pytest_plugin import ecode_token_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gateway_port() -> int:
    """A free port for a test server's app gateway (``preview_port``)."""
    return free_port()


@contextmanager
def running_gateway(ecode_app: Any, loop: asyncio.AbstractEventLoop) -> Iterator[AppGateway]:
    """The app gateway of a test server (``preview_port`` set), started as the extension's
    start does (pytest-jupyter does not start extensions), and serving."""

    async def start() -> AppGateway:
        started = start_gateway(ecode_app, ecode_app.ecode.extras["deploy"])
        assert started is not None
        await started.ready()
        return started

    gateway = loop.run_until_complete(start())
    try:
        yield gateway
    finally:
        loop.run_until_complete(gateway.stop())


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {"EcodeApp": {"app_start_timeout_s": 30.0}}


@dataclass
class Fetched:
    code: int
    body: bytes
    headers: Any

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


Fetch = Callable[..., Awaitable[Fetched]]


@pytest.fixture
def app_fetch(jp_http_port: int) -> Fetch:
    """``await app_fetch("/ecode/apps/@alice/x/", user="alice")`` → the raw answer, no
    redirects followed. ``path`` may be a path or a full URL."""

    async def fetch(
        path: str,
        *,
        user: str | None = None,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Fetched:
        url = path if path.startswith("http") else f"http://127.0.0.1:{jp_http_port}{path}"
        hdrs = dict(headers or {})
        if user is not None:
            hdrs["Authorization"] = f"token {ecode_token_for(user)}"
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""
        request = HTTPRequest(
            url, method=method, headers=hdrs, body=body, follow_redirects=False, request_timeout=30
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        return Fetched(response.code, response.body or b"", response.headers)

    return fetch


@pytest.fixture
def write_files() -> Callable[[Path, dict[str, str]], None]:
    def write(root: Path, files: dict[str, str]) -> None:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    return write
