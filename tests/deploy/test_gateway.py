"""The app gateway (``c.EcodeApp.preview_port``): apps on an origin of their own, served by a
process of its own; what it does not serve goes to Jupyter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.simple_httpclient import HTTPStreamClosedError
from tornado.websocket import websocket_connect

from ecode_jupyter.deploy.gateway import AppGateway, start_gateway
from ecode_jupyter.deploy.gateway_server import Upstream
from ecode_jupyter.pytest_plugin import ecode_token_for

from .apps import HEADER_ECHO, VERSIONED, WS_ECHO
from .conftest import free_port, running_gateway

Write = Callable[[Path, dict[str, str]], None]
OPAQUE_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


@pytest.fixture
def ecode_extra_config(gateway_port: int) -> dict[str, Any]:
    return {"EcodeApp": {"preview_port": gateway_port, "app_start_timeout_s": 30.0}}


@pytest.fixture
def gateway(ecode_app: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Iterator[AppGateway]:
    ecode_app.ecode.extras["deploy"].options.access_cache_s = 0
    with running_gateway(ecode_app, jp_asyncio_loop) as started:
        yield started


async def _preview(ecode_api: Any, write: Write, root: Path, files: dict[str, str], **body: Any):
    r = await ecode_api("POST", "projects", body={"name": f"Gw {len(files)} {body}"[:40]})
    assert r.status == 201, r.body
    project = r.body
    write(root / project["id"], files)
    dep = await ecode_api("POST", f"projects/{project['id']}/deployments", body=body)
    assert dep.status == 201 and dep.body["status"] == "running", dep.body
    return project, dep.body


async def _echo_preview(ecode_api: Any, write: Write, root: Path) -> Any:
    """A running preview of the header-echoing app; its deployment."""
    _project, dep = await _preview(
        ecode_api, write, root, {"echo.py": HEADER_ECHO}, command="python echo.py"
    )
    return dep


async def test_keyed_requests_are_served_on_the_preview_origin(
    ecode_api: Any,
    app_fetch: Any,
    gateway: AppGateway,
    write_files: Write,
    ecode_workspace_root: Path,
    jp_http_port: int,
) -> None:
    dep = await _echo_preview(ecode_api, write_files, ecode_workspace_root)
    origin = f"http://127.0.0.1:{gateway.port}"
    assert dep["url"].startswith(origin + "/") and "/ecode/apps/@alice/" in dep["url"]
    assert dep["own_origin"] is False  # Jupyter's host name: framed in the sandbox
    token = ecode_token_for("alice")
    answer = await app_fetch(
        dep["url"] + "x?a=1&token=" + token,
        method="POST",
        body=b"data",
        headers={
            "Authorization": f"token {token}",
            "Cookie": f"username-127-0-0-1-{jp_http_port}=2|secret; _xsrf=2|x; app_session=abc",
        },
    )
    assert answer.code == 200, answer.text
    seen = json.loads(answer.body)
    assert token not in json.dumps(seen) and "secret" not in json.dumps(seen)
    assert seen["path"] == "/x?a=1" and seen["method"] == "POST" and seen["body"] == "data"
    assert "authorization" not in seen["headers"]
    assert seen["headers"]["cookie"] == "app_session=abc"
    assert seen["headers"]["host"] == f"127.0.0.1:{gateway.port}"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    # 127.0.0.1 is Jupyter's host name too, and cookies ignore ports: the page stays in the
    # sandbox (an opaque origin), as on Jupyter's origin; cookies stay under its path.
    assert answer.headers["Content-Security-Policy"] == OPAQUE_SANDBOX
    prefix = dep["url"].removeprefix(origin).rstrip("/")
    assert answer.headers.get_list("Set-Cookie") == [
        f"app_session=abc; Path={prefix}/; Priority=Low"
    ]
    assert "Strict-Transport-Security" not in answer.headers
    # Keep-alive: many requests, one after the other, each answered whole.
    for n in range(20):
        again = await app_fetch(dep["url"] + f"n{n}")
        assert json.loads(again.body)["path"] == f"/n{n}"


async def test_what_the_gateway_does_not_serve_goes_to_jupyter(
    ecode_api: Any,
    app_fetch: Any,
    gateway: AppGateway,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    _project, dep = await _preview(
        ecode_api,
        write_files,
        ecode_workspace_root,
        {"app.py": WS_ECHO},
        command="python app.py --server.port {port} --server.baseUrlPath {base_path}",
    )
    origin = f"http://127.0.0.1:{gateway.port}"
    entry_path = dep["entry_url"].removeprefix(origin)
    # The plain URL needs the user: Jupyter's handler answers it, through the gateway.
    navigate = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}
    entry = await app_fetch(origin + entry_path, user="alice", headers=navigate)
    assert entry.code == 302 and "/~" in entry.headers["Location"]
    served = await app_fetch(origin + entry_path, user="alice")  # a script with a token
    assert served.code == 200 and "ws app" in served.text
    stranger = await app_fetch(origin + entry_path, user="bob")
    assert stranger.code == 404
    # An old key: Jupyter explains.
    old = await app_fetch(origin + entry_path + "~nope/x")
    assert old.code == 404

    # A WebSocket on the keyed URL (Streamlit's kind) works through the gateway.
    ws_url = dep["url"].replace("http://", "ws://") + "ws"
    conn = await websocket_connect(
        HTTPRequest(ws_url, headers={"Origin": origin}), subprotocols=["streamlit"]
    )
    hello = await conn.read_message()
    assert hello is not None and hello.startswith("hello")
    for message in ("ping", b"\x00\x01binary"):
        await conn.write_message(message, binary=isinstance(message, bytes))
        assert await conn.read_message() == message
    conn.close()
    # The same connection's plain requests still work after the pipe (a page on the app).
    page = await app_fetch(dep["url"])
    assert page.code == 200 and "ws app" in page.text


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


async def test_bad_requests_get_clear_answers(
    ecode_api: Any,
    gateway: AppGateway,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    dep = await _echo_preview(ecode_api, write_files, ecode_workspace_root)
    path = dep["url"].removeprefix(f"http://127.0.0.1:{gateway.port}")
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"
    huge = b"GET " + path.encode() + b" HTTP/1.1\r\n" + host.encode()
    huge += b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    assert _raw(gateway.port, huge).startswith(b"HTTP/1.1 431 ")
    assert _raw(gateway.port, b"NOT HTTP AT ALL\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    # A chunked request body is read whole before it goes to the app, and the client asked to
    # close: the answer says so and the connection ends.
    chunked = (
        f"POST {path}c HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    ).encode()
    answer = _raw(gateway.port, chunked)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in head
    assert json.loads(body)["body"] == "abcde"


async def test_the_gateway_stops_and_frees_its_port(ecode_app: Any, gateway_port: int) -> None:
    manager = ecode_app.ecode.extras["deploy"]
    gateway = start_gateway(ecode_app, manager)
    assert gateway is not None and gateway.port == gateway_port
    await gateway.ready()
    await gateway.stop()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", gateway_port))  # free again


async def test_the_gateway_passes_only_app_urls_to_jupyter(
    ecode_api: Any, app_fetch: Any, gateway: AppGateway, jp_base_url: str
) -> None:
    origin = f"http://127.0.0.1:{gateway.port}"
    for path in ("api/contents", "api/kernels", "login", "lab", "api/ecode/projects", ""):
        answer = await app_fetch(f"{origin}{jp_base_url}{path}", user="alice")
        assert answer.code == 404, path
        assert "project apps only" in answer.text
    # A connection already piped to Jupyter for an app URL cannot reach Jupyter's API next.
    # (Jupyter runs on this test's event loop: an asyncio client, not a blocking one.)
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"

    async def exchange(path: str) -> tuple[bytes, bytes]:
        writer.write(f"GET {path} HTTP/1.1\r\n{host}\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, await reader.readexactly(length)

    first, _ = await exchange(f"{jp_base_url}ecode/apps/@alice/nothing/")
    assert first.startswith((b"HTTP/1.1 403", b"HTTP/1.1 404"))
    then, body = await exchange(f"{jp_base_url}api/contents")
    assert then.startswith(b"HTTP/1.1 404") and b"project apps only" in body
    writer.close()


async def test_a_websocket_to_jupyter_through_the_gateway_is_refused(
    gateway: AppGateway, jp_base_url: str
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        (
            f"GET {jp_base_url}api/kernels/x/channels HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{gateway.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = await asyncio.wait_for(reader.read(), 10)  # answered, then closed
    assert answer.startswith(b"HTTP/1.1 404 ")
    writer.close()


@pytest.fixture
def gateway_alone(
    ecode_app: Any, jp_asyncio_loop: asyncio.AbstractEventLoop, gateway_port: int
) -> Iterator[AppGateway]:
    """A gateway whose way to Jupyter leads nowhere: whatever it answers, it answered itself."""
    manager = ecode_app.ecode.extras["deploy"]
    alone = AppGateway(
        manager,
        ip="127.0.0.1",
        port=gateway_port,
        base_url=manager.options.base_url,
        upstream=Upstream(port=free_port()),
    )

    async def start() -> None:
        alone.start()
        await alone.ready()

    jp_asyncio_loop.run_until_complete(start())
    yield alone
    jp_asyncio_loop.run_until_complete(alone.stop())


async def test_the_gateway_follows_apps_that_restart_and_stop(
    ecode_api: Any,
    app_fetch: Any,
    gateway_alone: AppGateway,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project, dep = await _preview(
        ecode_api,
        write_files,
        ecode_workspace_root,
        {"app.py": VERSIONED.replace("{version}", "v1")},
        command="python app.py",
    )
    gateway = gateway_alone
    manager = gateway.manager
    app = manager.app_for_key(dep["url"].split("/~")[1].split("/")[0])
    assert app is not None
    first_port = app.supervisor.port
    assert (await app_fetch(dep["url"])).text == "v1"
    # The app crashes: it comes back on a new port, and the gateway follows it there.
    assert (await app_fetch(dep["url"] + "crash")).code == 502
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(HTTPStreamClosedError):  # restarting: off to Jupyter
                answer = await app_fetch(dep["url"])
                if answer.code == 200:
                    break
            await asyncio.sleep(0.1)
    assert answer.text == "v1" and app.supervisor.port != first_port
    # Used through the gateway: the app's idle clock moved (reported once a second).
    app.supervisor.last_activity = 0.0
    assert (await app_fetch(dep["url"])).code == 200
    async with asyncio.timeout(10):
        while app.supervisor.last_activity == 0.0:
            await asyncio.sleep(0.1)
    # Stopped: the key no longer reaches it; the request goes on to Jupyter (nowhere, here).
    r = await ecode_api("DELETE", f"projects/{project['id']}/deployments/{dep['id']}")
    assert r.status in (200, 204), r.body
    with pytest.raises(HTTPStreamClosedError):
        await app_fetch(dep["url"])


async def test_a_gateway_process_that_dies_is_started_again(
    ecode_api: Any,
    app_fetch: Any,
    gateway_alone: AppGateway,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    dep = await _echo_preview(ecode_api, write_files, ecode_workspace_root)
    gateway = gateway_alone
    assert (await app_fetch(dep["url"] + "a")).code == 200
    proc = gateway._proc
    assert proc is not None
    proc.kill()
    async with asyncio.timeout(20):
        while gateway._proc is proc:
            await asyncio.sleep(0.05)
        await gateway.ready()
    # Same port, and it knows the running apps again.
    answer = await app_fetch(dep["url"] + "b")
    assert answer.code == 200 and json.loads(answer.body)["path"] == "/b"
    assert gateway.restarts == 1


def test_the_gateway_process_takes_a_large_route_table() -> None:
    """Thousands of running apps: the table is one long line on the process's stdin."""
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    routes = [
        {
            "key": f"k{n:05d}",
            "segment": "apps",
            "owner": "alice",
            "slug": f"app-{n}",
            "port": 1,
            "base_path": f"/ecode/apps/@alice/app-{n}/~k{n:05d}",
            "keep_base": False,
        }
        for n in range(5000)
    ]
    line = json.dumps({"routes": routes}).encode() + b"\n"
    assert len(line) > 512 * 1024
    argv = [sys.executable, "-m", "ecode_jupyter.deploy.gateway_server"]
    argv += [f"--fd={sock.fileno()}", "--prefix=/ecode/", f"--host=127.0.0.1:{port}"]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(sock.fileno(),)
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(line)
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        # A keyed request for the last app is the gateway's own (its app is not there: 502).
        path = "/ecode/apps/@alice/app-4999/~k04999/x"
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        answer = _raw(port, request.encode())
        assert answer.startswith(b"HTTP/1.1 502 ")
        proc.stdin.close()  # Jupyter is gone: the process ends
        assert proc.wait(10) == 0
    sock.close()


async def test_a_refused_request_waits_for_the_answers_pipelined_before_it(
    ecode_api: Any, gateway: AppGateway, jp_base_url: str
) -> None:
    """A client that pipelines an app URL (off to Jupyter) and then a path this origin does
    not serve gets Jupyter's whole answer first, then the 404, then the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    host = f"Host: 127.0.0.1:{gateway.port}\r\n"
    app_url = f"{jp_base_url}ecode/apps/@alice/nothing/"
    writer.write(
        f"GET {app_url} HTTP/1.1\r\n{host}\r\n"
        f"HEAD {app_url} HTTP/1.1\r\n{host}\r\n"
        f"GET {jp_base_url}api/contents HTTP/1.1\r\n{host}\r\n".encode()
    )
    data = await asyncio.wait_for(reader.read(), 10)  # all of it, until the gateway closes
    writer.close()
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith((b"HTTP/1.1 403", b"HTTP/1.1 404"))
    length = int(first.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body, rest = rest[:length], rest[length:]
    assert b"project apps only" not in body  # Jupyter's own answer, whole
    second, _, rest = rest.partition(b"\r\n\r\n")  # the answer to HEAD: no body
    assert second.startswith((b"HTTP/1.1 403", b"HTTP/1.1 404"))
    assert rest.startswith(b"HTTP/1.1 404 ") and b"project apps only" in rest
