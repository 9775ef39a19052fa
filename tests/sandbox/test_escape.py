"""The escape suite: project code trying to get out of its sandbox, and failing.

Every scenario runs the same probe script (``probes.py``) from ``run_command`` (through the
real tool layer over MCP), from a running preview app that runs it at request time, and
inside the project's kernel (``execute_code``: the ecode provisioner's kernel). The
server is set up the way a user's would be: the workspaces inside the server user's home, a
token file in the runtime folder, a config file, a secrets key file, an SSH key and a shell
history in the home, a secret in the server's own environment, another user's project next
door, and a setuid-root binary in the workspace.

What "privileges" means as root: the sandboxed process is uid 1000 inside a user namespace
that maps it to the host's uid 0 without any capability in the host's namespaces, with
``no_new_privs`` set and every bind mount ``nosuid``. A setuid binary cannot make it uid 0
inside, and it cannot open a new user namespace to become "root" there either.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tools.conftest import McpConnect
from tornado.httpclient import AsyncHTTPClient
from tornado.httputil import url_concat

from .probes import PROBE, PROBE_APP

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)

MiB = 1024 * 1024
PIDS_LIMIT = 128
MEMORY_LIMIT = 256 * MiB
FILE_SIZE_LIMIT = 8 * MiB
BASE_CONFIG = {
    # "required": a host where bubblewrap cannot run fails these tests instead of passing
    # them unconfined.
    "sandbox": "required",
    "sandbox_memory_limit": MEMORY_LIMIT,
    "sandbox_pids_limit": PIDS_LIMIT,
    "sandbox_file_size_limit": FILE_SIZE_LIMIT,
    "app_start_timeout_s": 30.0,
}


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {"EcodeApp": dict(BASE_CONFIG)}


@pytest.fixture
def ecode_workspace_root(jp_home_dir: Path) -> Path:
    # As with the default (root_dir = the home): workspaces live inside the user's home.
    root = jp_home_dir / "ecode-projects"
    root.mkdir()
    return root


@dataclass
class Server:
    """What a project must not reach, planted on the host side."""

    workspace: Path
    other_workspace: Path
    other_file: Path
    runtime_dir: Path
    token_file: Path
    config_dir: Path
    config_file: Path
    data_dir: Path
    # The SQLite file; None when the suite runs on PostgreSQL, whose data is not a file here.
    database: Path | None
    secrets_key: Path
    home: Path
    marker: str
    pid: int
    port: int
    base_url: str


Probe = Callable[[str, dict[str, Any]], Awaitable[tuple[str, int | None]]]


@pytest.fixture
def server(
    jp_asyncio_loop: asyncio.AbstractEventLoop,
    ecode_app: Any,
    jp_serverapp: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_runtime_dir: Path,
    jp_config_dir: Path,
    jp_data_dir: Path,
    jp_home_dir: Path,
    ecode_database_url: str,
    make_project: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Server:
    # pytest-jupyter runs async tests, not async fixtures: set up on the server's loop.
    _pid, workspace = jp_asyncio_loop.run_until_complete(make_project("probe", user="alice"))
    _other, other = jp_asyncio_loop.run_until_complete(make_project("neighbour", user="bob"))
    other_file = other / "secret.txt"
    other_file.write_text("bob's private data")
    token_file = jp_runtime_dir / f"jpserver-{os.getpid()}.json"
    token_file.write_text(json.dumps({"token": jp_serverapp.identity_provider.token}))
    config_file = jp_config_dir / "jupyter_server_config.json"
    config_file.write_text(json.dumps({"IdentityProvider": {"token": "config-token"}}))
    key = Path(ecode_app.secrets_key_file)
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("a-fernet-key-that-must-stay-inside")
    (jp_home_dir / ".ssh").mkdir()
    (jp_home_dir / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (jp_home_dir / ".bash_history").write_text("export AWS_SECRET_ACCESS_KEY=...\n")
    marker = f"server-only-{uuid.uuid4().hex}"
    monkeypatch.setenv("ECODE_ESCAPE_MARKER", marker)
    (workspace / "probe.py").write_text(PROBE)
    (workspace / "probe_app.py").write_text(PROBE_APP)
    suid = workspace / "suid-id"
    shutil.copy("/usr/bin/id", suid)
    os.chmod(suid, 0o4755)
    database = (
        Path(ecode_database_url.removeprefix("sqlite:///"))
        if ecode_database_url.startswith("sqlite:///")
        else None
    )
    return Server(
        workspace=workspace,
        other_workspace=other,
        other_file=other_file,
        runtime_dir=jp_runtime_dir,
        token_file=token_file,
        config_dir=jp_config_dir,
        config_file=config_file,
        data_dir=jp_data_dir,
        database=database,
        secrets_key=key,
        home=jp_home_dir,
        marker=marker,
        pid=os.getpid(),
        port=jp_http_port,
        base_url=jp_base_url,
    )


def _project_of(workspace: Path) -> str:
    return workspace.name


# How a kernel's execution ends, as an exit code: a kernel killed by the memory limit "died".
_KERNEL_EXIT = {"ok": 0, "error": 1, "died": -9, "timeout": -1}


@pytest.fixture(params=["command", "preview", "kernel"])
def probe(
    jp_asyncio_loop: asyncio.AbstractEventLoop,
    request: pytest.FixtureRequest,
    server: Server,
    mcp_connect: McpConnect,
    ecode_api: Any,
) -> Iterator[Probe]:
    """``await probe(name, args)`` → (output, exit code), from run_command or a preview."""
    project = _project_of(server.workspace)
    if request.param == "command":

        async def by_command(name: str, args: dict[str, Any]) -> tuple[str, int | None]:
            line = f"python3 probe.py {name} {shlex.quote(json.dumps(args))}"
            async with mcp_connect("alice") as client:
                result = await client.call_tool(
                    "run_command", {"project": project, "command": line, "timeout_s": 120}
                )
            data = result.structured_content or {}
            assert not result.is_error, result
            # The tool result says how the command was confined.
            assert str(data.get("sandbox", "")).startswith("sandbox (bubblewrap")
            return str(data["output"]), data["exit_code"]

        yield by_command
        return
    if request.param == "kernel":

        async def by_kernel(name: str, args: dict[str, Any]) -> tuple[str, int | None]:
            # The probe runs inside the project's kernel process itself (the ecode
            # provisioner's sandbox), as a notebook cell would.
            code = (
                "import sys\n"
                f"sys.argv = ['probe.py', {name!r}, {json.dumps(args)!r}]\n"
                "exec(compile(open('probe.py').read(), 'probe.py', 'exec'), "
                "{'__name__': '__main__'})\n"
            )
            async with mcp_connect("alice") as client:
                result = await client.call_tool(
                    "execute_code", {"project": project, "code": code, "timeout_s": 120}
                )
            assert not result.is_error, result
            text = "".join(getattr(block, "text", "") for block in result.content)
            status = text.removeprefix("[status: ").split("]", 1)[0].split(",", 1)[0]
            return text, _KERNEL_EXIT.get(status)

        yield by_kernel
        return

    async def start() -> str:
        async with mcp_connect("alice") as client:
            started = await client.call_tool(
                "start_preview", {"project": project, "command": "python3 probe_app.py"}
            )
        assert not started.is_error, started
        data = started.structured_content or {}
        # The app's log says how it is confined.
        assert any("sandbox (bubblewrap" in line for line in data["log_tail"]), data
        return str(data["local_url"])

    local = jp_asyncio_loop.run_until_complete(start())

    async def by_preview(name: str, args: dict[str, Any]) -> tuple[str, int | None]:
        url = url_concat(f"{local}probe/{name}", {"arg": json.dumps(args)})
        answer = await AsyncHTTPClient().fetch(url, request_timeout=150)
        text = answer.body.decode()
        code = int(text.rsplit("exit=", 1)[1]) if "exit=" in text else None
        return text, code

    yield by_preview
    jp_asyncio_loop.run_until_complete(ecode_api("DELETE", f"projects/{project}/deployments"))


def blocked(output: str) -> None:
    assert "RESULT blocked:" in output and "RESULT escaped" not in output, output


# -- files -------------------------------------------------------------------------------


async def test_another_projects_files_are_absent(probe: Probe, server: Server) -> None:
    out, _ = await probe(
        "read_files", {"paths": [str(server.other_file), str(server.other_workspace)]}
    )
    blocked(out)


async def test_a_symlink_out_of_the_workspace_leads_nowhere(probe: Probe, server: Server) -> None:
    targets = [server.other_file, server.token_file, server.home / ".ssh" / "id_rsa"]
    out, _ = await probe("symlink_out", {"targets": [*map(str, targets), "/etc/shadow"]})
    blocked(out)


async def test_nothing_outside_the_workspace_can_be_written(probe: Probe, server: Server) -> None:
    in_tmp = f"/tmp/ecode-escape-{uuid.uuid4().hex}.txt"
    paths = [
        server.workspace.parent / "escaped.txt",
        server.other_workspace / "escaped.txt",
        server.home / "escaped.txt",
        Path("/usr/escaped.txt"),
        Path("/etc/escaped.txt"),
        Path(in_tmp),
    ]
    out, _ = await probe("write_outside", {"paths": [str(p) for p in paths]})
    blocked(out)
    # The sandbox's /tmp is its own: what was written there never reached the host.
    assert not [p for p in paths if p.exists()]


async def test_the_servers_token_and_runtime_folder_are_absent(
    probe: Probe, server: Server
) -> None:
    out, _ = await probe("read_files", {"paths": [str(server.token_file), str(server.runtime_dir)]})
    blocked(out)


async def test_the_servers_config_folder_is_absent(probe: Probe, server: Server) -> None:
    out, _ = await probe("read_files", {"paths": [str(server.config_file), str(server.config_dir)]})
    blocked(out)


async def test_the_ecode_database_and_data_folder_are_absent(probe: Probe, server: Server) -> None:
    paths = [server.data_dir]
    if server.database is not None:
        assert server.database.exists()
        paths += [server.database, Path(f"{server.database}-wal")]
    out, _ = await probe("read_files", {"paths": [str(p) for p in paths]})
    blocked(out)


async def test_the_secrets_key_file_is_absent(probe: Probe, server: Server) -> None:
    out, _ = await probe("read_files", {"paths": [str(server.secrets_key)]})
    blocked(out)


async def test_the_server_users_home_is_absent(probe: Probe, server: Server) -> None:
    paths = [server.home / ".ssh" / "id_rsa", server.home / ".bash_history", server.home]
    # The workspace lies inside the home, so the home exists inside as a bare folder on the
    # way to it: "ecode-projects" and nothing else.
    way = {str(server.home): [server.workspace.parent.name]}
    out, _ = await probe("read_files", {"paths": [str(p) for p in paths], "may_list": way})
    blocked(out)


async def test_host_secrets_in_etc_are_absent(probe: Probe) -> None:
    out, _ = await probe("read_files", {"paths": ["/etc/shadow", "/etc/gshadow", "/root/.ssh"]})
    blocked(out)


# -- processes ---------------------------------------------------------------------------


async def test_the_servers_environment_is_out_of_reach(probe: Probe, server: Server) -> None:
    assert os.environ["ECODE_ESCAPE_MARKER"] == server.marker
    out, _ = await probe("environ", {"marker": server.marker})
    blocked(out)


async def test_host_processes_are_invisible(probe: Probe, server: Server) -> None:
    out, _ = await probe("processes", {"server_pid": server.pid})
    blocked(out)


async def test_the_server_cannot_be_signalled_or_traced(probe: Probe, server: Server) -> None:
    out, _ = await probe("signal_server", {"server_pid": server.pid})
    blocked(out)


async def test_a_fork_bomb_stops_at_the_pids_limit(
    probe: Probe,
    mcp_connect: McpConnect,
    server: Server,
) -> None:
    out, _ = await probe("fork_bomb", {"tries": 5000, "limit": PIDS_LIMIT})
    blocked(out)
    # And the server still runs commands.
    async with mcp_connect("alice") as client:
        after = await client.call_tool(
            "run_command", {"project": _project_of(server.workspace), "command": "echo fine"}
        )
    assert (after.structured_content or {})["output"].strip() == "fine"


async def test_a_memory_bomb_is_killed_at_the_memory_limit(probe: Probe) -> None:
    out, code = await probe("memory_bomb", {"bytes": 4 * MEMORY_LIMIT})
    assert "RESULT escaped" not in out, out
    assert code not in (0, None), out


async def test_a_file_cannot_grow_past_the_size_limit(probe: Probe, server: Server) -> None:
    out, _ = await probe("fill_disk", {"mib": 4 * FILE_SIZE_LIMIT // MiB})
    blocked(out)
    assert not (server.workspace / "big.bin").exists()


async def test_a_setuid_binary_gives_no_privileges(probe: Probe) -> None:
    commands = [["./suid-id", "-u"], ["/usr/bin/su", "-c", "id"]]
    if os.path.exists("/usr/bin/sudo"):
        commands.append(["/usr/bin/sudo", "-n", "id"])
    out, _ = await probe("setuid", {"commands": commands})
    blocked(out)


async def test_no_new_user_namespace_can_be_made(probe: Probe) -> None:
    out, _ = await probe("new_namespace", {})
    blocked(out)


# -- network -----------------------------------------------------------------------------


async def test_the_jupyter_api_refuses_sandboxed_code(probe: Probe, server: Server) -> None:
    # With the network on, the host's loopback (and so Jupyter's port) is reachable; what
    # keeps the server safe is that no token is: the API refuses every request.
    out, _ = await probe("jupyter_api", {"port": server.port, "base_url": server.base_url})
    blocked(out)


def _host_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") else address


LOOPBACK_CONFIG = {"EcodeApp": {**BASE_CONFIG, "sandbox_network": "loopback"}}


@pytest.mark.parametrize("ecode_extra_config", [LOOPBACK_CONFIG])
async def test_no_network_when_it_is_off(
    server: Server,
    mcp_connect: McpConnect,
) -> None:
    listener = socket.create_server(("0.0.0.0", 0))
    port = listener.getsockname()[1]
    targets: list[tuple[str, int]] = [("127.0.0.1", port), ("127.0.0.1", server.port)]
    address = _host_address()
    if address:
        targets.append((address, port))
    targets.append(("1.1.1.1", 53))
    args = shlex.quote(json.dumps({"targets": targets}))
    try:
        async with mcp_connect("alice") as client:
            result = await client.call_tool(
                "run_command",
                {
                    "project": _project_of(server.workspace),
                    "command": f"python3 probe.py connect {args}",
                },
            )
    finally:
        listener.close()
    data = result.structured_content or {}
    blocked(str(data["output"]))
    assert "network: private loopback only" in data["sandbox"]
