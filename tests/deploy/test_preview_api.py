"""Previews through a real Jupyter server: REST, the proxy, WebSockets, visibility, logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from ecode_jupyter.pytest_plugin import ecode_token_for

from .apps import HEADER_ECHO, VERSIONED, WS_ECHO

SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
Write = Callable[[Path, dict[str, str]], None]


@pytest.fixture
def deploy(ecode_app: Any) -> Any:
    manager = ecode_app.ecode.extras["deploy"]
    manager.options.access_cache_s = 0  # role and visibility changes apply at once in tests
    return manager


async def _project(ecode_api: Any, name: str, **body: Any) -> dict[str, Any]:
    r = await ecode_api("POST", "projects", body={"name": name, **body})
    assert r.status == 201, r.body
    return dict(r.body)


async def _preview(ecode_api: Any, project_id: str, **body: Any) -> dict[str, Any]:
    r = await ecode_api("POST", f"projects/{project_id}/deployments", body=body)
    assert r.status == 201, r.body
    assert r.body["status"] == "running", r.body.get("log_tail")
    return dict(r.body)


async def test_flask_template_is_previewed_through_the_proxy(
    ecode_api: Any, app_fetch: Any, deploy: Any
) -> None:
    project = await _project(ecode_api, "Todo", template="flask-api")
    dep = await _preview(ecode_api, project["id"])
    assert dep["framework"] == "flask-api" and dep["url"].startswith(dep["entry_url"] + "~")
    assert dep["own_origin"] is False  # served on the Jupyter origin: framed opaque

    health = await app_fetch(dep["url"] + "health")
    assert health.code == 200 and json.loads(health.body) == {"status": "ok"}
    assert health.headers["Content-Security-Policy"] == SANDBOX
    assert health.headers["Referrer-Policy"] == "no-referrer"

    created = await app_fetch(
        dep["url"] + "todos",
        method="POST",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"title": "ship it"}).encode(),
    )
    assert created.code == 201, created.text
    listed = await app_fetch(dep["url"] + "todos")
    assert [t["title"] for t in json.loads(listed.body)] == ["ship it"]

    # A browser opening the plain URL is sent to the keyed one; a script with a token is served.
    page = await app_fetch(
        dep["entry_url"] + "todos",
        user="alice",
        headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"},
    )
    assert page.code == 302 and page.headers["Location"] == dep["url"] + "todos"
    api = await app_fetch(dep["entry_url"] + "todos", user="alice")
    assert api.code == 200 and json.loads(api.body)[0]["title"] == "ship it"

    again = await ecode_api("POST", f"projects/{project['id']}/deployments", body={})
    assert again.body["id"] == dep["id"]  # the running preview is kept
    listed_deps = await ecode_api("GET", f"projects/{project['id']}/deployments")
    assert [d["status"] for d in listed_deps.body["deployments"]] == ["running"]


async def test_fastapi_template_is_previewed_with_its_root_path(
    ecode_api: Any, app_fetch: Any, deploy: Any
) -> None:
    project = await _project(ecode_api, "Items", template="fastapi-service")
    dep = await _preview(ecode_api, project["id"])
    assert (await app_fetch(dep["url"] + "health")).code == 200
    docs = await app_fetch(dep["url"] + "docs")
    # The docs page asks for the schema under the proxy's prefix, and that answers.
    prefix = dep["url"].rstrip("/")
    assert f"{prefix}/openapi.json" in docs.text
    schema = await app_fetch(f"{prefix}/openapi.json")
    assert json.loads(schema.body)["info"]["title"]


async def test_websocket_app_works_through_the_proxy(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    jp_http_port: int,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Dash")
    write_files(ecode_workspace_root / project["id"], {"app.py": WS_ECHO})
    dep = await _preview(
        ecode_api,
        project["id"],
        command="python app.py --server.port {port} --server.baseUrlPath {base_path}",
    )
    page = await app_fetch(dep["url"])
    assert page.code == 200 and "ws app" in page.text

    base = f"ws://127.0.0.1:{jp_http_port}"
    # From a sandboxed page: Origin "null", no cookies; the key in the path authorizes it.
    conn = await websocket_connect(
        HTTPRequest(base + dep["url"] + "ws", headers={"Origin": "null"}),
        subprotocols=["streamlit", "other"],
    )
    hello = await conn.read_message()
    assert hello == "hello  " + dep["url"] + "ws"  # the app saw no cookie or authorization
    assert conn.selected_subprotocol == "streamlit"
    for message in ("ping", b"\x00\x01binary"):
        await conn.write_message(message, binary=isinstance(message, bytes))
        assert await conn.read_message() == message
    conn.close()

    # The plain URL with a token: authenticated on the upgrade, and the token goes no further.
    token = ecode_token_for("alice")
    conn = await websocket_connect(
        HTTPRequest(
            base + dep["entry_url"] + "ws",
            headers={"Authorization": f"token {token}", "Cookie": "_xsrf=x; theme=dark"},
        )
    )
    assert (await conn.read_message()).startswith("hello cookie ")
    conn.close()

    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(base + dep["entry_url"] + "ws")
    assert refused.value.code in (302, 403)
    with pytest.raises(HTTPClientError) as stranger:
        await websocket_connect(
            HTTPRequest(
                base + dep["entry_url"] + "ws",
                headers={"Authorization": f"token {ecode_token_for('bob')}"},
            )
        )
    assert stranger.value.code == 404


async def test_the_app_never_sees_jupyter_credentials(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    jp_http_port: int,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Echo")
    write_files(ecode_workspace_root / project["id"], {"echo.py": HEADER_ECHO})
    dep = await _preview(ecode_api, project["id"], command="python echo.py")
    token = ecode_token_for("alice")
    jupyter_cookie = f"username-127-0-0-1-{jp_http_port}"
    answer = await app_fetch(
        dep["entry_url"] + "x?a=1&token=" + token + "&_xsrf=abc",
        user="alice",
        method="POST",
        body=b"data",
        headers={
            "Cookie": f"{jupyter_cookie}=2|secret; _xsrf=2|x; jupyterhub-session-id=s; "
            "app_session=abc",
            "X-XSRFToken": "2|x",
            "Referer": f"http://127.0.0.1:{jp_http_port}/lab?token={token}",
        },
    )
    assert answer.code == 200, answer.text
    # Paths reach the app exactly as sent, encoded characters and all.
    encoded = await app_fetch(dep["url"] + "files/a%2Fb%20c?q=%C3%A9&token=x")
    assert json.loads(encoded.body)["path"] == "/files/a%2Fb%20c?q=%C3%A9"
    seen = json.loads(answer.body)
    everything = json.dumps(seen)
    assert token not in everything and "secret" not in everything
    assert seen["path"] == "/x?a=1" and seen["body"] == "data"
    assert "authorization" not in seen["headers"] and "x-xsrftoken" not in seen["headers"]
    assert "referer" not in seen["headers"]
    assert seen["headers"]["cookie"] == "app_session=abc"
    # The app's own answer: its cookies stay under its path; Jupyter's cannot be set.
    cookies = answer.headers.get_list("Set-Cookie")
    prefix = dep["url"].rstrip("/")
    assert cookies == [f"app_session=abc; Path={prefix}/; Priority=Low"]
    assert "Strict-Transport-Security" not in answer.headers
    assert answer.headers["Content-Security-Policy"] == SANDBOX


async def test_visibility_decides_who_may_open_the_app(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Shared")
    pid = project["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await _preview(ecode_api, pid, command="python app.py")
    entry = dep["entry_url"]

    async def status(user: str | None, navigate: bool = False) -> int:
        headers = {"Accept": "text/html", "Sec-Fetch-Mode": "navigate"} if navigate else {}
        return (await app_fetch(entry + "x", user=user, headers=headers)).code

    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    # private (the default): editors and owners only.
    assert await status("alice") == 200
    assert await status("bob") == 404 and await status("carol") == 404
    assert await status(None) == 403
    login = await app_fetch(entry, headers={"Accept": "text/html", "Sec-Fetch-Mode": "navigate"})
    assert login.code == 302 and "/login" in login.headers["Location"]
    # Viewers do not get the capability URL of an app they may not open.
    listed = await ecode_api("GET", f"projects/{pid}/deployments", user="bob")
    assert listed.body["deployments"][0]["url"] is None

    await ecode_api("PATCH", f"projects/{pid}", body={"visibility": "members"})
    assert await status("bob") == 200 and await status("carol") == 404

    await ecode_api("PATCH", f"projects/{pid}", body={"visibility": "public"})
    assert await status(None) == 200 and await status("carol") == 200
    assert await status(None, navigate=True) == 302


async def test_logs_stream_replays_then_follows(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    jp_http_port: int,
    jp_base_url: str,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Logs")
    pid = project["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await _preview(ecode_api, pid, command="python app.py")
    url = f"ws://127.0.0.1:{jp_http_port}{jp_base_url}{dep['logs']}"

    def request(user: str, after: int = 0) -> HTTPRequest:
        return HTTPRequest(
            f"{url}?after={after}", headers={"Authorization": f"token {ecode_token_for(user)}"}
        )

    conn = await websocket_connect(request("alice"))
    lines = []
    while not any("ready on port" in line["text"] for line in lines):
        lines.append(json.loads(await conn.read_message()))
    assert lines[0]["seq"] == 1 and "version v1 starting" in [x["text"] for x in lines]
    await app_fetch(dep["url"] + "hello")
    live = json.loads(await asyncio.wait_for(conn.read_message(), 10))
    while "request /hello" not in live["text"]:
        live = json.loads(await asyncio.wait_for(conn.read_message(), 10))
    conn.close()

    resumed = await websocket_connect(request("alice", after=live["seq"] - 1))
    assert json.loads(await resumed.read_message())["seq"] == live["seq"]
    resumed.close()

    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    with pytest.raises(HTTPClientError) as denied:
        await websocket_connect(request("bob"))
    assert denied.value.code == 403  # logs can show what an app prints of its secrets


async def test_stopping_and_deleting_stop_the_app(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Stop")
    pid = project["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await _preview(ecode_api, pid, command="python app.py")
    stopped = await ecode_api("DELETE", f"projects/{pid}/deployments")
    assert [d["id"] for d in stopped.body["stopped"]] == [dep["id"]]
    assert (await app_fetch(dep["url"])).code == 404
    assert (await app_fetch(dep["entry_url"], user="alice")).code == 404
    row = await ecode_api("GET", f"projects/{pid}/deployments/{dep['id']}")
    assert row.body["status"] == "stopped" and row.body["reason"] == "stopped by alice"

    dep = await _preview(ecode_api, pid, command="python app.py")
    await ecode_api("DELETE", f"projects/{pid}")
    await deploy.sweep()
    assert (await app_fetch(dep["url"])).code == 404
    assert deploy.app_in_slot(pid, "preview") is None


async def test_a_crashing_app_comes_back(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Crash")
    pid = project["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await _preview(ecode_api, pid, command="python app.py")
    crashed = await app_fetch(dep["url"] + "crash")
    assert crashed.code == 502
    async with asyncio.timeout(20):
        while (answer := await app_fetch(dep["url"])).code != 200:
            await asyncio.sleep(0.1)
    assert answer.text == "v1"
    status = await ecode_api("GET", f"projects/{pid}/deployments/{dep['id']}")
    assert status.body["restarts"] >= 1 and status.body["status"] == "running"


async def test_bad_requests_and_strangers(ecode_api: Any, deploy: Any) -> None:
    project = await _project(ecode_api, "Empty")
    pid = project["id"]
    r = await ecode_api("POST", f"projects/{pid}/deployments", body={})
    assert r.status == 400 and "Procfile" in r.body["error"]["message"]
    r = await ecode_api("POST", f"projects/{pid}/deployments", body={"kind": "nope"})
    assert r.status == 400
    r = await ecode_api("POST", f"projects/{pid}/deployments", body={"command": "a\nb"})
    assert r.status == 400
    r = await ecode_api("POST", f"projects/{pid}/deployments", body={"extra": 1})
    assert r.status == 400
    r = await ecode_api("POST", f"projects/{pid}/deployments", user="bob", body={})
    assert r.status == 404
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    r = await ecode_api("POST", f"projects/{pid}/deployments", user="bob", body={})
    assert r.status == 403
    r = await ecode_api("GET", f"projects/{pid}/deployments", user=None)
    assert r.status == 401


async def test_a_script_project_gets_how_to_run_it_instead_of_a_preview(
    ecode_api: Any, deploy: Any
) -> None:
    project = await _project(ecode_api, "Counter", template="python-script")
    r = await ecode_api("POST", f"projects/{project['id']}/deployments", body={})
    assert r.status == 400, r.body
    error = r.body["error"]
    assert "not a web app" in error["message"] and "python main.py" in error["message"]
    assert error["details"]["not_a_web_app"] is True
    assert error["details"]["how_to_run"]["command"] == "python main.py"


async def test_idle_previews_are_stopped(
    ecode_api: Any,
    app_fetch: Any,
    deploy: Any,
    write_files: Write,
    ecode_workspace_root: Path,
) -> None:
    project = await _project(ecode_api, "Idle")
    pid = project["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await _preview(ecode_api, pid, command="python app.py")
    deploy.options.idle_timeout_s = 30.0
    assert (await app_fetch(dep["url"])).code == 200
    await deploy.sweep()
    assert deploy.app_in_slot(pid, "preview") is not None  # it was just used
    deploy.options.idle_timeout_s = 0.01
    await asyncio.sleep(0.05)
    await deploy.sweep()
    assert deploy.app_in_slot(pid, "preview") is None
    row = await ecode_api("GET", f"projects/{pid}/deployments/{dep['id']}")
    assert row.body["status"] == "stopped" and row.body["reason"].startswith("idle for")
