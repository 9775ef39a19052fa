"""With ``preview_origin`` set, app pages render on that origin (here: localhost for a server
reached as 127.0.0.1), where they may keep an origin of their own when its host name is its
own (``preview_isolation``, tested in ``test_gateway_origin``; a loopback name here, so the
tests that need one say so)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .apps import VERSIONED

NAVIGATE = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"}


@pytest.fixture
def ecode_extra_config(jp_http_port: int) -> dict[str, Any]:
    return {"EcodeApp": {"preview_origin": f"http://localhost:{jp_http_port}"}}


@pytest.fixture
def deploy(ecode_app: Any) -> Any:
    return ecode_app.ecode.extras["deploy"]


async def test_pages_are_sent_to_the_preview_origin(
    deploy: Any,
    ecode_api: Any,
    app_fetch: Any,
    jp_http_port: int,
    write_files: Callable[[Path, dict[str, str]], None],
    ecode_workspace_root: Path,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Elsewhere"})
    pid = r.body["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await ecode_api("POST", f"projects/{pid}/deployments", body={"command": "python app.py"})
    preview = f"http://localhost:{jp_http_port}"
    assert dep.body["url"].startswith(preview + "/")
    keyed_path = dep.body["url"].removeprefix(preview)

    # The plain URL on the Jupyter origin sends the browser to the preview origin.
    entry = dep.body["entry_url"].removeprefix(preview)
    first = await app_fetch(entry, user="alice", headers=NAVIGATE)
    assert first.code == 302 and first.headers["Location"] == dep.body["url"]
    # So does a keyed page opened on the Jupyter origin.
    moved = await app_fetch(keyed_path, headers=NAVIGATE)
    assert moved.code == 302 and moved.headers["Location"] == dep.body["url"]

    there = await app_fetch(dep.body["url"], headers=NAVIGATE)
    assert there.code == 200 and there.text == "v1"
    # localhost is one of Jupyter's own names (it prints localhost and 127.0.0.1 URLs), and
    # cookies ignore ports: the page stays in the sandbox there.
    assert "allow-same-origin" not in there.headers["Content-Security-Policy"]
    # On a preview origin with a host name of its own, the page keeps its origin ...
    deploy.options.preview_own_origin = True
    there = await app_fetch(dep.body["url"], headers=NAVIGATE)
    assert "allow-same-origin" in there.headers["Content-Security-Policy"]
    # ... and a script fetching from the Jupyter origin gets the app, still sandboxed there.
    here = await app_fetch(keyed_path)
    assert here.code == 200
    assert "allow-same-origin" not in here.headers["Content-Security-Policy"]


async def test_the_preview_origin_serves_apps_and_nothing_of_jupyter(
    ecode_api: Any,
    app_fetch: Any,
    jp_http_port: int,
    jp_base_url: str,
    write_files: Callable[[Path, dict[str, str]], None],
    ecode_workspace_root: Path,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Fenced"})
    pid = r.body["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await ecode_api("POST", f"projects/{pid}/deployments", body={"command": "python app.py"})
    preview = f"http://localhost:{jp_http_port}"
    # The entry URL is on Jupyter's origin, where the user is signed in.
    assert dep.body["entry_url"].startswith(jp_base_url) and "://" not in dep.body["entry_url"]
    # Jupyter's pages and APIs are not on the apps' origin: an app's scripts (same origin
    # there) could otherwise use them with whatever login the browser had there.
    for path in ("api/contents", "api/kernels", "login", "lab", "api/ecode/projects"):
        answer = await app_fetch(f"{preview}{jp_base_url}{path}", user="alice")
        assert answer.code == 404, path
    # Nobody is sent to sign in on the preview origin: without a login, a plain app URL
    # there is refused, and the keyed URL (from Jupyter's origin) is the way in.
    entry = await app_fetch(preview + dep.body["entry_url"], headers=NAVIGATE)
    assert entry.code == 403
    assert (await app_fetch(dep.body["url"], headers=NAVIGATE)).code == 200
