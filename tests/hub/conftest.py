"""A real JupyterHub on loopback whose users' servers all run the ecode extension.

One hub per test module: configurable-http-proxy in front, DummyAuthenticator, the
SimpleLocalProcessSpawner (every user's server is a process of this OS user), and every server
pointed at ONE ecode database — a fresh PostgreSQL database when ``ECODE_TEST_DATABASE_URL`` is
set, else one shared SQLite file — with one workspace root and one secrets key. The hub loads
``examples/jupyterhub/jupyterhub_config.py`` and then only moves it onto free ports and test
folders, so the shipped example is what runs here.

Needs ``jupyterhub`` (Python) and ``configurable-http-proxy`` (npm; on PATH or named by
``CONFIGURABLE_HTTP_PROXY``); without them the hub tests skip and say why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "jupyterhub" / "jupyterhub_config.py"
HUB_USERS = ("alice", "bob", "admin")
STOCK_OWNER = "not-a-hub-user"
# Bounded waits (seconds). A 2-core machine starts the hub and three servers in well under these.
HUB_READY_TIMEOUT = 60
SPAWN_TIMEOUT = 120
STOP_TIMEOUT = 20
HTTP_TIMEOUT = 30


def find_proxy() -> str | None:
    explicit = os.environ.get("CONFIGURABLE_HTTP_PROXY")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("configurable-http-proxy")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc), so none outlives the test."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes; its parent reaps it.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def stop_pids(pids: list[int], timeout: float) -> None:
    """SIGTERM these processes, then SIGKILL whichever is still alive after ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Hub:
    """A running hub: its public URL, an admin service token, and each user's API token."""

    url: str
    api_url: str
    service_token: str
    log_path: Path
    workspace_root: Path
    database_url: str
    tokens: dict[str, str] = field(default_factory=dict)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT))

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no hub log)"
        return "\n".join(text.splitlines()[-lines:])

    def hub_api(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """The hub's REST API as the admin service."""
        return self.client.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"token {self.service_token}"},
            content=json.dumps(body) if body is not None else None,
        )

    def ecode(
        self,
        method: str,
        path: str,
        *,
        user: str,
        server: str | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """``/user/{server}/api/ecode/{path}`` through the hub's proxy with ``user``'s token.

        ``server`` defaults to the user's own server.
        """
        owner = server or user
        return self.client.request(
            method,
            f"{self.url}user/{owner}/api/ecode/{path}",
            headers={"Authorization": f"token {self.tokens[user]}"},
            content=json.dumps(body) if body is not None else None,
        )


def _hub_config(
    *,
    tmp: Path,
    proxy: str,
    public_port: int,
    hub_port: int,
    proxy_api_port: int,
    service_token: str,
    user_env: dict[str, str],
) -> str:
    """The test's hub config: the shipped example, then loopback ports and test folders."""
    settings = {
        "example": str(EXAMPLE_CONFIG),
        "public_url": f"http://127.0.0.1:{public_port}",
        "hub_url": f"http://127.0.0.1:{hub_port}",
        "proxy_api_url": f"http://127.0.0.1:{proxy_api_port}",
        "proxy": proxy,
        "python": sys.executable,
        "tmp": str(tmp),
        "service_token": service_token,
        "user_env": user_env,
    }
    return f"""\
import json, os
t = json.loads({json.dumps(json.dumps(settings))})
c = get_config()  # noqa: F821
load_subconfig(t["example"])  # noqa: F821

c.JupyterHub.bind_url = t["public_url"]
c.JupyterHub.hub_bind_url = t["hub_url"]
c.JupyterHub.db_url = "sqlite:///" + os.path.join(t["tmp"], "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(t["tmp"], "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.api_url = t["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [t["proxy"]]
c.ConfigurableHTTPProxy.pid_file = os.path.join(t["tmp"], "proxy.pid")

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(t["tmp"], "home", "{{username}}")
# This interpreter's environment, where ecode_jupyter is installed.
c.Spawner.cmd = [t["python"], "-m", "jupyterhub.singleuser"]
c.Spawner.environment = {{**c.Spawner.environment, **t["user_env"]}}
c.Spawner.start_timeout = 90
# Answer "start this server" at once (202) so the three servers start side by side.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.Spawner.http_timeout = 60

# The test drives the hub as a service that may create users, start servers and mint tokens.
c.JupyterHub.services = [{{"name": "ecode-test", "api_token": t["service_token"]}}]
c.JupyterHub.load_roles = [
    {{
        "name": "ecode-test",
        "scopes": ["admin:users", "admin:servers", "tokens"],
        "services": ["ecode-test"],
    }}
]
"""


@contextlib.contextmanager
def ecode_database(tmp: Path, env: dict[str, str]) -> Iterator[str]:
    """One database for every user's server, upgraded to head the way an admin does it."""
    base = os.environ.get("ECODE_TEST_DATABASE_URL")
    admin_engine = None
    name = ""
    if base:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"ecode_hub_{uuid.uuid4().hex[:12]}"
        admin_engine = create_engine(make_url(base), isolation_level="AUTOCOMMIT")
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp / 'ecode-shared.sqlite'}"
    try:
        # `jupyter ecode db upgrade`, as README tells the admin; a PostgreSQL server refuses a
        # stale schema, and this keeps servers starting together from racing to migrate.
        subprocess.run(
            [sys.executable, "-m", "ecode_jupyter.cli", "--database-url", url, "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield url
    finally:
        if admin_engine is not None:
            from sqlalchemy import text

            with admin_engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin_engine.dispose()


def _wait(what: str, check: Any, timeout: float, hub: Hub) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready after {timeout}s; hub log:\n{hub.log_tail()}")
        time.sleep(0.2)


def _start_servers(hub: Hub, users: tuple[str, ...]) -> None:
    for name in users:
        resp = hub.hub_api("POST", f"users/{name}/server")
        assert resp.status_code in (201, 202), f"starting {name}'s server: {resp.text}"

    def all_ready() -> bool:
        for name in users:
            model = hub.hub_api("GET", f"users/{name}").json()
            server = (model.get("servers") or {}).get("")
            if not server or not server.get("ready"):
                if not model.get("pending"):
                    pytest.fail(f"{name}'s server failed to start; hub log:\n{hub.log_tail()}")
                return False
        return True

    _wait("user servers", all_ready, SPAWN_TIMEOUT, hub)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A started hub with users alice, bob and admin (a hub admin), each server running."""
    if importlib.util.find_spec("jupyterhub") is None:
        pytest.skip("jupyterhub is not installed (pip install 'jupyterhub>=5,<7')")
    proxy = find_proxy()
    if proxy is None:
        pytest.skip(
            "configurable-http-proxy not found on PATH or in CONFIGURABLE_HTTP_PROXY "
            "(npm install --prefix DIR configurable-http-proxy; add DIR/node_modules/.bin to PATH)"
        )

    tmp = tmp_path_factory.mktemp("hub")
    workspace_root = tmp / "workspaces"
    workspace_root.mkdir()
    jupyter_config = tmp / "jupyter-config"
    (jupyter_config / "jupyter_server_config.d").mkdir(parents=True)
    # Enable the extension explicitly, so the test does not depend on how it was installed.
    # The owner name is what a stock single-user server would call every login, and no
    # ecode admins are configured: names and admin rights seen in the tests come from the hub.
    server_config = {
        "ServerApp": {"jpserver_extensions": {"ecode_jupyter": True}},
        "EcodeApp": {"owner_name": STOCK_OWNER, "admin_users": []},
    }
    (jupyter_config / "jupyter_server_config.d" / "ecode_jupyter.json").write_text(
        json.dumps(server_config)
    )
    jupyter_env = {
        "JUPYTER_CONFIG_DIR": str(jupyter_config),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
    }
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(Path(proxy).parent), os.environ.get("PATH", "")]
    )
    base_env = {
        "PATH": path,
        "HOME": str(tmp),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **jupyter_env,
    }

    with ecode_database(tmp, base_env) as database_url:
        secrets_key = Fernet.generate_key().decode()
        service_token = secrets.token_hex(32)
        public_port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
        config_path = tmp / "jupyterhub_config.py"
        config_path.write_text(
            _hub_config(
                tmp=tmp,
                proxy=proxy,
                public_port=public_port,
                hub_port=hub_port,
                proxy_api_port=proxy_api_port,
                service_token=service_token,
                user_env=jupyter_env,
            )
        )
        hub_env = {
            **base_env,
            # Read by the example config and handed to every user's server.
            "ECODE_DATABASE_URL": database_url,
            "ECODE_WORKSPACE_ROOT": str(workspace_root),
            "ECODE_SECRETS_KEY": secrets_key,
        }
        log_path = tmp / "hub.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config_path)],
                cwd=tmp,
                env=hub_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        public = f"http://127.0.0.1:{public_port}/"
        state = Hub(
            url=public,
            api_url=f"{public}hub/api/",
            service_token=service_token,
            log_path=log_path,
            workspace_root=workspace_root,
            database_url=database_url,
        )
        try:

            def hub_up() -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"jupyterhub exited with {proc.returncode}:\n{state.log_tail()}")
                try:
                    return state.client.get(f"{state.api_url}").status_code == 200
                except httpx.TransportError:
                    return False

            _wait("jupyterhub", hub_up, HUB_READY_TIMEOUT, state)
            resp = state.hub_api("POST", "users", {"usernames": ["alice", "bob"]})
            assert resp.status_code in (201, 409), resp.text
            _start_servers(state, HUB_USERS)
            for name in HUB_USERS:
                resp = state.hub_api(
                    "POST", f"users/{name}/tokens", {"note": "ecode hub test", "expires_in": 3600}
                )
                assert resp.status_code == 201, resp.text
                state.tokens[name] = resp.json()["token"]
            yield state
        finally:
            state.client.close()
            _stop_hub(proc)


def _stop_hub(proc: subprocess.Popen[bytes]) -> None:
    """Stop the hub, which stops the proxy and the users' servers; then make sure of it."""
    # User servers and the proxy run in their own sessions, so collect them by parentage first.
    below = descendants(proc.pid)
    # SIGTERM first: the hub's own stop sends SIGINT, which a server without a terminal takes
    # as KeyboardInterrupt and exits without running its extensions' stop hooks.
    servers = [p for p in below if _is_single_user_server(p)]
    stop_pids(servers, STOP_TIMEOUT)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    stop_pids([p for p in below if pid_alive(p)], STOP_TIMEOUT)


def _is_single_user_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"jupyterhub.singleuser" in cmdline
