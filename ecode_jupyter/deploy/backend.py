"""Keep-alive HTTP/1.1 connections from the proxy to local apps.

Each connection is an asyncio protocol whose answers are parsed by ``httptools`` (llhttp,
uvicorn's parser): no coroutine, future or Python-level header parsing per read, which is
most of what a proxied request costs. Idle connections are kept per port. An app that closes
every connection (the Flask/Werkzeug dev server does) gets one connection opened ahead of
need, so the next request does not wait for a TCP handshake and the app's accept.

A pooled connection the app has closed meanwhile is noticed when its request fails before any
answer arrives, and the request is sent once more on a fresh connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import NamedTuple, cast

import httptools
from tornado.iostream import StreamClosedError

log = logging.getLogger(__name__)


def _closed(exc: BaseException | None = None) -> StreamClosedError:
    reason = exc or ConnectionResetError("the app closed the connection without answering")
    return StreamClosedError(real_error=reason)


Done = Callable[[BaseException | None, bool], None]


class _Exchange:
    """One request on a connection, the delegate its answer goes to, and who to tell when
    it is over: ``done(None, reusable)``, or ``done(error, False)`` when the connection
    ended before any answer (nothing reached the delegate)."""

    __slots__ = ("delegate", "done", "eof_body", "head_only", "interim", "over", "started")

    def __init__(self, delegate: AppAnswer, head_only: bool, done: Done) -> None:
        self.delegate = delegate
        self.done = done
        self.head_only = head_only
        self.started = False
        self.interim = False
        self.eof_body = False
        self.over = False

    def complete(self, reusable: bool) -> None:
        if not self.over:
            self.over = True
            self.done(None, reusable)

    def lost(self, exc: BaseException | None) -> None:
        """The connection ended before the answer did."""
        if self.over:
            return
        self.over = True
        if not self.started:
            self.done(_closed(exc), False)
            return
        if self.eof_body:
            self.delegate.answer_end()  # a body that runs until the app closes: its end
        else:
            self.delegate.answer_lost()
        self.done(None, False)


class _AppConnection(asyncio.Protocol):
    """One HTTP/1.1 connection to an app; one exchange at a time."""

    def __init__(self, pool: BackendPool, port: int) -> None:
        self.pool = pool
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.exchange: _Exchange | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._new_parser = False
        self.http11 = True  # the version of the last answer
        self._reason = ""
        self._headers: list[tuple[bytes, bytes]] = []
        self._framed = False  # a Content-Length or Transfer-Encoding was seen
        self._content_type = ""

    # -- asyncio ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            # Requests and answers are small and each waits on the other: no Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget_connection(self)
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.lost(exc)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.info("app on port %s sent a malformed answer: %s", self.port, exc)
            self.exchange = None
            self.close()
            exchange.lost(exc)
            return
        if self._new_parser:
            # The answer to HEAD ended with its headers; llhttp would wait for a body.
            self._new_parser = False
            self._parser = httptools.HttpResponseParser(self)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- httptools callbacks ------------------------------------------------------------------
    def on_status(self, status: bytes) -> None:
        self._reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lower = name.lower()
        if lower in _FRAMING:
            self._framed = True
        elif lower == b"content-type":
            self._content_type = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        code = self._parser.get_status_code()
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._headers]
        self._headers = []
        framed, self._framed = self._framed, False
        content_type, self._content_type = self._content_type, ""
        if 100 <= code < 200:
            exchange.interim = True  # 100 Continue and friends: the real answer follows
            return
        self.http11 = self._parser.get_http_version() == "1.1"
        exchange.started = True
        exchange.eof_body = not (exchange.head_only or framed or code in (204, 304))
        exchange.delegate.answer_head(code, self._reason, headers, content_type)
        if exchange.head_only:
            self._new_parser = True
            exchange.delegate.answer_end()  # the answer to HEAD ends with its headers
            self._finish(exchange, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        pending = exchange.delegate.answer_data(body)
        if pending is None:
            return
        if isinstance(pending, asyncio.Future) and pending.done():
            self._resume(pending)  # written already, or the browser is gone
            return
        # A slow browser: stop reading from the app until the browser caught up.
        transport = self.transport
        assert transport is not None
        transport.pause_reading()
        asyncio.ensure_future(pending).add_done_callback(self._resume)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is None:
            return
        if exchange.interim:
            exchange.interim = False
            return
        exchange.delegate.answer_end()
        self._finish(exchange, self._parser.should_keep_alive())

    # -- helpers ----------------------------------------------------------------------------
    def _resume(self, written: asyncio.Future[None]) -> None:
        if written.cancelled() or written.exception() is not None:
            self.close()  # the browser is gone: stop reading what nobody will get
        elif not self.closed and self.transport is not None:
            self.transport.resume_reading()

    def _finish(self, exchange: _Exchange, keep_alive: bool) -> None:
        self.exchange = None
        exchange.complete(keep_alive and not exchange.eof_body)

    def send(
        self,
        head: bytes,
        body: bytes | None,
        delegate: AppAnswer,
        head_only: bool,
        done: Done,
    ) -> None:
        """Write one request; ``done`` hears how it ended."""
        transport = self.transport
        assert transport is not None
        if not delegate.abandoned:
            # Out first: the answer cannot arrive before this returns to the event loop.
            transport.write(head + body if body else head)
        self.exchange = _Exchange(delegate, head_only, done)
        if delegate.abandoned:
            self.close()
            return
        delegate.drop = self.close


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class AppAnswer:
    """Where the pool delivers an app's answer: its head (status, reason, headers as
    (name, value) pairs in the order sent, and the Content-Type), its body in pieces, then
    ``answer_end`` (for every whole answer, HEAD's included), or ``answer_lost`` if the
    connection ended mid-answer. ``abandon()`` (the
    browser left) drops the connection to the app, so an endless stream does not hold it."""

    drop: Callable[[], None] | None = None
    abandoned = False

    def answer_head(
        self, code: int, reason: str, headers: list[tuple[str, str]], content_type: str
    ) -> None:
        raise NotImplementedError

    def answer_data(self, chunk: bytes) -> Awaitable[None] | None:
        raise NotImplementedError

    def answer_end(self) -> None:
        raise NotImplementedError

    def answer_lost(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        self.abandoned = True
        if self.drop is not None:
            self.drop()


class BackendPool:
    def __init__(self, max_idle_per_port: int = 32, max_ports: int = 256) -> None:
        self._idle: OrderedDict[int, list[_AppConnection]] = OrderedDict()
        self._max_idle = max_idle_per_port
        self._max_ports = max_ports
        # Ports whose app closes every connection, and the connection being opened ahead.
        self._closing: set[int] = set()
        self._warming: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def _open(self, port: int) -> _AppConnection:
        loop = asyncio.get_running_loop()
        _transport, connection = await loop.create_connection(
            lambda: _AppConnection(self, port), "127.0.0.1", port
        )
        return connection

    def _take(self, port: int) -> _AppConnection | None:
        idle = self._idle.get(port)
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _open_or_warmed(self, port: int) -> _AppConnection:
        warming = self._warming.get(port)
        if warming is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(warming)
            connection = self._take(port)
            if connection is not None:
                return connection
        return await self._open(port)

    def _release(self, port: int, connection: _AppConnection) -> None:
        idle = self._idle.setdefault(port, [])
        self._idle.move_to_end(port)
        if len(idle) >= self._max_idle:
            connection.close()
        else:
            idle.append(connection)
        while len(self._idle) > self._max_ports:
            old_port, connections = self._idle.popitem(last=False)
            self._closing.discard(old_port)
            for old in connections:
                old.close()

    def _forget_connection(self, connection: _AppConnection) -> None:
        idle = self._idle.get(connection.port)
        if idle and connection in idle:
            idle.remove(connection)

    def _warm(self, port: int) -> None:
        """Open the next connection to an app that closes each one, before it is needed."""
        if port in self._warming or self._idle.get(port):
            return

        async def warm() -> None:
            try:
                connection = await self._open(port)
            except OSError:
                return  # the app stopped; the next request will say so
            finally:
                self._warming.pop(port, None)
            if port in self._closing:
                self._release(port, connection)
            else:
                connection.close()

        self._warming[port] = asyncio.ensure_future(warm())

    def forget(self, port: int) -> None:
        """Close the idle connections to a port (its app stopped)."""
        self._closing.discard(port)
        warming = self._warming.pop(port, None)
        if warming is not None:
            warming.cancel()
        for connection in self._idle.pop(port, []):
            connection.close()

    def close(self) -> None:
        for port in list(self._idle) + list(self._warming):
            self.forget(port)

    def begin(
        self,
        port: int,
        method: str,
        head: bytes,
        body: bytes | None,
        delegate: AppAnswer,
        done: Callable[[BaseException | None], None],
    ) -> None:
        """Send one encoded request (see ``encode_request``) and feed the answer to
        ``delegate``; then ``done(None)``, or ``done(error)`` when the app could not be
        reached or dropped the connection before answering. Once the answer has started, a
        dropped connection reaches the delegate as ``answer_lost``.

        On a pooled connection this sends at once, with no task or future in between."""
        request = _Outgoing(port, method, head, body, delegate, done)
        connection = self._take(port)
        if connection is not None:
            self._send(connection, True, request)
        else:
            self._send_on_new(request, warmed=True)

    def _send_on_new(self, request: _Outgoing, *, warmed: bool) -> None:
        """Send on a connection not used before (one being opened ahead, when ``warmed``)."""
        port = request.port

        async def connect() -> None:
            try:
                fresh = await (self._open_or_warmed(port) if warmed else self._open(port))
            except OSError as exc:
                request.done(exc)
                return
            self._send(fresh, False, request)

        task = asyncio.get_running_loop().create_task(connect())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, connection: _AppConnection, reused: bool, request: _Outgoing) -> None:
        port = request.port

        def finished(error: BaseException | None, reusable: bool) -> None:
            if error is not None:
                connection.close()
                if reused and request.method in IDEMPOTENT and not request.delegate.abandoned:
                    # The app had closed this idle connection: once more on a new one. Only
                    # a request that may be repeated: the app may have acted on a POST
                    # before it dropped the connection (RFC 9110 9.2.2).
                    self._send_on_new(request, warmed=False)
                else:
                    request.done(error)
                return
            if reusable and not connection.closed:
                self._closing.discard(port)
                self._release(port, connection)
            else:
                connection.close()
                if connection.http11:
                    # An HTTP/1.1 app that closes each connection (Werkzeug, threaded): open
                    # the next ahead. Never for HTTP/1.0 answers: a single-threaded server
                    # would sit on the spare and keep everyone else waiting.
                    self._closing.add(port)
                    self._warm(port)
                else:
                    self._closing.discard(port)
            request.done(None)

        connection.send(
            request.head, request.body, request.delegate, request.method == "HEAD", finished
        )

    async def request(
        self,
        port: int,
        method: str,
        head: bytes,
        body: bytes | None,
        delegate: AppAnswer,
    ) -> None:
        """``begin`` as a coroutine: raises ``StreamClosedError`` or ``OSError`` when the app
        cannot be reached or drops the connection before answering."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        self.begin(port, method, head, body, delegate, done)
        await future


class _Outgoing(NamedTuple):
    """One request on its way to an app, as ``BackendPool.begin`` was given it."""

    port: int
    method: str
    head: bytes
    body: bytes | None
    delegate: AppAnswer
    done: Callable[[BaseException | None], None]


def encode_head(first_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """An HTTP/1.x message head: the request or status line, the headers, the blank line."""
    # map/join run the loop in C: no Python frame per header (it is on every request's path).
    return "\r\n".join([first_line, *map(": ".join, headers), "", ""]).encode("latin-1")


def encode_request(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes | None
) -> bytes:
    """An HTTP/1.1 request head; with a body, its ``Content-Length`` (any other dropped)."""
    if body is not None:
        headers = [pair for pair in headers if pair[0] != "Content-Length"]
        headers.append(("Content-Length", str(len(body))))
    return encode_head(f"{method} {target} HTTP/1.1", headers)
