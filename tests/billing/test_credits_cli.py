"""`jupyter ecode credits` shows the same numbers as the REST API, and grants for admins."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.agent.providers.base import Usage
from ecode_jupyter.cli import main


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ECODE_WORKSPACE_ROOT", str(tmp_path / "cli-workspaces"))
    monkeypatch.setenv("COLUMNS", "200")


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    # The CLI runs its own event loop, as it does in a shell.
    code = await asyncio.to_thread(main, list(argv))
    return code, capsys.readouterr().out


async def test_cli_and_rest_agree_and_only_admins_grant(
    ecode_api: Any,
    ecode_app: Any,
    ecode_database_url: str,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = ("--database-url", ecode_database_url)
    code, out = await _cli(capsys, *db, "credits", "--grant", "dave", "4.25", "--key", "k1")
    assert code == 0
    assert "granted 4.250000 credits to dave" in out
    code, out = await _cli(capsys, *db, "credits", "--grant", "dave", "4.25", "--key", "k1")
    assert "already granted" in out
    code, out = await _cli(capsys, *db, "--user", "dave", "credits", "--grant", "dave", "9")
    assert code == 1 and "only an admin" in out

    billing = ecode_app.ecode.extras["billing"]
    res = await billing.reserve(
        user="dave",
        project_id="p",
        run_id="cli-run",
        model="claude-haiku-4-5",
        input_tokens_estimate=3000,
        max_output_tokens=1000,
        key="cli-call",
    )
    await billing.settle(res, Usage(2500, 800, 100, 50), key="cli-call/usage")

    rest_account = (await ecode_api("GET", "billing/account", user="dave")).body
    rest_usage = (await ecode_api("GET", "billing/usage?group=model", user="dave")).body
    code, out = await _cli(capsys, *db, "--json", "--user", "dave", "credits")
    assert code == 0
    cli = json.loads(out)
    for field in ("balance_micros", "reserved_micros", "available_micros"):
        assert cli["account"][field] == rest_account[field]
    assert cli["account"]["month"] == rest_account["month"]
    assert cli["usage"]["rows"] == rest_usage["rows"]
    assert cli["usage"]["total"] == rest_usage["total"]

    code, out = await _cli(capsys, *db, "--user", "dave", "credits")
    assert code == 0
    assert rest_account["available"] in out
    assert "claude-haiku-4-5" in out
    assert rest_usage["total"]["cost"] in out
