"""Finding the server from a kernel's environment and the running-server list."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ecode_jupyter.client.discovery import ServerInfo, find_server, normalize_url


def _server_file(runtime: Path, name: str, **info: Any) -> None:
    info.setdefault("pid", os.getpid())  # a live pid, or list_running_servers drops the file
    (runtime / f"jpserver-{name}.json").write_text(json.dumps(info))


def test_the_environment_names_the_server_and_token() -> None:
    env = {"ECODE_SERVER_URL": "http://127.0.0.1:8888/user/alice", "ECODE_TOKEN": "t0k"}
    server = find_server(env)
    assert server == ServerInfo("http://127.0.0.1:8888/user/alice/", "t0k", "ECODE_SERVER_URL")
    assert server.api_url == "http://127.0.0.1:8888/user/alice/api/ecode/"
    assert server.ws_url == "ws://127.0.0.1:8888/user/alice/api/ecode/"
    assert server.auth_headers() == {"Authorization": "token t0k"}
    # JUPYTER_TOKEN stands in when ECODE_TOKEN is not set.
    fallback = find_server({"ECODE_SERVER_URL": "https://hub.example/", "JUPYTER_TOKEN": "jt"})
    assert fallback is not None and fallback.token == "jt"
    assert fallback.ws_url == "wss://hub.example/api/ecode/"


def test_a_token_never_shows_in_a_repr() -> None:
    server = ServerInfo("http://x/", "very-secret-token", "test")
    assert "very-secret-token" not in repr(server)
    assert "very-secret-token" not in str(server)


def test_browser_urls_become_the_server_base_url() -> None:
    assert normalize_url("localhost:8888/lab?token=abc") == "http://localhost:8888/"
    assert normalize_url("http://h:1/user/bob/lab/tree/a.ipynb") == "http://h:1/user/bob/"
    assert normalize_url("https://h/base/tree") == "https://h/base/"
    assert normalize_url("http://h:1/base/") == "http://h:1/base/"


def test_the_server_that_started_the_kernel_wins(tmp_path: Path) -> None:
    _server_file(tmp_path, "a", url="http://127.0.0.1:1111/", token="ta", root_dir=str(tmp_path))
    _server_file(
        tmp_path,
        "b",
        url="http://127.0.0.1:2222/",
        token="tb",
        root_dir="/elsewhere",
        pid=os.getppid(),
    )
    env = {"JPY_PARENT_PID": str(os.getppid())}
    server = find_server(env, cwd=tmp_path, runtime_dir=str(tmp_path))
    assert server is not None
    assert (server.url, server.token) == ("http://127.0.0.1:2222/", "tb")


def test_else_the_server_whose_root_holds_the_cwd(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    _server_file(tmp_path, "a", url="http://127.0.0.1:1111/", token="ta", root_dir="/elsewhere")
    _server_file(tmp_path, "b", url="http://127.0.0.1:2222/", token="tb", root_dir=str(tmp_path))
    _server_file(tmp_path, "c", url="http://127.0.0.1:3333/", token="tc", root_dir=str(work))
    _server_file(
        tmp_path, "d", url="http+unix://sock/", token="td", root_dir=str(work), sock="/tmp/x.sock"
    )
    env = {"JPY_PARENT_PID": "999999999"}
    server = find_server(env, cwd=work / "sub", runtime_dir=str(tmp_path))
    assert server is not None
    # The deepest root that holds the cwd; unix-socket servers are not reachable over TCP.
    assert server.url == "http://127.0.0.1:3333/"
    assert "running server" in server.source


def test_a_server_without_a_token_borrows_the_hub_token(tmp_path: Path) -> None:
    _server_file(
        tmp_path, "a", url="http://127.0.0.1:1111/user/alice/", token="", root_dir="/elsewhere"
    )
    env = {"JPY_PARENT_PID": "999999999", "JUPYTERHUB_API_TOKEN": "hub-token"}
    server = find_server(env, cwd=tmp_path, runtime_dir=str(tmp_path))
    assert server is not None and server.token == "hub-token"


def test_several_unrelated_servers_are_ambiguous(tmp_path: Path) -> None:
    _server_file(tmp_path, "a", url="http://127.0.0.1:1111/", token="ta", root_dir="/x")
    _server_file(tmp_path, "b", url="http://127.0.0.1:2222/", token="tb", root_dir="/y")
    env = {"JPY_PARENT_PID": "999999999"}
    assert find_server(env, cwd=tmp_path, runtime_dir=str(tmp_path)) is None
    # A JupyterHub user server's own URL is the last resort.
    env["JUPYTERHUB_SERVICE_URL"] = "http://127.0.0.1:5555/user/alice/"
    hub = find_server(env, cwd=tmp_path, runtime_dir=str(tmp_path))
    assert hub is not None and hub.url == "http://127.0.0.1:5555/user/alice/"


def test_no_server_at_all(tmp_path: Path) -> None:
    assert find_server({}, cwd=tmp_path, runtime_dir=str(tmp_path / "missing")) is None
