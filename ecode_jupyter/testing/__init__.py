"""Test helpers other packages (and this one's tests and benchmarks) can use.

Loopback servers that speak the real wire formats of the model APIs, reached through the
real SDKs by their base-URL settings::

    from ecode_jupyter.testing import AnthropicLoopback, text_turn, tool_turn

    with AnthropicLoopback([tool_turn("write_file", {"path": "app.py"}), text_turn("done")]) as srv:
        provider = make_provider("anthropic", api_key="k", base_url=srv.base_url)
        ...
        assert srv.requests[1].tool_results()[0].content == "ok"
"""

from __future__ import annotations

from .anthropic_server import AnthropicLoopback
from .openai_server import OpenAILoopback
from .scripts import (
    REDACTED,
    CutStream,
    Fault,
    HTTPFault,
    LoopbackRequest,
    MalformedEvent,
    Responder,
    ScriptedToolCall,
    ScriptedTurn,
    StreamError,
    ToolResultView,
    text_turn,
    tool_turn,
)
from .server import LoopbackServer, ScriptExhausted

__all__ = [
    "REDACTED",
    "AnthropicLoopback",
    "CutStream",
    "Fault",
    "HTTPFault",
    "LoopbackRequest",
    "LoopbackServer",
    "MalformedEvent",
    "OpenAILoopback",
    "Responder",
    "ScriptExhausted",
    "ScriptedToolCall",
    "ScriptedTurn",
    "StreamError",
    "ToolResultView",
    "loopback_for",
    "text_turn",
    "tool_turn",
]


def loopback_for(provider: str, *args: object, **kwargs: object) -> LoopbackServer:
    """The loopback class for a provider name ("anthropic", "openai", "openai-compatible")."""
    cls: type[LoopbackServer] = AnthropicLoopback if provider == "anthropic" else OpenAILoopback
    return cls(*args, **kwargs)  # type: ignore[arg-type]
