"""Keep-alive HTTP/1.1 connections from the proxy to local apps.

tornado's HTTP client opens a connection per request; for a proxy in front of a dev server
that is the main cost (a TCP handshake, and a new thread per connection in Werkzeug). This
pool keeps idle connections per port and speaks HTTP/1.1 over them with tornado's own
``HTTP1Connection`` (one per exchange, on a reused stream). A pooled connection the app has
closed meanwhile is noticed when its request fails before any answer arrives, and the request
is sent once more on a fresh connection.
"""

from __future__ import annotations

import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable

from tornado import httputil
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters
from tornado.iostream import IOStream, StreamClosedError

log = logging.getLogger(__name__)

_MAX_BODY = 1 << 40
# No header or body timeout: each would cost a timer per request, and a slow app (a long
# poll, a stream) is the browser's to give up on.
_PARAMS = HTTP1ConnectionParameters(no_keep_alive=False, max_body_size=_MAX_BODY, decompress=False)


class _Watch(httputil.HTTPMessageDelegate):
    """Passes everything on, noting whether an answer started (then a retry is unsafe)."""

    def __init__(self, delegate: httputil.HTTPMessageDelegate) -> None:
        self.delegate = delegate
        self.started = False
        self.reusable = True

    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        self.started = True
        assert isinstance(start_line, httputil.ResponseStartLine)
        # An app that says it will close, or speaks HTTP/1.0, does not get the stream back.
        if start_line.version != "HTTP/1.1" or "close" in headers.get("Connection", "").lower():
            self.reusable = False
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()


class BackendPool:
    def __init__(self, max_idle_per_port: int = 32, max_ports: int = 256) -> None:
        self._idle: OrderedDict[int, list[IOStream]] = OrderedDict()
        self._max_idle = max_idle_per_port
        self._max_ports = max_ports

    async def _connect(self, port: int) -> tuple[IOStream, bool]:
        idle = self._idle.get(port)
        while idle:
            stream = idle.pop()
            if not stream.closed():
                return stream, True
        # A plain socket: TCPClient would resolve "127.0.0.1" in a worker thread first.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        stream = IOStream(sock)
        try:
            await stream.connect(("127.0.0.1", port))
        except BaseException:
            stream.close()
            raise
        return stream, False

    def _release(self, port: int, stream: IOStream) -> None:
        idle = self._idle.setdefault(port, [])
        self._idle.move_to_end(port)
        if len(idle) >= self._max_idle:
            stream.close()
        else:
            idle.append(stream)
        while len(self._idle) > self._max_ports:
            _port, streams = self._idle.popitem(last=False)
            for old in streams:
                old.close()

    def forget(self, port: int) -> None:
        """Close the idle connections to a port (its app stopped)."""
        for stream in self._idle.pop(port, []):
            stream.close()

    def close(self) -> None:
        for port in list(self._idle):
            self.forget(port)

    async def request(
        self,
        port: int,
        method: str,
        target: str,
        headers: httputil.HTTPHeaders,
        body: bytes | None,
        delegate: httputil.HTTPMessageDelegate,
    ) -> None:
        """Send one request and feed the answer to ``delegate``.

        Raises ``StreamClosedError`` or ``OSError`` when the app cannot be reached or drops
        the connection before answering; once the answer has started, a dropped connection
        reaches the delegate as ``on_connection_close``.
        """
        if body is not None:
            headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            stream, reused = await self._connect(port)
            stream.set_nodelay(True)
            watch = _Watch(delegate)
            connection = HTTP1Connection(stream, True, _PARAMS)
            try:
                await connection.write_headers(
                    httputil.RequestStartLine(method, target, "HTTP/1.1"), headers
                )
                if body:
                    await connection.write(body)
                connection.finish()
                keep = await connection.read_response(watch)
            except StreamClosedError:
                stream.close()
                if reused and not watch.started and attempt == 1:
                    continue  # the app had closed this idle connection: use a new one
                raise
            if not watch.started:
                stream.close()
                if reused and attempt == 1:
                    continue
                msg = "the app closed the connection without answering"
                raise StreamClosedError(real_error=ConnectionResetError(msg))
            if keep and watch.reusable and not stream.closed():
                self._release(port, stream)
            else:
                stream.close()
            return
