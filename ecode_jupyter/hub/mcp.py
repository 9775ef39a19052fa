"""The ecode service's MCP endpoint, for agents outside Jupyter (an IDE, Claude Code).

``/services/ecode/api/ecode/mcp`` (streamable HTTP, ``Authorization: token <hub token>``)
offers the same tools, with the same schemas, as a single-user server's endpoint; each call
is authorized here with ecode's roles, counted against the caller's rate limit, audited, and
executed in the server that holds the project (``RemoteToolLayer``, as the agent's calls
are), with the project's secrets only for tools that run code. Progress of the remote call
is relayed to the client. Previews are not offered (they are not built on a hub).

The tool layer here is a schema-only ``ToolLayer`` whose MCP server forwards every call:
no tool ever runs in the service.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from ..tools.http import McpHandler
from ..tools.server import ToolLayer
from .remote import UNAVAILABLE_TOOLS, RemoteToolLayer, _NoLocalAccess

SETTINGS_KEY = "ecode_service_mcp"


def service_tool_layer(remote: RemoteToolLayer) -> ToolLayer:
    """A ToolLayer that offers the tools' schemas and forwards every call to ``remote``."""
    # No limiter here: RemoteToolLayer.call counts each call (the agent's too) in one place.
    layer = ToolLayer(_NoLocalAccess())

    async def forward(
        name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> CallToolResult:
        caller = layer.caller(context)
        return await remote.call(name, arguments, caller.user, caller.reporter)

    layer.mcp.forward = forward
    layer.mcp.hidden = UNAVAILABLE_TOOLS
    return layer


class ServiceMcpHandler(McpHandler):
    """``/api/ecode/mcp`` of the service: the forwarding layer above."""

    @property
    def tool_layer(self) -> ToolLayer:
        layer: ToolLayer = self.settings[SETTINGS_KEY]
        return layer


default_handlers = [(r"/api/ecode/mcp/?", ServiceMcpHandler)]
