"""The HTTP side shared by the loopback model servers.

A stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (random port) in a background thread: usable
from sync fixtures and async tests alike, since the client's event loop never runs the
server. HTTP/1.1 with keep-alive and chunked SSE bodies, so a cut stream can drop the
connection mid-body exactly like a network failure, and ``TCP_NODELAY`` so small SSE events
are not held back by Nagle's algorithm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from .scripts import (
    Api,
    CutStream,
    Fault,
    HTTPFault,
    LoopbackRequest,
    MalformedEvent,
    Responder,
    ScriptedTurn,
    StreamError,
)

log = logging.getLogger(__name__)


class ScriptExhausted(Exception):
    """A request arrived after the last scripted turn was served."""


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-stream (cancellation, a cut) is routine here.
        log.debug("loopback: connection from %s ended with an error", client_address, exc_info=True)


class _TurnState:
    def __init__(self, position: int, turn: ScriptedTurn) -> None:
        self.position = position
        self.turn = turn
        self.attempts = 0


class LoopbackServer(ABC):
    """Base of :class:`AnthropicLoopback` and :class:`OpenAILoopback`.

    ``script`` is a list of turns served in order, or a responder called once per turn.
    ``api_key``, when given, must be presented by the client (else 401). Use as a context
    manager or call :meth:`start` / :meth:`stop`; :attr:`requests` records what arrived.
    """

    api: ClassVar[Api]
    #: request paths of the model endpoint
    paths: ClassVar[tuple[str, ...]]
    #: what the SDK's base URL needs after host:port
    base_path: ClassVar[str] = ""

    #: the request keys that are the model's input (what its tokenizer counts)
    input_keys: ClassVar[tuple[str, ...]] = ("messages", "tools")
    #: paths of side endpoints answered by :meth:`side_post` (e.g. token counting)
    side_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        script: Sequence[ScriptedTurn] | Responder = (),
        *,
        api_key: str | None = None,
        bytes_per_token: int = 4,
    ) -> None:
        # The "tokenizer": this many bytes of the input's JSON per token (2 is as dense as
        # code or CJK text gets with real tokenizers; characters / 4 underestimates it).
        self.bytes_per_token = bytes_per_token
        #: requests answered by a side endpoint, by path
        self.side_requests: dict[str, int] = {}
        self._turns: list[ScriptedTurn] | None = None if callable(script) else list(script)
        self._responder: Responder | None = script if callable(script) else None
        self.api_key = api_key
        self._lock = threading.Lock()
        self._requests: list[LoopbackRequest] = []
        self._position = 0
        self._received = 0
        self._current: _TurnState | None = None
        self._served = 0
        self._abandoned = 0
        #: exceptions a responder raised (each answered with a 400 naming it)
        self.responder_errors: list[BaseException] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> str:
        """Start serving; returns the base URL to give the SDK."""
        if self._httpd is None:
            httpd = _QuietHTTPServer(("127.0.0.1", 0), _make_handler(self))
            self._httpd = httpd
            self._port = int(httpd.server_address[1])
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}-{httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
            log.debug("%s listening on %s", type(self).__name__, self.base_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving and drop open connections (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            # Idle keep-alive handlers block on recv; shutting the socket wakes them.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port it listens on (still known after :meth:`stop`)."""
        if self._port is None:
            msg = "the loopback server was never started"
            raise RuntimeError(msg)
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` without the API's path prefix."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL to pass as the SDK's ``base_url`` (or ``*_BASE_URL``)."""
        return self.url + self.base_path

    # -- script --------------------------------------------------------------------------

    @property
    def requests(self) -> list[LoopbackRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def turns_served(self) -> int:
        """How many turns were answered without a fault."""
        with self._lock:
            return self._served

    @property
    def streams_abandoned(self) -> int:
        """Streams the client closed before their end (e.g. a cancelled run)."""
        with self._lock:
            return self._abandoned

    @property
    def turns_left(self) -> int | None:
        """Scripted turns not yet served (``None`` with a responder)."""
        with self._lock:
            if self._turns is None:
                return None
            return len(self._turns) - self._position + (1 if self._current else 0)

    def add_turns(self, *turns: ScriptedTurn) -> None:
        """Append turns to a list script."""
        with self._lock:
            if self._turns is None:
                msg = "this server uses a responder, not a list of turns"
                raise TypeError(msg)
            self._turns.extend(turns)

    def _next(self, request: LoopbackRequest) -> tuple[LoopbackRequest, ScriptedTurn, Fault | None]:
        """Pick the turn (and fault) for a request and record the request."""
        with self._lock:
            state = self._current
            if state is None:
                if self._responder is not None:
                    try:
                        turn = self._responder(request)
                    except Exception:
                        self._requests.append(request)
                        raise
                elif self._turns is not None and self._position < len(self._turns):
                    turn = self._turns[self._position]
                else:
                    self._requests.append(request)
                    msg = f"no scripted turn left for request {request.index}"
                    raise ScriptExhausted(msg)
                state = _TurnState(self._position, turn)
                self._position += 1
            fault = (
                state.turn.faults[state.attempts]
                if state.attempts < len(state.turn.faults)
                else None
            )
            recorded = LoopbackRequest(
                api=request.api,
                index=request.index,
                method=request.method,
                path=request.path,
                headers=request.headers,
                body=request.body,
                body_size=request.body_size,
                turn=state.position,
                attempt=state.attempts,
                input_tokens=self.count_input(request.json),
            )
            self._requests.append(recorded)
            state.attempts += 1
            self._current = state if fault is not None else None
            if fault is None:
                self._served += 1
            return recorded, state.turn, fault

    def count_input(self, body: dict[str, Any]) -> int:
        """The input tokens of a request body, as this server's tokenizer counts them."""
        part = {key: body[key] for key in self.input_keys if key in body}
        raw = json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode()
        return max(1, len(raw) // self.bytes_per_token)

    def side_post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """JSON for a POST to a side endpoint in :attr:`side_paths`."""
        return None

    def _new_index(self) -> int:
        with self._lock:
            self._received += 1
            return self._received - 1

    # -- rendering, per API ----------------------------------------------------------------

    @abstractmethod
    def error_body(self, status: int, error_type: str | None, message: str) -> dict[str, Any]:
        """The API's JSON error body for ``status``."""

    @abstractmethod
    def stream_events(self, turn: ScriptedTurn, request: LoopbackRequest) -> Iterator[bytes]:
        """The turn as the API's SSE events, each ready to write."""

    @abstractmethod
    def stream_error_event(self, fault: StreamError) -> bytes:
        """The API's error event inside a started stream."""

    def malformed_event(self, fault: MalformedEvent) -> bytes:
        return sse(fault.data)

    @abstractmethod
    def complete_body(self, turn: ScriptedTurn, request: LoopbackRequest) -> dict[str, Any]:
        """The turn as the API's non-streaming JSON response."""

    @abstractmethod
    def presented_key(self, headers: dict[str, str]) -> str | None:
        """The API key from the request's auth header, if any."""

    def extra_routes(self, method: str, path: str) -> dict[str, Any] | None:
        """JSON for a side endpoint (e.g. a model list), or ``None``."""
        return None


def sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ecode-loopback"
        # An idle keep-alive connection gives its thread back after this many seconds.
        timeout = 30

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("loopback: " + format, *args)  # noqa: G003 - stdlib hands us a format

        def do_GET(self) -> None:
            body = server.extra_routes("GET", self.path.split("?")[0])
            if body is None:
                self._send_json(404, server.error_body(404, None, f"no route {self.path}"))
            else:
                self._send_json(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = self.path.split("?")[0]
            try:
                body: Any = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                body = None
            request = LoopbackRequest(
                api=server.api,
                index=server._new_index(),
                method="POST",
                path=path,
                headers=LoopbackRequest.redact(list(self.headers.items())),
                body=body,
                body_size=len(raw),
            )
            if path not in server.paths and path not in server.side_paths:
                self._send_json(404, server.error_body(404, None, f"no route {path}"))
                return
            if (
                server.api_key is not None
                and server.presented_key({k.lower(): v for k, v in self.headers.items()})
                != server.api_key
            ):
                with server._lock:
                    server._requests.append(request)
                self._send_json(401, server.error_body(401, None, "invalid x-api-key"))
                return
            if not isinstance(body, dict):
                with server._lock:
                    server._requests.append(request)
                self._send_json(400, server.error_body(400, None, "body is not a JSON object"))
                return
            if path in server.side_paths:
                with server._lock:
                    server.side_requests[path] = server.side_requests.get(path, 0) + 1
                self._send_json(200, server.side_post(path, body) or {})
                return
            try:
                recorded, turn, fault = server._next(request)
            except ScriptExhausted as exc:
                self._send_json(400, server.error_body(400, None, f"loopback: {exc}"))
                return
            except Exception as exc:
                # A broken responder is the test's bug: answer with a status the SDK does
                # not retry, name the error, and keep it for the test to re-raise.
                log.exception("loopback responder failed on request %s", request.index)
                server.responder_errors.append(exc)
                message = f"loopback responder raised {exc!r}"
                self._send_json(400, server.error_body(400, None, message))
                return
            if isinstance(fault, HTTPFault):
                self._send_fault(fault)
            elif recorded.stream:
                self._send_stream(turn, recorded, fault)
            else:
                self._send_json(200, server.complete_body(turn, recorded))

        def _send_json(
            self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_loopback")
            self.send_header("x-request-id", "req_loopback")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_fault(self, fault: HTTPFault) -> None:
            headers: dict[str, str] = {}
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fault.retry_after_ms)
            if fault.should_retry is not None:
                headers["x-should-retry"] = "true" if fault.should_retry else "false"
            message = fault.message or f"loopback fault {fault.status}"
            body = server.error_body(fault.status, fault.error_type, message)
            self._send_json(fault.status, body, headers)

        def _send_stream(
            self,
            turn: ScriptedTurn,
            request: LoopbackRequest,
            fault: CutStream | StreamError | MalformedEvent | None,
        ) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_loopback_{request.index}")
            self.send_header("x-request-id", f"req_loopback_{request.index}")
            self.end_headers()
            limit = None if fault is None else fault.after_events
            sent = 0
            try:
                for event in server.stream_events(turn, request):
                    if limit is not None and sent >= limit:
                        break
                    if turn.event_delay and sent:
                        time.sleep(turn.event_delay)
                    self._chunk(event)
                    sent += 1
            except OSError:
                # The client closed the stream early (a cancelled turn).
                self.close_connection = True
                with server._lock:
                    server._abandoned += 1
                log.debug("loopback: client left stream %s after %d events", request.index, sent)
                return
            if isinstance(fault, StreamError):
                self._chunk(server.stream_error_event(fault))
            elif isinstance(fault, MalformedEvent):
                self._chunk(server.malformed_event(fault))
            elif isinstance(fault, CutStream) and not fault.clean:
                # Drop the connection without the terminating chunk: the client sees an
                # incomplete body, like a network failure.
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    return Handler
