"""An app's answer on its way to a browser, the same for every door it comes in by.

``forward`` / ``relay_now`` send a request to an app through ``BackendPool`` and hand the
answer to an ``AnswerSink``: the fast lane on Jupyter's connection (``handlers/app_router.py``),
``AppProxyHandler`` (``handlers/deploy.py``), or a connection of the app gateway process
(``deploy/gateway_server.py``). Small answers go out in one piece, large ones and event streams
are streamed with back-pressure.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from tornado.iostream import StreamClosedError

from .backend import AppAnswer, BackendPool
from .proxy import Pairs

log = logging.getLogger(__name__)

# A response held in memory up to this size is sent in one piece; beyond, it streams.
BUFFER_BYTES = 256 * 1024


class AnswerSink(Protocol):
    """Where an app's answer goes: the fast lane's exchange, or ``AppProxyHandler``."""

    @property
    def head_request(self) -> bool: ...

    def outgoing(self, app_headers: Pairs) -> Pairs:
        """The app's answer headers as this browser gets them (``response_header_pairs``)."""

    def write_head(
        self, code: int, reason: str, headers: Pairs, body: bytes | None, stream: bool
    ) -> None: ...

    def write(self, chunk: bytes) -> Awaitable[None] | None: ...

    def end(self) -> None: ...

    def abort(self) -> None:
        """Part of the body is out: close rather than let a cut body look complete."""

    def fail(self, code: int, message: str) -> None:
        """Nothing is out yet: answer with the proxy's own error page."""

    def leaving(self, abandon: Callable[[], None]) -> None:
        """Call ``abandon()`` if the browser goes away before the answer is over."""


async def forward(
    pool: BackendPool, port: int, method: str, head: bytes, body: bytes | None, sink: AnswerSink
) -> None:
    """Send a request (encoded by ``encode_request``) to the app on ``port`` and relay its
    answer to ``sink``."""
    relay = ResponseRelay(sink)
    try:
        await pool.request(port, method, head, body, relay)
    except (StreamClosedError, OSError) as exc:
        _settle(relay, sink, port, exc)
        return
    _settle(relay, sink, port, None)


def relay_now(
    pool: BackendPool,
    port: int,
    method: str,
    head: bytes,
    body: bytes | None,
    sink: AnswerSink,
    then: Callable[[], None],
) -> None:
    """``forward`` without a coroutine, for a sink whose ``fail`` does not raise: the
    request (encoded by ``encode_request``) goes out at once on a pooled connection, and
    ``then()`` runs when the answer is over."""
    relay = ResponseRelay(sink)

    def done(error: BaseException | None) -> None:
        try:
            _settle(relay, sink, port, error)
        finally:
            then()

    pool.begin(port, method, head, body, relay, done)


def _settle(relay: ResponseRelay, sink: AnswerSink, port: int, error: BaseException | None) -> None:
    if error is not None:
        if relay.streaming:
            log.info("an app on port %s dropped an answer mid-way: %s", port, type(error).__name__)
            sink.abort()
        else:
            sink.fail(502, "the app did not answer")
        return
    if relay.broken:
        if relay.streaming:
            sink.abort()
        else:
            sink.fail(502, "the app closed the connection mid-answer")
        return
    # A whole answer went out at its end (``answer_end``), before the pool's bookkeeping.


class ResponseRelay(AppAnswer):
    """The app's answer: in one piece when small, streamed when large or an event stream
    (with back-pressure: a slow browser slows the read from the app). When the browser
    leaves, the connection to the app is dropped (an event stream never ends by itself)."""

    def __init__(self, sink: AnswerSink) -> None:
        self.sink = sink
        sink.leaving(self.abandon)
        self.code = 0
        self.reason = ""
        self.headers: Pairs = []
        self.buffer: list[bytes] = []
        self.size = 0
        self.streaming = False
        self.broken = False

    def answer_head(self, code: int, reason: str, headers: Pairs, content_type: str) -> None:
        self.code = code
        self.reason = reason
        self.headers = headers
        if "text/event-stream" in content_type:
            self._stream()

    def _stream(self) -> None:
        self.streaming = True
        body = b"".join(self.buffer) if self.buffer else None
        self.buffer = []
        self.sink.write_head(self.code, self.reason, self.sink.outgoing(self.headers), body, True)

    def answer_data(self, chunk: bytes) -> Awaitable[None] | None:
        if not self.streaming:
            self.buffer.append(chunk)
            self.size += len(chunk)
            if self.size > BUFFER_BYTES:
                self._stream()
            return None
        return self.sink.write(chunk)

    def answer_lost(self) -> None:
        self.broken = True

    def answer_end(self) -> None:
        # The answer is whole: out to the browser now, before the pool's bookkeeping.
        if not self.streaming:
            headers = self.sink.outgoing(self.headers)
            code = self.code
            body = b"".join(self.buffer)
            if not self.sink.head_request and code not in (204, 304):
                headers.append(("Content-Length", str(len(body))))
            self.sink.write_head(code, self.reason, headers, body or None, False)
        self.sink.end()
