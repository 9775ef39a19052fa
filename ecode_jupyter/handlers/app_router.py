"""The fast lane of the app proxy: keyed HTTP requests to a running app.

Almost every request a previewed app gets is a keyed one (``…/@owner/slug/~key/…``): the page
was sent there by a redirect, and its scripts, styles and API calls follow. For those the key
in the path is the whole authorization, so they need none of Jupyter's request-handler
machinery (login lookup, XSRF, default headers, the request log, ~30 route patterns). This
router sits first in the tornado application's rules and answers them with a small message
delegate on tornado's own HTTP/1.1 connection; the app is reached through ``BackendPool``.

Everything else falls through to ``AppProxyHandler`` (``handlers/deploy.py``) — unkeyed URLs
(sign-in and visibility), expired keys, WebSockets, CORS preflights, a stopped app, a Host
header Jupyter has not accepted before, navigations that belong on the preview origin — so
there is one place where those decisions are made. The answer is the same either way: the
same request rewriting and answer headers (``deploy/proxy.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from http.client import responses
from typing import Any
from urllib.parse import urlsplit

from tornado import httputil, routing

from ..deploy.backend import encode_request
from ..deploy.manager import DeployManager, LiveApp
from ..deploy.proxy import (
    BODY_METHODS,
    SEGMENT_KIND,
    Pairs,
    app_target,
    error_headers,
    error_page,
    is_app_path,
    keyed_request,
    not_here_answer,
    request_header_pairs,
    response_header_pairs,
    tornado_headers,
)
from ..deploy.relay import relay_now

log = logging.getLogger(__name__)


class KeyedAppRouter(routing.Router):
    """Finds keyed requests to running apps; ``None`` lets every other request through."""

    def __init__(
        self,
        base_url: str,
        manager: Callable[[], DeployManager | None],
        accepted_hosts: Callable[[], set[str]],
        settings: dict[str, Any],
    ) -> None:
        self.prefix = base_url.rstrip("/") + "/ecode/"
        self.manager = manager
        self.accepted_hosts = accepted_hosts
        self.settings = settings
        self._preview: str | None = None

    def _preview_host(self) -> str:
        """The preview origin's host[:port], or "" without one (fixed once started)."""
        if self._preview is None:
            manager = self.manager()
            if manager is None:
                return ""
            self._preview = urlsplit(manager.options.preview_origin).netloc
        return self._preview

    def find_handler(
        self, request: httputil.HTTPServerRequest, **kwargs: Any
    ) -> httputil.HTTPMessageDelegate | None:
        path = request.path
        if request.host == self._preview_host() and not is_app_path(path, self.prefix):
            # The preview origin serves apps and nothing else: Jupyter's pages and APIs there
            # would share an origin with every app (whose scripts could then use them).
            return _NotHere(request)
        if not path.startswith(self.prefix):
            return None
        if request.host not in self.accepted_hosts():
            return None  # the handler checks the Host header (and remembers it if good)
        manager = self.manager()
        if manager is None:
            return None
        headers = request.headers
        found = keyed_app(
            manager,
            request.method or "",
            path[len(self.prefix) :],
            upgrade="Upgrade" in headers,
            preflight="Access-Control-Request-Method" in headers,
        )
        if found is None:
            return None
        app, port, rest = found
        preview_host = self._preview_host()
        on_preview_origin = bool(preview_host) and request.host == preview_host
        if preview_host and not on_preview_origin and is_navigation(request):
            return None  # pages render on the preview origin: the handler redirects
        return _KeyedExchange(request, manager, app, port, rest, on_preview_origin, self.settings)


class _NotHere(httputil.HTTPMessageDelegate):
    """A 404 for a path the preview origin does not serve."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        assert request.connection is not None
        self.connection = request.connection

    def finish(self) -> None:
        body, headers = not_here_answer()
        line = httputil.ResponseStartLine("HTTP/1.1", 404, "Not Found")
        quiet(self.connection.write_headers(line, tornado_headers(headers), body))
        self.connection.finish()


def keyed_app(
    manager: DeployManager, method: str, path: str, *, upgrade: bool, preflight: bool
) -> tuple[LiveApp, int, str] | None:
    """The running app a keyed request goes to, its port and the rest of the path; ``None``
    when the request needs ``AppProxyHandler`` (``path`` starts after ``…/ecode/``)."""
    match = keyed_request(method, path, upgrade=upgrade, preflight=preflight)
    if match is None:
        return None
    app = manager.app_for_key(match["key"])
    if app is None or (app.kind, app.owner, app.slug) != (
        SEGMENT_KIND[match["segment"]],
        match["owner"],
        match["slug"],
    ):
        return None  # an old link: the handler redirects or explains
    port = app.supervisor.port
    if port is None:
        return None  # starting, restarting or crashed: the handler says which
    return app, port, match["rest"]


def app_request(
    app: LiveApp,
    rest: str,
    query: str,
    incoming: Iterable[tuple[str, str]],
    *,
    method: str,
    chunks: list[bytes],
    host: str,
    proto: str,
    remote_ip: str | None,
) -> tuple[bytes, bytes | None]:
    """The request the app gets for a browser's request: its encoded head, and its body."""
    headers = request_header_pairs(
        incoming, public_prefix=app.base_path, host=host, proto=proto, remote_ip=remote_ip
    )
    body: bytes | None = b"".join(chunks) if chunks else None
    if body is None and method in BODY_METHODS:
        body = b""
    target = app_target(app.base_path, app.spec.base_path_mode == "keep", rest, query)
    return encode_request(method, target, headers, body), body


def is_websocket(request: httputil.HTTPServerRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def app_path(app: LiveApp, rest: str) -> str:
    """The path the app gets for ``rest`` (after the key): under its base path if it keeps
    one (told it on the command line), else as if it were at "/"."""
    return app_target(app.base_path, app.spec.base_path_mode == "keep", rest, "")


def is_navigation(request: httputil.HTTPServerRequest) -> bool:
    """Whether a browser is loading a page (not fetching a part of one, nor a WebSocket)."""
    if request.method not in ("GET", "HEAD") or is_websocket(request):
        return False
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return mode == "navigate"
    return "text/html" in request.headers.get("Accept", "")


class _KeyedExchange(httputil.HTTPMessageDelegate):
    """One browser request: read its body, send it to the app, relay the answer."""

    def __init__(
        self,
        request: httputil.HTTPServerRequest,
        manager: DeployManager,
        app: LiveApp,
        port: int,
        rest: str,
        on_preview_origin: bool,
        settings: dict[str, Any],
    ) -> None:
        assert request.connection is not None
        self.request = request
        self.connection = request.connection
        self.manager = manager
        self.app = app
        self.port = port
        self.rest = rest
        self.same_origin = on_preview_origin and manager.options.preview_own_origin
        self.settings = settings
        self.chunks: list[bytes] = []
        self.gone = False
        self.written = False
        self._abandon: Callable[[], None] | None = None
        # Once the request is read, tornado tells of a browser leaving only through this.
        self.connection.set_close_callback(self.on_connection_close)  # type: ignore[attr-defined]

    # -- the browser's request -------------------------------------------------------------
    def headers_received(
        self,
        start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
        headers: httputil.HTTPHeaders,
    ) -> Awaitable[None] | None:
        return None

    def data_received(self, chunk: bytes) -> Awaitable[None] | None:
        self.chunks.append(chunk)
        return None

    def finish(self) -> None:
        try:
            self._forward()
        except Exception:
            log.exception("unexpected error in the app proxy")
            self.abort()

    def on_connection_close(self) -> None:
        self.gone = True
        abandon, self._abandon = self._abandon, None
        if abandon is not None:
            abandon()

    def leaving(self, abandon: Callable[[], None]) -> None:
        self._abandon = abandon

    # -- to the app and back -----------------------------------------------------------------
    def _forward(self) -> None:
        """The request goes to the app now (no task in between); the answer comes back through
        this object's ``AnswerSink`` methods."""
        request, app = self.request, self.app
        method = request.method or "GET"
        head, body = app_request(
            app,
            self.rest,
            request.query,
            request.headers.get_all(),
            method=method,
            chunks=self.chunks,
            host=request.host,
            proto=request.protocol,
            remote_ip=request.remote_ip,
        )
        app.supervisor.touch()
        # Someone using an app is someone using this server: keep idle culling away.
        self.settings.setdefault("last_activity_times", {})["ecode_apps"] = datetime.now(UTC)
        relay_now(self.manager.backend, self.port, method, head, body, self, _nothing)

    # -- the AnswerSink the relay writes to ------------------------------------------------
    @property
    def head_request(self) -> bool:
        return self.request.method == "HEAD"

    def outgoing(self, app_headers: Pairs) -> Pairs:
        return response_header_pairs(
            app_headers,
            public_prefix=self.app.base_path,
            host=self.request.host,
            head=self.head_request,
            same_origin=self.same_origin,
            sandboxed_fetch=self.sandboxed_fetch(),
        )

    def sandboxed_fetch(self) -> bool:
        return self.request.headers.get("Origin") == "null"

    def write_head(
        self, code: int, reason: str, headers: Pairs, body: bytes | None, stream: bool
    ) -> None:
        if self.gone:
            return
        self.written = True
        line = httputil.ResponseStartLine("HTTP/1.1", code, reason or responses.get(code, "?"))
        quiet(self.connection.write_headers(line, tornado_headers(headers), body))

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        if self.gone:
            return None
        future = self.connection.write(chunk)
        quiet(future)
        return future

    def end(self) -> None:
        self._abandon = None
        if not self.gone:
            self.connection.finish()

    def abort(self) -> None:
        self.gone = True
        self.connection.close()  # type: ignore[attr-defined]

    def fail(self, code: int, message: str) -> None:
        # The app by name: its URL carries the key, which stays out of logs.
        app = self.app
        log.warning("%s @%s/%s -> %s (%s)", self.request.method, app.owner, app.slug, code, message)
        if self.gone or self.written:
            return
        body = error_page(message).encode()
        headers = error_headers(
            body, same_origin=self.same_origin, sandboxed_fetch=self.sandboxed_fetch()
        )
        self.write_head(code, "", headers, body, False)
        self.end()


def quiet(future: Any) -> None:
    """Writes that fail because the browser left are expected: don't log them."""
    if isinstance(future, asyncio.Future):
        future.add_done_callback(lambda f: f.cancelled() or f.exception())


def _nothing() -> None:
    return None
