"""Project templates: each renders, its own tests pass, served ones answer HTTP, prompts match."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from ecode_jupyter.exceptions import (
    Conflict,
    EcodeError,
    InvalidInput,
    NotFound,
    PathOutsideWorkspace,
)
from ecode_jupyter.projects import templating
from ecode_jupyter.projects.templating import (
    ProjectTemplate,
    best_match,
    get_template,
    list_templates,
    load_template,
    match_template,
    render_template,
    template_files,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The Python templates; the Node ones (express-api, react-dashboard) are in test_node_templates.
TEMPLATE_IDS = [
    "data-notebook",
    "fastapi-service",
    "flask-api",
    "python-script",
    "streamlit-dashboard",
]
ALL_TEMPLATE_IDS = sorted([*TEMPLATE_IDS, "express-api", "react-dashboard"])
# Quotes, a backslash and non-ASCII: the rendered code, JSON and TOML must still parse.
AWKWARD_NAME = 'Zoë\'s "Tiny" App \\ v2'
SLUG = "zoes-tiny-app"
HAS_STREAMLIT = importlib.util.find_spec("streamlit") is not None


def _hermetic_env(tmp_path: Path) -> dict[str, str]:
    """The environment a template's own commands run in: no state outside tmp_path."""
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[name] = str(tmp_path / "home" / name.lower())
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["MPLBACKEND"] = "Agg"
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_templates_are_listed_in_id_order() -> None:
    templates = list_templates()

    assert [t.id for t in templates] == ALL_TEMPLATE_IDS
    assert all(isinstance(t, ProjectTemplate) for t in templates)
    assert templates[3].to_json() == {
        "id": "flask-api",
        "title": "Flask API",
        "description": templates[3].description,
        "serves": True,
        "entry": "app.py",
    }
    # A script's template is no web app: clients offer how to run it, not a preview.
    script = next(t for t in templates if t.id == "python-script").to_json()
    assert (script["serves"], script["entry"]) == (False, "main.py")
    assert list_templates() == templates  # cached, and a fresh list each call
    assert list_templates() is not templates


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_metadata_agrees_with_the_files(template_id: str) -> None:
    template = get_template(template_id)
    paths = template.file_paths()

    assert template.entry in paths
    assert {"README.md", "requirements.txt"} <= set(paths)
    assert any(p.startswith("tests/test_") for p in paths)
    requirements = (template.files_root / "requirements.txt").read_text(encoding="utf-8")
    assert tuple(requirements.split()) == template.requirements
    assert template.test_argv(python="/py") == ["/py", "-m", "pytest", "-q"]
    if template.preview is None:
        assert template.run_argv(8000) is None
    else:
        argv = template.run_argv(8123, python="/py")
        assert argv is not None
        assert argv[0] == "/py"
        assert "8123" in argv
        assert template.health is not None
        assert template.health.startswith("/")


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_rendered_project_passes_its_own_tests(template_id: str, tmp_path: Path) -> None:
    template = get_template(template_id)
    dest = tmp_path / SLUG

    written = render_template(template, dest, project_name=AWKWARD_NAME, slug=SLUG)

    assert written == template.file_paths()
    result = subprocess.run(
        template.test_argv(python=sys.executable),
        cwd=dest,
        env=_hermetic_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in output
    assert " failed" not in output
    if template_id == "streamlit-dashboard" and not HAS_STREAMLIT:
        # Without Streamlit only the AppTest module skips; data.py is still tested.
        assert "skipped" in output


SERVED = [t.id for t in list_templates() if t.preview is not None and t.id in TEMPLATE_IDS]


@pytest.mark.parametrize("template_id", SERVED)
def test_served_template_starts_and_answers(template_id: str, tmp_path: Path) -> None:
    if template_id == "streamlit-dashboard" and not HAS_STREAMLIT:
        pytest.skip("streamlit is not installed")
    template = get_template(template_id)
    dest = tmp_path / SLUG
    render_template(template, dest, project_name=AWKWARD_NAME, slug=SLUG)
    port = _free_port()
    argv = template.run_argv(port, python=sys.executable)
    assert argv is not None
    log_path = tmp_path / "server.log"

    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            argv, cwd=dest, env=_hermetic_env(tmp_path), stdout=log_file, stderr=log_file
        )
        try:
            health = None
            # Poll until the app answers; the deadline only bounds a hung start.
            deadline = time.monotonic() + 90
            while health is None and proc.poll() is None and time.monotonic() < deadline:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}{template.health}", timeout=5)
                except httpx.TransportError:
                    time.sleep(0.1)
            log = log_path.read_text(encoding="utf-8", errors="replace")
            assert health is not None, f"{template_id} never answered; exit {proc.poll()}\n{log}"
            assert health.status_code == 200, log
            index = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
            assert index.status_code == 200
            if template.preview == "http":
                # The JSON APIs greet with the project's name: placeholders reach the live app.
                assert index.json()["name"] == AWKWARD_NAME
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a Flask todo API with tests", "flask-api"),
        ("FLASK", "flask-api"),
        ("a REST API for books", "flask-api"),
        ("fastapi", "fastapi-service"),
        ("FastAPI todo API", "fastapi-service"),
        ("an async API with pydantic models", "fastapi-service"),
        ("a sales dashboard", "streamlit-dashboard"),
        ("streamlit", "streamlit-dashboard"),
        ("some charts of my numbers", "streamlit-dashboard"),
        ("a data dashboard", "streamlit-dashboard"),
        ("notebook", "data-notebook"),
        ("analysis of rainfall", "data-notebook"),
        ("data", "data-notebook"),
        ("chart the sales data in a notebook", "data-notebook"),
        ("a python script with tests", "python-script"),
        ("hello world", "python-script"),
        ("", "python-script"),
    ],
)
def test_match_template(prompt: str, expected: str) -> None:
    assert match_template(prompt).id == expected


def test_match_is_explained() -> None:
    match = best_match("a Flask todo API with tests")
    assert match.matched_names == ("flask",)
    assert set(match.matched_keywords) == {"api", "todo"}
    assert "flask" in match.explain()

    fallback = best_match("something else entirely")
    assert fallback.template.id == templating.DEFAULT_TEMPLATE_ID
    assert "default" in fallback.explain()


def test_unknown_template_is_not_found() -> None:
    with pytest.raises(NotFound, match="choose one of: data-notebook") as exc:
        get_template("cobol-mainframe")
    assert exc.value.status == 404


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_placeholders_are_substituted_and_files_still_parse(template_id: str) -> None:
    files = template_files(get_template(template_id), project_name=AWKWARD_NAME, slug=SLUG)

    assert files["README.md"].startswith(f"# {AWKWARD_NAME}\n")
    assert SLUG in files["README.md"]
    for rel, text in files.items():
        assert "{{project_name}}" not in text, rel
        assert "{{slug}}" not in text, rel
        if rel.endswith(".py"):
            compile(text, rel, "exec")
        elif rel.endswith((".json", ".ipynb")):
            json.loads(text)
        elif rel.endswith(".toml"):
            tomllib.loads(text)


def test_notebook_title_carries_the_name() -> None:
    files = template_files(get_template("data-notebook"), project_name=AWKWARD_NAME, slug=SLUG)
    title = json.loads(files["analysis.ipynb"])["cells"][0]["source"][0]
    assert title == f"# {AWKWARD_NAME}\n"


def test_placeholder_inside_a_value_is_not_expanded_again() -> None:
    files = template_files(get_template("python-script"), project_name="{{slug}}", slug=SLUG)
    assert files["README.md"].startswith("# {{slug}}\n")


def test_blank_name_is_invalid() -> None:
    with pytest.raises(InvalidInput):
        template_files(get_template("python-script"), project_name="  ", slug=SLUG)


def test_render_into_a_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / ".ecode").mkdir()
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")

    written = render_template(
        get_template("python-script"), tmp_path, project_name="Stats", slug="stats"
    )

    assert "main.py" in written
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("# Stats\n")


def test_render_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_app.py").write_text("# my own tests\n", encoding="utf-8")

    with pytest.raises(Conflict, match="tests/test_app.py") as exc:
        render_template(get_template("flask-api"), tmp_path, project_name="A", slug="a")

    assert exc.value.status == 409
    # Nothing was written: the clash is found before the first file.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["test_app.py", "tests"]
    assert (tmp_path / "tests" / "test_app.py").read_text(encoding="utf-8") == "# my own tests\n"


def test_render_does_not_follow_a_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "project"
    dest.mkdir()
    (dest / "tests").symlink_to(outside, target_is_directory=True)

    with pytest.raises(PathOutsideWorkspace):
        render_template(get_template("python-script"), dest, project_name="A", slug="a")

    assert list(outside.iterdir()) == []


def _write_template(folder: Path, **overrides: object) -> Path:
    data: dict[str, object] = {
        "id": folder.name,
        "title": "T",
        "description": "D",
        "names": ["tee"],
        "keywords": ["tea"],
        "requirements": ["pytest>=8"],
        "run": None,
        "test": "python -m pytest -q",
        "preview": None,
        "entry": "main.py",
        "health": None,
        **overrides,
    }
    (folder / "files").mkdir(parents=True)
    (folder / "files" / "main.py").write_text("print('hi')\n", encoding="utf-8")
    (folder / "template.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_a_well_formed_template_folder_loads(tmp_path: Path) -> None:
    template = load_template(_write_template(tmp_path / "tiny"))
    assert (template.id, template.entry, template.file_paths()) == ("tiny", "main.py", ["main.py"])


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"id": "other"}, "id must match the folder name"),
        ({"preview": "http"}, "run must contain {port}"),
        ({"preview": "http", "run": "python app.py"}, "run must contain {port}"),
        ({"run": "python app.py --port {port}"}, "run must contain {port}"),
        ({"preview": "ftp", "run": "x {port}"}, "preview must be one of"),
        ({"keywords": ["Two Words"]}, "keywords must be a list of lower-case words"),
        ({"requirements": "flask"}, "requirements must be a list"),
        ({"entry": "missing.py"}, "entry 'missing.py' is not in files/"),
        ({"colour": "red"}, "unknown fields"),
        ({"title": ""}, "title must be a non-empty string"),
    ],
)
def test_a_broken_template_is_reported(
    tmp_path: Path, overrides: dict[str, object], problem: str
) -> None:
    folder = _write_template(tmp_path / "tiny", **overrides)
    with pytest.raises(EcodeError, match="template 'tiny' is broken") as exc:
        load_template(folder)
    assert problem in exc.value.message


def test_binary_files_are_refused(tmp_path: Path) -> None:
    folder = _write_template(tmp_path / "tiny")
    (folder / "files" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(EcodeError, match="logo.png is not UTF-8 text"):
        load_template(folder)


def test_templates_ship_in_the_wheel() -> None:
    # hatch drops whatever .gitignore or an exclude pattern names; ask hatch itself.
    builders = pytest.importorskip("hatchling.builders.wheel")
    shipped = {
        f.distribution_path for f in builders.WheelBuilder(str(REPO_ROOT)).recurse_included_files()
    }
    for template in list_templates():
        prefix = f"ecode_jupyter/projects/templates/{template.id}"
        assert f"{prefix}/template.json" in shipped
        for rel in template.file_paths():
            assert f"{prefix}/files/{rel}" in shipped
