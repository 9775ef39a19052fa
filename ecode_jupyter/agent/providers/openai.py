"""OpenAI Chat Completions (and compatible servers) behind the neutral provider interface.

Function calling with ``stream=True``: tool-call fragments arrive keyed by ``index`` and are
joined here; ``stream_options.include_usage`` makes the API send the turn's usage in one last
chunk with no choices. OpenAI caches prompt prefixes by itself, so nothing is marked; the
cached part arrives as ``prompt_tokens_details.cached_tokens``.

The same class serves ``openai-compatible`` (Ollama, vLLM, Groq, Together, ...): a base URL,
any model name, and ``max_tokens`` instead of ``max_completion_tokens``, which those servers
know better.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import openai
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from .base import (
    STOP_END_TURN,
    STOP_MAX_TOKENS,
    STOP_REFUSAL,
    STOP_TOOL_USE,
    Message,
    Provider,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    Usage,
    UsageReport,
    estimate_usage,
    parse_tool_arguments,
)
from .errors import bad_response, client_timeout, error_from_sdk, stream_incomplete, transport_error

log = logging.getLogger(__name__)

_STOP_REASONS = {
    "stop": STOP_END_TURN,
    "tool_calls": STOP_TOOL_USE,
    "function_call": STOP_TOOL_USE,
    "length": STOP_MAX_TOKENS,
    "content_filter": STOP_REFUSAL,
}
# OpenAI has no error flag on tool results; the model reads this prefix instead.
ERROR_PREFIX = "ERROR: "


@dataclass(slots=True)
class _CallParts:
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)


def usage_from_openai(u: CompletionUsage) -> Usage:
    """Neutral usage: ``prompt_tokens`` includes cached tokens, so they are taken out."""
    details = u.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details else 0
    written = (details.cache_write_tokens or 0) if details else 0
    return Usage(
        input_tokens=max(u.prompt_tokens - cached - written, 0),
        output_tokens=u.completion_tokens,
        cache_read_tokens=cached,
        cache_write_tokens=written,
    )


class OpenAIProvider(Provider):
    """GPT models, or any Chat Completions server, through the official ``openai`` SDK."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        max_retries: int = 2,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = (
            "max_completion_tokens"
        ),
        name: str = "openai",
    ) -> None:
        self.name = name
        self.model = model
        self.max_tokens_field = max_tokens_field
        kwargs: dict[str, Any] = {}
        if timeout is not None or connect_timeout is not None:
            kwargs["timeout"] = client_timeout(timeout, connect_timeout)
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=max_retries, **kwargs
        )

    async def aclose(self) -> None:
        await self._client.close()

    def build_request(
        self, *, system: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one streamed turn."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages(system, messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            self.max_tokens_field: max_tokens,
        }
        if tools:
            specs: list[ChatCompletionFunctionToolParam] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.input_schema,
                    },
                }
                for t in tools
            ]
            params["tools"] = specs
        return params

    def _messages(self, system: str, messages: list[Message]) -> list[ChatCompletionMessageParam]:
        result: list[ChatCompletionMessageParam] = []
        if system:
            result.append({"role": "system", "content": system})
        for message in messages:
            if message.role == "user":
                result.append({"role": "user", "content": message.text})
            elif message.role == "tool":
                if message.tool_call_id is None:
                    msg = "a tool message needs the tool_call_id it answers"
                    raise ProviderError(
                        msg, provider=self.name, kind="bad_request", retryable=False
                    )
                content = ERROR_PREFIX + message.text if message.is_error else message.text
                result.append(
                    {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
                )
            else:
                calls: list[ChatCompletionMessageFunctionToolCallParam] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                    }
                    for call in message.tool_calls
                ]
                if calls:
                    result.append(
                        {"role": "assistant", "content": message.text or None, "tool_calls": calls}
                    )
                else:
                    result.append({"role": "assistant", "content": message.text})
        return result

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
            stream = await self._client.chat.completions.create(**params)
        except openai.APIError as exc:
            raise error_from_sdk(self.name, exc, usage) from exc
        except httpx2.TransportError as exc:
            raise transport_error(self.name, exc, usage) from exc

        calls: dict[int, _CallParts] = {}
        finish_reason: str | None = None
        stop: str | None = None
        # What was streamed, for estimating the usage of a stream that never reported it.
        out_chars = 0
        began = False
        try:
            async with stream:
                async for chunk in stream:
                    began = True
                    if chunk.usage is not None:
                        usage = usage_from_openai(chunk.usage)
                        yield UsageReport(usage)
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content:
                        out_chars += len(delta.content)
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or ():
                        acc = calls.setdefault(part.index, _CallParts())
                        if part.id:
                            acc.id = part.id
                        if part.function is not None:
                            if part.function.name:
                                acc.name += part.function.name
                            if part.function.arguments:
                                out_chars += len(part.function.arguments)
                                acc.parts.append(part.function.arguments)
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
                        for index in sorted(calls):
                            acc = calls.pop(index)
                            call_id = acc.id or f"call_{index}"
                            yield ToolCallReady(
                                parse_tool_arguments(call_id, acc.name, "".join(acc.parts))
                            )
        except openai.APIError as exc:
            if finish_reason is None:
                guess = self._guess(usage, began, params, out_chars)
                raise error_from_sdk(self.name, exc, guess) from exc
            stop = "error after finish_reason"
        except httpx2.TransportError as exc:
            if finish_reason is None:
                guess = self._guess(usage, began, params, out_chars)
                raise transport_error(self.name, exc, guess) from exc
            # The answer is whole (finish_reason came); only the usage chunk was lost. Asking
            # again would pay for the turn twice.
            stop = type(exc).__name__
        except ValueError as exc:
            # json.JSONDecodeError and pydantic.ValidationError from the SDK's parsing.
            raise bad_response(
                self.name, exc, self._guess(usage, began, params, out_chars)
            ) from exc
        if finish_reason is None:
            raise stream_incomplete(
                self.name, "finish_reason", self._guess(usage, began, params, out_chars)
            )
        if stop is not None:
            log.info("%s stream broke off after its finish_reason (%s)", self.name, stop)
        if usage.is_zero:
            # The stream ended before its usage chunk, or the server ignores include_usage;
            # the call was billed all the same.
            usage = self._guess(usage, True, params, out_chars)
            log.info("%s sent no usage for model %s; estimated %s", self.name, self.model, usage)
            yield UsageReport(usage)
        yield TurnEnd(_STOP_REASONS.get(finish_reason, finish_reason), usage)

    @staticmethod
    def _guess(usage: Usage, began: bool, params: dict[str, Any], out_chars: int) -> Usage:
        """``usage``, or an estimate when a started stream reported none (a stream that never
        began was not billed)."""
        if not usage.is_zero or not began:
            return usage
        # The request as sent is what the model read: its JSON size is a fair token guess.
        sent = len(json.dumps(params["messages"])) + len(json.dumps(params.get("tools") or []))
        return estimate_usage(input_tokens=sent // 4, output_chars=out_chars)
