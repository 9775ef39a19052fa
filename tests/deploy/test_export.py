from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from ecode_jupyter.deploy.detection import detect_run
from ecode_jupyter.deploy.export import build_export, container_command, write_archive
from ecode_jupyter.deploy.releases import walk_files
from ecode_jupyter.deploy.supervisor import free_port
from ecode_jupyter.projects.templating import get_template, render_template

yaml = pytest.importorskip("yaml")


def _export(workspace: Path, template_id: str | None, env_names: list[str] | None = None):
    spec = detect_run(workspace, template_id=template_id)
    files = dict(walk_files(workspace))
    bundle = build_export(
        sorted(files),
        lambda rel: files[rel].read_text() if rel in files else None,
        spec,
        project_name="Todo API",
        slug="todo",
        env_names=env_names or [],
    )
    return spec, files, bundle


def _template(tmp_path: Path, template_id: str) -> Path:
    workspace = tmp_path / "ws"
    render_template(get_template(template_id), workspace, project_name="Todo API", slug="todo")
    return workspace


def _dockerfile_copies(dockerfile: str) -> list[str]:
    sources = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def test_flask_export_installs_requirements_and_runs_on_port_8080(tmp_path: Path) -> None:
    _spec, _files, bundle = _export(_template(tmp_path, "flask-api"), "flask-api", ["API_KEY"])
    dockerfile = bundle.files["Dockerfile"]
    assert dockerfile.splitlines()[2] == "FROM python:3.11-slim"
    assert "COPY requirements.txt ./\nRUN pip install -r requirements.txt" in dockerfile
    assert "USER app" in dockerfile and "PORT=8080" in dockerfile
    cmd = json.loads(dockerfile.splitlines()[-1].removeprefix("CMD "))
    assert cmd[:2] == ["sh", "-c"]
    assert "--host 0.0.0.0" in cmd[2] and '--port "$PORT"' in cmd[2]
    # Every COPY source is in the build context, and the app's files are too.
    assert set(_dockerfile_copies(dockerfile)) - {"."} <= set(bundle.context)
    assert {"requirements.txt", "app.py", "store.py"} <= set(bundle.context)

    service = yaml.safe_load(bundle.files["service.yaml"])
    container = service["spec"]["template"]["spec"]["containers"][0]
    assert service["kind"] == "Service" and service["metadata"]["name"] == "todo"
    assert container["ports"][0]["containerPort"] == 8080
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "API_KEY"


def test_fastapi_export_serves_at_the_root(tmp_path: Path) -> None:
    _spec, _files, bundle = _export(_template(tmp_path, "fastapi-service"), "fastapi-service")
    assert bundle.container_command.startswith("python -m uvicorn main:app --host 0.0.0.0")
    assert "--root-path" not in bundle.container_command
    assert "main.py" in bundle.context and "requirements.txt" in bundle.context


def test_a_forgotten_framework_is_installed_and_named(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (tmp_path / "requirements.txt").write_text("requests\n")
    _spec, _files, bundle = _export(tmp_path, None)
    assert "RUN pip install flask" in bundle.files["Dockerfile"]
    assert any("flask" in note for note in bundle.notes)


def test_node_and_static_exports(tmp_path: Path) -> None:
    node = tmp_path / "node"
    node.mkdir()
    (node / "package.json").write_text('{"scripts": {"start": "node server.js"}}')
    (node / "package-lock.json").write_text("{}")
    (node / "server.js").write_text("")
    _spec, _files, bundle = _export(node, None)
    assert "FROM node:20-slim" in bundle.files["Dockerfile"]
    assert "RUN npm ci --omit=dev" in bundle.files["Dockerfile"]
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>hi</h1>")
    spec = detect_run(site)
    assert container_command(spec) == ('python -m http.server "$PORT" --bind 0.0.0.0 --directory .')


def test_the_build_context_runs_the_app(tmp_path: Path) -> None:
    """Unpack the export and run its CMD as the container would (minus pip): it answers."""
    workspace = _template(tmp_path, "flask-api")
    (workspace / ".venv").mkdir()
    (workspace / ".venv" / "junk").write_text("left out")
    _spec, files, bundle = _export(workspace, "flask-api")
    data = write_archive(bundle, files, top="todo")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "out", filter="data")
    assert "todo/Dockerfile" in names and "todo/service.yaml" in names
    assert not any(".venv" in name for name in names)
    root = tmp_path / "out" / "todo"
    port = free_port()
    command = bundle.container_command.replace("python", sys.executable, 1)
    env = {**os.environ, "PORT": str(port)}
    proc = subprocess.Popen(
        ["sh", "-c", f"exec {command}"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.1)
        assert body is not None and json.loads(body) == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(10)
