"""A loopback server speaking the Anthropic Messages API (``POST /v1/messages``).

Streams the events the real API sends, in its order: ``message_start`` (input usage),
``ping``, per content block ``content_block_start`` / ``content_block_delta``
(``text_delta`` or ``input_json_delta``) / ``content_block_stop``, then ``message_delta``
(stop reason and cumulative usage) and ``message_stop``. Errors use the API's body
``{"type": "error", "error": {"type": ..., "message": ...}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

from ecode_jupyter.agent.providers.base import Usage

from .scripts import LoopbackRequest, MalformedEvent, ScriptedTurn, StreamError, split
from .server import LoopbackServer, sse

log = logging.getLogger(__name__)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _usage(usage: Usage, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "output_tokens": output_tokens,
    }


class AnthropicLoopback(LoopbackServer):
    """Anthropic Messages API on 127.0.0.1; pass :attr:`base_url` to ``AsyncAnthropic``."""

    api = "anthropic"
    paths: ClassVar[tuple[str, ...]] = ("/v1/messages",)
    input_keys: ClassVar[tuple[str, ...]] = ("system", "messages", "tools")
    side_paths: ClassVar[tuple[str, ...]] = ("/v1/messages/count_tokens",)

    def side_post(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        # POST /v1/messages/count_tokens: the count a call with this input reports.
        return {"input_tokens": self.count_input(body)}

    def presented_key(self, headers: dict[str, str]) -> str | None:
        if "x-api-key" in headers:
            return headers["x-api-key"]
        auth = headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def error_body(self, status: int, error_type: str | None, message: str) -> dict[str, Any]:
        etype = error_type or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "")
        return {
            "type": "error",
            "error": {"type": etype or "invalid_request_error", "message": message},
            "request_id": "req_loopback",
        }

    def stream_error_event(self, fault: StreamError) -> bytes:
        error = {"type": fault.error_type, "message": fault.message}
        return sse({"type": "error", "error": error}, event="error")

    def malformed_event(self, fault: MalformedEvent) -> bytes:
        return sse(fault.data, event="content_block_delta")

    def _message_id(self, request: LoopbackRequest) -> str:
        return f"msg_loopback_{request.index:06d}"

    def _tool_ids(self, turn: ScriptedTurn, request: LoopbackRequest) -> list[str]:
        return [
            call.id or f"toolu_loopback_{request.index:04d}_{n}"
            for n, call in enumerate(turn.tool_calls)
        ]

    def complete_body(self, turn: ScriptedTurn, request: LoopbackRequest) -> dict[str, Any]:
        usage = turn.usage_for(request)
        content: list[dict[str, Any]] = []
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        for call, call_id in zip(turn.tool_calls, self._tool_ids(turn, request), strict=True):
            content.append(
                {"type": "tool_use", "id": call_id, "name": call.name, "input": call.arguments}
            )
        return {
            "id": self._message_id(request),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": turn.final_stop_reason(),
            "stop_sequence": None,
            "usage": _usage(usage, usage.output_tokens),
        }

    def stream_events(self, turn: ScriptedTurn, request: LoopbackRequest) -> Iterator[bytes]:
        usage = turn.usage_for(request)
        start: dict[str, Any] = {
            "id": self._message_id(request),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Like the API: the input is known up front, the output count is a placeholder.
            "usage": _usage(usage, min(1, usage.output_tokens)),
        }
        yield sse({"type": "message_start", "message": start}, "message_start")
        yield sse({"type": "ping"}, "ping")
        index = 0
        if turn.text:
            block: dict[str, Any] = {"type": "text", "text": ""}
            yield sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
            for piece in split(turn.text, turn.text_chunk):
                delta = {"type": "text_delta", "text": piece}
                yield sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        for call, call_id in zip(turn.tool_calls, self._tool_ids(turn, request), strict=True):
            block = {"type": "tool_use", "id": call_id, "name": call.name, "input": {}}
            yield sse(
                {"type": "content_block_start", "index": index, "content_block": block},
                "content_block_start",
            )
            # The API opens every tool input with an empty fragment.
            for piece in ["", *split(call.arguments_json(), turn.args_chunk)]:
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield sse(
                    {"type": "content_block_delta", "index": index, "delta": delta},
                    "content_block_delta",
                )
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            index += 1
        stop: dict[str, Any] = {"stop_reason": turn.final_stop_reason(), "stop_sequence": None}
        yield sse(
            {"type": "message_delta", "delta": stop, "usage": _usage(usage, usage.output_tokens)},
            "message_delta",
        )
        yield sse({"type": "message_stop"}, "message_stop")
