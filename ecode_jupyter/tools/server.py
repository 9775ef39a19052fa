"""The tool layer: one MCP server whose tools are the only way anything acts on a project.

:class:`ToolLayer` owns an ``MCPServer`` (the official ``mcp`` SDK) with the tools of
``files``, ``commands``, ``kernel``, ``notebooks`` and ``database``. The same tools are
reached two ways, through the same code path (argument validation, authorization, errors):

- over MCP at ``/api/ecode/mcp`` (streamable HTTP; see ``tools/http.py``), the caller being the
  Jupyter user who sent the request;
- in-process by the agent, with :meth:`ToolLayer.call`, the caller passed explicitly.

Every call counts first against its caller's ``tool_calls`` rate limit (``ratelimit.py``).
Tools raise ``EcodeError``s; over MCP they become error results whose text starts with the
error code (``path_outside_workspace: ...``), and :meth:`ToolLayer.call` re-raises the original
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, InputRequiredResult
from mcp_types import Tool as MCPTool
from pydantic import ValidationError

from ecode_jupyter.exceptions import EcodeError, InvalidInput, NotAuthenticated
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.ratelimit import TOOL_CALLS
from ecode_jupyter.tools.approval import PolicySource, enforce_policy
from ecode_jupyter.tools.context import (
    Approver,
    Caller,
    ProjectAccess,
    ToolProject,
    ToolReporter,
)
from ecode_jupyter.workspace.collab import LiveDocuments
from ecode_jupyter.workspace.commands import Launcher, ResourceLimits
from ecode_jupyter.workspace.writer import FileChange, WorkspaceWriter

if TYPE_CHECKING:
    from ecode_jupyter.ratelimit import RateLimiter
    from ecode_jupyter.tools.kernel import KernelProvider
    from ecode_jupyter.tools.preview import PreviewBackend
    from ecode_jupyter.tools.projects import ProjectDirectory

log = logging.getLogger(__name__)

# The key under which the HTTP bridge puts the authenticated user into the ASGI scope.
SCOPE_USER_KEY = "ecode.user"
# Set in the ASGI scope by the HTTP bridge when it counted the request's tool call already.
SCOPE_COUNTED_KEY = "ecode.tool_call_counted"

INSTRUCTIONS = """\
Tools to work on ecode projects. Every tool takes `project` (the project id) first; paths are
relative to the project's workspace. Read before you edit; edit_file replaces exact text.
Commands and code run in the project's workspace with its environment, virtual environment
(.venv) and secrets; a project's own SQLite database is at $DATABASE_URL."""

_in_process_caller: ContextVar[Caller | None] = ContextVar("ecode_tool_caller", default=None)


@dataclass(frozen=True)
class ToolSettings:
    """Bounds on what one tool call may read, run or return."""

    read_max_bytes: int = 256 * 1024
    read_max_lines: int = 2000
    list_max_entries: int = 1000
    search_max_results: int = 200
    search_max_file_bytes: int = 2 * 1024 * 1024
    command_timeout_s: float = 120.0
    command_max_timeout_s: float = 1800.0
    command_output_cap_bytes: int = 64 * 1024
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    install_timeout_s: float = 900.0
    execute_timeout_s: float = 120.0
    execute_output_cap_chars: int = 20_000
    execute_max_image_bytes: int = 2 * 1024 * 1024
    query_max_rows: int = 200
    query_timeout_s: float = 30.0


class AuditSink(Protocol):
    """Records who changed what through a tool. Called by the tool layer on every write."""

    async def record(
        self, user: EcodeUser, project_id: str, tool: str, details: dict[str, Any]
    ) -> None: ...


class McpReporter:
    """Progress of a call made over MCP: each update is a progress notification.

    Only sent when the client asked for progress (gave a progress token); a client that went
    away is not an error for the tool.
    """

    def __init__(self, ctx: Context, *, structured: bool = False) -> None:
        self._ctx = ctx
        self._step = 0
        # For the ecode hub service, which rebuilds its run's feed from these (command output,
        # file changes with their diffs): each message is a JSON object tagged "ecode".
        self._structured = structured

    async def _send(self, message: str) -> None:
        self._step += 1
        try:
            await self._ctx.report_progress(self._step, None, message)
        except Exception:  # a closed stream must not fail the tool call itself
            log.debug("progress notification not delivered", exc_info=True)

    async def progress(self, message: str) -> None:
        if self._structured:
            message = json.dumps({"ecode": "progress", "text": message})
        await self._send(message)

    async def output(self, chunk: str) -> None:
        if self._structured:
            chunk = json.dumps({"ecode": "output", "text": chunk})
        await self._send(chunk)

    async def file_changed(self, change: FileChange) -> None:
        if self._structured:
            await self._send(
                json.dumps({"ecode": "file", **change.event_data(), "live": change.live})
            )
            return
        await self._send(f"{change.action} {change.path} (+{change.added} -{change.removed})")


#: runs a tool call somewhere else (name, arguments, the call's context) -> its result
ForwardCall = Callable[[str, dict[str, Any], Context[Any, Any] | None], Awaitable[CallToolResult]]


#: applies the project's approval policy to a call (name, arguments, the call's context)
PolicyCheck = Callable[[str, dict[str, Any], Context[Any, Any] | None], Awaitable[None]]


class _EcodeMCPServer(MCPServer[Any]):
    """Lets an ``EcodeError``'s code and message reach the client.

    The SDK hides the text of unexpected exceptions (it cannot know they are safe to show);
    ours are written to be shown, so they are re-raised as ``ToolError``s.
    """

    #: set by the ToolLayer: counts the call against its caller's rate limit before it runs
    before_call: Callable[[Context[Any, Any] | None], Awaitable[None]] | None = None
    #: set by the ToolLayer: the project's approval policy, applied before the tool runs
    check_policy: PolicyCheck | None = None
    #: the hub service (hub/mcp.py): every call goes to the project's server instead of
    #: running here, and these tools are not offered
    forward: ForwardCall | None = None
    hidden: frozenset[str] = frozenset()

    async def list_tools(self) -> list[MCPTool]:
        return [t for t in await super().list_tools() if t.name not in self.hidden]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            if self.before_call is not None:
                await self.before_call(context)
            if self.check_policy is not None:
                await self.check_policy(name, arguments, context)
            if self.forward is not None:
                if name in self.hidden:
                    msg = f"{name} is not available here"
                    raise InvalidInput(msg)
                return await self.forward(name, arguments, context)
            return await super().call_tool(name, arguments, context)
        except EcodeError as exc:  # from before_call (rate_limited) or a forwarded call
            msg = f"{exc.code}: {exc.message}"
            raise ToolError(msg) from exc
        except ValidationError as exc:
            problem = _invalid_arguments(name, exc)
            msg = f"{problem.code}: {problem.message}"
            raise ToolError(msg) from problem
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, EcodeError):
                msg = f"{cause.code}: {cause.message}"
                raise ToolError(msg) from cause
            if isinstance(cause, ValidationError):
                problem = _invalid_arguments(name, cause)
                msg = f"{problem.code}: {problem.message}"
                raise ToolError(msg) from problem
            raise


def _invalid_arguments(tool: str, exc: ValidationError) -> InvalidInput:
    """A tool's argument errors as ``invalid_input: ...``, one clause per argument, without
    pydantic's internals (type names, input values, documentation links)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error.get("loc", ())) or "arguments"
        what = "unknown argument" if error.get("type") == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {what}")
    msg = f"{tool}: " + "; ".join(problems)
    return InvalidInput(msg)


def _forbid_unknown_arguments(server: MCPServer[Any]) -> None:
    """Make every tool refuse arguments it does not have, and say so in its schema.

    The SDK's argument models ignore unknown fields, so a misspelt `timeout` or a stale
    argument from another version would be dropped silently: an outside client is told
    instead (`additionalProperties: false`, and a validation error naming the field).
    """
    manager = getattr(server, "_tool_manager", None)
    for tool in manager.list_tools() if manager is not None else []:
        base = tool.fn_metadata.arg_model
        config = {**base.model_config, "extra": "forbid"}
        strict = type(base.__name__, (base,), {"model_config": config, "__module__": __name__})
        tool.fn_metadata.arg_model = strict
        tool.parameters["additionalProperties"] = False


ChangeListener = Callable[[str, FileChange], Awaitable[None] | None]


class ToolLayer:
    """The MCP server and everything its tools share. One per Jupyter server."""

    #: :meth:`call` takes an ``approver`` (the agent's toolbox passes its run's)
    supports_approvals = True

    def __init__(
        self,
        access: ProjectAccess,
        *,
        live: LiveDocuments | None = None,
        kernels: KernelProvider | None = None,
        launcher: Launcher | None = None,
        audit: AuditSink | None = None,
        settings: ToolSettings | None = None,
        preview_backend: PreviewBackend | None = None,
        limiter: RateLimiter | None = None,
        directory: ProjectDirectory | None = None,
        policy: PolicySource | None = None,
    ) -> None:
        from ecode_jupyter.tools import (
            commands,
            database,
            files,
            kernel,
            notebooks,
            preview,
            projects,
        )

        self.access = access
        self.live = live
        self.launcher = launcher
        self.preview = preview_backend
        # list_projects / resolve_project: the projects a caller may see (None: not offered)
        self.directory = directory
        self.audit_sink = audit
        # Every call, over MCP or in-process, counts against its caller's tool_calls limit.
        self.limiter = limiter
        self.settings = settings or ToolSettings()
        self.kernels: KernelProvider = kernels or kernel.LocalKernels()
        self._listeners: list[ChangeListener] = []
        # MCPServer() calls logging.basicConfig with a rich handler, which would take over the
        # root logger of the whole Jupyter server when it has none; a placeholder handler
        # makes that call a no-op.
        root = logging.getLogger()
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
        try:
            self.mcp = _EcodeMCPServer(name="ecode", instructions=INSTRUCTIONS, version="0.1.0")
        finally:
            root.removeHandler(placeholder)
        for module in (projects, files, commands, kernel, notebooks, database, preview):
            module.register(self)
        _forbid_unknown_arguments(self.mcp)
        self.mcp.before_call = self._count_call
        # The project's approval policy (projects/policy.py), for every caller, before the
        # tool's own code: a denied call never starts.
        self.policy = policy
        self.mcp.check_policy = self._check_policy
        self._session_manager: StreamableHTTPSessionManager | None = None
        self._http_task: asyncio.Task[None] | None = None
        self._http_stop: asyncio.Event | None = None
        self._http_start_lock = asyncio.Lock()

    # -- used by the tools ---------------------------------------------------------------

    def caller(self, ctx: Context | None) -> Caller:
        """The caller of the current tool call: in-process, or the HTTP request's user."""
        in_process = _in_process_caller.get()
        if in_process is not None:
            return in_process
        request = None
        if ctx is not None:
            with contextlib.suppress(ValueError):  # no request: not an MCP call
                request = ctx.request_context.request
        scope = getattr(request, "scope", None)
        user = scope.get(SCOPE_USER_KEY) if isinstance(scope, dict) else None
        if not isinstance(user, EcodeUser) or ctx is None:
            msg = "tool called without an authenticated user"
            raise NotAuthenticated(msg)
        # The hub service's calls (hub/server.py ServiceCaller) want progress it can parse.
        structured = bool(getattr(user, "structured_progress", False))
        return Caller(user=user, reporter=McpReporter(ctx, structured=structured))

    async def open(
        self, ctx: Context | None, project_id: str, *, write: bool
    ) -> tuple[ToolProject, Caller]:
        """Authorize the caller on ``project_id``; ``write`` needs the editor role."""
        caller = self.caller(ctx)
        project = await self.access.open(caller.user, project_id, write=write)
        return project, caller

    def writer(self, project: ToolProject, caller: Caller) -> WorkspaceWriter:
        async def on_change(change: FileChange) -> None:
            await caller.reporter.file_changed(change)
            for listener in list(self._listeners):
                try:
                    result = listener(project.id, change)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("file change listener failed")

        return WorkspaceWriter(project.workspace, live=self.live, on_change=on_change)

    async def audit(
        self, caller: Caller, project: ToolProject, tool: str, details: dict[str, Any]
    ) -> None:
        """Record a write. Details name what changed (paths, packages), never contents."""
        log.info("tool %s on project %s by %s", tool, project.id, caller.user.username)
        if self.audit_sink is not None:
            try:
                await self.audit_sink.record(caller.user, project.id, tool, details)
            except Exception:
                log.exception("recording the audit entry for tool %s failed", tool)

    async def count_call(self, user: EcodeUser) -> None:
        """Count one tool call by ``user`` (``tool_calls``); raises RateLimited past the limit.

        The HTTP bridge calls this before the request reaches the MCP session, so that a
        refusal can be an HTTP 429 (see ``tools/http.py``), and marks the request counted.
        """
        if self.limiter is not None:
            await self.limiter.hit(user, TOOL_CALLS)

    async def _count_call(self, ctx: Context[Any, Any] | None) -> None:
        if self.limiter is None:
            return
        in_process = _in_process_caller.get()
        if in_process is not None:
            await self.count_call(in_process.user)
            return
        request = None
        if ctx is not None:
            with contextlib.suppress(ValueError):  # no request: not an MCP call
                request = ctx.request_context.request
        scope = getattr(request, "scope", None)
        if not isinstance(scope, dict) or scope.get(SCOPE_COUNTED_KEY):
            return  # counted by the HTTP bridge already
        user = scope.get(SCOPE_USER_KEY)
        if isinstance(user, EcodeUser):  # without one the tool refuses the call itself
            await self.count_call(user)

    async def _check_policy(
        self, name: str, arguments: dict[str, Any], ctx: Context[Any, Any] | None
    ) -> None:
        if self.policy is None:
            return
        caller = self.caller(ctx)

        async def authorize(user: EcodeUser, project_id: str) -> object:
            return await self.access.open(user, project_id, write=False)

        await enforce_policy(self.policy, authorize, caller.user, caller.approver, name, arguments)

    def add_change_listener(self, listener: ChangeListener) -> None:
        """Be told of every file change made through any tool (``listener(project_id, change)``)."""
        self._listeners.append(listener)

    # -- in-process use (the agent) ------------------------------------------------------

    async def list_tools(self) -> list[MCPTool]:
        return await self.mcp.list_tools()

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        user: EcodeUser,
        reporter: ToolReporter | None = None,
        approver: Approver | None = None,
    ) -> CallToolResult:
        """Call a tool as ``user``, exactly as an MCP client would, and return its result.

        Raises the tool's ``EcodeError`` (``InvalidInput``, ``Forbidden``, ...) instead of
        returning an error result; invalid arguments raise ``InvalidInput``. ``approver``
        answers for calls the project's policy asks about (an agent run); without one they
        are refused, as for an outside client.
        """
        caller = (
            Caller(user=user, reporter=reporter, approver=approver)
            if reporter
            else Caller(user=user, approver=approver)
        )
        token = _in_process_caller.set(caller)
        try:
            result = await self.mcp.call_tool(name, arguments)
        except UnexpectedToolError as exc:
            # A crash in a tool: the agent's boundary logs the real exception.
            if exc.__cause__ is not None:
                raise exc.__cause__ from None
            raise
        except ToolError as exc:
            if isinstance(exc.__cause__, EcodeError):
                raise exc.__cause__ from None
            raise InvalidInput(str(exc)) from exc
        finally:
            _in_process_caller.reset(token)
        if not isinstance(result, CallToolResult):  # our tools never ask for more input
            msg = f"tool {name} returned an unexpected result"
            raise TypeError(msg)
        return result

    # -- over HTTP -----------------------------------------------------------------------

    @property
    def session_manager(self) -> StreamableHTTPSessionManager:
        if self._session_manager is None:
            msg = "the MCP HTTP transport is not started"
            raise RuntimeError(msg)
        return self._session_manager

    async def start_http(self) -> None:
        """Start the streamable HTTP session manager (its task group lives until stop).

        Idempotent; the HTTP handler calls it before each request, so it starts with the
        first MCP request on the server's running loop.
        """
        if self._http_task is not None:
            return
        async with self._http_start_lock:
            if self._http_task is None:
                await self._start_http()

    async def _start_http(self) -> None:
        # Jupyter already checked the Host/Origin and the user's token before a request
        # reaches the bridge; the SDK's own DNS-rebinding check would reject proxied hosts.
        self.mcp.streamable_http_app(
            streamable_http_path="/",
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        manager = self.mcp.session_manager
        ready = asyncio.Event()
        stop = asyncio.Event()

        async def run() -> None:
            async with manager.run():
                ready.set()
                await stop.wait()

        self._session_manager = manager
        self._http_stop = stop
        # A fresh context: an in-process caller set by call() must never leak into MCP sessions.
        self._http_task = asyncio.create_task(run(), context=contextvars.Context())
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, self._http_task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            await self._http_task  # raises what went wrong

    async def stop(self) -> None:
        """Close MCP sessions and shut the project kernels down."""
        if self._http_stop is not None and self._http_task is not None:
            self._http_stop.set()
            try:
                await asyncio.wait_for(self._http_task, 5)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("MCP session manager did not stop in time")
            self._http_task = None
        await self.kernels.shutdown_all()
