"""Scripted model turns, faults and recorded requests for the loopback model servers.

A script is provider-neutral: the same :class:`ScriptedTurn` list drives the Anthropic and
the OpenAI loopback, each rendering it in its own wire format. Instead of a list, a
*responder* (a callable taking the :class:`LoopbackRequest` and returning the next turn)
lets a test answer what the client actually sent, e.g. the result of the last tool call.

Faults belong to a turn and hit the attempts that ask for it, in order: with
``faults=[HTTPFault(429), HTTPFault(429)]`` the first two requests get a 429 and the third
gets the turn. A turn is used up once it was streamed without a fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ecode_jupyter.agent.providers.base import Usage

Api = Literal["anthropic", "openai"]


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """A tool call the scripted model makes.

    ``raw_arguments`` replaces the JSON of ``arguments`` on the wire, to send broken JSON.
    ``id`` defaults to a generated ``toolu_…`` / ``call_…`` id.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    raw_arguments: str | None = None

    def arguments_json(self) -> str:
        if self.raw_arguments is not None:
            return self.raw_arguments
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class HTTPFault:
    """Answer an attempt with an HTTP error in the API's error format.

    ``error_type`` defaults to what the real API sends for ``status`` (e.g. 529 →
    ``overloaded_error``). ``retry_after_ms`` goes out as the ``retry-after-ms`` header that
    both SDKs honour, so their retries wait that long instead of their 0.5 s+ backoff;
    ``None`` leaves it out. ``should_retry`` sets ``x-should-retry``.
    """

    status: int
    error_type: str | None = None
    message: str | None = None
    retry_after_ms: int | None = 1
    should_retry: bool | None = None


@dataclass(frozen=True, slots=True)
class CutStream:
    """Stream the turn but stop after ``after_events`` SSE events.

    By default the connection is dropped mid-body (what a network cut looks like to the
    client); with ``clean=True`` the body ends properly, just without the final events.
    """

    after_events: int
    clean: bool = False


@dataclass(frozen=True, slots=True)
class StreamError:
    """After ``after_events`` SSE events, send the API's in-stream error event and end."""

    after_events: int
    error_type: str = "overloaded_error"
    message: str = "Overloaded"


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    """After ``after_events`` SSE events, send an event whose data is not valid JSON."""

    after_events: int
    data: str = "{not json"


Fault = HTTPFault | CutStream | StreamError | MalformedEvent


@dataclass(slots=True)
class ScriptedTurn:
    """One model answer: text, then tool calls, with usage and a stop reason.

    ``usage`` of ``None`` is counted from the request (the server's ``bytes_per_token``
    over the input's JSON, as its token-count endpoint says) and the answer (4 characters
    per token). ``stop_reason`` uses the neutral names (``end_turn``, ``tool_use``,
    ``max_tokens``, ``refusal``; each server maps them to its own) and defaults to
    ``tool_use`` when there are tool calls. ``text_chunk`` / ``args_chunk`` set how many
    characters each streamed delta carries; ``event_delay`` sleeps between SSE events.
    """

    text: str = ""
    tool_calls: list[ScriptedToolCall] = field(default_factory=list)
    usage: Usage | None = None
    stop_reason: str | None = None
    faults: list[Fault] = field(default_factory=list)
    text_chunk: int = 8
    args_chunk: int = 6
    event_delay: float = 0.0

    def final_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_calls else "end_turn"

    def usage_for(self, request: LoopbackRequest) -> Usage:
        if self.usage is not None:
            return self.usage
        answer = len(self.text) + sum(len(c.arguments_json()) for c in self.tool_calls)
        read = request.input_tokens if request.input_tokens is not None else request.body_size // 4
        return Usage(input_tokens=max(1, read), output_tokens=max(1, answer // 4))


def text_turn(text: str, **kwargs: Any) -> ScriptedTurn:
    """A turn that only says ``text``."""
    return ScriptedTurn(text=text, **kwargs)


def tool_turn(name: str, arguments: dict[str, Any], text: str = "", **kwargs: Any) -> ScriptedTurn:
    """A turn that calls one tool (after saying ``text``, if any)."""
    return ScriptedTurn(text=text, tool_calls=[ScriptedToolCall(name, arguments)], **kwargs)


@dataclass(frozen=True, slots=True)
class ToolResultView:
    """A tool result found in a request, whatever the wire format."""

    tool_call_id: str
    content: str
    is_error: bool


_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "api-key", "proxy-authorization"})
REDACTED = "<redacted>"


@dataclass(frozen=True, slots=True)
class LoopbackRequest:
    """A request as the loopback server received it; secret header values are redacted.

    ``index`` numbers every request from 0; ``turn`` is the script position it was served
    from and ``attempt`` counts the requests for that turn from 0 (retries raise it).
    """

    api: Api
    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    body_size: int
    turn: int = -1
    attempt: int = 0
    #: the input (system, messages, tools) in tokens, as the server's tokenizer counts it
    input_tokens: int | None = None

    @classmethod
    def redact(cls, headers: list[tuple[str, str]]) -> dict[str, str]:
        return {k.lower(): (REDACTED if k.lower() in _SECRET_HEADERS else v) for k, v in headers}

    @property
    def json(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str:
        return str(self.json.get("model", ""))

    @property
    def stream(self) -> bool:
        return bool(self.json.get("stream", False))

    def tool_names(self) -> list[str]:
        """Names of the tools the request offers the model."""
        names = []
        for tool in self.json.get("tools") or []:
            if self.api == "openai":
                names.append(tool.get("function", {}).get("name", ""))
            else:
                names.append(tool.get("name", ""))
        return names

    def tool_results(self) -> list[ToolResultView]:
        """The tool results at the end of the conversation (answers to the last calls)."""
        messages = self.json.get("messages") or []
        results: list[ToolResultView] = []
        if self.api == "openai":
            for message in reversed(messages):
                if message.get("role") != "tool":
                    break
                content = _text_of(message.get("content"))
                is_error = content.startswith("ERROR: ")
                results.append(ToolResultView(message.get("tool_call_id", ""), content, is_error))
            results.reverse()
            return results
        if messages and messages[-1].get("role") == "user":
            content = messages[-1].get("content")
            for block in content if isinstance(content, list) else []:
                if block.get("type") == "tool_result":
                    results.append(
                        ToolResultView(
                            block.get("tool_use_id", ""),
                            _text_of(block.get("content")),
                            bool(block.get("is_error", False)),
                        )
                    )
        return results


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


Responder = Callable[[LoopbackRequest], ScriptedTurn]


def split(text: str, size: int) -> list[str]:
    """``text`` in pieces of ``size`` characters (at least one piece when non-empty)."""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]
