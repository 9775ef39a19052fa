"""The ecode service's reach into users' servers: the hub's API, tool calls, workspaces.

The service holds the database and runs the agent, but never a project's code: every tool
call is authorized here (the caller's role on the project, in the service's database), then
executed in the project owner's single-user server through that server's MCP endpoint
(``/user/{owner}/api/ecode/mcp``), authenticated with the service's hub token. The project's
environment (secrets, ``DATABASE_URL``) travels with code-running calls only, in a header the
owner's server honours only from the service.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from mcp_types import Tool as MCPTool

from ..context import EcodeContext
from ..db.models import Role
from ..exceptions import Conflict, EcodeError, Forbidden, InvalidInput, NotFound
from ..identity import EcodeUser
from ..ratelimit import TOOL_CALLS
from ..tools.approval import enforce_policy
from ..tools.context import Approver, ToolProject, ToolReporter
from ..tools.http import DatabaseAudit
from ..workspace.writer import FileChange
from . import PROJECT_ENV_HEADER

if TYPE_CHECKING:
    from .projects import ProjectServers

log = logging.getLogger(__name__)

#: tools that only read; any other needs the editor role (query_database: unless write=true)
READ_ONLY_TOOLS = frozenset({"list_files", "read_file", "search_files", "read_notebook"})
#: tools not offered through the service: its MCP endpoint forwards every call to a
#: project's server, and these name no project (not built there yet)
UNAVAILABLE_TOOLS = frozenset({"list_projects", "resolve_project"})
# How long a hub user's model (admin flag, groups) and a server's state are trusted.
HUB_CACHE_S = 10.0
HTTP_TIMEOUT_S = 600.0
# An MCP session to a server unused this long is closed (a run's calls come seconds apart).
LINK_IDLE_S = 120.0


class ServiceUnavailable(EcodeError):
    status = 503
    code = "server_not_running"


@dataclass(frozen=True)
class HubLink:
    """The service's view of the hub: its API, its token, where users' servers answer."""

    api_url: str  # .../hub/api/ (ends with "/")
    token: str
    users_url: (
        str  # the proxy's public URL, ending with "/": users' servers are {users_url}user/{name}/
    )

    @classmethod
    def from_environment(cls, users_url: str) -> HubLink:
        api = os.environ.get("JUPYTERHUB_API_URL", "")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not (api and token):
            msg = "the ecode service must run as a JupyterHub service (no JUPYTERHUB_API_URL)"
            raise SystemExit(msg)
        if not users_url:
            msg = (
                "set c.EcodeApp.hub_users_url (env ECODE_HUB_USERS_URL) to the URL at which the "
                "hub's proxy serves users' servers, e.g. http://127.0.0.1:8000/"
            )
            raise SystemExit(msg)
        return cls(
            api_url=api.rstrip("/") + "/",
            token=token,
            users_url=users_url.rstrip("/") + "/",
        )


class HubDirectory:
    """Hub users' models (admin flag, groups) and servers, read with the service's token."""

    def __init__(self, link: HubLink) -> None:
        self.link = link
        self.http = httpx2.AsyncClient(headers={"Authorization": f"token {link.token}"}, timeout=30)
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def user(self, name: str) -> dict[str, Any] | None:
        hit = self._cache.get(name)
        if hit is not None and time.monotonic() - hit[0] < HUB_CACHE_S:
            return hit[1]
        resp = await self.http.get(f"{self.link.api_url}users/{name}")
        model = resp.json() if resp.status_code == 200 else None
        self._cache[name] = (time.monotonic(), model)
        return model

    async def server_url(self, owner: str) -> str:
        """The base URL of ``owner``'s default server, or ServiceUnavailable if not running.

        Read from the cache (at most HUB_CACHE_S old): a server stopped since fails the call
        itself, and :meth:`forget` then makes the next call ask the hub again.
        """
        model = await self.user(owner)
        server = ((model or {}).get("servers") or {}).get("")
        if not server or not server.get("ready"):
            msg = (
                f"{owner}'s Jupyter server is not running; the project's files and processes "
                "live there: start it from the hub and try again"
            )
            raise ServiceUnavailable(msg)
        return f"{self.link.users_url}user/{owner}/"

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    async def aclose(self) -> None:
        await self.http.aclose()


class _ProgressRelay:
    """Turns the owner's server's progress notifications back into reporter calls."""

    def __init__(self, reporter: ToolReporter | None) -> None:
        self.reporter = reporter

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if self.reporter is None or not message:
            return
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "ecode" not in data:
            await self.reporter.output(message)
            return
        kind = data.get("ecode")
        if kind == "file":
            await self.reporter.file_changed(
                FileChange(
                    path=str(data.get("path", "")),
                    action=data.get("action", "modified"),
                    added=int(data.get("added", 0)),
                    removed=int(data.get("removed", 0)),
                    diff=str(data.get("diff", "")),
                    live=bool(data.get("live", False)),
                )
            )
        elif kind == "progress":
            await self.reporter.progress(str(data.get("text", "")))
        else:
            await self.reporter.output(str(data.get("text", "")))


class RemoteToolLayer:
    """The service's tool layer: the agent's ``call``/``list_tools``, executed remotely.

    Same interface as :class:`~ecode_jupyter.tools.server.ToolLayer` where the agent uses it.
    """

    #: :meth:`call` takes the run's ``approver`` (the project's approval policy applies here)
    supports_approvals = True

    def __init__(self, context: EcodeContext, placement: ProjectPlacement) -> None:
        from ..tools.server import ToolLayer

        # Previews run in the project's server (hub/previews.py), asked for with its tools;
        # the agent's verification starts and checks them where a layer has this.
        self.preview = RemotePreviews(self)
        self.context = context
        self.placement = placement
        self.directory = placement.directory
        self.audit_sink = DatabaseAudit(context.db)
        # The tools' names, descriptions and schemas, from the same code the users' servers
        # run; this layer never executes a tool itself (its access refuses everything).
        self._schema = ToolLayer(_NoLocalAccess())
        self._tools: list[MCPTool] | None = None
        self._links = _McpLinks()

    async def list_tools(self) -> list[MCPTool]:
        if self._tools is None:
            tools = await self._schema.list_tools()
            self._tools = [t for t in tools if t.name not in UNAVAILABLE_TOOLS]
        return self._tools

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        user: EcodeUser,
        reporter: ToolReporter | None = None,
        approver: Approver | None = None,
    ) -> CallToolResult:
        if name in UNAVAILABLE_TOOLS:
            msg = f"{name} is not available on this hub yet"
            raise InvalidInput(msg)
        # Counted here, in the service, where the counters are shared (the owners' servers
        # keep no state): the same per-user tool-call limit as a single-user server's.
        limiter = self.context.extras.get("limits")
        if limiter is not None:
            await limiter.hit(user, TOOL_CALLS)
        project_id = arguments.get("project")

        async def authorize(who: EcodeUser, pid: str) -> object:
            return await self.context.projects.project_context(who, pid, Role.viewer)

        # The project's approval policy, applied here where the database is (the project's
        # server has none): the agent's approver answers "ask"; an outside client has none.
        await enforce_policy(self.context.policies, authorize, user, approver, name, arguments)
        write = name not in READ_ONLY_TOOLS and not (
            name == "query_database" and not arguments.get("write")
        )
        need = Role.editor if write else Role.viewer
        project = await self.context.projects.project_context(user, project_id, need)
        env = await self.context.secrets.project_env(project.id) if write else {}
        if write:
            await self.audit_sink.record(
                user, project.id, name, {k: v for k, v in arguments.items() if k == "path"}
            )
        server = await self.placement.server_for(project.id, project.owner, project.slug)
        try:
            result = await self._links.call(
                f"{server}api/ecode/mcp",
                self._headers(env),
                name,
                arguments,
                # Only changing tools report progress; asking for it makes the server answer
                # with an event stream instead of one JSON body.
                _ProgressRelay(reporter) if write else None,
            )
        except ServiceUnavailable:
            self.placement.forget(project.owner, project.slug)  # ask the hub again next time
            raise
        if result.is_error:
            raise _error_from(result)
        return result

    def _headers(self, env: dict[str, str]) -> dict[str, str]:
        headers = {"Authorization": f"token {self.directory.link.token}"}
        if env:
            headers[PROJECT_ENV_HEADER] = base64.b64encode(json.dumps(env).encode()).decode()
        return headers

    async def stop(self) -> None:
        await self._links.close_all()
        await self.directory.aclose()


class RemotePreviews:
    """A project's preview, run and served by the project's server (hub/previews.py).

    Asked for with that server's ``start_preview`` / ``preview_status`` tools, so the caller's
    role is checked, the call audited and counted, and the project's secrets sent along, as
    for every tool call (:meth:`RemoteToolLayer.call`). The answer's URLs are that server's
    (``/user/{owner}/{server}/ecode/apps/@owner/slug/...``): the hub's proxy takes a browser
    there, and that server's login lets in its owner and the members it is shared with.
    """

    def __init__(self, tools: RemoteToolLayer) -> None:
        self.tools = tools

    async def start(
        self, user: EcodeUser, project_id: str, command: str | None, restart: bool
    ) -> dict[str, Any]:
        arguments: dict[str, Any] = {"project": project_id, "restart": restart}
        if command is not None:
            arguments["command"] = command
        result = await self.tools.call("start_preview", arguments, user)
        return dict(result.structured_content or {})

    async def status(self, user: EcodeUser, project_id: str) -> dict[str, Any]:
        result = await self.tools.call("preview_status", {"project": project_id}, user)
        return dict(result.structured_content or {})


class _McpLink:
    """One MCP session to one server with fixed headers, held open by a task of its own.

    The SDK's client is an async context manager whose task group must be entered and left
    by the same task; holding it in a task lets any number of calls share the session (one
    POST per call instead of an initialize handshake, a call and a DELETE each time).
    """

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.last_used = time.monotonic()
        self._client: Client | None = None
        self._failure: BaseException | None = None
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._hold(url, headers))

    async def _hold(self, url: str, headers: dict[str, str]) -> None:
        try:
            async with (
                httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT_S) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                self._client = client
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # the next call sees it and opens a new session
            self._failure = exc
        finally:
            self._client = None
            self._ready.set()

    async def client(self) -> Client:
        await self._ready.wait()
        if self._client is None:
            msg = "the MCP session to the project's server could not be opened"
            raise ServiceUnavailable(msg) from self._failure
        self.last_used = time.monotonic()
        return self._client

    @property
    def alive(self) -> bool:
        return not self._task.done()

    async def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, 5)


class _McpLinks:
    """Open MCP sessions by (server URL, headers); idle ones are closed."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], _McpLink] = {}

    async def call(
        self,
        url: str,
        headers: dict[str, str],
        name: str,
        arguments: dict[str, Any],
        progress: _ProgressRelay | None,
    ) -> CallToolResult:
        await self._close_idle()
        # The headers hold the project's environment: the key is a digest, not the secrets.
        digest = hashlib.sha256(json.dumps(headers, sort_keys=True).encode()).hexdigest()
        key = (url, digest)
        for attempt in (1, 2):
            link = self._links.get(key)
            if link is None or not link.alive:
                link = self._links[key] = _McpLink(url, headers)
            try:
                client = await link.client()
                return await client.call_tool(name, arguments, progress_callback=progress)
            except (ServiceUnavailable, httpx2.TransportError, MCPError) as exc:
                # The server restarted (its sessions are gone) or the link broke: one retry
                # on a fresh session; a call that reached a tool never gets here twice, as
                # tool failures come back as error results, not exceptions.
                self._links.pop(key, None)
                await link.close()
                if attempt == 2:
                    msg = "the project's server did not answer the tool call"
                    raise ServiceUnavailable(msg) from exc
        msg = "unreachable: the second attempt returns or raises"
        raise AssertionError(msg)

    async def _close_idle(self) -> None:
        now = time.monotonic()
        for key, link in list(self._links.items()):
            if now - link.last_used > LINK_IDLE_S or not link.alive:
                self._links.pop(key, None)
                await link.close()

    async def close_all(self) -> None:
        links, self._links = list(self._links.values()), {}
        for link in links:
            await link.close()


def _error_from(result: CallToolResult) -> EcodeError:
    """The EcodeError an error result stands for (its text starts with the error code)."""
    text = " ".join(t for b in result.content if isinstance(t := getattr(b, "text", None), str))
    code, sep, message = text.partition(": ")
    if not sep:
        return InvalidInput(text or "the tool failed")
    known = _ERRORS.get(code)
    if known is not None:
        return known(message)
    # Keep the original code (path_outside_workspace, command_timeout, ...) for the model and
    # the feed even where no class of ours is at hand here.
    coded: type[EcodeError] = type("RemoteToolError", (InvalidInput,), {"code": code})
    return coded(message)


_ERRORS: dict[str, type[EcodeError]] = {
    "invalid_input": InvalidInput,
    "forbidden": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
}


class _NoLocalAccess:
    async def open(self, user: EcodeUser, project_id: str, *, write: bool) -> ToolProject:
        msg = "the ecode service never runs project tools itself"
        raise Forbidden(msg)


class ProjectPlacement:
    """Where a project's files and processes live, as a server URL the service calls.

    Its owner's default server (``/user/{owner}/``), or with project servers on
    (``c.EcodeApp.hub_project_servers``) a named server of its own
    (``/user/{owner}/ecode-{slug}/``, started on demand; hub/projects.py).
    """

    def __init__(
        self,
        context: EcodeContext,
        directory: HubDirectory,
        servers: ProjectServers | None = None,
    ) -> None:
        self.context = context
        self.directory = directory
        self.servers = servers
        # Servers seen ready, until when (a running server is not asked about on every call).
        self._ready_until: dict[tuple[str, str], float] = {}

    async def server_for(
        self,
        project_id: str,
        owner: str,
        slug: str,
        template: str | None = None,
        profile: str | None = None,
        send_env: bool = False,
    ) -> str:
        if self.servers is None:
            return await self.directory.server_url(owner)
        from .projects import server_name

        name = server_name(slug)
        if self._ready_until.get((owner, name), 0.0) > time.monotonic():
            url = self.servers.url(owner, name)
            if send_env:
                await self.send_env(url, project_id)
            return url
        members = await self.context.projects.member_roles(project_id)
        url = await self.servers.ensure_running(
            owner, name, project_id, members, template, profile=profile
        )
        await self.send_env(url, project_id)
        self._ready_until[(owner, name)] = time.monotonic() + HUB_CACHE_S
        return url

    async def send_env(self, server: str, project_id: str) -> None:
        """The project's secrets to its server, for the kernels its members start there.

        Sent whenever the service (re)confirms the server runs, so a server that restarted
        or a secret that changed is caught up by the next open or tool call.
        """
        env = await self.context.secrets.project_env(project_id)
        headers = {PROJECT_ENV_HEADER: base64.b64encode(json.dumps(env).encode()).decode()}
        resp = await self.directory.http.put(
            f"{server}api/ecode/hub/workspaces/{project_id}/env", headers=headers
        )
        if resp.status_code != 204:
            # Kernels there start without the secrets until the next try; tools still get
            # them with every call.
            log.warning(
                "sending project %s's environment to its server failed: %s",
                project_id,
                resp.status_code,
            )

    async def sync_members(self, project_id: str) -> None:
        """After a change of members: the project server's shares say the same (if it exists)."""
        if self.servers is None:
            return
        from .projects import server_name

        project = await self.context.projects.project_facts(project_id)
        if project is None:
            return
        owner, slug = project
        members = await self.context.projects.member_roles(project_id)
        await self.servers.sync_shares(owner, server_name(slug), members)

    def forget(self, owner: str, slug: str) -> None:
        from .projects import server_name

        self.directory.forget(owner)
        self._ready_until.pop((owner, server_name(slug)), None)


class RemoteWorkspaces:
    """Creates a new project's workspace where its files will live (from its template)."""

    def __init__(self, placement: ProjectPlacement) -> None:
        self.placement = placement

    async def create(
        self, owner: str, project_id: str, template: str | None, name: str, slug: str
    ) -> None:
        server = await self.placement.server_for(project_id, owner, slug, template)
        async with httpx2.AsyncClient(
            headers={"Authorization": f"token {self.placement.directory.link.token}"},
            timeout=120,
        ) as http:
            resp = await http.post(
                f"{server}api/ecode/hub/workspaces/{project_id}",
                json={"template": template, "name": name, "slug": slug},
            )
        if resp.status_code not in (200, 201):
            log.warning(
                "creating workspace %s in %s's server failed: %s", project_id, owner, resp.text
            )
            msg = f"{owner}'s server could not create the project's folder ({resp.status_code})"
            raise Conflict(msg)
