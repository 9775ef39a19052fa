"""The project's approval policy holds for outside MCP clients: a denied tool is refused
before it runs, an "ask" call is refused (nobody can answer for such a client), and a
stranger learns nothing about the project or its policy."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import McpConnect, error_of, text_of

POLICY = {
    "rules": [
        {"tool": "write_file", "match": "secrets/*", "action": "deny"},
        {"tool": "delete_file", "action": "deny"},
        {"tool": "run_command", "match": "curl *|wget *", "action": "ask"},
    ]
}


async def test_denied_and_asked_calls_are_refused_for_outside_clients(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any
) -> None:
    pid, workspace = await make_project()
    assert (await ecode_api("PUT", f"projects/{pid}/policy", body=POLICY)).status == 200
    async with mcp_connect("alice") as client:
        denied = error_of(
            await client.call_tool(
                "write_file", {"project": pid, "path": "secrets/key.txt", "content": "x"}
            )
        )
        assert denied.startswith("policy_denied:") and "secrets/*" in denied, denied
        assert not (workspace / "secrets" / "key.txt").exists()
        # A call no rule names runs as before.
        wrote = await client.call_tool(
            "write_file", {"project": pid, "path": "notes.txt", "content": "x"}
        )
        assert not wrote.is_error, text_of(wrote)
        gone = error_of(
            await client.call_tool("delete_file", {"project": pid, "path": "notes.txt"})
        )
        assert gone.startswith("policy_denied:")
        assert (workspace / "notes.txt").exists()
        # "ask" with nobody to ask: refused, saying why and what to do instead.
        asked = error_of(
            await client.call_tool(
                "run_command", {"project": pid, "command": "cd . && curl -s http://example.com"}
            )
        )
        assert asked.startswith("approval_required:") and "only agent runs" in asked, asked
        ran = await client.call_tool("run_command", {"project": pid, "command": "echo fine"})
        assert not ran.is_error and "fine" in text_of(ran)
    async with mcp_connect("bob") as client:
        # A stranger gets the tool's own not_found, not the policy's answer.
        stranger = error_of(
            await client.call_tool(
                "write_file", {"project": pid, "path": "secrets/key.txt", "content": "x"}
            )
        )
        assert stranger.startswith("not_found:") and "policy" not in stranger, stranger


async def test_the_hub_service_applies_the_policy_before_forwarding(
    ecode_app: Any, make_project: Any, ecode_api: Any
) -> None:
    # The service's layer forwards calls to project servers; the policy is applied first,
    # where the database is, so a denied call never leaves the service.
    from types import SimpleNamespace

    from ecode_jupyter.exceptions import ApprovalRequired, NotFound, PolicyDenied
    from ecode_jupyter.hub.remote import RemoteToolLayer
    from ecode_jupyter.identity import EcodeUser

    pid, _ = await make_project()
    assert (await ecode_api("PUT", f"projects/{pid}/policy", body=POLICY)).status == 200
    placement = SimpleNamespace(directory=None)
    layer = RemoteToolLayer(ecode_app.ecode, placement)  # type: ignore[arg-type]
    alice = EcodeUser("alice", "alice", False)
    write = {"project": pid, "path": "secrets/key.txt", "content": "x"}
    with pytest.raises(PolicyDenied):
        await layer.call("write_file", write, alice)
    curl = {"project": pid, "command": "curl -s http://example.com"}
    with pytest.raises(ApprovalRequired):
        await layer.call("run_command", curl, alice)

    class Refuse:
        async def approve(self, tool: str, arguments: dict[str, Any]) -> str:
            return "deny"

    with pytest.raises(PolicyDenied, match="a person denied"):
        await layer.call("run_command", curl, alice, approver=Refuse())
    with pytest.raises(NotFound):
        await layer.call("write_file", write, EcodeUser("bob", "bob", False))
