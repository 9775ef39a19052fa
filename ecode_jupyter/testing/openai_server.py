"""A loopback server speaking OpenAI Chat Completions (``POST /v1/chat/completions``).

Streams ``chat.completion.chunk`` objects as ``data:`` lines ending with ``data: [DONE]``:
a role chunk, content chunks, tool-call chunks (the first of each call carries its id and
name, the rest only argument fragments, all keyed by ``index``), a chunk with the
``finish_reason``, and, only when the request asked with ``stream_options.include_usage``,
a last chunk with ``choices: []`` and the usage. Errors use
``{"error": {"message", "type", "param", "code"}}``.

Also answers ``GET /v1/models`` like a compatible server (Ollama, vLLM) does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from ecode_jupyter.agent.providers.base import Usage

from .scripts import LoopbackRequest, ScriptedTurn, StreamError, split
from .server import LoopbackServer, sse

log = logging.getLogger(__name__)

_FINISH_REASONS = {
    "end_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
    "stop_sequence": "stop",
}
_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "engine_overloaded"),
    529: ("overloaded_error", "overloaded"),
}


def _usage(usage: Usage) -> dict[str, Any]:
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    details: dict[str, int] = {"cached_tokens": usage.cache_read_tokens, "audio_tokens": 0}
    if usage.cache_write_tokens:
        details["cache_write_tokens"] = usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class OpenAILoopback(LoopbackServer):
    """OpenAI Chat Completions on 127.0.0.1; :attr:`base_url` ends in ``/v1`` as the SDK wants."""

    api = "openai"
    paths: ClassVar[tuple[str, ...]] = ("/v1/chat/completions",)
    base_path = "/v1"

    def __init__(
        self,
        *args: Any,
        models: list[str] | None = None,
        honour_include_usage: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.models = models or ["loopback-model"]
        # Some compatible servers never send the usage chunk, whatever the request asks.
        self.honour_include_usage = honour_include_usage

    def presented_key(self, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None

    def extra_routes(self, method: str, path: str) -> dict[str, Any] | None:
        if method == "GET" and path == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "ecode"} for m in self.models
            ]
            return {"object": "list", "data": data}
        return None

    def error_body(self, status: int, error_type: str | None, message: str) -> dict[str, Any]:
        etype, code = _ERRORS.get(
            status, ("server_error" if status >= 500 else "invalid_request_error", None)
        )
        return {
            "error": {"message": message, "type": error_type or etype, "param": None, "code": code}
        }

    def stream_error_event(self, fault: StreamError) -> bytes:
        error = {"message": fault.message, "type": fault.error_type, "param": None, "code": None}
        return sse({"error": error})

    def _finish_reason(self, turn: ScriptedTurn) -> str:
        reason = turn.final_stop_reason()
        return _FINISH_REASONS.get(reason, reason)

    def _call_ids(self, turn: ScriptedTurn, request: LoopbackRequest) -> list[str]:
        return [
            call.id or f"call_loopback_{request.index:04d}_{n}"
            for n, call in enumerate(turn.tool_calls)
        ]

    def complete_body(self, turn: ScriptedTurn, request: LoopbackRequest) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.text or None,
            "refusal": None,
            "annotations": [],
        }
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json()},
                }
                for call, call_id in zip(
                    turn.tool_calls, self._call_ids(turn, request), strict=True
                )
            ]
        return {
            "id": f"chatcmpl-loopback{request.index:06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_loopback",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish_reason(turn),
                }
            ],
            "usage": _usage(turn.usage_for(request)),
        }

    def stream_events(self, turn: ScriptedTurn, request: LoopbackRequest) -> Iterator[bytes]:
        options = request.json.get("stream_options") or {}
        include_usage = bool(options.get("include_usage")) and self.honour_include_usage
        base: dict[str, Any] = {
            "id": f"chatcmpl-loopback{request.index:06d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_loopback",
        }

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            body = {**base, "choices": [choice]}
            if include_usage:
                body["usage"] = None
            return sse(body)

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in split(turn.text, turn.text_chunk):
            yield chunk({"content": piece})
        for index, (call, call_id) in enumerate(
            zip(turn.tool_calls, self._call_ids(turn, request), strict=True)
        ):
            first = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            yield chunk({"tool_calls": [first]})
            for piece in split(call.arguments_json(), turn.args_chunk):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self._finish_reason(turn))
        if include_usage:
            yield sse({**base, "choices": [], "usage": _usage(turn.usage_for(request))})
        yield sse("[DONE]")
