"""Deployments, releases, export, the log stream, and the app proxy.

REST (under ``/api/ecode/``)::

    GET, POST, DELETE  projects/{id}/deployments           list / start {kind, command?,
                                                           restart?} / stop all (?kind=)
    GET, DELETE        projects/{id}/deployments/{dep}     one / stop it
    GET, POST          projects/{id}/releases              list / snapshot + deploy {command?}
    GET                projects/{id}/releases/{rel}        one, with its files
    POST               projects/{id}/releases/{rel}/rollback
    GET                projects/{id}/export[?release=&format=tar.gz]
    WS                 deployments/{dep}/logs?after=N      replay, then live

The proxy serves ``{base_url}ecode/apps/@owner/slug/…`` (preview) and
``{base_url}ecode/live/@owner/slug/…`` (the live release) over HTTP and WebSocket; see
``deploy.manager`` for who may open what and ``deploy.proxy`` for what crosses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http.client import responses
from typing import Any, cast
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import allow_unauthenticated, authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import httputil, web
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketHandler,
    websocket_connect,
)

from ..context import EcodeContext
from ..deploy.manager import DeployManager, LiveApp, may_view_app
from ..deploy.proxy import (
    Pairs,
    add_security_headers,
    error_page,
    filter_query,
    request_headers,
    response_header_pairs,
    tornado_headers,
)
from ..deploy.relay import forward
from ..exceptions import EcodeError, InvalidInput, NotFound
from ..identity import EcodeUser, resolve_user
from .app_router import app_path, app_request, is_navigation, is_websocket, quiet
from .base import AUTH_RESOURCE, EcodeHandler

log = logging.getLogger(__name__)

_KEY_IN_PATH = re.compile(r"/~[A-Za-z0-9_-]+")
_RAW_REST = re.compile(r"/ecode/(?:apps|live)/@[^/]+/[a-z0-9-]+(?P<rest>/.*)?$")

ID = r"(?P<project_id>[^/]+)"
_WS_MAX_MESSAGE = 256 * 1024 * 1024
# Host headers Jupyter's ``check_host`` accepted, per application: its answer depends only on
# settings fixed at start, and parsing the host as an IP address on every keyed request is a
# measurable part of the proxy's cost. Only acceptances are kept (refusals stay logged), a
# few at most, and never for unix-socket paths (their check looks at the filesystem).
_HOSTS_OK: weakref.WeakKeyDictionary[web.Application, set[str]] = weakref.WeakKeyDictionary()
_HOSTS_OK_MAX = 64


def accepted_hosts(application: web.Application) -> set[str]:
    """Host headers ``check_host`` accepted on this application (see ``_HOSTS_OK``)."""
    return _HOSTS_OK.get(application) or _NO_HOSTS


_NO_HOSTS: set[str] = set()


def _manager(ctx: EcodeContext) -> DeployManager:
    manager = ctx.extras.get("deploy")
    if manager is None:
        msg = "previews are not enabled on this server"
        raise NotFound(msg)
    return cast(DeployManager, manager)


class DeployHandler(EcodeHandler):
    @property
    def deploy(self) -> DeployManager:
        return _manager(self.ecode)


class DeploymentsHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        # Newest first, in pages: `next_cursor` (None after the last) goes back as `cursor`.
        deployments, next_cursor = await self.deploy.list_deployments_page(
            self.ecode_user,
            project_id,
            limit=self.query_int("limit", 50, lo=1, hi=500),
            cursor=self.get_query_argument("cursor", None),
        )
        self.finish_json({"deployments": deployments, "next_cursor": next_cursor})

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        body = self.json_body()
        unknown = set(body) - {"kind", "command", "restart"}
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        kind = body.get("kind", "preview")
        restart = body.get("restart", False)
        if not isinstance(restart, bool):
            msg = "restart must be true or false"
            raise InvalidInput(msg, field="restart")
        if kind == "preview":
            result = await self.deploy.start_preview(
                self.ecode_user, project_id, command=body.get("command"), restart=restart
            )
        elif kind == "release":
            result = await self.deploy.deploy_release(
                self.ecode_user, project_id, command=body.get("command")
            )
        else:
            msg = "kind must be preview or release"
            raise InvalidInput(msg, field="kind")
        self.finish_json(result, status=201)

    @web.authenticated
    @authorized
    async def delete(self, project_id: str) -> None:
        kind = self.get_query_argument("kind", None)
        stopped = await self.deploy.stop_deployments(self.ecode_user, project_id, kind)
        self.finish_json({"stopped": stopped})


class DeploymentHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str, deployment_id: str) -> None:
        self.finish_json(
            await self.deploy.get_deployment(self.ecode_user, project_id, deployment_id)
        )

    @web.authenticated
    @authorized
    async def delete(self, project_id: str, deployment_id: str) -> None:
        self.finish_json(
            await self.deploy.stop_deployment(self.ecode_user, project_id, deployment_id)
        )


class ReleasesHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        releases, next_cursor = await self.deploy.list_releases_page(
            self.ecode_user,
            project_id,
            limit=self.query_int("limit", 200, lo=1, hi=1000),
            cursor=self.get_query_argument("cursor", None),
        )
        self.finish_json({"releases": releases, "next_cursor": next_cursor})

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        body = self.json_body()
        unknown = set(body) - {"command"}
        if unknown:
            msg = f"unknown fields: {', '.join(sorted(unknown))}"
            raise InvalidInput(msg)
        result = await self.deploy.deploy_release(
            self.ecode_user, project_id, command=body.get("command")
        )
        self.finish_json(result, status=201)


class ReleaseHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str, release_id: str) -> None:
        self.finish_json(await self.deploy.get_release(self.ecode_user, project_id, release_id))


class RollbackHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def post(self, project_id: str, release_id: str) -> None:
        result = await self.deploy.rollback(self.ecode_user, project_id, release_id)
        self.finish_json(result, status=201)


class ExportHandler(DeployHandler):
    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        fmt = self.get_query_argument("format", "json")
        if fmt not in ("json", "tar.gz"):
            msg = "format must be json or tar.gz"
            raise InvalidInput(msg, field="format")
        bundle, data, top = await self.deploy.export(
            self.ecode_user,
            project_id,
            release_id=self.get_query_argument("release", None),
            archive=fmt == "tar.gz",
        )
        if data is None:
            self.finish_json(bundle.to_json())
            return
        self.set_header("Content-Disposition", f'attachment; filename="{top}.tar.gz"')
        self.finish(data, set_content_type="application/gzip")


class DeploymentLogsHandler(WebSocketMixin, WebSocketHandler, EcodeHandler):
    """``WS deployments/{id}/logs?after=N``: each line as ``{seq, ts, stream, text}``."""

    _follow: asyncio.Task[None] | None = None

    async def prepare(self) -> None:  # type: ignore[override]
        await EcodeHandler.prepare(self)

    @web.authenticated
    @authorized
    async def get(self, deployment_id: str) -> None:  # type: ignore[override]
        self._after = self.query_int("after", 0, lo=0, hi=2**62)
        self._logs = await _manager(self.ecode).logs_for(self.ecode_user, deployment_id)
        await WebSocketHandler.get(self, deployment_id)

    def open(self, deployment_id: str) -> None:
        # Log lines are small and frequent: Nagle would hold each for ~40 ms.
        self.set_nodelay(True)
        WebSocketMixin.open(self, deployment_id)  # keep-alive pings
        self._follow = asyncio.ensure_future(self._send_lines())

    async def _send_lines(self) -> None:
        try:
            async for line in self._logs.follow(self._after):
                await self.write_message(json.dumps(line.to_json()))
        except (WebSocketClosedError, StreamClosedError):
            return
        self.close(1000, "the deployment stopped")

    def on_message(self, message: str | bytes) -> None:
        return None  # the stream is one-way

    def on_close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()


# -- the app proxy ------------------------------------------------------------------------


class _Route:
    """The parsed app path."""

    def __init__(self, segment: str, owner: str, slug: str, rest: str | None) -> None:
        self.kind = "preview" if segment == "apps" else "release"
        self.owner = owner
        self.slug = slug
        self.key: str | None = None
        rest = rest or ""
        if rest.startswith("/~"):
            key, sep, tail = rest[2:].partition("/")
            self.key = key
            rest = sep + tail
        self.rest = rest


class AppProxyHandler(WebSocketHandler, JupyterHandler):
    """The proxy to a project's app, HTTP and WebSocket on the same URLs."""

    _route: _Route
    _app: LiveApp | None = None
    _backend: WebSocketClientConnection | None = None
    _subprotocols: list[str] | None = None
    _on_preview: bool | None = None
    _query: str | None = None
    _leave: Callable[[], None] | None = None

    @property
    def ecode(self) -> EcodeContext:
        return cast(EcodeContext, self.settings["ecode"])

    def set_default_headers(self) -> None:
        # Jupyter's defaults (its CSP among them) describe Jupyter's pages, not an app's; every
        # answer from here gets the app sandbox headers instead.
        return None

    def _log(self) -> None:
        # App traffic stays out of Jupyter's request log and metrics (its URLs carry the
        # keys, and a busy app would drown the log); failures of the proxy itself are logged.
        status = self.get_status()
        if status >= 500:
            path = _KEY_IN_PATH.sub("/~[key]", self.request.path)
            log.warning("%s %s -> %s", self.request.method, path, status)

    # -- authentication -----------------------------------------------------------------
    async def prepare(self) -> None:  # type: ignore[override]
        args = self.path_kwargs
        # tornado hands over the path decoded; the app must get it exactly as it was sent
        # ("/a%2Fb" is not "/a/b"), so the rest is cut from the raw path.
        raw = _RAW_REST.search(self.request.path)
        rest = raw.group("rest") if raw else args.get("rest")
        self._route = _Route(args["segment"], args["owner"], args["slug"], rest)
        if self._route.key is not None:
            # The key in the path is the credential; nobody's login is looked at.
            if not self._host_ok():
                raise web.HTTPError(403)
            self.current_user = self._jupyter_current_user = None
            return
        await JupyterHandler.prepare(self, _redirect_to_login=False)

    def _host_ok(self) -> bool:
        host = self.request.host
        known = _HOSTS_OK.get(self.application)
        if known is not None and host in known:
            return True
        if not self.check_host():
            return False
        if "/" not in host and "%" not in host:
            known = _HOSTS_OK.setdefault(self.application, set())
            if len(known) < _HOSTS_OK_MAX:
                known.add(host)
        return True

    def compute_etag(self) -> str | None:
        # The app's own ETag (if any) passes through; hashing every proxied body to invent
        # one would cost time and tell the browser something the app never said.
        return None

    def check_xsrf_cookie(self) -> None:
        # The app's forms are the app's business: Jupyter's XSRF token is never sent to it.
        return None

    def check_origin(self, origin: str = "") -> bool:
        if self._route.key is not None:
            return True  # a sandboxed page has the opaque origin "null"; the key authorizes
        return bool(JupyterHandler.check_origin(self))

    def _user(self) -> EcodeUser | None:
        if self.current_user is None:
            return None
        ctx = self.ecode
        return resolve_user(
            self.current_user,
            self.identity_provider,
            owner_name=ctx.owner_name,
            admin_users=ctx.admin_users,
            owner_is_admin=ctx.owner_is_admin,
        )

    def _own_origin(self) -> bool:
        """Whether the app's pages keep an origin of their own here (``allow-same-origin``):
        on a preview origin with a host name of its own (``preview_isolation``)."""
        return self._on_preview_origin() and _manager(self.ecode).options.preview_own_origin

    def _on_preview_origin(self) -> bool:
        cached = self._on_preview
        if cached is None:
            origin = self.ecode_preview_origin
            cached = self._on_preview = (
                bool(origin) and urlsplit(origin).netloc == self.request.host
            )
        return cached

    @property
    def ecode_preview_origin(self) -> str:
        return _manager(self.ecode).options.preview_origin

    async def _resolve(self) -> LiveApp | None:
        """The app to serve, or None after answering (a redirect, login or error)."""
        route = self._route
        manager = _manager(self.ecode)
        query = self._filtered_query()
        suffix = route.rest + ("?" + query if query else "")
        if route.key is not None:
            app = manager.app_for_key(route.key)
            if app is None or (app.kind, app.owner, app.slug) != (
                route.kind,
                route.owner,
                route.slug,
            ):
                if is_navigation(self.request):
                    # An old link: the plain URL finds the current deployment, if any.
                    self.redirect(
                        manager.entry_path(route.kind, route.owner, route.slug) + (suffix or "/")
                    )
                    return None
                msg = "this app link has expired; open the app again"
                raise NotFound(msg)
            origin = manager.options.preview_origin
            if not route.rest or (
                origin and is_navigation(self.request) and not self._on_preview_origin()
            ):
                # Pages render only on the preview origin when there is one.
                target = app.base_path + (route.rest or "/") + ("?" + query if query else "")
                self.redirect((origin if not self._on_preview_origin() else "") + target)
                return None
            return app
        project = await manager.route(route.owner, route.slug)
        user = self._user()
        role = (
            await manager.role_of(project.project_id, user.username) if (project and user) else None
        )
        if project is None or not may_view_app(project.visibility, role):
            if user is None:
                # Browsers sign in and come back; other clients get a 403. Either way a
                # stranger learns nothing about which projects exist. Nobody signs in on the
                # preview origin: its pages are the apps' (links there are keyed).
                if is_navigation(self.request) and not self._on_preview_origin():
                    web.authenticated(lambda handler: None)(self)
                    return None
                raise web.HTTPError(403, "sign in to open this app")
            msg = "no app here"
            raise NotFound(msg)
        app = manager.app_in_slot(project.project_id, route.kind)
        if app is None:
            what = "preview" if route.kind == "preview" else "live release"
            msg = f"this project has no running {what}"
            raise NotFound(msg)
        if is_navigation(self.request) or not route.rest:
            # Pages load their parts without cookies (they are sandboxed): send the browser
            # to the keyed URL, which carries the authorization in its path.
            target = app.base_path + (route.rest or "/") + ("?" + query if query else "")
            if manager.options.preview_origin and not self._on_preview_origin():
                target = manager.options.preview_origin + target
            self.redirect(target)
            return None
        return app

    # -- HTTP -------------------------------------------------------------------------------
    @allow_unauthenticated
    async def get(self, **kwargs: str) -> None:
        if not is_websocket(self.request):
            await self._serve()
            return
        app = await self._resolve()
        if app is None:
            return
        if app.supervisor.port is None:
            raise web.HTTPError(503, "the app is not running")
        self._app = app
        await WebSocketHandler.get(self, **kwargs)

    @allow_unauthenticated
    async def head(self, **kwargs: str) -> None:
        await self._serve()

    @allow_unauthenticated
    async def post(self, **kwargs: str) -> None:
        await self._serve()

    @allow_unauthenticated
    async def put(self, **kwargs: str) -> None:
        await self._serve()

    @allow_unauthenticated
    async def patch(self, **kwargs: str) -> None:
        await self._serve()

    @allow_unauthenticated
    async def delete(self, **kwargs: str) -> None:
        await self._serve()

    @allow_unauthenticated
    async def options(self, **kwargs: str) -> None:
        await self._serve()

    def _sandboxed_fetch(self) -> bool:
        return self._route.key is not None and self.request.headers.get("Origin") == "null"

    async def _serve(self) -> None:
        app = await self._resolve()
        if app is None:
            return
        if (
            self.request.method == "OPTIONS"
            and self._sandboxed_fetch()
            and ("Access-Control-Request-Method" in self.request.headers)
        ):
            self._preflight()
            return
        port = app.supervisor.port
        if port is None:
            self.set_header("Retry-After", "2")
            state = app.supervisor.state
            msg = f"the app is {state}" + (
                f": {app.supervisor.reason}" if app.supervisor.reason else ""
            )
            raise web.HTTPError(503, msg)
        app.supervisor.touch()
        # Someone using an app is someone using this server: keep idle culling away.
        self.settings.setdefault("last_activity_times", {})["ecode_apps"] = datetime.now(UTC)
        await self._forward(app, port)

    def _preflight(self) -> None:
        self.set_status(204)
        self._headers = httputil.HTTPHeaders()
        self.set_header("Access-Control-Allow-Origin", "null")
        self.set_header(
            "Access-Control-Allow-Methods",
            self.request.headers.get("Access-Control-Request-Method", "GET"),
        )
        wanted = self.request.headers.get("Access-Control-Request-Headers")
        if wanted:
            self.set_header("Access-Control-Allow-Headers", wanted)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_header("Vary", "Origin")
        self.finish()

    def _filtered_query(self) -> str:
        query = self._query
        if query is None:
            query = self._query = filter_query(self.request.query)
        return query

    async def _forward(self, app: LiveApp, port: int) -> None:
        method = self.request.method or "GET"
        head, body = app_request(
            app,
            self._route.rest or "/",
            self.request.query,
            self.request.headers.get_all(),
            method=method,
            chunks=[self.request.body] if self.request.body else [],
            host=self.request.host,
            proto=self.request.protocol,
            remote_ip=self.request.remote_ip,
        )
        backend = _manager(self.ecode).backend
        await forward(backend, port, method, head, body, _HandlerSink(self, app))

    # -- WebSocket ------------------------------------------------------------------------------
    @property
    def max_message_size(self) -> int:
        # Dashboards send whole tables in one message (Streamlit allows 200 MB).
        return _WS_MAX_MESSAGE

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        # Offer the app the same choices; the first is answered to the browser (the app
        # cannot be asked before the browser's handshake completes).
        self._subprotocols = subprotocols or None
        return subprotocols[0] if subprotocols else None

    async def open(self, **kwargs: str) -> None:
        self.set_nodelay(True)
        app = self._app
        port = app.supervisor.port if app else None
        if app is None or port is None:
            self.close(1011, "the app is not running")
            return
        app.supervisor.touch()
        query = self._filtered_query()
        url = f"ws://127.0.0.1:{port}{app_path(app, self._route.rest or '/')}" + (
            f"?{query}" if query else ""
        )
        headers = request_headers(
            self.request.headers,
            public_prefix=app.base_path,
            host=self.request.host,
            proto=self.request.protocol,
            remote_ip=self.request.remote_ip,
            websocket=True,
        )
        try:
            self._backend = await websocket_connect(
                HTTPRequest(url, headers=headers, connect_timeout=10),
                on_message_callback=self._from_app,
                subprotocols=self._subprotocols,
                max_message_size=_WS_MAX_MESSAGE,
            )
        except (OSError, HTTPClientError, WebSocketClosedError) as exc:
            log.info("app %s refused a WebSocket: %s", app.id, type(exc).__name__)
            self.close(1011, "the app did not accept the WebSocket")
            return
        with contextlib.suppress(AttributeError, StreamClosedError):
            self._backend.protocol.set_nodelay(True)  # type: ignore[union-attr]

    def _from_app(self, message: str | bytes | None) -> None:
        if message is None:
            backend = self._backend
            code = backend.close_code if backend is not None else None
            with contextlib.suppress(WebSocketClosedError):
                self.close(code or 1000, backend.close_reason if backend else None)
            return
        if self._app is not None:
            self._app.supervisor.touch()
        with contextlib.suppress(WebSocketClosedError, StreamClosedError):
            quiet(self.write_message(message, binary=isinstance(message, bytes)))

    def on_message(self, message: str | bytes) -> None:
        if self._backend is None:
            return
        if self._app is not None:
            self._app.supervisor.touch()
        with contextlib.suppress(WebSocketClosedError, StreamClosedError):
            quiet(self._backend.write_message(message, binary=isinstance(message, bytes)))

    def on_connection_close(self) -> None:
        # The browser left mid-answer: drop the app's connection too (see ResponseRelay).
        leave, self._leave = self._leave, None
        if leave is not None:
            leave()
        super().on_connection_close()

    def on_close(self) -> None:
        if self._backend is not None:
            self._backend.close(
                self.close_code if self.close_code not in (None, 1005, 1006) else 1000
            )

    # -- errors -------------------------------------------------------------------------------
    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, EcodeError) and value.status < 500:
            return  # an answer, not a failure (the access log has the request)
        if isinstance(value, web.HTTPError):
            return
        log.error("unexpected error in the app proxy", exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, EcodeError):
            status_code, message = exc.status, exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        else:
            message = responses.get(status_code, "error")
        retry = self._headers.get("Retry-After")
        self._headers = httputil.HTTPHeaders()
        self.set_status(status_code)
        if retry:
            self.set_header("Retry-After", retry)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        add_security_headers(
            self._headers,
            same_origin=self._own_origin(),
            sandboxed_fetch=self._sandboxed_fetch(),
        )
        self.finish(error_page(message))


class _HandlerSink:
    """The relay's ``AnswerSink`` for answers that go through ``AppProxyHandler``."""

    def __init__(self, handler: AppProxyHandler, app: LiveApp) -> None:
        self.handler = handler
        self.app = app

    @property
    def head_request(self) -> bool:
        return self.handler.request.method == "HEAD"

    def outgoing(self, app_headers: Pairs) -> Pairs:
        handler = self.handler
        return response_header_pairs(
            app_headers,
            public_prefix=self.app.base_path,
            host=handler.request.host,
            head=self.head_request,
            same_origin=handler._own_origin(),
            sandboxed_fetch=handler._sandboxed_fetch(),
        )

    def write_head(
        self, code: int, reason: str, headers: Pairs, body: bytes | None, stream: bool
    ) -> None:
        handler = self.handler
        if handler._finished:
            return
        handler.set_status(code, reason or responses.get(code, "Unknown"))
        handler._headers = tornado_headers(headers)
        if body:
            handler.write(body)
        if stream:
            quiet(handler.flush())

    def write(self, chunk: bytes) -> Awaitable[None] | None:
        handler = self.handler
        if handler._finished:
            return None
        handler.write(chunk)
        return handler.flush()

    def end(self) -> None:
        if not self.handler._finished:
            self.handler.finish()

    def abort(self) -> None:
        self.handler.request.connection.close()  # type: ignore[union-attr]
        self.handler._finished = True

    def fail(self, code: int, message: str) -> None:
        raise web.HTTPError(code, message)

    def leaving(self, abandon: Callable[[], None]) -> None:
        self.handler._leave = abandon


_ = AUTH_RESOURCE
APP_PATH = (
    r"/ecode/(?P<segment>apps|live)/@(?P<owner>[^/]+)/(?P<slug>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
    r"(?P<rest>/.*)?"
)
default_handlers = [
    (rf"/api/ecode/projects/{ID}/deployments", DeploymentsHandler),
    (rf"/api/ecode/projects/{ID}/deployments/(?P<deployment_id>[^/]+)", DeploymentHandler),
    (rf"/api/ecode/projects/{ID}/releases", ReleasesHandler),
    (rf"/api/ecode/projects/{ID}/releases/(?P<release_id>[^/]+)", ReleaseHandler),
    (rf"/api/ecode/projects/{ID}/releases/(?P<release_id>[^/]+)/rollback", RollbackHandler),
    (rf"/api/ecode/projects/{ID}/export", ExportHandler),
    (r"/api/ecode/deployments/(?P<deployment_id>[^/]+)/logs", DeploymentLogsHandler),
    (APP_PATH, AppProxyHandler),
]
# The app proxy alone: what a hub user's or project's server serves of deploy (its previews;
# the REST API goes to the ecode service there, hub/previews.py).
app_handlers = [(APP_PATH, AppProxyHandler)]
