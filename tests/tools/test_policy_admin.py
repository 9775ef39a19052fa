"""An admin's approval rules (``c.EcodeApp.approval_admin_rules`` / ``approval_default_rules``):
the admin's come before every project's own, which cannot override them; the defaults apply
where no project rule fits. Bad rules stop the configuration with the trait's name."""

from __future__ import annotations

from typing import Any

import pytest
from traitlets import TraitError

from ecode_jupyter.app import EcodeApp

from .conftest import McpConnect, error_of, text_of

ADMIN = [{"tool": "run_command", "match": "curl *|wget *", "action": "deny"}]
DEFAULTS = [{"tool": "delete_file", "action": "ask"}]


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {"EcodeApp": {"approval_admin_rules": ADMIN, "approval_default_rules": DEFAULTS}}


async def test_admin_rules_win_and_defaults_fill_in(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any
) -> None:
    pid, workspace = await make_project()
    (workspace / "old.txt").write_text("x")
    # The project tries to allow what the admin denies, and says nothing about delete_file.
    mine = {"rules": [{"tool": "run_command", "action": "allow"}]}
    policy = (await ecode_api("PUT", f"projects/{pid}/policy", body=mine)).body
    assert policy["rules"] == mine["rules"]
    assert (policy["admin_rules"], policy["default_rules"]) == (ADMIN, DEFAULTS)
    async with mcp_connect("alice") as client:
        fetch = {"project": pid, "command": "curl -s http://example.com"}
        denied = error_of(await client.call_tool("run_command", fetch))
        assert denied.startswith("policy_denied:") and "curl *|wget *" in denied
        ran = await client.call_tool("run_command", {"project": pid, "command": "echo ok"})
        assert not ran.is_error and "ok" in text_of(ran)
        asked = error_of(await client.call_tool("delete_file", {"project": pid, "path": "old.txt"}))
        assert asked.startswith("approval_required:")
        assert (workspace / "old.txt").exists()
    # A project rule overrides a default.
    mine["rules"].append({"tool": "delete_file", "action": "allow"})
    assert (await ecode_api("PUT", f"projects/{pid}/policy", body=mine)).status == 200
    async with mcp_connect("alice") as client:
        gone = await client.call_tool("delete_file", {"project": pid, "path": "old.txt"})
        assert not gone.is_error, text_of(gone)
    assert not (workspace / "old.txt").exists()


def test_bad_admin_rules_are_refused_with_the_traits_name() -> None:
    with pytest.raises(TraitError, match=r"approval_admin_rules: rules\[0\]\.action"):
        EcodeApp(approval_admin_rules=[{"tool": "run_command", "action": "maybe"}])
    with pytest.raises(TraitError, match="approval_default_rules"):
        EcodeApp(approval_default_rules=[{"tool": "", "action": "ask"}])
