"""A user's single-user server on a hub with the ecode service (``c.EcodeApp.hub_role="server"``).

This server belongs to one person who controls it completely (terminal, kernels, files), so
it holds nothing shared: no database URL, no secrets key, no model key. It does three things:

- **forwards the ecode API** (``/api/ecode/...``, REST and WebSockets) to the ecode service,
  authenticated with this server's own hub token, which names the server's owner. Lab's
  sidebar, ``%ecode`` and ``jupyter ecode`` keep talking to "their" server and reach the
  service without an OAuth dance of their own. Only the owner's requests are forwarded: a hub
  admin who opens this server would otherwise act as its owner.
- **executes tool calls** that the service sends (``/api/ecode/mcp``) on the owner's project
  workspaces under ``workspace_root`` (inside this server's contents root, so Lab's file
  browser, editors and collaboration rooms see the same files). The service has already
  checked the caller's role on the project; here only two callers are let in: the ecode
  service and the owner (who could do the same from a terminal anyway).
- **creates a project's workspace** from a shipped template when the service asks
  (``POST /api/ecode/hub/workspaces/{id}``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import httpclient, web, websocket
from tornado.httputil import HTTPHeaders

from ..db.models import Role
from ..deploy.releases import SnapshotLimits, walk_files
from ..exceptions import Forbidden, InvalidInput, NotFound
from ..handlers.base import EcodeHandler
from ..identity import EcodeUser
from ..projects.templating import get_template, render_template
from ..tools.context import ToolProject, project_environment
from ..tools.http import McpHandler
from ..tools.server import ToolLayer
from . import PROJECT_ENV_HEADER

log = logging.getLogger(__name__)

# What a user's server must never be given on a hub with the service: whoever holds any of
# these defeats roles, secrets, credits or billing for everyone (see docs/trust-boundary.md).
FORBIDDEN_ENV = (
    "ECODE_DATABASE_URL",
    "ECODE_SECRETS_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "ECODE_REDIS_URL",
)
# Project ids are the database's hex uuids; anything else never names a workspace folder.
PROJECT_ID = re.compile(r"^[0-9a-f]{32}$")
# Request headers not forwarded to the service: hop-by-hop ones, and the caller's own
# credentials (the service gets this server's token instead).
_DROPPED_REQUEST = frozenset(
    {
        "authorization",
        "cookie",
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "te",
        "proxy-authorization",
        "x-xsrftoken",
    }
)
_DROPPED_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "set-cookie", "server"}
)
# A forwarded call waits at most this long for the service (a run is started, not awaited).
FORWARD_TIMEOUT_S = 120.0


def shared_secrets_given(app: Any) -> list[str]:
    """The names of shared secrets this server was given (empty when it is clean)."""
    given = [name for name in FORBIDDEN_ENV if os.environ.get(name)]
    for trait in ("database_url", "secrets_key", "redis_url"):
        # Only an explicit setting counts: a trait's default may be computed from nothing.
        if trait in app.config.get("EcodeApp", {}):
            given.append(f"c.EcodeApp.{trait}")
    return given


@dataclass(frozen=True)
class ServiceLink:
    """How this server reaches the ecode service, and as whom."""

    #: the service's base URL, ending with "/" (``http://10.0.0.5:10101/services/ecode/``)
    url: str
    #: this server's hub API token; it names the owner (never logged, never sent elsewhere)
    token: str = field(repr=False)
    #: the hub user who owns this server
    owner: str
    #: the service's name on the hub, whose tool calls this server executes
    service_name: str = "ecode"

    @classmethod
    def from_environment(cls, url: str, service_name: str) -> ServiceLink:
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        owner = os.environ.get("JUPYTERHUB_USER", "")
        if not (token and owner):
            msg = (
                "c.EcodeApp.hub_role='server' needs to run under JupyterHub "
                "(JUPYTERHUB_API_TOKEN and JUPYTERHUB_USER are not set)"
            )
            raise SystemExit(msg)
        return cls(
            url=url if url.endswith("/") else url + "/",
            token=token,
            owner=owner,
            service_name=service_name,
        )

    def api_url(self, path: str, query: str = "") -> str:
        return f"{self.url}api/ecode/{path}" + (f"?{query}" if query else "")


def hub_identity(current_user: Any) -> tuple[str, str]:
    """``(kind, name)`` of the hub identity behind a request (``("user", "alice")``)."""
    model = getattr(current_user, "hub_user", None)
    if not isinstance(model, dict):
        return ("unknown", str(getattr(current_user, "username", "")))
    return (str(model.get("kind") or "user"), str(model.get("name") or ""))


@dataclass(frozen=True)
class ServiceCaller(EcodeUser):
    """The ecode service calling a tool for ``username``, with the project's environment."""

    project_env: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: progress notifications as tagged JSON (tools/server.py McpReporter)
    structured_progress: ClassVar[bool] = True


class HubServerAccess:
    """:class:`~ecode_jupyter.tools.context.ProjectAccess` in a user's server on a hub.

    There is no database here: the service decided who may do what before it called. This
    only confines the call to a well-formed project id's folder under the workspace root,
    and gives code-running tools the environment the service sent (secrets included).
    """

    def __init__(self, workspace_root: Path) -> None:
        self.workspace_root = workspace_root
        # Each project's environment (its secrets, DATABASE_URL's folder aside) as the service
        # last sent it: with a changing tool call, or when it started or opened this server
        # (``PUT hub/workspaces/{id}/env``). Kernels and commands that the owner or a
        # project's editors start here get it too, as they would on a server of their own.
        # Memory only: a restarted server gets it again on the next open or tool call.
        self._env: dict[str, dict[str, str]] = {}

    def remember_env(self, project_id: str, env: Mapping[str, str]) -> None:
        self._env[project_id] = dict(env)

    def workspace(self, project_id: str) -> Path:
        if not isinstance(project_id, str) or not PROJECT_ID.match(project_id):
            msg = "no such project"
            raise NotFound(msg)
        return self.workspace_root / project_id

    async def open(self, user: EcodeUser, project_id: str, *, write: bool) -> ToolProject:
        workspace = self.workspace(project_id)
        if not workspace.is_dir():
            msg = "no such project in this server (its workspace folder is missing)"
            raise NotFound(msg)
        secrets: dict[str, str] = {}
        if write and isinstance(user, ServiceCaller):
            secrets = dict(user.project_env)
            self.remember_env(project_id, secrets)  # the freshest: a secret may have changed
        elif write:
            # The owner, or an editor of a project's server (viewers start nothing here:
            # hub/auth.py ProjectAuthorizer), as the service last sent it.
            secrets = dict(self._env.get(project_id, {}))
        return ToolProject(
            id=project_id,
            workspace=workspace.resolve(),
            role=Role.owner,
            env=project_environment(workspace.resolve(), secrets),
        )


class ProjectServerAccess(HubServerAccess):
    """A project's own server: its root folder is the one workspace it serves."""

    def __init__(self, project_id: str, root: Path) -> None:
        super().__init__(root.parent)
        self.project_id = project_id
        self.root = root

    def workspace(self, project_id: str) -> Path:
        if project_id != self.project_id:
            msg = "no such project in this server (it serves one project)"
            raise NotFound(msg)
        return self.root


# Written once a workspace's template is in place (a project server's root exists before).
CREATED_MARKER = ".ecode/workspace-created"


def _caller_for(handler: JupyterHandler, link: ServiceLink) -> EcodeUser:
    """The service (with the project env it sent) or the owner; anyone else is refused."""
    kind, name = hub_identity(handler.current_user)
    if kind == "service" and name == link.service_name:
        raw = handler.request.headers.get(PROJECT_ENV_HEADER, "")
        env: dict[str, str] = {}
        if raw:
            try:
                decoded = json.loads(base64.b64decode(raw, validate=True))
            except (binascii.Error, ValueError) as exc:
                msg = f"{PROJECT_ENV_HEADER} is not base64 JSON"
                raise InvalidInput(msg) from exc
            if not isinstance(decoded, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in decoded.items()
            ):
                msg = f"{PROJECT_ENV_HEADER} must be an object of strings"
                raise InvalidInput(msg)
            env = decoded
        return ServiceCaller(name, name, False, handler.request.remote_ip, project_env=env)
    if kind == "user" and name == link.owner:
        return EcodeUser(name, name, False, handler.request.remote_ip)
    msg = "only this server's owner and the ecode service may use its project tools"
    raise Forbidden(msg)


class HubServerMcpHandler(McpHandler):
    """``/api/ecode/mcp`` of a user's server: the tool layer, for the service and the owner."""

    @property
    def ecode_user(self) -> EcodeUser:
        return _caller_for(self, self.settings["ecode_link"])

    @property
    def tool_layer(self) -> ToolLayer:
        layer: ToolLayer = self.settings["ecode_tools"]
        return layer


class WorkspaceHandler(EcodeHandler):
    """``POST /api/ecode/hub/workspaces/{id}``: make a project's folder (from its template).

    Idempotent: an existing folder is left as it is (a retried create must not wipe work).
    """

    @web.authenticated
    @authorized
    async def post(self, project_id: str) -> None:
        _caller_for(self, self.settings["ecode_link"])
        access: HubServerAccess = self.settings["ecode_access"]
        workspace = access.workspace(project_id)
        body = self.json_body()
        template_id = body.get("template")
        name = str(body.get("name") or project_id)
        slug = str(body.get("slug") or project_id)
        if template_id is not None and not isinstance(template_id, str):
            msg = "template must be a string"
            raise InvalidInput(msg, field="template")
        template = get_template(template_id) if template_id else None
        marker = workspace / CREATED_MARKER
        if marker.exists() or (workspace.is_dir() and not isinstance(access, ProjectServerAccess)):
            self.finish_json({"id": project_id, "created": False})
            return

        def make() -> None:
            if isinstance(access, ProjectServerAccess):
                # The server's root is the workspace (the hub made it before the server
                # started): render in place, then mark it done.
                if template is not None:
                    render_template(template, workspace, project_name=name, slug=slug)
            else:
                # Made beside the final folder and renamed into place, so a crash midway never
                # leaves a half-rendered workspace under the project's id.
                staging = workspace.with_name(f".{project_id}.creating")
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                if template is not None:
                    render_template(template, staging, project_name=name, slug=slug)
                os.replace(staging, workspace)
            marker.parent.mkdir(parents=True, exist_ok=True)
            # Name and slug too: this server's previews are served under the slug
            # (hub/previews.py), and the service's database is not here to ask.
            marker.write_text(json.dumps({"template": template_id, "name": name, "slug": slug}))

        await asyncio.to_thread(make)
        self.finish_json({"id": project_id, "created": True}, status=201)


class WorkspaceEnvHandler(EcodeHandler):
    """``PUT /api/ecode/hub/workspaces/{id}/env``: the project's environment, from the service.

    Sent in the ``X-Ecode-Project-Env`` header as with tool calls (never in a body that a
    proxy might log), by the service only: it is what the project's kernels and commands
    started here by its members get.
    """

    @web.authenticated
    @authorized
    async def put(self, project_id: str) -> None:
        caller = _caller_for(self, self.settings["ecode_link"])
        if not isinstance(caller, ServiceCaller):
            msg = "only the ecode service sends a project's environment"
            raise Forbidden(msg)
        access: HubServerAccess = self.settings["ecode_access"]
        if not access.workspace(project_id).is_dir():
            msg = "no such project in this server (its workspace folder is missing)"
            raise NotFound(msg)
        access.remember_env(project_id, caller.project_env)
        self.set_status(204)
        self.finish()


class WorkspaceArchiveHandler(EcodeHandler):
    """``GET /api/ecode/hub/workspaces/{id}/archive``: the project's files as a tar stream,
    for the service to make a release of (hub/releases.py).

    Exactly the files a release snapshot takes (``deploy.releases.walk_files``: no links, no
    ``.venv``, ``node_modules`` or caches), within the snapshot's limits, so the service gets
    what it would have read itself. The service treats the stream as hostile all the same:
    this server is its owner's to change.
    """

    @web.authenticated
    @authorized
    async def get(self, project_id: str) -> None:
        _caller_for(self, self.settings["ecode_link"])
        access: HubServerAccess = self.settings["ecode_access"]
        workspace = access.workspace(project_id)
        if not workspace.is_dir():
            msg = "no such project in this server (its workspace folder is missing)"
            raise NotFound(msg)
        spool = await asyncio.to_thread(_workspace_tar, workspace)
        try:
            self.set_header("Content-Type", "application/x-tar")
            while chunk := await asyncio.to_thread(spool.read, ARCHIVE_CHUNK):
                self.write(chunk)
                await self.flush()
            self.finish()
        finally:
            spool.close()


# Streamed to the service in pieces of this size (a workspace may hold hundreds of MB).
ARCHIVE_CHUNK = 256 * 1024


def _workspace_tar(workspace: Path) -> Any:
    """The workspace's release files as an uncompressed tar in a spooled temporary file."""
    limits = SnapshotLimits()
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115
    total = 0
    with tarfile.open(fileobj=spool, mode="w") as tar:
        for count, (rel, path) in enumerate(walk_files(workspace), start=1):
            size = path.stat().st_size
            total += size
            if count > limits.max_files or size > limits.max_file_bytes:
                msg = f"the workspace is too large to release ({rel})"
                raise InvalidInput(msg)
            if total > limits.max_total_bytes:
                msg = "the workspace is too large to release"
                raise InvalidInput(msg)
            info = tar.gettarinfo(str(path), arcname=rel)
            # Ownership and modes of the owner's account mean nothing to the service.
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as data:
                tar.addfile(info, data)
    spool.seek(0)
    return spool


class ServiceProxyHandler(WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """Everything else under ``/api/ecode/``: forwarded to the ecode service as the owner.

    A WebSocket (the run feed, deployment logs) is relayed message by message; any other
    request is sent on with its method, query and body, and the service's answer (status,
    JSON error shape, ``Retry-After``) comes back as it is.
    """

    auth_resource = "ecode"
    # The connection to the service of a relayed WebSocket (None until open, or once closed).
    _upstream: websocket.WebSocketClientConnection | None = None

    def set_default_headers(self) -> None:
        """No Jupyter defaults: the service's headers come back instead."""

    @property
    def link(self) -> ServiceLink:
        link: ServiceLink = self.settings["ecode_link"]
        return link

    def _refusal(self) -> tuple[int, dict[str, Any]] | None:
        if self.current_user is None:
            return 401, {
                "error": {"code": "not_authenticated", "message": "authentication required"}
            }
        kind, name = hub_identity(self.current_user)
        if kind != "user" or name != self.link.owner:
            # Forwarding would make this caller act as the owner on the service.
            return 403, {
                "error": {
                    "code": "forbidden",
                    "message": "the ecode API of a server is for its owner; use your own server",
                }
            }
        return None

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    async def _dispatch(self, path: str) -> None:
        refused = self._refusal()
        if refused is not None:
            self._reply(*refused)
            return
        if self.request.headers.get("Upgrade", "").lower() == "websocket":
            self._path = path
            await websocket.WebSocketHandler.get(self, path)
            return
        await self._forward(path)

    async def get(self, path: str) -> None:
        await self._dispatch(path)

    async def post(self, path: str) -> None:
        await self._dispatch(path)

    async def put(self, path: str) -> None:
        await self._dispatch(path)

    async def patch(self, path: str) -> None:
        await self._dispatch(path)

    async def delete(self, path: str) -> None:
        await self._dispatch(path)

    def _upstream_headers(self) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name, value in self.request.headers.get_all():
            if name.lower() not in _DROPPED_REQUEST:
                headers.add(name, value)
        headers["Authorization"] = f"token {self.link.token}"
        # The service logs the address of the person, not of this server.
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        return headers

    async def _forward(self, path: str) -> None:
        method = self.request.method or "GET"
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        request = httpclient.HTTPRequest(
            self.link.api_url(path, self.request.query),
            method=method,
            headers=self._upstream_headers(),
            body=body,
            request_timeout=FORWARD_TIMEOUT_S,
            follow_redirects=False,
            decompress_response=False,
        )
        client = httpclient.AsyncHTTPClient()
        try:
            response = await client.fetch(request, raise_error=False)
        except OSError as exc:
            log.warning("the ecode service at %s is unreachable: %s", self.link.url, exc)
            self._reply(
                503,
                {
                    "error": {
                        "code": "service_unavailable",
                        "message": "the ecode service of this hub is not reachable; "
                        "ask the hub's admin",
                    }
                },
            )
            return
        if response.code == 599:
            self._reply(
                503,
                {
                    "error": {
                        "code": "service_unavailable",
                        "message": "the ecode service of this hub did not answer",
                    }
                },
            )
            return
        self.set_status(response.code, response.reason)
        for name, value in response.headers.get_all():
            if name.lower() not in _DROPPED_RESPONSE:
                self.add_header(name, value)
        # Not even an empty chunk for a 204: tornado refuses to finish one with a body.
        self.finish(response.body or None)

    # -- WebSockets: one connection to the service per client connection --------------

    async def open(self, path: str) -> None:
        WebSocketMixin.open(self)  # pings, as Jupyter's own sockets
        # Feed events are small messages; Nagle's algorithm would hold each back ~40 ms.
        self.set_nodelay(True)
        url = self.link.api_url(path, self.request.query)
        split = urlsplit(url)
        ws_url = ("wss" if split.scheme == "https" else "ws") + url[len(split.scheme) :]
        request = httpclient.HTTPRequest(
            ws_url, headers={"Authorization": f"token {self.link.token}"}
        )
        try:
            self._upstream = await websocket.websocket_connect(
                request, on_message_callback=self._from_service
            )
        except (OSError, websocket.WebSocketError, httpclient.HTTPClientError) as exc:
            log.warning("the ecode service refused a WebSocket for %s: %s", path, exc)
            self.close(1011, "the ecode service is not reachable")
            return

    def _from_service(self, message: str | bytes | None) -> None:
        if message is None:
            upstream = self._upstream
            code = upstream.close_code if upstream is not None else None
            reason = upstream.close_reason if upstream is not None else None
            self.close(code or 1000, reason or "")
            return
        try:
            self.write_message(message, binary=isinstance(message, bytes))
        except websocket.WebSocketClosedError:
            self._close_upstream()

    def on_message(self, message: str | bytes) -> None:
        upstream = self._upstream
        if upstream is not None:
            upstream.write_message(message, binary=isinstance(message, bytes))

    def on_close(self) -> None:
        self._close_upstream()

    def _close_upstream(self) -> None:
        upstream = self._upstream
        if upstream is not None:
            upstream.close()
            self._upstream = None


def guard_collaboration_writes() -> None:
    """Drop document edits from members without write in collaboration rooms.

    jupyter-collaboration checks the Authorizer when a room is opened for reading, but
    applies (and saves) every Y update a connected client sends: a viewer's edit would reach
    the file. Here each room connection asks the Authorizer once for ``write`` on
    ``contents``; without it, sync step 2 and update messages are dropped, while the
    viewer still receives the document and everyone's edits.
    """
    from jupyter_core.utils import ensure_async
    from jupyter_server_ydoc.handlers import YDocWebSocketHandler

    original = YDocWebSocketHandler.on_message
    if getattr(original, "ecode_guarded", False):
        return

    async def on_message(self: Any, message: Any) -> Any:
        may_write = getattr(self, "_ecode_may_write", None)
        if may_write is None:
            may_write = bool(
                await ensure_async(
                    self.authorizer.is_authorized(self, self.current_user, "write", "contents")
                )
            )
            self._ecode_may_write = may_write
        if not may_write and _is_document_edit(message):
            return None
        return await original(self, message)

    on_message.ecode_guarded = True  # type: ignore[attr-defined]
    YDocWebSocketHandler.on_message = on_message


def _is_document_edit(message: Any) -> bool:
    # y-protocols: a SYNC message (0) whose kind is step 2 (1) or update (2) carries edits.
    data = bytes(message) if isinstance(message, bytes | bytearray | memoryview) else b""
    return len(data) >= 2 and data[0] == 0 and data[1] in (1, 2)


def server_handlers() -> list[tuple[str, Any]]:
    """The handlers of a user's server on a hub with the service, most specific first."""
    return [
        (r"/api/ecode/mcp/?", HubServerMcpHandler),
        (r"/api/ecode/hub/workspaces/(?P<project_id>[^/]+)/archive", WorkspaceArchiveHandler),
        (r"/api/ecode/hub/workspaces/(?P<project_id>[^/]+)/env", WorkspaceEnvHandler),
        (r"/api/ecode/hub/workspaces/(?P<project_id>[^/]+)", WorkspaceHandler),
        (r"/api/ecode/(?P<path>.*)", ServiceProxyHandler),
    ]
