"""The app gateway process: the preview origin (``c.EcodeApp.preview_port``) served by a
process of its own.

The Jupyter server starts and watches it (``deploy/gateway.py``): it hands over the listening
socket, tells it the running apps (the whole route table, one JSON line on stdin, each time it
changes) and hears which apps were used (one JSON line on stdout, at most once a second). With
its own event loop (uvloop when installed) and its own interpreter lock, app traffic neither
waits behind Jupyter's work nor slows it; in a thread of Jupyter's process every request
waited for the lock while Jupyter read the app's access log.

Keyed HTTP requests to running apps — nearly all of an app's traffic — are answered here, with
the request rewriting and answer headers of ``deploy/proxy.py``. Every other request for an
app URL (the entry URL, which needs the user's login; WebSockets; expired keys; CORS
preflights; a stopped app) turns its connection into a plain pipe to the Jupyter server, whose
``AppProxyHandler`` decides as it always does, so those decisions are made in one place. Any
other path gets a 404: Jupyter's pages and APIs on the apps' origin would be open to every
app's scripts.

The process ends when its stdin closes: the Jupyter server stopped, or died.

    python -m ecode_jupyter.deploy.gateway_server --fd N --prefix /ecode/ --host h:p ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import socket
import ssl
import sys
from collections import deque
from collections.abc import Awaitable, Callable
from http.client import responses
from typing import Any, NamedTuple, cast

import httptools

from .backend import BackendPool, encode_head, encode_request
from .proxy import (
    BODY_METHODS,
    Pairs,
    app_target,
    error_headers,
    error_page,
    is_app_path,
    keyed_request,
    not_here_answer,
    request_header_pairs,
    response_header_pairs,
)
from .relay import relay_now

log = logging.getLogger("ecode_jupyter.gateway")

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
MAX_QUEUED = 16  # pipelined requests read ahead before reading pauses
MAX_TABLE_BYTES = 64 * 1024 * 1024  # the longest route table line Jupyter may send
ACTIVITY_EVERY_S = 1.0  # idle culling counts minutes: once a second is plenty
# Request headers the gateway itself looks at (names in lower case).
_SPECIAL = frozenset(
    {b"host", b"upgrade", b"origin", b"transfer-encoding", b"access-control-request-method"}
)


class Route(NamedTuple):
    """A running app as the gateway knows it (one entry of the table Jupyter sends)."""

    key: str
    segment: str  # "apps" (a preview) or "live" (a release)
    owner: str
    slug: str
    port: int
    base_path: str
    keep_base: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Route:
        return cls(
            key=str(data["key"]),
            segment=str(data["segment"]),
            owner=str(data["owner"]),
            slug=str(data["slug"]),
            port=int(data["port"]),
            base_path=str(data["base_path"]),
            keep_base=bool(data["keep_base"]),
        )


class Upstream(NamedTuple):
    """Where the gateway reaches the Jupyter server for everything it does not serve."""

    host: str = "127.0.0.1"
    port: int = 0
    unix_socket: str = ""
    tls: bool = False


class Gateway:
    def __init__(
        self,
        *,
        prefix: str,
        scheme: str,
        hosts: set[str],
        upstream: Upstream,
        own_origin: bool = False,
    ) -> None:
        self.prefix = prefix
        self.scheme = scheme
        # Whether app pages here keep an origin of their own (``allow-same-origin``): only
        # on a host name of its own (``manager.preview_isolation``).
        self.own_origin = own_origin
        self.hosts = hosts  # the Host headers this origin answers to
        self.upstream = upstream
        self.routes: dict[str, Route] = {}
        self.pool = BackendPool()
        self.active: set[str] = set()  # keys used since activity was last reported
        self.connections: set[_Client] = set()

    def set_routes(self, routes: list[Route]) -> None:
        ports = {route.port for route in routes}
        for old in self.routes.values():
            if old.port not in ports:
                self.pool.forget(old.port)  # that app stopped: its idle connections go
        self.routes = {route.key: route for route in routes}

    def find(
        self, method: str, path: str, *, upgrade: bool, preflight: bool
    ) -> tuple[Route, str] | None:
        """The route of a keyed request this process answers, and the rest of its path;
        ``None`` when Jupyter's handler must decide (``path`` starts after the prefix)."""
        match = keyed_request(method, path, upgrade=upgrade, preflight=preflight)
        if match is None:
            return None
        route = self.routes.get(match["key"])
        if route is None or (route.segment, route.owner, route.slug) != (
            match["segment"],
            match["owner"],
            match["slug"],
        ):
            return None  # an old link, or an app not running: the handler explains
        return route, match["rest"]

    async def serve(self, sock: socket.socket, control: asyncio.StreamReader, out: Any) -> None:
        """Serve on ``sock`` until ``control`` (stdin) ends; activity is written to ``out``."""
        loop = asyncio.get_running_loop()
        # The first table before the first request: keyed links work from the start.
        if not self._read_control(await control.readline()):
            return
        server = await loop.create_server(lambda: _Client(self), sock=sock)
        out.write(b'{"ready": true}\n')
        reporter = loop.create_task(self._report_activity(out))
        try:
            while self._read_control(await control.readline()):
                pass
        finally:
            reporter.cancel()
            server.close()
            for client in list(self.connections):
                client.close()
            self.pool.close()

    def _read_control(self, line: bytes) -> bool:
        if not line:
            return False  # Jupyter is gone
        try:
            message = json.loads(line)
            self.set_routes([Route.from_json(entry) for entry in message["routes"]])
        except (ValueError, KeyError, TypeError) as exc:
            log.error("unreadable route table from Jupyter: %s", exc)
        return True

    async def _report_activity(self, out: Any) -> None:
        while True:
            await asyncio.sleep(ACTIVITY_EVERY_S)
            if self.active:
                active, self.active = sorted(self.active), set()
                out.write(json.dumps({"active": active}).encode() + b"\n")


class _Client(asyncio.Protocol):
    """One browser connection: keyed requests served here, the rest piped to Jupyter."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.remote_ip: str | None = None
        self.closed = False
        # the request being parsed
        self._url = b""
        self._method = ""
        self._target = ""
        self._headers: list[tuple[bytes, bytes]] = []
        self._special: dict[bytes, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._head_size = 0
        self._found: tuple[Route, str] | None = None
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
        self._refusal: tuple[bytes, Pairs] | None = None  # that 404, until earlier answers are out

    # -- asyncio -------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.gateway.connections.add(self)
        sock = self.transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.remote_ip = peer[0] if isinstance(peer, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.gateway.connections.discard(self)
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
        """The gateway's own answer, the last on this connection."""
        status = f"HTTP/1.1 {code} {responses[code]}"
        self.write(encode_head(status, [*headers, ("Connection", "close")]) + body)
        self.close()  # once the answer is written; nothing after it goes out

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._special = {}
        self._body = []
        self._size = 0
        self._head_size = 0
        self._found = None
        self._chunked = False

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise _TooLarge(431)
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise _TooLarge(431)
        self._headers.append((name, value))
        lower = name.lower()
        if lower in _SPECIAL:
            self._special[lower] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        method = self._method = parser.get_method().decode("latin-1")
        url = self._target = self._url.decode("latin-1")
        path = url.partition("?")[0]
        gateway = self.gateway
        special = self._special
        if (
            self._pipe is None
            and path.startswith(gateway.prefix)
            and special.get(b"host", "") in gateway.hosts
        ):
            self._found = gateway.find(
                method,
                path[len(gateway.prefix) :],
                upgrade=b"upgrade" in special,
                preflight=b"access-control-request-method" in special,
            )
            if self._found is not None:
                return
        if not is_app_path(path, gateway.prefix):
            self._not_here()
            return
        # Not ours to answer: this connection goes to Jupyter from here on.
        if self._pipe is None:
            self._pipe = _Pipe(self)
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._headers]
        self._pipe.unanswered.append(method)
        self._pipe.write(encode_head(f"{method} {url} HTTP/{parser.get_http_version()}", headers))
        self._chunked = "chunked" in special.get(b"transfer-encoding", "").lower()

    def _not_here(self) -> None:
        self.parser = None
        self._refused = True
        self._refusal = not_here_answer()
        self._refuse_when_answered()

    def _refuse_when_answered(self) -> None:
        """The 404 for a path this origin does not serve, once the answers to the requests
        before it (pipelined) are out; nothing is read after it."""
        if self._refusal is None or self._busy or self._queue:
            return
        if self._pipe is not None and self._pipe.unanswered:
            return  # Jupyter is still answering
        body, headers = self._refusal
        self._refusal = None
        self._answer_and_close(404, headers, body)

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._found is None:
            assert self._pipe is not None
            if self._chunked:
                body = b"%x\r\n%b\r\n" % (len(body), body)
            self._pipe.write(body)
            return
        self._size += len(body)
        if self._size > MAX_BODY:
            raise _TooLarge(413)
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        parser = self.parser
        assert parser is not None
        found = self._found
        if found is None:
            if self._chunked:
                assert self._pipe is not None
                self._pipe.write(b"0\r\n\r\n")
            return
        request = _Request(
            method=self._method,
            query=self._target.partition("?")[2],
            headers=self._headers,
            host=self._special.get(b"host", ""),
            origin=self._special.get(b"origin", ""),
            body=self._body,
            route=found[0],
            rest=found[1],
            keep_alive=parser.should_keep_alive(),
            http11=parser.get_http_version() == "1.1",
        )
        if not self._busy and not self._queue:
            self._busy = True  # nothing waits: straight to the app
            self._answer(request)
            return
        self._queue.append(request)
        if len(self._queue) > MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()
        self._next()

    # -- answering, in order -----------------------------------------------------------------
    def _next(self) -> None:
        if self._busy:
            return
        if not self._queue:
            if self._pipe is not None:
                self._pipe.release()  # Jupyter's answers may go out now
            self._refuse_when_answered()
            return
        request = self._queue.popleft()
        self._busy = True
        if len(self._queue) == MAX_QUEUED and self.transport is not None:
            self.transport.resume_reading()
        self._answer(request)

    def _answered(self) -> None:
        self._busy = False
        self._leave = None
        if not self.closed:
            self._next()

    def _answer(self, request: _Request) -> None:
        try:
            self._send(request)
        except Exception:
            log.exception("unexpected error in the app gateway")
            self.close()

    def _send(self, request: _Request) -> None:
        gateway = self.gateway
        route = request.route
        method = request.method
        headers = request_header_pairs(
            [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers],
            public_prefix=route.base_path,
            host=request.host,
            proto=gateway.scheme,
            remote_ip=self.remote_ip,
        )
        chunks = request.body
        body = b"".join(chunks) if chunks else (b"" if method in BODY_METHODS else None)
        target = app_target(route.base_path, route.keep_base, request.rest, request.query)
        head = encode_request(method, target, headers, body)
        relay_now(
            gateway.pool, route.port, method, head, body, _Answer(self, request), self._answered
        )
        gateway.active.add(route.key)

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


class _Request(NamedTuple):
    method: str
    query: str
    headers: list[tuple[bytes, bytes]]
    host: str
    origin: str
    body: list[bytes]
    route: Route
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
            public_prefix=self.request.route.base_path,
            host=self.request.host,
            head=self.head_request,
            same_origin=self.client.gateway.own_origin,
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
        # The app by name: its URL carries the key, which stays out of logs.
        route = self.request.route
        log.warning(
            "%s @%s/%s -> %s (%s)", self.request.method, route.owner, route.slug, code, message
        )
        if self.written:
            self.client.close()
            return
        body = error_page(message).encode()
        headers = error_headers(
            body,
            same_origin=self.client.gateway.own_origin,
            sandboxed_fetch=self._sandboxed_fetch(),
        )
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
        # Jupyter's answers are read along (not changed) to know when each one ends: the
        # methods of the requests still waiting for theirs (an answer to HEAD has no body).
        self.unanswered: deque[str] = deque()
        self.parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._interim = False
        self._head_answered = False
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
        parser = self.parser
        if parser is None:
            return  # a WebSocket (or another protocol after an upgrade)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.parser = None
        except httptools.HttpParserError:
            self.parser = None  # no longer known where answers end: no 404 can follow them
            if self.client._refusal is not None:
                self.client.close()
            return
        if self._head_answered:
            # The answer to HEAD ended with its headers; llhttp would wait for a body.
            self._head_answered = False
            self.parser = httptools.HttpResponseParser(self)

    # -- httptools callbacks (counting Jupyter's answers) ----------------------------------
    def on_headers_complete(self) -> None:
        assert self.parser is not None
        code = self.parser.get_status_code()
        if 100 <= code < 200 and code != 101:
            self._interim = True  # 100 Continue: the answer follows
        elif self.unanswered and self.unanswered[0] == "HEAD":
            self._head_answered = True
            self._answered()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif not self._head_answered:
            self._answered()

    def _answered(self) -> None:
        if self.unanswered:
            self.unanswered.popleft()
        self.client._refuse_when_answered()

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


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)
    # One line holds the whole route table: room for thousands of apps.
    control = asyncio.StreamReader(limit=MAX_TABLE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), sys.stdin)
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, sys.stdout)
    gateway = Gateway(
        prefix=args.prefix,
        scheme=args.scheme,
        hosts=set(args.host),
        upstream=Upstream(
            host=args.upstream_host,
            port=args.upstream_port,
            unix_socket=args.upstream_unix,
            tls=args.upstream_tls,
        ),
        own_origin=args.own_origin,
    )
    try:
        await gateway.serve(sock, control, out)
    finally:
        out.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--fd", type=int, required=True, help="the listening socket")
    parser.add_argument("--prefix", required=True, help="{base_url}ecode/")
    parser.add_argument("--scheme", default="http")
    parser.add_argument("--host", action="append", default=[], help="an accepted Host header")
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, default=0)
    parser.add_argument("--upstream-unix", default="")
    parser.add_argument("--upstream-tls", action="store_true")
    parser.add_argument(
        "--own-origin", action="store_true", help="app pages keep their origin (a host of its own)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="[ecode gateway %(levelname)s] %(message)s"
    )
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_until_complete(_run(args))
    loop.close()


if __name__ == "__main__":
    main()
