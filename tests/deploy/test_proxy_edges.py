"""The app proxy's fast lanes on the edges of HTTP/1.1: HEAD, event streams, large and
chunked bodies, answers cut short, bodiless statuses, redirects, apps that close every
connection — against a real server and real app processes, through both doors: Jupyter's own
origin (``handlers/app_router.py``) and the app gateway process (``c.EcodeApp.preview_port``,
``deploy/gateway_server.py``). Every test first sends one keyed request (on Jupyter's origin
it goes through ``AppProxyHandler``, which accepts the Host header once), then checks that
what it pins was served by a fast lane, i.e. without ``AppProxyHandler.prepare``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ecode_jupyter.deploy import tools as deploy_tools
from ecode_jupyter.handlers.deploy import AppProxyHandler
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.pytest_plugin import ecode_token_for

from .apps import CLOSE_EVERY_CONNECTION, EDGE
from .conftest import running_gateway
from .test_preview_api import SANDBOX, _preview, _project

Write = Callable[[Path, dict[str, str]], None]
BIG = random.Random(7).randbytes(700 * 1024)  # the same bytes as the EDGE app's


@dataclass
class Door:
    """Where the browser reaches apps: Jupyter's origin, or the gateway's."""

    port: int
    sandbox: str  # the CSP every answer carries there

    def path(self, dep: dict[str, Any]) -> str:
        return urlsplit(dep["url"]).path

    def url(self, dep: dict[str, Any], rest: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.path(dep)}{rest}"


@pytest.fixture(params=["jupyter", "gateway"])
def door_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def ecode_extra_config(door_name: str, gateway_port: int) -> dict[str, Any]:
    config: dict[str, Any] = {"app_start_timeout_s": 30.0}
    if door_name == "gateway":
        config["preview_port"] = gateway_port
    return {"EcodeApp": config}


@pytest.fixture
def door(
    door_name: str, ecode_app: Any, jp_http_port: int, jp_asyncio_loop: asyncio.AbstractEventLoop
) -> Iterator[Door]:
    if door_name == "jupyter":
        yield Door(jp_http_port, SANDBOX)
        return
    with running_gateway(ecode_app, jp_asyncio_loop) as gateway:
        yield Door(gateway.port, SANDBOX)  # 127.0.0.1: Jupyter's host name too


@pytest.fixture
def deploy(ecode_app: Any) -> Any:
    manager = ecode_app.ecode.extras["deploy"]
    manager.options.access_cache_s = 0
    return manager


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests ``AppProxyHandler`` prepared (the slow lane)."""
    calls: list[str] = []
    original = AppProxyHandler.prepare

    async def counted(self: AppProxyHandler) -> None:
        calls.append(self.request.path)
        await original(self)

    monkeypatch.setattr(AppProxyHandler, "prepare", counted)
    return calls


async def _start(
    ecode_api: Any,
    app_fetch: Any,
    write_files: Write,
    root: Path,
    source: str,
    handled: list[str],
    command: str,
) -> dict[str, Any]:
    """A running preview of ``source``, with the Host header already accepted."""
    project = await _project(ecode_api, "Edge")
    write_files(root / project["id"], {"app.py": source})
    dep = await _preview(ecode_api, project["id"], command=command)
    first = await app_fetch(dep["url"] + ("hello" if source is EDGE else "first"))
    assert first.code == 200, first.text
    handled.clear()
    return dep


@pytest.fixture
def edge_app(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    door: Door,
    write_files: Write,
    ecode_workspace_root: Path,
) -> Callable[..., Any]:
    def start(handled: list[str], source: str = EDGE, command: str = "python app.py") -> Any:
        return _start(
            ecode_api, app_fetch, write_files, ecode_workspace_root, source, handled, command
        )

    return start


async def _raw_exchange(
    port: int, requests: list[tuple[str, str]]
) -> list[tuple[bytes, dict[str, str], bytes]]:
    """Send requests one after another on ONE keep-alive connection to Jupyter; each answer
    is read by the rules a browser uses (no body after HEAD, 204 and 304; else Content-Length).
    Stray bytes after an answer would corrupt the next status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for method, path in requests:
            writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            status, *lines = head.decode("latin-1").split("\r\n")[:-2]
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            code = int(status.split()[1])
            body = b""
            if method != "HEAD" and code not in (204, 304):
                assert "transfer-encoding" not in headers, (path, headers)
                length = int(headers["content-length"])
                body = await asyncio.wait_for(reader.readexactly(length), 5)
            answers.append((status.encode(), headers, body))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


# -- 1. HEAD -------------------------------------------------------------------------------
async def test_head_passes_the_length_without_a_body_and_the_connection_goes_on(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door
) -> None:
    dep = await edge_app(handled)
    peers = set()
    for _ in range(3):
        head = await app_fetch(dep["url"] + "hello", method="HEAD")
        assert head.code == 200 and head.body == b""
        assert head.headers["Content-Length"] == "11"
        assert head.headers["Content-Security-Policy"] == door.sandbox
        get = await app_fetch(dep["url"] + "hello")
        assert get.code == 200 and get.body == b"hello world"
        peers |= {head.headers["X-Peer"], get.headers["X-Peer"]}
    # One pooled connection to the app served all six: the answer to HEAD left it usable.
    assert len(peers) == 1
    # On one browser connection, too: no body bytes follow the answer to HEAD.
    path = door.path(dep) + "hello"
    answers = await _raw_exchange(door.port, [("HEAD", path), ("GET", path), ("HEAD", path)])
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 3
    assert answers[0][1]["content-length"] == "11" and answers[1][2] == b"hello world"
    # An app that sends a body even to HEAD does not corrupt the next answer.
    sloppy = door.path(dep) + "sloppy"
    for _ in range(3):
        head = await app_fetch(door.url(dep, "sloppy"), method="HEAD")
        assert head.code == 200 and head.body == b"" and head.headers["Content-Length"] == "11"
        assert (await app_fetch(dep["url"] + "hello")).body == b"hello world"
    answers = await _raw_exchange(door.port, [("HEAD", sloppy), ("GET", path)] * 2)
    assert [a[2] for a in answers] == [b"", b"hello world"] * 2
    assert not handled


# -- 2. event streams ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["chunked", "close"])
async def test_an_event_stream_is_relayed_event_by_event(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door, mode: str
) -> None:
    dep = await edge_app(handled)
    arrivals: list[tuple[float, bytes]] = []
    release: list[asyncio.Future[Any]] = []

    def on_chunk(chunk: bytes) -> None:
        arrivals.append((time.monotonic(), chunk))
        seen = b"".join(c for _, c in arrivals)
        if b"data: two\n\n" in seen and not release:
            # The app holds its last event until it is asked for it, on another request:
            # a proxy that buffered the stream would never let this request be sent.
            release.append(asyncio.ensure_future(app_fetch(dep["url"] + "release")))

    url = door.url(dep, f"sse?mode={mode}")
    response = await AsyncHTTPClient().fetch(
        HTTPRequest(url, streaming_callback=on_chunk, request_timeout=10)
    )
    done = time.monotonic()
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Content-Security-Policy"] == door.sandbox
    body = b"".join(c for _, c in arrivals)
    assert body == b"data: one\n\ndata: two\n\ndata: three released\n\n"
    assert release and (await release[0]).code == 200
    first_at = next(t for t, c in arrivals if b"one" in c)
    last_at = next(t for t, c in arrivals if b"three" in c)
    assert first_at < last_at <= done  # the first event came before the stream ended
    assert not handled


# -- 3. large bodies -----------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["length", "chunked"])
async def test_a_large_body_arrives_byte_for_byte(
    edge_app: Any,
    app_fetch: Any,
    handled: list[str],
    mode: str,
    door: Door,
) -> None:
    dep = await edge_app(handled)
    for _ in range(2):  # and the connection it came on serves the next one
        big = await app_fetch(dep["url"] + f"big?mode={mode}")
        assert big.code == 200 and len(big.body) == len(BIG)
        assert big.body == BIG
        assert big.headers["Content-Security-Policy"] == door.sandbox
    assert (await app_fetch(dep["url"] + "hello")).body == b"hello world"
    assert not handled


# -- 4. small chunked answers ----------------------------------------------------------------
async def test_a_small_chunked_answer_gets_a_content_length(
    edge_app: Any, app_fetch: Any, handled: list[str]
) -> None:
    dep = await edge_app(handled)
    answer = await app_fetch(dep["url"] + "chunked")
    assert answer.code == 200 and answer.body == b"part1part2part3"
    assert answer.headers["Content-Length"] == "15"
    assert "Transfer-Encoding" not in answer.headers
    assert answer.headers["Content-Type"] == "text/plain"
    assert not handled


# -- 5. answers cut short ------------------------------------------------------------------
async def test_a_short_body_becomes_a_502(
    edge_app: Any,
    app_fetch: Any,
    handled: list[str],
    door: Door,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dep = await edge_app(handled)
    answer = await app_fetch(dep["url"] + "short")
    assert answer.code == 502
    key = door.path(dep).split("/~")[1].strip("/")
    assert key not in caplog.text  # the failure is logged by the app's name, not its URL
    assert b"0123456789" not in answer.body and b"closed the connection" in answer.body
    assert answer.headers["Content-Security-Policy"] == door.sandbox
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    # The app is still there for the next request.
    assert (await app_fetch(dep["url"] + "hello")).body == b"hello world"
    assert not handled


@pytest.mark.parametrize("mode", ["length", "chunked"])
async def test_a_large_body_cut_midway_closes_the_browser_connection(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door, mode: str
) -> None:
    dep = await edge_app(handled)
    url = door.url(dep, f"cut?mode={mode}")
    received: list[bytes] = []
    with pytest.raises(HTTPClientError) as cut:
        await AsyncHTTPClient().fetch(
            HTTPRequest(url, streaming_callback=received.append, request_timeout=10)
        )
    # Not a complete-looking answer: the connection closed with the body unfinished.
    assert cut.value.code == 599
    assert 256 * 1024 < sum(map(len, received)) < len(BIG)
    assert (await app_fetch(dep["url"] + "hello")).body == b"hello world"
    assert not handled


# -- 6. 204 and 304 --------------------------------------------------------------------------
async def test_no_content_and_not_modified_pass_without_a_body(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door
) -> None:
    dep = await edge_app(handled)
    empty = await app_fetch(dep["url"] + "nocontent")
    assert empty.code == 204 and empty.body == b""
    assert empty.headers["Content-Security-Policy"] == door.sandbox
    same = await app_fetch(dep["url"] + "notmodified", headers={"If-None-Match": '"v1"'})
    assert same.code == 304 and same.body == b""
    assert same.headers["ETag"] == '"v1"'
    after = await app_fetch(dep["url"] + "hello")
    assert after.body == b"hello world"
    # The app's connection was reused after both: the proxy did not wait for a body.
    assert empty.headers["X-Peer"] == same.headers["X-Peer"] == after.headers["X-Peer"]
    # A browser connection carries on after both, with no stray bytes.
    base = door.path(dep)
    answers = await _raw_exchange(
        door.port,
        [("GET", base + "nocontent"), ("GET", base + "notmodified"), ("GET", base + "hello")],
    )
    assert [a[0][:12] for a in answers] == [b"HTTP/1.1 204", b"HTTP/1.1 304", b"HTTP/1.1 200"]
    assert answers[2][2] == b"hello world"
    assert not handled


# -- 7. redirects ----------------------------------------------------------------------------
async def test_redirects_stay_under_the_apps_prefix(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door
) -> None:
    dep = await edge_app(handled)
    prefix = door.path(dep).rstrip("/")
    moved = await app_fetch(dep["url"] + "redirect")
    assert moved.code == 302 and moved.headers["Location"] == prefix + "/login"
    absolute = await app_fetch(dep["url"] + "redirect-absolute")
    assert absolute.code == 302
    assert absolute.headers["Location"] == prefix + "/login?next=/x"
    assert not handled


# -- 8. apps that close every connection -------------------------------------------------
@pytest.mark.parametrize("shape", ["single-threaded HTTP/1.0", "threaded"])
async def test_an_app_that_closes_every_connection(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door, shape: str
) -> None:
    """Every request needs a new connection to the app; the pool opens the next one ahead."""
    command = "python app.py" + (" threaded" if shape == "threaded" else "")
    dep = await edge_app(handled, CLOSE_EVERY_CONNECTION, command)
    rng = random.Random(3)
    for i in range(20):
        if i % 2:
            body = rng.randbytes(rng.choice([0, 1, 1000, 200_000]))
            answer = await app_fetch(dep["url"] + f"post/{i}", method="POST", body=body)
            assert answer.code == 200 and answer.body == body, i
        else:
            answer = await app_fetch(dep["url"] + f"get/{i}?n={i}")
            assert answer.code == 200 and answer.body == f"/get/{i}?n={i}".encode(), i
    # A body the browser uploads in chunks reaches the app whole, with its length.
    parts = [b"a" * 1000, b"b" * 70_000, b"c"]

    async def produce(write: Callable[[bytes], Any]) -> None:
        for part in parts:
            await write(part)

    url = door.url(dep, "upload")
    upload = await AsyncHTTPClient().fetch(
        HTTPRequest(url, method="POST", body_producer=produce, request_timeout=10)
    )
    assert upload.code == 200 and upload.body == b"".join(parts)
    assert not handled


# -- 9. what the fast lane leaves to the handler ---------------------------------------------
async def test_a_cors_preflight_is_answered_by_the_handler(
    edge_app: Any,
    app_fetch: Any,
    handled: list[str],
    door: Door,
) -> None:
    dep = await edge_app(handled)
    preflight = await app_fetch(
        dep["url"] + "api",
        method="OPTIONS",
        headers={
            "Origin": "null",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "null"
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type"
    assert handled == [door.path(dep) + "api"]


# -- 10. the fast lane is taken --------------------------------------------------------------
async def test_keyed_requests_skip_the_handler_and_unkeyed_ones_do_not(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    handled: list[str],
    write_files: Write,
    ecode_workspace_root: Path,
    door: Door,
) -> None:
    project = await _project(ecode_api, "Lane")
    write_files(ecode_workspace_root / project["id"], {"app.py": EDGE})
    dep = await _preview(ecode_api, project["id"], command="python app.py")
    first = await app_fetch(dep["url"] + "hello")
    assert first.code == 200 and first.body == b"hello world"
    assert len(handled) <= 1  # the handler checks (and remembers) the Host header once
    before = len(handled)
    for _ in range(2):
        again = await app_fetch(dep["url"] + "hello")
        assert again.code == 200 and again.body == b"hello world"
        assert again.headers["Content-Security-Policy"] == door.sandbox
        assert again.headers["Referrer-Policy"] == "no-referrer"
    # A sandboxed page's fetch (Origin "null") is served there too, with its CORS header.
    sandboxed = await app_fetch(dep["url"] + "hello", headers={"Origin": "null"})
    assert sandboxed.headers["Access-Control-Allow-Origin"] == "null"
    assert len(handled) == before
    plain = await app_fetch(dep["entry_url"] + "hello", user="alice")
    assert plain.code == 200 and plain.body == b"hello world"
    assert handled[before:] == [dep["entry_url"] + "hello"]


# -- product bugs found on the way (these fail until the proxy is fixed) ----------------
@pytest.mark.parametrize("lane", ["fast", "handler"])
async def test_a_browser_leaving_an_event_stream_frees_the_app(
    edge_app: Any, app_fetch: Any, handled: list[str], door: Door, jp_http_port: int, lane: str
) -> None:
    """An endless event stream whose browser left must not be read (and thrown away) forever:
    the proxy closes its connection to the app, and the app's next writes fail."""
    dep = await edge_app(handled)
    # The handler's lane: the entry URL, on Jupyter's origin whichever the app's is.
    port = door.port if lane == "fast" else jp_http_port
    path = (door.path(dep) if lane == "fast" else dep["entry_url"]) + "forever"
    auth = f"Authorization: token {ecode_token_for('alice')}\r\n" if lane == "handler" else ""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode())
    seen = b""
    while b"data: tick" not in seen:
        seen += await asyncio.wait_for(reader.read(4096), 5)
    assert seen.startswith(b"HTTP/1.1 200")
    writer.close()  # the tab is closed
    await writer.wait_closed()
    left = await app_fetch(dep["url"] + "left?wait=2")
    assert left.body == b"yes", "the app is still streaming to a browser that left"
    assert handled == ([] if lane == "fast" else [path])


async def test_a_post_the_app_dropped_is_not_sent_again(
    edge_app: Any, app_fetch: Any, handled: list[str]
) -> None:
    """A POST on a pooled connection that the app closes without answering (it crashed, or
    a worker was killed by its timeout) may have been acted on: it must not be repeated."""
    dep = await edge_app(handled)  # leaves a kept-alive connection in the pool
    dropped = await app_fetch(dep["url"] + "drop", method="POST", body=b"order #1")
    assert dropped.code == 502
    count = await app_fetch(dep["url"] + "count")
    assert count.body == b"1", f"the app got the POST {count.text} times"


async def test_the_spare_connection_does_not_block_a_single_threaded_app(
    ecode_app: Any, edge_app: Any, app_fetch: Any, handled: list[str]
) -> None:
    """``HTTPServer`` serves one connection at a time (and so answers HTTP/1.0 and closes):
    a connection opened ahead and left idle keeps every other client of the app waiting —
    here the preview's own health probe, as the agent's ``preview_status`` reports it."""
    dep = await edge_app(handled, CLOSE_EVERY_CONNECTION)
    assert (await app_fetch(dep["url"] + "x")).code == 200
    alice = EcodeUser("alice", "Alice", False)
    status = await deploy_tools.preview_status(ecode_app.ecode, alice, dep["project_id"])
    assert status["running"] is True
    assert status["preview"]["health"]["status"] == 200, "the app looked down to its health probe"
