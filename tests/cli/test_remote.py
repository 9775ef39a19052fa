"""``jupyter ecode`` over a server's ecode API (``--server``, or by itself on a hub user's
server, where there is no database to open): a real server, the command as a subprocess
with each user's token, so roles are the server's, not the command line's."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from ecode_jupyter.pytest_plugin import ecode_token_for


async def _cli(user: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ECODE_", "JUPYTER_TOKEN"))}
    environ.update({"ECODE_TOKEN": ecode_token_for(user), "COLUMNS": "200", **(env or {})})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecode_jupyter.cli",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def test_projects_over_the_api_with_the_callers_rights(
    ecode_api: Any, jp_http_port: int, jp_base_url: str
) -> None:
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    code, out = await _cli("alice", "--server", url, "--json", "projects", "create", "Remote 1")
    assert code == 0, out
    [created] = json.loads(out)
    assert created["owner"] == "alice" and created["role"] == "owner"

    code, out = await _cli("alice", "--server", url, "--json", "projects", "list")
    assert code == 0, out
    assert [p["id"] for p in json.loads(out)] == [created["id"]]
    # bob's token, bob's projects: alice's is not among them, and he cannot delete it.
    code, out = await _cli("bob", "--server", url, "--json", "projects", "list")
    assert code == 0 and json.loads(out) == [], out
    code, out = await _cli("bob", "--server", url, "projects", "delete", created["id"])
    assert code == 1 and "no such project" in out, out

    code, out = await _cli("alice", "--server", url, "projects", "delete", "remote-1")
    assert code == 0 and "deleted Remote 1" in out, out
    assert (await ecode_api("GET", f"projects/{created['id']}")).status == 404
    code, out = await _cli("alice", "--server", url, "projects", "restore", "remote-1")
    assert code == 0 and "restored Remote 1" in out, out
    assert (await ecode_api("GET", f"projects/{created['id']}")).status == 200


async def test_credits_and_runs_over_the_api(
    ecode_api: Any, jp_http_port: int, jp_base_url: str
) -> None:
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    code, out = await _cli("alice", "--server", url, "--json", "credits")
    assert code == 0, out
    data = json.loads(out)
    assert data["account"]["user"] == "alice" and "rows" in data["usage"]
    # Only an admin grants; the server says no to alice whatever the command line says.
    code, out = await _cli("alice", "--server", url, "credits", "--grant", "bob", "5")
    assert code == 1 and "admin" in out.lower(), out
    code, out = await _cli("admin", "--server", url, "--json", "credits", "--grant", "bob", "5")
    assert code == 0, out
    assert json.loads(out)["grant"]["account"]["user"] == "bob"
    code, out = await _cli("alice", "--server", url, "--json", "runs")
    assert code == 0 and json.loads(out) == [], out


async def test_a_hub_users_environment_uses_the_api_without_being_told(
    ecode_api: Any, jp_http_port: int, jp_base_url: str
) -> None:
    # What a hub user's terminal has: ECODE_SERVICE_URL and the server's URL; no database.
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    env = {"ECODE_SERVICE_URL": "http://127.0.0.1:1/services/ecode/", "ECODE_SERVER_URL": url}
    code, out = await _cli("alice", "--json", "projects", "create", "Hub Side", env=env)
    assert code == 0, out
    listed = await ecode_api("GET", "projects")
    assert "Hub Side" in [p["name"] for p in listed.body["projects"]]
