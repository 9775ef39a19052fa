"""A real JupyterHub on loopback with the ecode service, and users as separate OS accounts.

One hub per test module: configurable-http-proxy in front, DummyAuthenticator, the
LocalProcessSpawner running each user's server as that user's own OS account (alice, bob and
admin are created with ``useradd`` when missing; CI runs as root), and the ``ecode`` hub
service holding the database (SQLite in a folder only root can read), the secrets key and the
model keys. The hub loads ``examples/jupyterhub/jupyterhub_config.py`` and then only moves it
onto free ports and test folders, so the shipped example is what runs here.

Users' servers run from a virtual environment made with ``/usr/bin/python3`` (other accounts
cannot run pyenv's Python under /root) that imports this environment's packages through a
``.pth`` file, so this environment's folders must be readable by everyone.

Needs root, ``jupyterhub`` (Python) and ``configurable-http-proxy`` (npm; on PATH or named by
``CONFIGURABLE_HTTP_PROXY``); without them the hub tests skip and say why.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    ScriptedToolCall,
    ScriptedTurn,
    text_turn,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "examples" / "jupyterhub" / "jupyterhub_config.py"
HUB_USERS = ("alice", "bob", "admin")
# Bounded waits (seconds). A 2-core machine starts the hub and three servers in well under these.
HUB_READY_TIMEOUT = 60
SPAWN_TIMEOUT = 200
STOP_TIMEOUT = 20
HTTP_TIMEOUT = 120
SYSTEM_PYTHON = "/usr/bin/python3"
# The service's limit on runs started per user and hour (its config in the test hub): an hour,
# so the runs a test waits out one by one all fall in one window.
RUNS_PER_HOUR = 8
# The model key only the ecode service is given; every test checks users never see it.
MODEL_KEY = "sk-ant-hub-" + secrets.token_hex(12)

HUB_APP = """\
def greet(name):
    return f"hello {name}"
"""
HUB_APP_TEST = """\
from app import greet


def test_greet():
    assert greet("hub") == "hello hub"
"""
# The project's secret reaches the command in the owner's server (its value is redacted from
# the feed, so the command writes only its length).
_PROBE_CODE = "open('secret_len.txt', 'w').write(str(len(os.environ.get('GREETING', ''))))"
SECRET_PROBE = f'python -c "import os; {_PROBE_CODE}"'


# A prompt containing this makes the model change nothing (see model_turns).
KEEP_TEMPLATE = "keep the template as it is"


def model_turns(request: LoopbackRequest) -> ScriptedTurn:
    """The loopback model of the hub tests: a small Python project with a passing test.

    The conversation so far decides the step (one assistant message per earlier turn).
    """
    messages = request.json.get("messages") or []
    step = sum(1 for m in messages if m.get("role") == "assistant")
    if KEEP_TEMPLATE in json.dumps(messages[:1]):
        # The template is the app: done at once, so the run's own verification (tests, the
        # preview, the page in a browser) is what the test watches.
        return text_turn("The template already does it.")
    if step == 0:
        return ScriptedTurn(
            text="Plan:\n1. Write the app.\n2. Write a test.\n3. Run the tests.\n",
            tool_calls=[
                ScriptedToolCall("write_file", {"path": "app.py", "content": HUB_APP}),
                ScriptedToolCall(
                    "write_file", {"path": "tests/test_app.py", "content": HUB_APP_TEST}
                ),
            ],
        )
    if step == 1:
        return ScriptedTurn(tool_calls=[ScriptedToolCall("run_command", {"command": SECRET_PROBE})])
    if step == 2:
        return ScriptedTurn(
            tool_calls=[ScriptedToolCall("run_command", {"command": "python -m pytest -q"})]
        )
    return text_turn("Done: app.py with a passing test.")


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
    #: the ecode service's own hub API token (as the service calls users' servers)
    ecode_token: str
    log_path: Path
    #: the loopback model (Anthropic wire format) whose key only the service holds
    model: AnthropicLoopback
    #: where the ecode service keeps its data (readable by root only)
    service_dir: Path
    #: the service's ECODE_SECRETS_KEY (checks assert it never reaches a user)
    secrets_key: str = field(default="", repr=False)
    #: the users' home folders (their servers' roots; projects under ~/ecode-projects)
    homes: dict[str, Path] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=HTTP_TIMEOUT))

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no hub log)"
        return "\n".join(text.splitlines()[-lines:])

    def workspace(self, user: str, project_id: str) -> Path:
        """A project's folder in its owner's server."""
        return self.homes[user] / "ecode-projects" / project_id

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
        via: str = "server",
    ) -> httpx.Response:
        """Call the ecode API the way ``user`` would, with their hub token.

        ``via="server"`` (what Lab, ``%ecode`` and ``jupyter ecode`` do): through the user's
        own server, ``/user/{server}/api/ecode/{path}`` (``server`` defaults to the user's own),
        which forwards to the service. ``via="service"``: the service directly,
        ``/services/ecode/api/ecode/{path}``.
        """
        if via == "service":
            url = f"{self.url}services/ecode/api/ecode/{path}"
        else:
            url = f"{self.url}user/{server or user}/api/ecode/{path}"
        return self.client.request(
            method,
            url,
            headers={"Authorization": f"token {self.tokens[user]}"},
            content=json.dumps(body) if body is not None else None,
        )

    def run_in_kernel(self, user: str, code: str, timeout: float = 60) -> str:
        """Run ``code`` in a new kernel of ``user``'s own server; its stdout (and errors)."""
        import websocket

        headers = {"Authorization": f"token {self.tokens[user]}"}
        base = f"{self.url}user/{user}/api/kernels"
        kernel = self.client.post(base, headers=headers, json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kid = kernel.json()["id"]
        ws = websocket.create_connection(
            f"ws{base[4:]}/{kid}/channels",
            header=[f"Authorization: token {self.tokens[user]}"],
            timeout=timeout,
        )
        try:
            msg_id = uuid.uuid4().hex
            ws.send(
                json.dumps(
                    {
                        "header": {
                            "msg_id": msg_id,
                            "msg_type": "execute_request",
                            "username": user,
                            "session": uuid.uuid4().hex,
                            "version": "5.3",
                            "date": "",
                        },
                        "parent_header": {},
                        "metadata": {},
                        "content": {"code": code, "silent": False, "store_history": False},
                        "channel": "shell",
                    }
                )
            )
            out: list[str] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["msg_type"]
                if kind == "stream":
                    out.append(msg["content"]["text"])
                elif kind == "error":
                    out.append("\n".join(msg["content"]["traceback"]))
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
            return "".join(out)
        finally:
            ws.close()
            self.client.delete(f"{base}/{kid}", headers=headers)


def _hub_config(
    *,
    tmp: Path,
    proxy: str,
    hub_port: int,
    proxy_api_port: int,
    service_token: str,
    ecode_token: str,
    user_env: dict[str, str],
    user_python: str,
) -> str:
    """The test's hub config: the shipped example, then loopback ports and test folders."""
    settings = {
        "example": str(EXAMPLE_CONFIG),
        "hub_url": f"http://127.0.0.1:{hub_port}",
        "proxy_api_url": f"http://127.0.0.1:{proxy_api_port}",
        "proxy": proxy,
        "user_python": user_python,
        "tmp": str(tmp),
        "service_token": service_token,
        "ecode_token": ecode_token,
        "user_env": user_env,
        "service_config": str(tmp / "service" / "config"),
    }
    return f"""\
import json, os
t = json.loads({json.dumps(json.dumps(settings))})
c = get_config()  # noqa: F821
load_subconfig(t["example"])  # noqa: F821

c.JupyterHub.hub_bind_url = t["hub_url"]
c.JupyterHub.db_url = "sqlite:///" + os.path.join(t["tmp"], "jupyterhub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(t["tmp"], "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.api_url = t["proxy_api_url"]
c.ConfigurableHTTPProxy.command = [t["proxy"]]
c.ConfigurableHTTPProxy.pid_file = os.path.join(t["tmp"], "proxy.pid")

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
# Each user's server runs as that user's own OS account, as on a real hub.
c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [t["user_python"], "-m", "jupyterhub.singleuser"]
c.Spawner.environment = {{**c.Spawner.environment, **t["user_env"]}}
# Generous: a loaded 2-core machine (CI beside other work) starts a Lab server slowly.
c.Spawner.start_timeout = 180
# Answer "start this server" at once (202) so the three servers start side by side.
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.Spawner.http_timeout = 150

# The service's own config folder: a runs limit small enough for a test to reach.
c.JupyterHub.services[0]["environment"]["JUPYTER_CONFIG_DIR"] = t["service_config"]
# The ecode service's token is known to the test (a hub makes one up otherwise), so checks can
# call users' servers exactly as the service does.
c.JupyterHub.services[0]["api_token"] = t["ecode_token"]
# The test drives the hub as a service that may create users, start servers and mint tokens.
c.JupyterHub.services.append({{"name": "ecode-test", "api_token": t["service_token"]}})
c.JupyterHub.load_roles.append(
    {{
        "name": "ecode-test",
        "scopes": ["admin:users", "admin:servers", "admin:groups", "tokens"],
        "services": ["ecode-test"],
    }}
)
"""


def _world_can_enter(path: Path) -> bool:
    """Whether every folder from / down to ``path`` lets other accounts through."""
    for folder in [path, *path.parents]:
        try:
            mode = folder.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _os_user(name: str) -> Path:
    """The OS account ``name`` (made if missing) with an empty private home; its home."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", name],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(name)
    home = Path(entry.pw_dir)
    # A fresh home each run: earlier runs' projects and Jupyter state must not leak in.
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    home.chmod(0o700)
    return home


def _user_venv(base: Path) -> Path:
    """A venv other accounts can run that imports this environment's packages."""
    venv = base / "user-venv"
    subprocess.run(
        [SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True
    )
    purelib = sysconfig.get_paths()["purelib"]
    found = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    # addsitedir (not a bare path line) so this environment's own .pth files (the editable
    # install of ecode_jupyter) are read too.
    Path(found.stdout.strip(), "ecode-test-env.pth").write_text(
        f"import site; site.addsitedir({purelib!r})\n"
    )
    return venv


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


def hub_prerequisites() -> str | None:
    """Why a hub cannot run here, or None."""
    if importlib.util.find_spec("jupyterhub") is None:
        return "jupyterhub is not installed (pip install 'jupyterhub>=5,<7')"
    if find_proxy() is None:
        return (
            "configurable-http-proxy not found on PATH or in CONFIGURABLE_HTTP_PROXY "
            "(npm install --prefix DIR configurable-http-proxy; add DIR/node_modules/.bin to PATH)"
        )
    if os.geteuid() != 0:
        return "the hub tests run users as separate OS accounts, which needs root"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing (users' servers run from a venv made with it)"
    purelib = Path(sysconfig.get_paths()["purelib"])
    if not (_world_can_enter(purelib) and _world_can_enter(REPO)):
        return (
            f"{purelib} or {REPO} is not readable by other accounts, so users' servers could "
            "not import the package; run the tests from a world-readable folder"
        )
    return None


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """A started hub with the ecode service and users alice, bob and admin (a hub admin),
    each a separate OS account with their server running."""
    why = hub_prerequisites()
    if why is not None:
        pytest.skip(why)
    with start_hub() as state:
        yield state


@contextlib.contextmanager
def start_hub() -> Iterator[Hub]:
    """The hub of the ``hub`` fixture, for other checks too (benchmarks/bench_hub.py)."""
    proxy = find_proxy()
    assert proxy is not None

    # Not pytest's tmp_path: its folders are private to root, and users' servers must run a
    # venv and read a config folder in here.
    tmp = Path(tempfile.mkdtemp(prefix="ecode-hub-"))
    tmp.chmod(0o755)
    service_dir = tmp / "service"
    service_dir.mkdir(mode=0o700)
    (service_dir / "config").mkdir()
    (service_dir / "config" / "jupyter_server_config.py").write_text(
        f"c.EcodeApp.rate_limits = {{'runs': '{RUNS_PER_HOUR}/hour'}}\n"
    )
    homes = {name: _os_user(name) for name in HUB_USERS}
    venv = _user_venv(tmp)
    jupyter_config = tmp / "jupyter-config"
    (jupyter_config / "jupyter_server_config.d").mkdir(parents=True)
    # Enable the extension explicitly, so the test does not depend on how it was installed.
    # The sandbox of project commands shows this environment's packages (which the users'
    # venv imports through a .pth file) read-only, as it would a site's shared Conda.
    # (A .d folder holds only extension switches; other settings go in the config file.)
    (jupyter_config / "jupyter_server_config.d" / "ecode_jupyter.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"ecode_jupyter": True}}})
    )
    (jupyter_config / "jupyter_server_config.json").write_text(
        json.dumps({"EcodeApp": {"sandbox_read_only_paths": [sys.prefix, str(REPO)]}})
    )
    prefix = Path(sys.prefix)
    user_env = {
        "PATH": os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]),
        "JUPYTER_CONFIG_PATH": os.pathsep.join(
            [str(jupyter_config), str(prefix / "etc" / "jupyter")]
        ),
        # This environment's data files (the built lab and the ecode lab extension).
        "JUPYTER_PATH": str(prefix / "share" / "jupyter"),
        "JUPYTERLAB_DIR": str(prefix / "share" / "jupyter" / "lab"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(Path(proxy).parent), os.environ.get("PATH", "")]
    )
    model = AnthropicLoopback(model_turns, api_key=MODEL_KEY)
    model.start()
    service_token = secrets.token_hex(32)
    ecode_token = secrets.token_hex(32)
    public_port, hub_port, proxy_api_port = free_port(), free_port(), free_port()
    config_path = tmp / "jupyterhub_config.py"
    config_path.write_text(
        _hub_config(
            tmp=tmp,
            proxy=proxy,
            hub_port=hub_port,
            proxy_api_port=proxy_api_port,
            service_token=service_token,
            ecode_token=ecode_token,
            user_env=user_env,
            user_python=str(venv / "bin" / "python"),
        )
    )
    hub_env = {
        "PATH": path,
        "HOME": str(service_dir),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "JUPYTER_CONFIG_DIR": str(service_dir / "config"),
        # Read by the example config.
        "ECODE_HUB_PUBLIC_URL": f"http://127.0.0.1:{public_port}",
        "ECODE_SERVICE_PORT": str(free_port()),
        "ECODE_SERVICE_DIR": str(service_dir),
        "ECODE_SECRETS_KEY": Fernet.generate_key().decode(),
        # Handed to the service only (examples/jupyterhub/jupyterhub_config.py).
        "ANTHROPIC_API_KEY": MODEL_KEY,
        "ANTHROPIC_BASE_URL": model.base_url,
    }
    log_path = service_dir / "hub.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config_path)],
            cwd=service_dir,
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
        ecode_token=ecode_token,
        log_path=log_path,
        service_dir=service_dir,
        secrets_key=hub_env["ECODE_SECRETS_KEY"],
        homes=homes,
        model=model,
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

        def service_up() -> bool:
            try:
                resp = state.client.get(f"{public}services/ecode/api/ecode/projects")
            except httpx.TransportError:
                return False
            # Up when it answers at all (401/403 without a token); the proxy says 503 before.
            return resp.status_code in (401, 403)

        _wait("the ecode service", service_up, HUB_READY_TIMEOUT, state)
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
        model.stop()
        shutil.rmtree(tmp, ignore_errors=True)


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
