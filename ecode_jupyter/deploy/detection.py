"""How to run a project as a served app: the command, its health path and how it is proxied.

The first of these that applies wins:

1. a command the user gives (an override),
2. a ``Procfile`` ``web:`` line (Heroku style, reads ``$PORT``),
3. the project template's metadata (``run`` with ``{port}``, ``health``, ``preview``), while the
   template's entry file is still there,
4. the framework found in the files: Streamlit, FastAPI, Flask, a Node ``package.json`` with a
   ``start`` script, or a static ``index.html``.

A project none of these fits but that runs otherwise (a script, a notebook) is refused as
"not a web app", saying how to run it (:func:`how_to_run`).

Commands may contain ``{port}`` and ``{base_path}`` (the URL prefix the proxy serves the app
under, without a trailing slash); a leading ``python`` becomes the project's interpreter.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

from ..exceptions import InvalidInput, NotFound
from ..projects.templating import get_template

log = logging.getLogger(__name__)

BasePathMode = Literal["strip", "keep"]
ReloadMode = Literal["watch", "self", "none"]

MAX_COMMAND_CHARS = 2000
# Files read to recognise a framework; bigger ones are not source worth sniffing.
_SNIFF_BYTES = 256 * 1024
_PY_ENTRIES = ("app.py", "main.py", "streamlit_app.py", "server.py", "wsgi.py", "asgi.py")
_STATIC_DIRS = (".", "public", "dist", "build", "site", "static")
_STREAMLIT_FLAGS = (
    "--server.headless true --browser.gatherUsageStats false --server.baseUrlPath {base_path}"
)


@dataclass(frozen=True)
class RunSpec:
    """A way to run a project. ``command`` is a template (``{port}``, ``{base_path}``).

    ``base_path_mode`` says what path the app sees: ``strip`` (the proxy removes the prefix;
    the app thinks it is at ``/``) or ``keep`` (the app was told its base path and gets full
    paths). ``reload``: ``watch`` (restart when files change), ``self`` (the framework
    reloads on its own), ``none`` (releases never change).
    """

    command: str
    source: str
    framework: str
    # Most apps: one argv (no shell), plain HTTP, served at "/", restarted when files change.
    shell: bool = False
    health: str | None = None
    kind: str = "http"
    base_path_mode: BasePathMode = "strip"
    reload: ReloadMode = "watch"
    entry: str | None = None

    def argv(self, *, port: int, base_path: str, python: str, shell: str) -> list[str]:
        """The command for one start, with placeholders filled in."""
        if self.shell:
            text = self.command.replace("{port}", str(port)).replace(
                "{base_path}", shlex.quote(base_path)
            )
            if text.startswith("python "):
                text = shlex.quote(python) + text[len("python") :]
            return [shell, "-c", text]
        parts = [
            part.replace("{port}", str(port)).replace("{base_path}", base_path)
            for part in shlex.split(self.command)
        ]
        if parts and parts[0] == "python":
            parts[0] = python
        return parts

    def health_path(self, base_path: str) -> str:
        path = self.health or "/"
        return base_path + path if self.base_path_mode == "keep" else path

    def for_release(self) -> RunSpec:
        """The same command, never reloaded: a release's files do not change."""
        return RunSpec(**{**asdict(self), "reload": "none"})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def validate_command(command: Any) -> str:
    if not isinstance(command, str) or not command.strip():
        msg = "command must be a non-empty string"
        raise InvalidInput(msg, field="command")
    if len(command) > MAX_COMMAND_CHARS or "\x00" in command or "\n" in command.strip():
        msg = f"command must be one line of at most {MAX_COMMAND_CHARS} characters"
        raise InvalidInput(msg, field="command")
    return command.strip()


def _read(path: Path) -> str:
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > _SNIFF_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _override(command: str) -> RunSpec:
    # An app told its base path gets full paths; anything else sees itself at "/".
    keep = "--server.baseUrlPath" in command
    return RunSpec(
        command=command,
        shell=True,
        base_path_mode="keep" if keep else "strip",
        source="override",
        framework="custom",
    )


def _procfile(workspace: Path) -> RunSpec | None:
    for line in _read(workspace / "Procfile").splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == "web" and command.strip():
            return RunSpec(
                command=command.strip(),
                shell=True,
                source="procfile",
                framework="procfile",
            )
    return None


def _streamlit(command: str, entry: str, health: str | None, source: str) -> RunSpec:
    if "--server.baseUrlPath" not in command:
        command = f"{command} --server.baseUrlPath {{base_path}}"
    return RunSpec(
        command=command,
        health=health or "/_stcore/health",
        kind="websocket-app",
        base_path_mode="keep",
        # Streamlit reruns the script on save itself, keeping browser sessions.
        reload="self",
        source=source,
        framework="streamlit",
        entry=entry,
    )


def _from_template(workspace: Path, template_id: str) -> RunSpec | None:
    try:
        template = get_template(template_id)
    except NotFound:
        return None
    if template.run is None or not (workspace / template.entry).is_file():
        return None
    command = template.run
    if "streamlit" in command:
        return _streamlit(
            f"{command} --server.runOnSave true", template.entry, template.health, "template"
        )
    if "uvicorn" in command and "--root-path" not in command:
        # uvicorn serves stripped paths and puts the prefix in links (/docs -> openapi.json).
        command = f"{command} --root-path {{base_path}}"
    return RunSpec(
        command=command,
        health=template.health,
        kind=template.preview or "http",
        source="template",
        framework=template.id,
        entry=template.entry,
    )


_FASTAPI_APP = re.compile(r"^(\w+)\s*(?::[^=]+)?=\s*(?:fastapi\.)?FastAPI\(", re.MULTILINE)
_FLASK_APP = re.compile(r"^(\w+)\s*(?::[^=]+)?=\s*(?:flask\.)?Flask\(", re.MULTILINE)
# An application factory: `flask --app module` finds create_app/make_app by itself.
_FLASK_FACTORY = re.compile(r"^def (create_app|make_app)\(", re.MULTILINE)
_FLASK_IMPORT = re.compile(r"^\s*(?:from flask import|import flask)", re.MULTILINE)


def _framework(workspace: Path) -> RunSpec | None:
    sources = {name: _read(workspace / name) for name in _PY_ENTRIES}
    for name, text in sources.items():
        if re.search(r"^\s*import streamlit|^\s*from streamlit", text, re.MULTILINE):
            command = (
                "python -m streamlit run "
                f"{name} --server.port {{port}} --server.address 127.0.0.1 {_STREAMLIT_FLAGS}"
                " --server.runOnSave true"
            )
            return _streamlit(command, name, None, "framework")
    for name, text in sources.items():
        match = _FASTAPI_APP.search(text)
        if match:
            module = name.removesuffix(".py")
            return RunSpec(
                command=(
                    f"python -m uvicorn {module}:{match.group(1)} --host 127.0.0.1 "
                    "--port {port} --root-path {base_path}"
                ),
                source="framework",
                framework="fastapi",
                entry=name,
            )
    for name, text in sources.items():
        match = _FLASK_APP.search(text)
        factory = _FLASK_FACTORY.search(text) if _FLASK_IMPORT.search(text) else None
        if match or factory:
            module = name.removesuffix(".py")
            target = f"{module}:{match.group(1)}" if match else module
            return RunSpec(
                command=f"python -m flask --app {target} run --host 127.0.0.1 --port {{port}}",
                source="framework",
                framework="flask",
                entry=name,
            )
    package = _read(workspace / "package.json")
    if package:
        try:
            scripts = json.loads(package).get("scripts") or {}
        except (ValueError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and isinstance(scripts.get("start"), str):
            return RunSpec(
                command="npm start",
                source="framework",
                framework="node",
                entry="package.json",
            )
    for folder in _STATIC_DIRS:
        if (workspace / folder / "index.html").is_file():
            return RunSpec(
                command=(
                    "python -m http.server {port} --bind 127.0.0.1 --directory "
                    + shlex.quote(folder)
                ),
                health="/",
                kind="static",
                # The static server reads files on every request: edits show at once.
                reload="self",
                source="framework",
                framework="static",
                entry=f"{folder}/index.html".removeprefix("./"),
            )
    return None


@dataclass(frozen=True)
class HowToRun:
    """How to use a project that is not a web app (a script, a notebook, a Node program)."""

    kind: Literal["script", "notebook", "node"]
    #: the file to run or open, relative to the workspace
    path: str
    #: the command line for a terminal in the workspace; None for a notebook
    command: str | None

    def sentence(self) -> str:
        if self.command is None:
            return f"it is a notebook: open {self.path} and run all its cells"
        return f"it is a {self.kind}: run `{self.command}` in a terminal in its folder"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_MAIN_GUARD = re.compile(r"^if __name__ == ['\"]__main__['\"]\s*:", re.MULTILINE)
# A project's own folders that are not its programs.
_NOT_SOURCE = ("tests", "test", ".venv", "venv", "node_modules", ".ipynb_checkpoints")


def _how_for(path: str) -> HowToRun:
    if path.endswith(".ipynb"):
        return HowToRun("notebook", path, None)
    if path.endswith((".js", ".mjs", ".cjs")):
        return HowToRun("node", path, f"node {shlex.quote(path)}")
    return HowToRun("script", path, f"python {shlex.quote(path)}")


def how_to_run(workspace: Path, *, template_id: str | None = None) -> HowToRun | None:
    """How to use a project that has no web app to preview, or None when nothing in it runs.

    The template's entry when the template serves nothing (a script, a notebook); else a
    Python file with a ``__main__`` guard (``main.py`` and ``cli.py`` first), a notebook, a
    lone Python file, or the ``main`` of a ``package.json``, at the top of the workspace.
    """
    if template_id:
        try:
            template = get_template(template_id)
        except NotFound:
            template = None
        serves = template is None or template.run is not None
        if not serves and template and (workspace / template.entry).is_file():
            return _how_for(template.entry)
    top = sorted(p.name for p in workspace.iterdir() if p.is_file()) if workspace.is_dir() else []
    scripts = [name for name in top if name.endswith(".py") and name not in _NOT_SOURCE]
    preferred = sorted(scripts, key=lambda name: (name not in ("main.py", "cli.py"), name))
    for name in preferred:
        if _MAIN_GUARD.search(_read(workspace / name)):
            return _how_for(name)
    notebooks = [name for name in top if name.endswith(".ipynb")]
    if notebooks:
        return _how_for(notebooks[0])
    if len(scripts) == 1:
        return _how_for(scripts[0])
    package = _read(workspace / "package.json")
    if package:
        try:
            main = json.loads(package).get("main")
        except (ValueError, AttributeError):
            main = None
        if isinstance(main, str) and (workspace / main).is_file():
            return _how_for(main)
    return None


def detect_run(
    workspace: Path, *, template_id: str | None = None, command: str | None = None
) -> RunSpec:
    """The run spec for a project; raises InvalidInput when nothing says how to serve it
    (with ``details.not_a_web_app`` and ``details.how_to_run`` when the project is a script
    or a notebook, so a client can offer "how to run it" instead of a preview)."""
    if command is not None:
        return _override(validate_command(command))
    spec = _procfile(workspace)
    if spec is None and template_id:
        spec = _from_template(workspace, template_id)
    if spec is None:
        spec = _framework(workspace)
    if spec is None:
        how = how_to_run(workspace, template_id=template_id)
        if how is not None:
            msg = f"this project is not a web app, so there is no preview: {how.sentence()}"
            raise InvalidInput(msg, field="command", not_a_web_app=True, how_to_run=how.to_json())
        msg = (
            "cannot tell how to run this project: add a Procfile with a 'web:' line, an "
            "app.py (Flask, FastAPI or Streamlit), a package.json start script or an "
            "index.html, or give a command"
        )
        raise InvalidInput(msg, field="command")
    log.debug("run spec for %s: %s (%s)", workspace.name, spec.framework, spec.source)
    return spec


def spec_from_json(data: Any) -> RunSpec:
    if not isinstance(data, dict):
        msg = "stored run spec is not an object"
        raise InvalidInput(msg)
    return RunSpec.from_json(cast(dict[str, Any], data))
