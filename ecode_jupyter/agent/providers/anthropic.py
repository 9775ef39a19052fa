"""The Anthropic Messages API behind the neutral provider interface.

Streams with ``messages.create(stream=True)`` and reads the raw events itself rather than
through the SDK's accumulating stream helper: the agent needs only deltas, finished tool
calls and usage, and reading raw events keeps the per-turn overhead small.

Prompt caching: the system prompt, the tool list and the conversation so far each end with a
``cache_control`` breakpoint (3 of the 4 allowed), so each turn of an agent run reads the
previous turn's prefix from the cache instead of paying for it again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic.types import (
    CacheControlEphemeralParam,
    ContentBlockParam,
    MessageParam,
    TextBlockParam,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlockParam,
)

from .base import (
    Message,
    Provider,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    Usage,
    UsageReport,
    parse_tool_arguments,
)
from .errors import bad_response, client_timeout, error_from_sdk, stream_incomplete, transport_error

log = logging.getLogger(__name__)

_EPHEMERAL: CacheControlEphemeralParam = {"type": "ephemeral"}
# The count's headroom: 1/50 (2 %) of it, plus 16 tokens.
_COUNT_HEADROOM = 50


@dataclass(slots=True)
class _ToolBlock:
    id: str
    name: str
    initial: dict[str, Any]
    parts: list[str] = field(default_factory=list)

    def finish(self) -> ToolCall:
        raw = "".join(self.parts)
        if not raw:
            return ToolCall(self.id, self.name, dict(self.initial))
        return parse_tool_arguments(self.id, self.name, raw)


class AnthropicProvider(Provider):
    """Claude models through the official ``anthropic`` SDK."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        auth_token: str | None = None,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        prompt_caching: bool = True,
        name: str = "anthropic",
    ) -> None:
        self.name = name
        self.model = model
        self.prompt_caching = prompt_caching
        kwargs: dict[str, Any] = {}
        if timeout is not None or connect_timeout is not None:
            kwargs["timeout"] = client_timeout(timeout, connect_timeout)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            auth_token=auth_token if api_key is None else None,
            base_url=base_url,
            max_retries=max_retries,
            **kwargs,
        )

    async def aclose(self) -> None:
        await self._client.close()

    # -- request -------------------------------------------------------------------------

    def build_request(
        self, *, system: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int
    ) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for one turn (without ``stream``)."""
        params: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": self._messages(messages),
        }
        if system:
            block: TextBlockParam = {"type": "text", "text": system}
            if self.prompt_caching:
                block["cache_control"] = _EPHEMERAL
            params["system"] = [block]
        if tools:
            specs: list[ToolParam] = [
                {"name": t.name, "description": t.description, "input_schema": t.input_schema}
                for t in tools
            ]
            if self.prompt_caching:
                specs[-1]["cache_control"] = _EPHEMERAL
            params["tools"] = specs
        return params

    def _messages(self, messages: list[Message]) -> list[MessageParam]:
        # Anthropic wants alternating user/assistant turns and tool results inside a user
        # turn, so consecutive user-side messages (tool results, then maybe text) merge.
        merged: list[tuple[str, list[ContentBlockParam]]] = []
        for message in messages:
            role = "assistant" if message.role == "assistant" else "user"
            blocks = _blocks(message)
            if not blocks:
                continue
            if merged and merged[-1][0] == role:
                merged[-1][1].extend(blocks)
            else:
                merged.append((role, blocks))
        if self.prompt_caching and merged:
            last_block = merged[-1][1][-1]
            # Every block type we build accepts cache_control.
            last_block["cache_control"] = _EPHEMERAL  # type: ignore[typeddict-unknown-key]
        result: list[MessageParam] = []
        for role, blocks in merged:
            if role == "assistant":
                result.append({"role": "assistant", "content": blocks})
            else:
                result.append({"role": "user", "content": blocks})
        return result

    async def count_input_tokens(
        self, *, system: str, messages: list[Message], tools: list[ToolSpec]
    ) -> int | None:
        """The API's own count (``POST /v1/messages/count_tokens``) of the turn as it would be
        sent, with a little headroom: the API calls its count an estimate that the call
        itself may differ from by a small amount. None when the endpoint fails (a proxy or
        compatible server without it)."""
        params = self.build_request(system=system, messages=messages, tools=tools, max_tokens=1)
        del params["max_tokens"]
        try:
            counted = await self._client.messages.count_tokens(**params)
        except (anthropic.APIError, httpx2.TransportError, ValueError) as exc:
            log.info("%s could not count the tokens of a turn: %s", self.name, exc)
            return None
        return counted.input_tokens + counted.input_tokens // _COUNT_HEADROOM + 16

    # -- response ------------------------------------------------------------------------

    async def stream_turn(
        self,
        *,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
    ) -> AsyncIterator[ProviderEvent]:
        params = self.build_request(
            system=system, messages=messages, tools=tools, max_tokens=max_tokens
        )
        usage = Usage()
        try:
            stream = await self._client.messages.create(**params, stream=True)
        except anthropic.APIError as exc:
            raise error_from_sdk(self.name, exc, usage) from exc
        except httpx2.TransportError as exc:
            raise transport_error(self.name, exc, usage) from exc

        tool_blocks: dict[int, _ToolBlock] = {}
        stop_reason: str | None = None
        finished = False
        try:
            async with stream:
                async for event in stream:
                    if event.type == "message_start":
                        u = event.message.usage
                        usage = Usage(
                            input_tokens=u.input_tokens,
                            output_tokens=u.output_tokens,
                            cache_read_tokens=u.cache_read_input_tokens or 0,
                            cache_write_tokens=u.cache_creation_input_tokens or 0,
                        )
                        yield UsageReport(usage)
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            tool_blocks[event.index] = _ToolBlock(
                                block.id, block.name, dict(block.input)
                            )
                        elif block.type == "text" and block.text:
                            yield TextDelta(block.text)
                    elif event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta":
                            yield TextDelta(delta.text)
                        elif delta.type == "input_json_delta" and event.index in tool_blocks:
                            tool_blocks[event.index].parts.append(delta.partial_json)
                    elif event.type == "content_block_stop":
                        tool = tool_blocks.pop(event.index, None)
                        if tool is not None:
                            yield ToolCallReady(tool.finish())
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or stop_reason
                        d = event.usage
                        # message_delta counts are cumulative: they replace, never add.
                        usage = Usage(
                            input_tokens=_pick(d.input_tokens, usage.input_tokens),
                            output_tokens=d.output_tokens,
                            cache_read_tokens=_pick(
                                d.cache_read_input_tokens, usage.cache_read_tokens
                            ),
                            cache_write_tokens=_pick(
                                d.cache_creation_input_tokens, usage.cache_write_tokens
                            ),
                        )
                        yield UsageReport(usage)
                    elif event.type == "message_stop":
                        finished = True
        except anthropic.APIError as exc:
            raise error_from_sdk(self.name, exc, usage) from exc
        except httpx2.TransportError as exc:
            raise transport_error(self.name, exc, usage) from exc
        except ValueError as exc:
            # json.JSONDecodeError and pydantic.ValidationError from the SDK's parsing.
            raise bad_response(self.name, exc, usage) from exc
        if not finished:
            raise stream_incomplete(self.name, "message_stop", usage)
        yield TurnEnd(stop_reason or "end_turn", usage)


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _blocks(message: Message) -> list[ContentBlockParam]:
    if message.role == "tool":
        if message.tool_call_id is None:
            msg = "a tool message needs the tool_call_id it answers"
            raise ProviderError(msg, provider="anthropic", kind="bad_request", retryable=False)
        result: ToolResultBlockParam = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            # An empty result is refused by the API; say so instead.
            "content": message.text or "(no output)",
        }
        if message.is_error:
            result["is_error"] = True
        return [result]
    blocks: list[ContentBlockParam] = []
    if message.text:
        text: TextBlockParam = {"type": "text", "text": message.text}
        blocks.append(text)
    if message.role == "assistant":
        for call in message.tool_calls:
            use: ToolUseBlockParam = {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": dict(call.arguments),
            }
            blocks.append(use)
    return blocks
