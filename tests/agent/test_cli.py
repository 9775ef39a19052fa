"""`jupyter ecode new` builds a project headless; `jupyter ecode runs` lists runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.cli import main
from ecode_jupyter.cli.new import name_from_prompt
from ecode_jupyter.testing import HTTPFault, ScriptedTurn


@pytest.fixture
def cli_env(tmp_path: Path, ecode_database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("ECODE_DATABASE_URL", ecode_database_url)
    workspaces = tmp_path / "ws"
    monkeypatch.setenv("ECODE_WORKSPACE_ROOT", str(workspaces))
    config = tmp_path / "jupyter_config_dir" / "jupyter_server_config.json"
    assert os.environ["JUPYTER_CONFIG_DIR"] == str(config.parent)
    config.parent.mkdir(parents=True, exist_ok=True)
    # The offline provider must not reach for a package index in tests.
    config.write_text(json.dumps({"EcodeApp": {"agent_offline_installs": False}}))
    return workspaces


def test_new_builds_a_project_and_prints_a_summary(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--json", "new", "a Flask todo API with tests", "--name", "Todo API"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    project, run = result["project"], result["run"]
    assert (project["name"], project["url"]) == ("Todo API", f"/ecode/@{project['owner']}/todo-api")
    assert run["status"] == "completed" and run["summary"]["tests"]["passed"]
    workspace = cli_env / project["id"]
    assert (workspace / "app.py").is_file()
    # The live progress went to stderr: the plan, the files, the tests.
    assert "offline provider" in out.err and "app.py" in out.err and "passed" in out.err

    assert main(["--json", "runs", "todo-api"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["status"]) for r in listing] == [(run["id"], "completed")]
    assert main(["runs", "no-such-project"]) == 1


def test_new_exits_non_zero_when_the_run_fails(
    cli_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ecode_openai_loopback: Any,
) -> None:
    # A compatible server that refuses the request: the provider fails, and so does the run.
    server = ecode_openai_loopback([ScriptedTurn(text="never", faults=[HTTPFault(400)])])
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    config = Path(os.environ["JUPYTER_CONFIG_DIR"]) / "jupyter_server_config.json"
    settings = json.loads(config.read_text())
    settings["EcodeApp"]["free_models"] = ["local-model"]
    config.write_text(json.dumps(settings))
    code = main(["new", "anything at all", "--model", "openai-compatible:local-model"])
    out = capsys.readouterr().out
    assert code == 1
    assert "provider_error" in out and "summary" in out and "failed" in out


def test_new_refuses_an_unpriced_model_before_making_a_project(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    code = main(["new", "anything", "--model", "openai-compatible:unpriced-model"])
    assert code == 1
    assert "has no price" in capsys.readouterr().out
    assert not cli_env.exists() or list(cli_env.iterdir()) == []


def test_project_names_come_from_the_prompt() -> None:
    assert name_from_prompt("a Flask todo API") == "a Flask todo API"
    long = name_from_prompt("word " * 40)
    assert len(long) <= 60 and long.endswith("word")


def test_tables_fit_80_columns_with_short_ids_that_resolve(
    cli_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    long_name = "A Streamlit sales dashboard with filters and KPI cards for the team"
    assert (
        main(["--json", "projects", "create", long_name, "--template", "streamlit-dashboard"]) == 0
    )
    assert main(["new", "a python script that prints a greeting", "--name", "Greeter"]) == 0
    capsys.readouterr()

    assert main(["projects", "list"]) == 0
    listed = capsys.readouterr().out
    assert main(["--json", "projects", "list"]) == 0
    projects = json.loads(capsys.readouterr().out)
    assert main(["runs"]) == 0
    runs = capsys.readouterr().out
    assert main(["--json", "runs"]) == 0
    [run] = json.loads(capsys.readouterr().out)

    for table in (listed, runs):
        assert max(len(line) for line in table.splitlines()) <= 80, table
        assert "…" not in table  # nothing cut: ids, statuses and names are whole or wrapped
    # Short ids, the same prefix a user types back.
    shorts = {p["name"]: p["id"][:8] for p in projects}
    assert all(short in listed for short in shorts.values()) and projects[0]["id"] not in listed
    assert run["id"][:8] in runs and "completed" in runs
    # The offline provider's model is named once, not "offline offline".
    assert "offline offline" not in runs

    assert main(["runs", shorts["Greeter"]]) == 0
    assert run["id"][:8] in capsys.readouterr().out
    assert main(["projects", "delete", shorts[long_name]]) == 0
    assert f"deleted {long_name}" in capsys.readouterr().out
    assert main(["projects", "restore", shorts[long_name]]) == 0
    assert f"restored {long_name}" in capsys.readouterr().out
    # The summary of `new` names the offline provider once too.
    assert main(["new", "a python script that prints the date", "--name", "Dater"]) == 0
    summary = capsys.readouterr().out
    assert "model turns (offline)" in summary and "offline offline" not in summary
