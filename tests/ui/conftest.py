"""A real JupyterLab per test module, and Debian's headless Chromium per test.

Each module gets one `jupyter lab` subprocess — hermetic config, data and runtime folders, a
known token, the ecode server extension on its own SQLite file, workspaces in the default
place (`<root>/ecode-projects`, so Lab's file browser shows them) — and each test a fresh
browser page. A module may set ``LAB_ECODE_CONFIG`` (more ``c.EcodeApp`` traits) and
``LAB_ENV`` (environment of the server) at module level. The lab extension is whatever is
installed in this environment (`pip install -e .`, a wheel, or `jupyter-builder develop
--overwrite .`), as a user gets it. Screenshots, the server's log and each page's console go
to `test-output/ui/` under the repository root.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

from .lab import (
    OUTPUT_DIR,
    OWNER,
    UI_TIMEOUT_MS,
    Lab,
    free_port,
    wait_until_ready,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` "
        "(or set ECODE_CHROMIUM)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Keep each phase's report on the test, so the page fixture can tell it failed.
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real `jupyter lab` on a free port with its own config, data, runtime and root dirs."""
    base = tmp_path_factory.mktemp("lab")
    dirs = {name: base / name for name in ("config", "data", "runtime", "root")}
    for path in dirs.values():
        path.mkdir()
    token = secrets.token_hex(16)
    config = {
        "ServerApp": {"jpserver_extensions": {"ecode_jupyter": True}},
        "IdentityProvider": {"token": token},
        "EcodeApp": {
            "database_url": f"sqlite:///{base / 'ecode.sqlite'}",
            "owner_name": OWNER,
            "releases_dir": str(base / "releases"),
            **getattr(request.module, "LAB_ECODE_CONFIG", {}),
        },
        # No news toast or update check: nothing to reach, and nothing over the panel.
        "LabApp": {
            "news_url": None,
            "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        },
    }
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(config))
    # Nor the "get notified about news?" toast, which would sit over the screenshots.
    notification = dirs["config"] / "lab/user-settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
    }
    for name in (
        "JUPYTER_TOKEN",
        "ECODE_DATABASE_URL",
        "ECODE_WORKSPACE_ROOT",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
    ):
        env.pop(name, None)
    env.update(getattr(request.module, "LAB_ENV", {}))
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--allow-root",
        "--ServerApp.open_browser=False",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={dirs['root']}",
    ]
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    module = request.module.__name__.rsplit(".", 1)[-1]
    log_path = OUTPUT_DIR / f"{module}-jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=dirs["root"]
        )
        lab = Lab(f"http://127.0.0.1:{port}/", token, process, log_path, dirs["root"])
        try:
            wait_until_ready(lab)
            yield lab
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def browser() -> Iterator[Browser]:
    # Function scope on purpose: Playwright's sync API leaves its loop marked as running in
    # this thread between calls, and pytest-jupyter's autouse per-test loop fixture would pick
    # that loop up and try to close it. Started after that fixture, stopped before it.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    # Uncaught exceptions in the page are bugs; keep them for the assertion and the report.
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        # What the page looked like when the test gave up.
        page.screenshot(path=str(OUTPUT_DIR / f"{request.node.name}-failed.png"))
    context.close()
    (OUTPUT_DIR / f"{request.node.name}-console.log").write_text("\n".join(console + errors))
    assert not errors, f"uncaught errors in the page: {errors}"
