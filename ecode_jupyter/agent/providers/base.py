"""The provider-neutral interface between the agent loop and a model API.

The agent keeps its history as a list of :class:`Message` and asks a :class:`Provider` for
one model turn at a time with :meth:`Provider.stream_turn`. The provider translates the
history into its wire format, streams the answer back as :class:`ProviderEvent` values, and
turns every failure into a :class:`ProviderError`.

A turn streams, in order::

    UsageReport?  (TextDelta | ToolCallReady | UsageReport)*  TurnEnd

or raises ``ProviderError`` part-way. Usage is reported as the turn's running total, so the
billing code settles a cut stream to the last :class:`UsageReport` it saw (also carried by the
error as ``partial_usage``).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ecode_jupyter.exceptions import EcodeError

log = logging.getLogger(__name__)

Role = Literal["user", "assistant", "tool"]

# Normalized stop reasons; a provider maps its own onto these and passes unknown ones through.
STOP_END_TURN = "end_turn"
STOP_TOOL_USE = "tool_use"
STOP_MAX_TOKENS = "max_tokens"
STOP_SEQUENCE = "stop_sequence"
STOP_REFUSAL = "refusal"
STOP_PAUSE_TURN = "pause_turn"
# The window was full before the answer ended (Anthropic's `model_context_window_exceeded`).
STOP_CONTEXT_WINDOW = "model_context_window_exceeded"
# Not a model's answer: the provider cannot build what was asked (the offline provider when no
# template fits the prompt). The turn's text says why; the run ends failed.
STOP_CANNOT_BUILD = "cannot_build"
#: the stop reasons after which the model's answer is its whole, finished answer
FINISHED_STOP_REASONS = frozenset({STOP_END_TURN, STOP_SEQUENCE})


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call; ``input_schema`` is a JSON Schema object."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for.

    ``arguments_error`` is set (and ``arguments`` is empty) when the model's arguments were
    not a JSON object; the agent answers the call with an error result rather than run the
    tool. When the turn stopped at ``max_tokens`` the loop marks such a call ``cut``.
    """

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_error: str | None = None
    #: the model's output limit cut this call; ``arguments_error`` then tells the model so
    cut: bool = False


def parse_tool_arguments(call_id: str, name: str, raw: str) -> ToolCall:
    """A ToolCall from streamed JSON text; broken JSON becomes ``arguments_error``."""
    try:
        value = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as exc:
        return ToolCall(call_id, name, {}, arguments_error=f"arguments are not valid JSON: {exc}")
    if not isinstance(value, dict):
        kind = type(value).__name__
        return ToolCall(
            call_id, name, {}, arguments_error=f"arguments are a JSON {kind}, not object"
        )
    return ToolCall(call_id, name, value)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call, split the way prices are.

    ``input_tokens`` counts only the uncached input billed at the full input price; tokens
    read from or written to the prompt cache are counted apart, so the total input is the sum
    of the three. (Anthropic reports it this way; the OpenAI provider subtracts the cached
    tokens from ``prompt_tokens`` to match.)
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    #: the provider never reported these counts; they were estimated from the characters sent
    #: and received (see :func:`estimate_usage`), and billing marks the charge as estimated
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            estimated=self.estimated or other.estimated,
        )

    @property
    def total_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def is_zero(self) -> bool:
        return (
            self.input_tokens == self.output_tokens == self.cache_read_tokens == 0
            and self.cache_write_tokens == 0
        )

    def to_json(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }


@dataclass(slots=True)
class Message:
    """One entry of the conversation, independent of any provider's format.

    A ``user`` message has ``text``; an ``assistant`` message has ``text`` and/or
    ``tool_calls``; a ``tool`` message is the result of the call ``tool_call_id``, with
    ``is_error`` when the tool failed.
    """

    role: Role
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    is_error: bool = False

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(role="user", text=text)

    @classmethod
    def assistant(cls, text: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        return cls(role="assistant", text=text, tool_calls=list(tool_calls or []))

    @classmethod
    def tool_result(cls, tool_call_id: str, text: str, *, is_error: bool = False) -> Message:
        return cls(role="tool", text=text, tool_call_id=tool_call_id, is_error=is_error)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's visible text, in order."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallReady:
    """A tool call whose arguments have fully arrived."""

    call: ToolCall


@dataclass(frozen=True, slots=True)
class UsageReport:
    """The turn's usage so far: a running total that replaces earlier reports, not a delta."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The turn finished normally; ``usage`` is its final total."""

    stop_reason: str
    usage: Usage


ProviderEvent = TextDelta | ToolCallReady | UsageReport | TurnEnd


class ProviderError(EcodeError):
    """A model call failed.

    ``retryable`` says whether issuing the same turn again may succeed (rate limits,
    overload, server errors, a dropped stream); the SDK has already spent its own retries
    when this is raised. ``http_status`` is the upstream status when there was one.
    ``partial_usage`` is what the provider reported before the failure: a stream cut after
    ``message_start`` still cost input tokens, and billing settles them. ``retry_after_s`` is
    how long the provider asked the client to wait before trying again (``retry-after-ms`` or
    ``retry-after``), when it said.
    """

    status: ClassVar[int] = 502
    code: ClassVar[str] = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: str,
        retryable: bool,
        http_status: int | None = None,
        partial_usage: Usage | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, kind=kind, retryable=retryable, http_status=http_status
        )
        self.provider = provider
        self.kind = kind
        self.retryable = retryable
        self.http_status = http_status
        self.partial_usage = partial_usage if partial_usage is not None else Usage()
        self.retry_after_s = retry_after_s


class Provider(ABC):
    """A model API behind the neutral interface.

    The agent loop creates one per run, calls :meth:`stream_turn` once per model turn and
    :meth:`aclose` when the run ends. Instances are not shared across event loops.
    """

    #: provider name as configured: "anthropic", "openai", "openai-compatible", ...
    name: str
    #: model identifier sent to the API (and the key of the billing price table)
    model: str

    @property
    def cannot_build_reason(self) -> str:
        """The run's ``reason`` when the last turn ended with STOP_CANNOT_BUILD."""
        return "no_template"

    def next_plan_item(self, messages: list[Message]) -> int | None:
        """Which item of the run's plan (0-based) the next turn works on, when the provider
        knows it; the loop asks before each turn and puts it on that turn's ``step.started``.
        A model does not say, so None (clients then count turns)."""
        return None

    @abstractmethod
    def stream_turn(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        """Run one model turn, yielding events as they arrive.

        Implementations are async generators. Closing the generator early (cancellation)
        closes the HTTP stream. Raises :class:`ProviderError` for every failure.
        """

    @abstractmethod
    async def aclose(self) -> None:
        """Release the HTTP client; called by the agent loop when the run ends."""

    def input_token_bound(
        self, *, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> int:
        """The most input tokens a turn can be billed for, without asking anyone (see
        :func:`input_token_bound`). The agent holds credits for this before each call."""
        return input_token_bound(system=system, messages=messages, tools=tools)

    async def count_input_tokens(
        self, *, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> int | None:
        """The turn's input tokens as the provider counts them, or None when it cannot say.

        Asked only when the bound's hold does not fit the user's credits (it costs a
        round trip): a count the provider stands by lets a tight budget hold less."""
        return None

    async def __aenter__(self) -> Provider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(slots=True)
class TurnResult:
    """A whole turn gathered from its events (see :func:`collect_turn`)."""

    text: str
    tool_calls: list[ToolCall]
    stop_reason: str
    usage: Usage

    def to_message(self) -> Message:
        """The assistant message to append to the history."""
        return Message.assistant(self.text, self.tool_calls)


async def collect_turn(events: AsyncIterator[ProviderEvent]) -> TurnResult:
    """Drain a turn's events into a :class:`TurnResult`; errors propagate unchanged."""
    parts: list[str] = []
    calls: list[ToolCall] = []
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallReady):
            calls.append(event.call)
        elif isinstance(event, TurnEnd):
            return TurnResult("".join(parts), calls, event.stop_reason, event.usage)
    msg = "the provider's stream ended without a TurnEnd event"
    raise RuntimeError(msg)


# Roughly 4 characters per token for English text and code; tokenizers differ by model, so
# this is for reservations, never for charging.
_CHARS_PER_TOKEN = 4


def estimate_input_tokens(*, system: str, messages: list[Message], tools: list[ToolSpec]) -> int:
    """An upper-leaning guess of a turn's input tokens, for credit reservations."""
    chars = len(system)
    for message in messages:
        chars += len(message.text) + 16
        for call in message.tool_calls:
            chars += len(call.name) + len(json.dumps(call.arguments))
    for tool in tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.input_schema))
    return chars // _CHARS_PER_TOKEN + 1


# What a provider may add around the text it is sent (its own prompt for tool use, role
# markers, the turn's framing), in tokens: Anthropic documents a few hundred for tools.
_FRAMING_TOKENS = 2048
_FRAMING_PER_MESSAGE = 64
_FRAMING_PER_TOOL = 64


def _utf8(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def input_token_bound(*, system: str, messages: list[Message], tools: list[ToolSpec]) -> int:
    """An upper bound of a turn's input tokens under any tokenizer: the UTF-8 bytes of what
    is sent (a token stands for at least one byte; byte-level BPE and SentencePiece with byte
    fallback alike), plus room for what the provider frames it with. Tool definitions count
    twice, as providers render schemas into their own, wordier form.

    Characters / 4 is a fair average for English and code but not a bound (CJK text, base64,
    minified code run near one token per character), and a hold that is short lets a call
    cost more than the credits left (issue 17)."""
    total = _utf8(system) + _FRAMING_TOKENS
    for message in messages:
        total += _utf8(message.text) + _utf8(message.tool_call_id or "") + _FRAMING_PER_MESSAGE
        for call in message.tool_calls:
            args = json.dumps(call.arguments, ensure_ascii=False)
            total += _utf8(call.id) + _utf8(call.name) + _utf8(args) + _FRAMING_PER_MESSAGE
    for tool in tools:
        schema = json.dumps(tool.input_schema, ensure_ascii=False)
        total += 2 * (_utf8(tool.name) + _utf8(tool.description) + _utf8(schema))
        total += _FRAMING_PER_TOOL
    return total


def estimate_usage(*, input_tokens: int, output_chars: int) -> Usage:
    """Usage for a call whose stream never reported it, marked ``estimated``.

    A priced model billed the call all the same, so charging 0 would be wrong; about four
    characters per token is close enough for English and code, and the ledger says it is a guess.
    ``input_tokens`` comes from :func:`estimate_input_tokens` of the request.
    """
    return Usage(
        input_tokens=max(1, input_tokens),
        output_tokens=max(1, output_chars // _CHARS_PER_TOKEN) if output_chars else 0,
        estimated=True,
    )
