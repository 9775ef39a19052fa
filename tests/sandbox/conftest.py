"""The tool-layer fixtures (a real server, MCP over HTTP) for the sandbox tests."""

# Shared with tests/tools rather than copied: the same server, client and project helpers.
from tools.conftest import make_project, mcp_connect, mcp_url

__all__ = ["make_project", "mcp_connect", "mcp_url"]
