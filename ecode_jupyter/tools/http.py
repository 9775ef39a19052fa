"""``/api/ecode/mcp``: the MCP streamable HTTP endpoint inside the Jupyter server.

The SDK's transport is an ASGI application; Jupyter is tornado. Rather than run a second web
server (another port, another auth), :class:`McpHandler` authenticates the request with
Jupyter's own auth (the user's token or login cookie), then hands it to the SDK's session
manager as one ASGI request and streams the ASGI response back through tornado, flushing each
chunk (Server-Sent Events for streamed results and progress).

The ASGI scope carries the Jupyter user twice: as ``scope["user"]`` (the SDK binds each MCP
session to the principal that opened it, so another user cannot use a leaked session id) and
under :data:`~ecode_jupyter.tools.server.SCOPE_USER_KEY` for the tools' authorization. The
``Authorization`` and ``Cookie`` headers are not forwarded: nothing past the bridge needs them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from sqlalchemy.orm import Session
from tornado import web
from tornado.iostream import StreamClosedError

from ecode_jupyter.audit.log import record_audit
from ecode_jupyter.context import EcodeContext
from ecode_jupyter.db import Database
from ecode_jupyter.exceptions import RateLimited
from ecode_jupyter.handlers.base import EcodeHandler
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.projects.manager import ProjectManager
from ecode_jupyter.tools.context import ManagerProjectAccess
from ecode_jupyter.tools.kernel import KernelProvider
from ecode_jupyter.tools.server import SCOPE_COUNTED_KEY, SCOPE_USER_KEY, ToolLayer
from ecode_jupyter.workspace.collab import JupyterLiveDocuments
from ecode_jupyter.workspace.commands import Launcher

log = logging.getLogger(__name__)

_DROPPED_HEADERS = frozenset({"authorization", "cookie", "content-length"})
# JSON-RPC leaves -32000..-32099 to the server's own errors; 429 in its last digits.
RATE_LIMITED_RPC_CODE = -32029


class DatabaseAudit:
    """Tool writes in the suite's audit trail (``GET /api/ecode/audit``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, user: EcodeUser, project_id: str, tool: str, details: dict[str, Any]
    ) -> None:
        def write(session: Session) -> None:
            record_audit(
                session,
                actor=user.username,
                action=f"tool.{tool}",
                target_type="project",
                target_id=project_id,
                project_id=project_id,
                remote_ip=user.remote_ip,
                details=details,
            )

        await self._db.run(write)


def create_tool_layer(
    serverapp: Any,
    context: EcodeContext,
    *,
    launcher: Launcher | None = None,
    kernels: KernelProvider | None = None,
) -> ToolLayer:
    """The tool layer of a running server: the suite's managers, live Y documents, audit,
    the launcher its commands start through (the server's sandbox) and its kernels."""
    live = JupyterLiveDocuments(
        lambda: serverapp.web_app.settings, Path(serverapp.root_dir).expanduser()
    )
    return ToolLayer(
        ManagerProjectAccess(context.projects, context.secrets),
        live=live,
        audit=DatabaseAudit(context.db),
        preview_backend=DeployPreviews(context),
        directory=ManagerProjectDirectory(context.projects),
        policy=context.policies,
        limiter=context.extras.get("limits"),
        launcher=launcher,
        kernels=kernels,
    )


class ManagerProjectDirectory:
    """list_projects / resolve_project through the project manager of this server."""

    def __init__(self, projects: ProjectManager) -> None:
        self.projects = projects

    async def list_projects(self, user: EcodeUser) -> list[dict[str, Any]]:
        return await self.projects.list_projects(user)

    async def resolve(self, user: EcodeUser, owner: str, slug: str) -> dict[str, Any]:
        return await self.projects.resolve_slug(user, owner, slug)


class DeployPreviews:
    """start_preview / preview_status through the deploy manager of this server."""

    def __init__(self, context: EcodeContext) -> None:
        self.context = context

    async def start(
        self, user: EcodeUser, project_id: str, command: str | None, restart: bool
    ) -> dict[str, Any]:
        from ecode_jupyter.deploy.tools import start_preview

        return await start_preview(self.context, user, project_id, command, restart)

    async def status(self, user: EcodeUser, project_id: str) -> dict[str, Any]:
        from ecode_jupyter.deploy.tools import preview_status

        return await preview_status(self.context, user, project_id)


class McpHandler(EcodeHandler):
    """Bridges one HTTP request to the MCP session manager (see the module docstring)."""

    # write_file takes up to 10 MB of text (workspace/writer.py) and JSON escapes can grow
    # it several times over; the REST API's 1 MiB would refuse such a call.
    max_body_bytes = 32 * 1024 * 1024

    def initialize(self) -> None:
        self._client_gone = asyncio.Event()

    def on_connection_close(self) -> None:
        self._client_gone.set()
        # The base releases a request still waiting for the rest of its streamed body.
        super().on_connection_close()

    def compute_etag(self) -> str | None:
        return None  # a streamed response has no single body to hash

    @property
    def tool_layer(self) -> ToolLayer:
        layer = self.ecode.extras.get("tools")
        if not isinstance(layer, ToolLayer):
            raise web.HTTPError(503, "the MCP tool layer is not running")
        return layer

    @web.authenticated
    @authorized
    async def get(self) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def post(self) -> None:
        await self._forward()

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        await self._forward()

    def _scope(self, user: EcodeUser) -> dict[str, Any]:
        request = self.request
        host, _, port = request.host.partition(":")
        token = AccessToken(
            token="jupyter-auth", client_id=user.username, scopes=[], subject=user.username
        )
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.protocol,
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": request.query.encode("latin-1"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in request.headers.get_all()
                if name.lower() not in _DROPPED_HEADERS
            ],
            "client": (request.remote_ip or "", 0),
            "server": (host, int(port) if port.isdigit() else 80),
            "user": AuthenticatedUser(token),
            SCOPE_USER_KEY: user,
            "state": {},
        }

    async def _forward(self) -> None:
        layer = self.tool_layer
        await layer.start_http()
        user = self.ecode_user
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            # Progress events are small; Nagle + delayed ACK would hold each back ~40 ms.
            stream.set_nodelay(True)
        body_sent = False
        content_type = "application/json"
        gone = self._client_gone

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": self.request.body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal content_type
            if gone.is_set():
                return  # nobody to write to; the app learns it from receive()
            if message["type"] == "http.response.start":
                self.set_status(message["status"])
                self.clear_header("Content-Type")
                for raw_name, raw_value in message.get("headers", []):
                    name = raw_name.decode("latin-1")
                    value = raw_value.decode("latin-1")
                    if name.lower() == "content-type":
                        content_type = value
                    if name.lower() != "content-length":
                        self.add_header(name, value)
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    self.write(chunk)
                if message.get("more_body", False):
                    try:
                        await self.flush()
                    except StreamClosedError:
                        gone.set()

        scope = self._scope(user)
        request_id = _tool_call_id(self.request.body) if layer.limiter is not None else None
        if request_id is not None:
            try:
                await layer.count_call(user)
            except RateLimited as exc:
                self._refuse_tool_call(exc, request_id)
                return
            scope[SCOPE_COUNTED_KEY] = True
        try:
            await layer.session_manager.handle_request(scope, receive, send)
        finally:
            gone.set()  # release a receive() still waiting for a disconnect
        if not self._finished:
            try:
                self.finish(set_content_type=content_type)
            except StreamClosedError:
                log.debug("MCP client went away before the response ended")

    def _refuse_tool_call(self, exc: RateLimited, request_id: str | int) -> None:
        """A rate-limited ``tools/call``: HTTP 429 with Retry-After, the body a JSON-RPC error.

        Both, because each kind of client reads one: the MCP SDKs turn a non-2xx answer
        whose JSON body is a JSON-RPC error into that error for the one request (the session
        goes on), so the host sees ``rate_limited: … try again in N s``; HTTP clients,
        proxies and gateways see a 429 they know how to back off from. An error *result*
        (``isError``) would travel in a 200 and tell only the model, which cannot wait.
        """
        error = {
            "code": RATE_LIMITED_RPC_CODE,
            "message": f"{exc.code}: {exc.message}",
            "data": exc.to_json()["error"],
        }
        self.set_status(429)
        self.set_header("Retry-After", str(exc.retry_after))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}))


def _tool_call_id(body: bytes) -> str | int | None:
    """The JSON-RPC id of a ``tools/call`` request, or None for any other body."""
    try:
        message = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # the SDK answers what is not JSON-RPC
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    request_id = message.get("id")
    if isinstance(request_id, str) or (
        isinstance(request_id, int) and not isinstance(request_id, bool)
    ):
        return request_id
    return None


default_handlers = [(r"/api/ecode/mcp/?", McpHandler)]
