"""The agent's side of the tool layer: one run's tools, called as the run's user.

The agent reaches a project only through :meth:`ToolLayer.call` — the same code path as an MCP
client, with the same authorization on every call. This module turns the layer's MCP tool list
into :class:`ToolSpec`s for the model (the ``project`` argument is filled in by the agent, so the
model cannot aim a tool at another project), runs a model's :class:`ToolCall` and turns the
result into text for the model, trimmed to a budget, and into feed events: ``tool.call``,
``tool.result``, ``command.output`` and ``file.changed``. Everything is redacted first.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp_types import ImageContent

from ..exceptions import EcodeError
from ..identity import EcodeUser
from ..workspace.writer import FileChange
from .events import COMMAND_OUTPUT, FILE_CHANGED, TOOL_CALL, TOOL_RESULT, RunFeed
from .providers.base import ToolCall, ToolSpec
from .redaction import StreamRedactor

if TYPE_CHECKING:
    from ..tools.context import Approver
    from ..tools.server import ToolLayer

log = logging.getLogger(__name__)

#: argument names through which a tool names its project; the agent fills them in
PROJECT_PARAMS = ("project", "project_id")
#: tools that change the project's files or environment (tests must run again after them)
CHANGING_TOOLS = frozenset(
    {"write_file", "edit_file", "delete_file", "install_packages", "edit_notebook_cell"}
)
#: the tools of an ask-mode run: they only look (query_database only without write)
READ_ONLY_TOOLS = frozenset(
    {"list_files", "read_file", "search_files", "read_notebook", "preview_status", "query_database"}
)
# How much of an argument or an output one event carries; the full text goes to the model.
EVENT_ARG_CHARS = 2000
EVENT_OUTPUT_CHARS = 4000
# A screenshot rides in its tool.result event up to this much base64 (about 220 KB of PNG).
EVENT_IMAGE_CHARS = 300_000


def trim_middle(text: str, budget: int) -> str:
    """``text`` within ``budget`` characters, keeping its head and (more of) its tail.

    Errors and test summaries are at the end of an output, so the tail gets the larger share.
    """
    if budget <= 0 or len(text) <= budget:
        return text
    note = f"\n[... {{}} characters omitted to fit the {budget}-character budget ...]\n"
    head_len = max(0, (budget - len(note) - 8) * 2 // 5)
    tail_len = max(0, budget - len(note) - 8 - head_len)
    omitted = len(text) - head_len - tail_len
    return text[:head_len] + note.format(omitted) + (text[-tail_len:] if tail_len else "")


def _trim_args(value: Any) -> Any:
    if isinstance(value, str):
        return trim_middle(value, EVENT_ARG_CHARS)
    if isinstance(value, dict):
        return {k: _trim_args(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trim_args(v) for v in value[:100]]
    return value


def model_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema without the project argument the agent fills in."""
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in PROJECT_PARAMS}
    required = [r for r in schema.get("required") or [] if r not in PROJECT_PARAMS]
    clean = {k: v for k, v in schema.items() if k not in ("properties", "required", "title")}
    clean["type"] = "object"
    clean["properties"] = props
    if required:
        clean["required"] = required
    return clean


@dataclass
class ToolOutcome:
    """What one tool call gave: text for the model, and facts the loop decides on."""

    name: str
    text: str
    is_error: bool
    structured: dict[str, Any] | None = None
    changed: list[str] = field(default_factory=list)
    #: the EcodeError code of a failed call ("preview_failed", "not_found", ...)
    error_code: str | None = None
    #: the first image the tool returned (check_app's screenshot): (MIME type, base64)
    image: tuple[str, str] | None = None

    @property
    def exit_code(self) -> int | None:
        code = (self.structured or {}).get("exit_code")
        return code if isinstance(code, int) else None


def render_result(name: str, structured: dict[str, Any] | None, texts: list[str]) -> str:
    """The model's view of a result: compact, output unescaped, no file echoed back."""
    if structured is None:
        return "\n".join(texts)
    if "exit_code" in structured and "output" in structured:
        status = f"exit code {structured['exit_code']}"
        if structured.get("timed_out"):
            status += " (timed out)"
        extra = {
            k: v
            for k, v in structured.items()
            if k not in ("exit_code", "output", "timed_out", "truncated")
        }
        head = status + (f" {json.dumps(extra, ensure_ascii=False)}" if extra else "")
        return f"{head}\n--- output ---\n{structured['output']}"
    if name in ("write_file", "delete_file") and "action" in structured:
        # The model wrote the content itself; echoing it back would only cost tokens.
        return (
            f"{structured['action']} {structured.get('path')} "
            f"(+{structured.get('added', 0)} -{structured.get('removed', 0)})"
        )
    return json.dumps(structured, ensure_ascii=False)


class _FeedReporter:
    """A ToolReporter that turns a call's progress into feed events (never raises)."""

    def __init__(self, feed: RunFeed, call_id: str) -> None:
        self.feed = feed
        self.call_id = call_id
        self.stream = StreamRedactor(feed.redactor)
        self.changed: list[str] = []

    async def _emit(self, type_: str, data: dict[str, Any]) -> None:
        try:
            await self.feed.emit(type_, data)
        except Exception:
            log.exception("recording a %s event failed", type_)

    async def progress(self, message: str) -> None:
        await self._emit(
            COMMAND_OUTPUT, {"call_id": self.call_id, "text": message + "\n", "kind": "progress"}
        )

    async def output(self, chunk: str) -> None:
        text = self.stream.feed(chunk)
        if text:
            await self._emit(COMMAND_OUTPUT, {"call_id": self.call_id, "text": text})

    async def flush(self) -> None:
        text = self.stream.flush()
        if text:
            await self._emit(COMMAND_OUTPUT, {"call_id": self.call_id, "text": text})

    async def file_changed(self, change: FileChange) -> None:
        self.changed.append(change.path)
        await self._emit(FILE_CHANGED, {"call_id": self.call_id, **change.event_data()})


class AgentToolbox:
    """One run's tools: the layer's tools on one project, as one user, reporting to one feed."""

    def __init__(
        self,
        layer: ToolLayer,
        *,
        user: EcodeUser,
        project_id: str,
        feed: RunFeed,
        result_budget_chars: int = 12_000,
        approver: Approver | None = None,
        read_only: bool = False,
    ) -> None:
        self.layer = layer
        self.user = user
        self.project_id = project_id
        self.feed = feed
        self.result_budget_chars = result_budget_chars
        # Answers for calls the project's policy asks about (agent/approvals.py).
        self.approver = approver
        # An ask-mode run: only the tools that look are offered or run.
        self.read_only = read_only
        self._specs: list[ToolSpec] | None = None

    async def specs(self) -> list[ToolSpec]:
        """The tools the model may call (cached for the run)."""
        if self._specs is None:
            tools = await self.layer.list_tools()
            # A run works on its own project: the tools that find projects (list_projects,
            # resolve_project, for outside clients) are not the model's.
            self._specs = [
                ToolSpec(t.name, t.description or "", model_schema(dict(t.input_schema)))
                for t in tools
                if "project" in (t.input_schema.get("properties") or {})
                and (not self.read_only or t.name in READ_ONLY_TOOLS)
            ]
        return self._specs

    async def has(self, name: str) -> bool:
        return any(spec.name == name for spec in await self.specs())

    async def can_preview(self) -> bool:
        """Whether start_preview can work here: the tool exists and the layer has a preview
        backend (a server; not ``jupyter ecode new``)."""
        return await self.has("start_preview") and getattr(self.layer, "preview", True) is not None

    async def call(self, call: ToolCall, *, step: int) -> ToolOutcome:
        """Run one tool call and record it; tool errors become error results, not exceptions.

        ``CancelledError`` propagates (the layer's command runner kills the process group).
        """
        await self.feed.emit(
            TOOL_CALL,
            {
                "step": step,
                "call_id": call.id,
                "name": call.name,
                "arguments": _trim_args(call.arguments),
            },
        )
        started = time.monotonic()
        reporter = _FeedReporter(self.feed, call.id)
        outcome = await self._invoke(call, reporter)
        await reporter.flush()
        outcome.changed = reporter.changed
        outcome.text = trim_middle(self.feed.redactor.text(outcome.text), self.result_budget_chars)
        data: dict[str, Any] = {
            "step": step,
            "call_id": call.id,
            "name": call.name,
            "ok": not outcome.is_error,
            "exit_code": outcome.exit_code,
            "output": trim_middle(outcome.text, EVENT_OUTPUT_CHARS),
            "duration_s": round(time.monotonic() - started, 3),
        }
        if outcome.image is not None and len(outcome.image[1]) <= EVENT_IMAGE_CHARS:
            # The feed shows a screenshot beside its call (the Lab feed as a thumbnail).
            data["image"] = {"mime_type": outcome.image[0], "data": outcome.image[1]}
        await self.feed.emit(TOOL_RESULT, data)
        return outcome

    async def peek(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """A read-only call (``list_files``, ``read_file``) not recorded in the feed: the
        suite's own look at the project, which the user did not ask to watch."""
        call = ToolCall(f"peek_{name}", name, arguments)
        outcome = await self._invoke(call, _FeedReporter(self.feed, call.id))
        outcome.text = self.feed.redactor.text(outcome.text)
        return outcome

    async def _invoke(self, call: ToolCall, reporter: _FeedReporter) -> ToolOutcome:
        if call.arguments_error is not None:
            code = "output_cut" if call.cut else "invalid_input"
            return ToolOutcome(call.name, f"{code}: {call.arguments_error}", True, error_code=code)
        if not any(spec.name == call.name for spec in await self.specs()):
            known = ", ".join(spec.name for spec in await self.specs())
            return ToolOutcome(call.name, f"unknown tool {call.name!r}; tools: {known}", True)
        if self.read_only and call.arguments.get("write"):
            msg = "read_only: this run only answers questions (mode ask); nothing may change"
            return ToolOutcome(call.name, msg, True, error_code="read_only")
        arguments = {k: v for k, v in call.arguments.items() if k not in PROJECT_PARAMS}
        arguments["project"] = self.project_id
        # Layers that run tools here take the run's approver; the hub service's remote layer
        # does not apply approval policies yet.
        extra: dict[str, Any] = {}
        if self.approver is not None and getattr(self.layer, "supports_approvals", False):
            extra["approver"] = self.approver
        try:
            result = await self.layer.call(call.name, arguments, self.user, reporter, **extra)
        except EcodeError as exc:
            return ToolOutcome(call.name, f"{exc.code}: {exc.message}", True, error_code=exc.code)
        except Exception:
            # A bug in one tool must not end the run; the model may try another way.
            log.exception("tool %s failed unexpectedly", call.name)
            return ToolOutcome(
                call.name, f"internal: the tool {call.name} failed unexpectedly", True
            )
        texts: list[str] = []
        image: tuple[str, str] | None = None
        for block in result.content:
            if isinstance(block, ImageContent) and image is None:
                image = (block.mime_type, block.data)
            text = getattr(block, "text", None)
            if isinstance(text, str):
                texts.append(text)
            else:
                kind = getattr(block, "type", "content")
                mime = getattr(block, "mime_type", None) or getattr(block, "mimeType", "")
                texts.append(f"[{kind} {mime}]".replace(" ]", "]"))
        structured = result.structured_content
        if isinstance(structured, dict) and set(structured) == {"result"}:
            # A tool returning a plain value is wrapped by the SDK as {"result": value}.
            inner = structured["result"]
            structured = inner if isinstance(inner, dict) else None
        is_error = bool(result.is_error)
        text = render_result(call.name, None if is_error else structured, texts)
        return ToolOutcome(
            call.name,
            text,
            is_error,
            structured if isinstance(structured, dict) else None,
            image=image,
        )
