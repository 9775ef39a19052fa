"""The app gateway: the preview origin served from a listener of its own.

With ``c.EcodeApp.preview_port`` set, apps are served on their own origin (``preview_origin``,
by default ``http://127.0.0.1:{preview_port}``) by this gateway: a thread with its own event
loop (uvloop when installed), so app traffic neither waits behind Jupyter's work nor slows it.

Keyed HTTP requests to running apps — nearly all of an app's traffic — are answered here, with
the same request rewriting and answer headers as the proxy inside Jupyter
(``handlers/app_router.py``, ``deploy/proxy.py``). Every other request on a connection (the
project's entry URL, which needs the user's login; WebSockets; expired keys; CORS preflights)
turns that connection into a plain pipe to the Jupyter server, whose ``AppProxyHandler``
decides as it always does. So there is one place where those decisions are made.

Threads: the gateway only reads the deploy manager's key table and an app's port, and marks
activity (``Supervisor.touch`` and one existing key of Jupyter's ``last_activity_times``); all
of these are single assignments or lookups, safe under the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import responses
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from ..handlers.app_router import app_request, is_app_path, keyed_app, not_here_answer, relay_now
from .backend import BackendPool, encode_head
from .manager import DeployManager, LiveApp
from .proxy import Pairs, error_headers, error_page, response_header_pairs

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 256 * 1024 * 1024
_MAX_QUEUED = 16  # pipelined requests read ahead before reading pauses
# Request headers the gateway itself looks at (names in lower case).
_SPECIAL = frozenset(
    {b"host", b"upgrade", b"origin", b"transfer-encoding", b"access-control-request-method"}
)


@dataclass(frozen=True)
class Upstream:
    """Where the gateway reaches the Jupyter server for everything it does not serve."""

    host: str = "127.0.0.1"
    port: int = 0
    unix_socket: str = ""
    tls: bool = False


class AppGateway:
    def __init__(
        self,
        manager: DeployManager,
        *,
        ip: str,
        port: int,
        base_url: str,
        upstream: Upstream,
        on_activity: Callable[[], None] = lambda: None,
    ) -> None:
        self.manager = manager
        self.ip = ip
        self.port = port
        self.prefix = base_url.rstrip("/") + "/ecode/"
        self.upstream = upstream
        self.on_activity = on_activity
        origin = urlsplit(manager.options.preview_origin)
        self.scheme = origin.scheme or "http"
        # The Host headers this origin answers to: the public one and the listener's own.
        self.hosts = {origin.netloc}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.pool: BackendPool | None = None
        self._connections: set[_Client] = set()

    # -- lifecycle (called from Jupyter's thread) ----------------------------------------------
    def start(self) -> int:
        """Listen and serve on a thread of its own; the port it listens on."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = _new_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # a bind error: reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="ecode-app-gateway", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise failure[0]
        return self.port

    async def _listen(self) -> None:
        self.pool = BackendPool()
        server = await asyncio.get_running_loop().create_server(
            lambda: _Client(self), self.ip or None, self.port, reuse_address=True
        )
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        self.hosts |= {f"{host}:{self.port}" for host in (self.ip, "127.0.0.1", "localhost")}

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for client in list(self._connections):
                client.close()
            if self.pool is not None:
                self.pool.close()
            loop.stop()

        with contextlib.suppress(RuntimeError):
            asyncio.run_coroutine_threadsafe(close(), loop)
        thread.join(10)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _Client(asyncio.Protocol):
    """One browser connection: keyed requests served here, the rest piped to Jupyter."""

    def __init__(self, gateway: AppGateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.remote_ip: str | None = None
        self.closed = False
        # the request being parsed
        self._url: list[bytes] = []
        self._headers: Pairs = []
        self._special: dict[bytes, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._fast: tuple[LiveApp, int, str] | None = None
        self._chunked = False
        # requests waiting for their answer, answered in order
        self._queue: deque[_Request] = deque()
        self._busy = False
        # once a request went to Jupyter, the rest of the connection goes there too
        self._pipe: _Pipe | None = None
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._leave: Callable[[], None] | None = None  # the answer under way, if it must stop
        self._refused = False  # a path this origin does not serve: answered 404, closing

    # -- asyncio -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.gateway._connections.add(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.remote_ip = peer[0] if isinstance(peer, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway._connections.discard(self)
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()
        if self._pipe is not None:
            self._pipe.close()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        parser = self.parser
        if parser is None:
            assert self._pipe is not None
            self._pipe.write(data)  # a WebSocket (or other upgrade) piped to Jupyter
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._refused:
                return  # an upgrade to a path this origin does not serve: answered 404
            # The upgrade's head went to Jupyter; everything after it is the new protocol.
            self.parser = None
            assert self._pipe is not None
            self._pipe.write(data[int(upgrade.args[0]) :])
        except httptools.HttpParserError as exc:
            if self._refused:
                return
            # A callback's own exception (too large) arrives as the parser error's context.
            cause = exc.__context__
            self._refuse(cause if isinstance(cause, _TooLarge) else exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _refuse(self, exc: BaseException) -> None:
        if self._queue or self._busy or self._pipe is not None:
            self.close()  # answers are under way: a refusal now would land among them
            return
        code = int(exc.args[0]) if isinstance(exc, _TooLarge) else 400
        body = responses[code].encode()
        self._answer_and_close(code, [("Content-Length", str(len(body)))], body)

    def _answer_and_close(self, code: int, headers: Pairs, body: bytes) -> None:
        """The proxy's own answer, the last on this connection."""
        status = f"HTTP/1.1 {code} {responses[code]}"
        self.write(encode_head(status, [*headers, ("Connection", "close")]) + body)
        self.close()  # once the answer is written; nothing after it goes out

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = []
        self._headers = []
        self._special = {}
        self._body = []
        self._size = 0
        self._head_size = 0
        self._fast = None
        self._chunked = False

    def on_url(self, url: bytes) -> None:
        self._grow_head(len(url))
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow_head(len(name) + len(value))
        text = value.decode("latin-1")
        self._headers.append((name.decode("latin-1"), text))
        lower = name.lower()
        if lower in _SPECIAL:
            self._special[lower] = text

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > _MAX_HEAD:
            raise _TooLarge(431)

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        method = parser.get_method().decode("latin-1")
        url = b"".join(self._url).decode("latin-1")
        path = url.partition("?")[0]
        gateway = self.gateway
        special = self._special
        if (
            self._pipe is None
            and path.startswith(gateway.prefix)
            and special.get(b"host", "") in gateway.hosts
        ):
            self._fast = keyed_app(
                gateway.manager,
                method,
                path[len(gateway.prefix) :],
                upgrade=b"upgrade" in special,
                preflight=b"access-control-request-method" in special,
            )
        if self._fast is not None:
            return
        if not is_app_path(path, gateway.prefix):
            # Only app URLs go on to Jupyter: its pages and APIs on the apps' origin would
            # be open to every app's scripts.
            self._not_here()
            return
        # Not ours to answer: this connection goes to Jupyter from here on.
        if self._pipe is None:
            self._pipe = _Pipe(self)
        head = encode_head(f"{method} {url} HTTP/{parser.get_http_version()}", self._headers)
        self._pipe.write(head)
        self._chunked = "chunked" in special.get(b"transfer-encoding", "").lower()

    def _not_here(self) -> None:
        self.parser = None
        self._refused = True
        body, headers = not_here_answer()
        self._answer_and_close(404, headers, body)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._fast is None:
            assert self._pipe is not None
            if self._chunked:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            self._pipe.write(body)
            return
        self._size += len(body)
        if self._size > _MAX_BODY:
            raise _TooLarge(413)
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        parser = self.parser
        assert parser is not None
        if self._fast is None:
            if self._chunked:
                assert self._pipe is not None
                self._pipe.write(b"0\r\n\r\n")
            return
        app, port, rest = self._fast
        url = b"".join(self._url).decode("latin-1")
        self._queue.append(
            _Request(
                method=parser.get_method().decode("latin-1"),
                query=url.partition("?")[2],
                headers=self._headers,
                host=self._special.get(b"host", ""),
                origin=self._special.get(b"origin", ""),
                body=self._body,
                app=app,
                port=port,
                rest=rest,
                keep_alive=parser.should_keep_alive(),
                http11=parser.get_http_version() == "1.1",
            )
        )
        if len(self._queue) > _MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()
        self._next()

    # -- answering, in order -----------------------------------------------------------------
    def _next(self) -> None:
        if self._busy:
            return
        if not self._queue:
            if self._pipe is not None:
                self._pipe.release()  # Jupyter's answers may go out now
            return
        request = self._queue.popleft()
        self._busy = True
        if self.transport is not None and len(self._queue) < _MAX_QUEUED:
            self.transport.resume_reading()
        try:
            self._answer(request)
        except Exception:
            log.exception("unexpected error in the app gateway")
            self.close()

    def _answered(self) -> None:
        self._busy = False
        self._leave = None
        if not self.closed:
            self._next()

    def _answer(self, request: _Request) -> None:
        gateway = self.gateway
        app = request.app
        head, body = app_request(
            app,
            request.rest,
            request.query,
            request.headers,
            method=request.method,
            chunks=request.body,
            host=request.host,
            proto=gateway.scheme,
            remote_ip=self.remote_ip,
        )
        app.supervisor.touch()
        gateway.on_activity()
        sink = _Answer(self, request)
        assert gateway.pool is not None
        relay_now(gateway.pool, request.port, request.method, head, body, sink, self._answered)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def drained(self) -> Awaitable[None] | None:
        if not self._write_paused or self.closed:
            return None
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        return self._drained


class _TooLarge(Exception):
    pass


@dataclass
class _Request:
    method: str
    query: str
    headers: Pairs
    host: str
    origin: str
    body: list[bytes]
    app: LiveApp
    port: int
    rest: str
    keep_alive: bool
    http11: bool


class _Answer:
    """The relay's ``AnswerSink`` on a gateway connection: HTTP/1.1 written by hand."""

    def __init__(self, client: _Client, request: _Request) -> None:
        self.client = client
        self.request = request
        self.chunked = False
        self.close_after = not request.keep_alive
        self.written = False

    @property
    def head_request(self) -> bool:
        return self.request.method == "HEAD"

    def _sandboxed_fetch(self) -> bool:
        return self.request.origin == "null"

    def outgoing(self, app_headers: Pairs) -> Pairs:
        return response_header_pairs(
            app_headers,
            public_prefix=self.request.app.base_path,
            host=self.request.host,
            head=self.head_request,
            same_origin=True,
            sandboxed_fetch=self._sandboxed_fetch(),
        )

    def write_head(
        self, code: int, reason: str, headers: Pairs, body: bytes | None, stream: bool
    ) -> None:
        self.written = True
        bodyless = self.head_request or code in (204, 304) or 100 <= code < 200
        if stream and not bodyless:  # a streamed answer has no length yet
            if self.request.http11:
                self.chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.close_after = True  # an HTTP/1.0 client reads to the end
        if self.close_after:
            headers.append(("Connection", "close"))
        elif not self.request.http11:
            headers.append(("Connection", "keep-alive"))
        head = encode_head(f"HTTP/1.1 {code} {reason or responses.get(code, 'Unknown')}", headers)
        self.client.write(head + self._frame(body) if body and not bodyless else head)

    def _frame(self, chunk: bytes) -> bytes:
        return b"%x\r\n%b\r\n" % (len(chunk), chunk) if self.chunked else chunk

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        if chunk:
            self.client.write(self._frame(chunk))
        return self.client.drained()

    def end(self) -> None:
        if self.chunked:
            self.client.write(b"0\r\n\r\n")
        if self.close_after:
            self.client.close()

    def abort(self) -> None:
        self.client.close()

    def leaving(self, abandon: Callable[[], None]) -> None:
        self.client._leave = abandon

    def fail(self, code: int, message: str) -> None:
        log.warning(
            "%s %s -> %s (%s)", self.request.method, self.request.app.base_path, code, message
        )
        if self.written:
            self.client.close()
            return
        body = error_page(message).encode()
        headers = error_headers(body, same_origin=True, sandboxed_fetch=self._sandboxed_fetch())
        self.write_head(code, "", headers, body, False)
        self.end()


class _Pipe(asyncio.Protocol):
    """A browser connection's bytes to and from the Jupyter server."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []  # to Jupyter, until connected
        # To the browser, held until the answers to earlier requests are out.
        self.held: list[bytes] | None = [] if client._queue or client._busy else None
        self.closed = False
        asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        upstream = self.client.gateway.upstream
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if upstream.tls:
            # Jupyter's own certificate, reached over loopback: nothing to verify it against.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            if upstream.unix_socket:
                await loop.create_unix_connection(lambda: self, upstream.unix_socket)
            else:
                await loop.create_connection(
                    lambda: self, upstream.host, upstream.port, ssl=context
                )
        except OSError as exc:
            log.warning("the app gateway could not reach Jupyter: %s", exc)
            self.client.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if self.closed:
            transport.close()
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending = []

    def write(self, data: bytes) -> None:
        if not data or self.closed:
            return
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.held is not None:
            self.held.append(data)
        else:
            self.client.write(data)

    def release(self) -> None:
        held, self.held = self.held, None
        if held:
            self.client.write(b"".join(held))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.release()
        self.client.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def start_gateway(app: Any, manager: DeployManager) -> AppGateway | None:
    """The gateway for an EcodeApp whose ``preview_port`` is set, started; else None."""
    if not app.preview_port:
        return None
    serverapp = app.serverapp
    ip = str(serverapp.ip or "")
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}
    upstream = Upstream(
        host=wildcard.get(ip, "127.0.0.1" if ip == "localhost" else ip),
        port=int(serverapp.port),
        unix_socket=str(getattr(serverapp, "sock", "") or ""),
        tls=bool(getattr(serverapp, "certfile", "")),
    )
    activity = serverapp.web_app.settings.setdefault("last_activity_times", {})
    activity.setdefault("ecode_apps", _now())
    marked = [0.0]

    def on_activity() -> None:
        now = time.monotonic()
        if now - marked[0] >= 1.0:  # idle culling counts minutes: once a second is plenty
            marked[0] = now
            activity["ecode_apps"] = _now()  # an existing key: no resize under Jupyter's reads

    gateway = AppGateway(
        manager,
        ip=str(app.preview_ip),
        port=int(app.preview_port),
        base_url=manager.options.base_url,
        upstream=upstream,
        on_activity=on_activity,
    )
    gateway.start()
    return gateway


def _now() -> datetime:
    return datetime.now(UTC)
