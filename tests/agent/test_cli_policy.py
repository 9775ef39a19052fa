"""`jupyter ecode new` runs its agent in the shell's process: the approval policy (here an
admin's rule from the server's config) holds there too, and a mode it cannot serve is refused
before a project is made."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ecode_jupyter.cli import main

DENY_WRITES = [{"tool": "write_file", "match": "app.py", "action": "deny"}]


@pytest.fixture
def cli_env(tmp_path: Path, ecode_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("ECODE_DATABASE_URL", ecode_database_url)
    workspaces = tmp_path / "ws"
    monkeypatch.setenv("ECODE_WORKSPACE_ROOT", str(workspaces))
    config = Path(os.environ["JUPYTER_CONFIG_DIR"]) / "jupyter_server_config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    settings = {"agent_offline_installs": False, "approval_admin_rules": DENY_WRITES}
    config.write_text(json.dumps({"EcodeApp": settings}))
    return workspaces


def test_new_applies_the_approval_policy_in_its_own_process(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--json", "new", "a Flask todo API with tests", "--name", "Guarded"])
    out = capsys.readouterr()
    result = json.loads(out.out)
    project, run = result["project"], result["run"]
    # The template's app.py was refused by the policy, so the run could not be built.
    assert code == 1 and run["status"] == "failed", run
    assert not (cli_env / project["id"] / "app.py").exists()
    assert (cli_env / project["id"] / "requirements.txt").exists()
    assert "policy_denied" in out.err


def test_new_refuses_a_mode_the_offline_provider_cannot_serve(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", "what is this?", "--mode", "ask", "--name", "Asked"]) == 1
    assert "needs a model" in capsys.readouterr().out
    assert main(["--json", "projects", "list"]) == 0
    assert "Asked" not in capsys.readouterr().out
