from __future__ import annotations

from pathlib import Path

import pytest

from ecode_jupyter.deploy.detection import RunSpec, detect_run, validate_command
from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.projects.templating import get_template, render_template

BASE = "/ecode/apps/@alice/todo/~key"


def _template(tmp_path: Path, template_id: str) -> Path:
    render_template(get_template(template_id), tmp_path, project_name="Todo", slug="todo")
    return tmp_path


def _argv(spec: RunSpec) -> list[str]:
    return spec.argv(port=5123, base_path=BASE, python="/py/bin/python", shell="/bin/sh")


def test_flask_template_runs_its_own_command_with_the_project_python(tmp_path: Path) -> None:
    spec = detect_run(_template(tmp_path, "flask-api"), template_id="flask-api")
    assert (spec.source, spec.framework, spec.health) == ("template", "flask-api", "/health")
    assert _argv(spec) == [
        "/py/bin/python",
        "-m",
        "flask",
        "--app",
        "app",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        "5123",
    ]
    assert spec.reload == "watch" and spec.base_path_mode == "strip"


def test_fastapi_template_is_told_its_root_path(tmp_path: Path) -> None:
    spec = detect_run(_template(tmp_path, "fastapi-service"), template_id="fastapi-service")
    argv = _argv(spec)
    assert argv[argv.index("--root-path") + 1] == BASE
    assert spec.health_path(BASE) == "/health"  # the app serves stripped paths


def test_streamlit_template_gets_its_base_path_and_reloads_itself(tmp_path: Path) -> None:
    spec = detect_run(_template(tmp_path, "streamlit-dashboard"), template_id="streamlit-dashboard")
    argv = _argv(spec)
    assert argv[argv.index("--server.baseUrlPath") + 1] == BASE
    assert (spec.base_path_mode, spec.reload, spec.kind) == ("keep", "self", "websocket-app")
    assert spec.health_path(BASE) == BASE + "/_stcore/health"


def test_a_procfile_wins_over_the_template(tmp_path: Path) -> None:
    workspace = _template(tmp_path, "flask-api")
    (workspace / "Procfile").write_text("release: echo hi\nweb: gunicorn app:app -b :$PORT\n")
    spec = detect_run(workspace, template_id="flask-api")
    assert spec.source == "procfile"
    assert _argv(spec) == ["/bin/sh", "-c", "gunicorn app:app -b :$PORT"]


def test_template_without_its_entry_file_falls_back_to_the_files(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("from fastapi import FastAPI\napi = FastAPI()\n")
    spec = detect_run(tmp_path, template_id="flask-api")
    assert (spec.source, spec.framework) == ("framework", "fastapi")
    assert "main:api" in _argv(spec)


@pytest.mark.parametrize(
    ("files", "framework", "expected"),
    [
        ({"app.py": "from flask import Flask\nserver = Flask(__name__)\n"}, "flask", "app:server"),
        ({"main.py": "import fastapi\napp = fastapi.FastAPI()\n"}, "fastapi", "main:app"),
        (
            {"streamlit_app.py": "import streamlit as st\nst.write('hi')\n"},
            "streamlit",
            "streamlit_app.py",
        ),
        ({"package.json": '{"scripts": {"start": "node server.js"}}'}, "node", "start"),
        ({"public/index.html": "<h1>hi</h1>"}, "static", "public"),
    ],
)
def test_framework_found_in_the_files(
    tmp_path: Path, files: dict[str, str], framework: str, expected: str
) -> None:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    spec = detect_run(tmp_path)
    assert spec.framework == framework
    assert expected in _argv(spec)


def test_a_users_command_overrides_everything(tmp_path: Path) -> None:
    workspace = _template(tmp_path, "flask-api")
    spec = detect_run(
        workspace,
        template_id="flask-api",
        command="python serve.py --port {port} --prefix {base_path}",
    )
    assert spec.source == "override"
    # Substituted values are quoted for the shell ("~" would expand otherwise).
    assert _argv(spec) == [
        "/bin/sh",
        "-c",
        f"/py/bin/python serve.py --port 5123 --prefix '{BASE}'",
    ]


def test_nothing_to_run_says_what_would_work(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInput, match="Procfile"):
        detect_run(tmp_path)


@pytest.mark.parametrize(
    ("template_id", "how"),
    [
        ("python-script", {"kind": "script", "path": "main.py", "command": "python main.py"}),
        ("data-notebook", {"kind": "notebook", "path": "analysis.ipynb", "command": None}),
    ],
)
def test_a_template_that_serves_nothing_is_not_a_web_app_and_says_how_to_run_it(
    tmp_path: Path, template_id: str, how: dict[str, object]
) -> None:
    with pytest.raises(InvalidInput, match="not a web app") as info:
        detect_run(_template(tmp_path, template_id), template_id=template_id)
    assert info.value.details["not_a_web_app"] is True
    assert info.value.details["how_to_run"] == how
    assert str(how["command"] or how["path"]) in info.value.message


def test_a_script_or_notebook_without_a_template_is_not_a_web_app(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "report.py").write_text("print(1)\n\nif __name__ == '__main__':\n    pass\n")
    with pytest.raises(InvalidInput) as info:
        detect_run(tmp_path)
    assert info.value.details["how_to_run"]["command"] == "python report.py"
    (tmp_path / "report.py").unlink()
    (tmp_path / "explore.ipynb").write_text("{}")
    with pytest.raises(InvalidInput) as info:
        detect_run(tmp_path)
    assert info.value.details["how_to_run"] == {
        "kind": "notebook",
        "path": "explore.ipynb",
        "command": None,
    }


@pytest.mark.parametrize("command", ["", "   ", "a\nb", "a\x00b", "x" * 3000, 42])
def test_bad_commands_are_refused(command: object) -> None:
    with pytest.raises(InvalidInput):
        validate_command(command)


def test_spec_round_trips_through_json(tmp_path: Path) -> None:
    spec = detect_run(_template(tmp_path, "fastapi-service"), template_id="fastapi-service")
    assert RunSpec.from_json(spec.to_json()) == spec
    assert spec.for_release().reload == "none"


def test_a_flask_app_factory_is_found_without_template_metadata(tmp_path: Path) -> None:
    # What the offline agent writes for a prompt-only project: the Flask template's files,
    # whose app.py has a create_app() factory and no module-level app.
    ws = _template(tmp_path, "flask-api")
    spec = detect_run(ws, template_id=None)
    assert spec.framework == "flask"
    assert spec.command.startswith("python -m flask --app app run")
