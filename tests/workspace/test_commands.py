from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from ecode_jupyter.workspace.commands import (
    LaunchSpec,
    LocalLauncher,
    ResourceLimits,
    base_environment,
    run_command,
)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids(output: str, label: str) -> list[int]:
    return [int(p) for p in re.findall(rf"(?<!\w){label}=(\d+)", output)]


async def test_runs_in_cwd_with_env_and_exit_code(tmp_path: Path) -> None:
    env = base_environment({"GREETING": "hello"})
    result = await run_command(
        'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3', cwd=tmp_path, env=env
    )
    assert result.exit_code == 3
    assert f"hello from {tmp_path}" in result.output and "oops" in result.output
    assert not result.truncated and not result.timed_out


async def test_argv_form_runs_without_a_shell(tmp_path: Path) -> None:
    result = await run_command(
        [sys.executable, "-c", "import sys; print(sys.argv[1])", "$HOME; rm -rf /"],
        cwd=tmp_path,
        env=base_environment(),
    )
    assert result.output.strip() == "$HOME; rm -rf /"


def test_server_secrets_do_not_reach_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    monkeypatch.setenv("JUPYTER_TOKEN", "tok")
    env = base_environment({"PROJECT_SECRET": "mine"})
    assert "ANTHROPIC_API_KEY" not in env and "JUPYTER_TOKEN" not in env
    assert env["PROJECT_SECRET"] == "mine" and "PATH" in env


async def test_forever_command_is_killed_with_its_children(tmp_path: Path) -> None:
    # A child that ignores SIGTERM, a grandchild, and a parent that would wait forever.
    script = (
        "(trap '' TERM; sleep 1000) & echo child=$!; "
        "bash -c 'sleep 1000 & echo grandchild=$!; wait' & "
        "echo parent=$$; sleep 0.2; wait"
    )
    result = await run_command(
        script, cwd=tmp_path, env=base_environment(), timeout_s=1.0, kill_grace_s=0.3
    )
    assert result.timed_out
    assert "timed out after 1s" in result.output
    pids = (
        _pids(result.output, "child")
        + _pids(result.output, "grandchild")
        + _pids(result.output, "parent")
    )
    assert len(pids) == 3
    for _ in range(100):
        if not any(_alive(p) for p in pids):
            break
        await asyncio.sleep(0.02)
    assert not [p for p in pids if _alive(p)]


async def test_cancellation_kills_the_group(tmp_path: Path) -> None:
    seen: list[str] = []
    task = asyncio.create_task(
        run_command(
            "sleep 1000 & echo child=$!; echo parent=$$; wait",
            cwd=tmp_path,
            env=base_environment(),
            on_output=seen.append,
            stream_interval_s=0.01,
            kill_grace_s=0.2,
        )
    )
    while len(_pids("".join(seen), "child") + _pids("".join(seen), "parent")) < 2:
        await asyncio.sleep(0.01)
    pids = _pids("".join(seen), "child") + _pids("".join(seen), "parent")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not any(_alive(p) for p in pids):
            break
        await asyncio.sleep(0.02)
    assert not [p for p in pids if _alive(p)]


async def test_hundred_megabytes_are_capped_and_the_loop_keeps_running(tmp_path: Path) -> None:
    # The command prints 50 MB, waits for a flag only a concurrent coroutine can create, then
    # prints 50 MB more: it can only finish if the event loop served others while draining.
    flag = tmp_path / "go"
    script = (
        "head -c 52428800 /dev/zero | tr '\\0' 'x'; "
        f"while [ ! -e {flag} ]; do sleep 0.01; done; "
        "head -c 52428800 /dev/zero | tr '\\0' 'y'; echo; echo END"
    )
    streamed: list[str] = []

    async def release_when_streaming() -> None:
        while not streamed:
            await asyncio.sleep(0.005)
        flag.touch()

    helper = asyncio.create_task(release_when_streaming())
    result = await run_command(
        script,
        cwd=tmp_path,
        env=base_environment(),
        output_cap_bytes=64 * 1024,
        on_output=streamed.append,
        timeout_s=120,
    )
    await helper
    assert result.exit_code == 0 and not result.timed_out
    assert result.output_bytes == 100 * 1024 * 1024 + len("\nEND\n")
    assert result.truncated and "bytes omitted" in result.output
    assert len(result.output) < 64 * 1024 + 300
    assert result.output.startswith("x" * 1000) and result.output.rstrip().endswith("END")
    # Streaming is coalesced and bounded too, never the whole 100 MB.
    assert sum(len(s) for s in streamed) < 10 * 1024 * 1024


async def test_background_child_holding_the_pipe_is_stopped(tmp_path: Path) -> None:
    result = await run_command(
        "sleep 1000 & echo child=$!; echo done",
        cwd=tmp_path,
        env=base_environment(),
        linger_s=0.2,
        timeout_s=60,
    )
    assert result.exit_code == 0 and not result.timed_out
    assert "background processes" in result.output
    (pid,) = _pids(result.output, "child")
    for _ in range(100):
        if not _alive(pid):
            break
        await asyncio.sleep(0.02)
    assert not _alive(pid)


async def test_file_size_limit(tmp_path: Path) -> None:
    result = await run_command(
        "head -c 100000 /dev/zero > big.bin",
        cwd=tmp_path,
        env=base_environment(),
        limits=ResourceLimits(file_size_bytes=4096),
    )
    assert result.exit_code != 0
    assert (tmp_path / "big.bin").stat().st_size <= 4096


async def test_address_space_limit(tmp_path: Path) -> None:
    result = await run_command(
        [sys.executable, "-c", "b = bytearray(2 * 1024**3); print('allocated')"],
        cwd=tmp_path,
        env=base_environment(),
        limits=ResourceLimits(address_space_bytes=512 * 1024**2),
    )
    assert result.exit_code != 0
    assert "MemoryError" in result.output and "allocated" not in result.output


async def test_launcher_seam_is_used(tmp_path: Path) -> None:
    launched: list[LaunchSpec] = []

    class RecordingLauncher(LocalLauncher):
        async def launch(self, spec: LaunchSpec) -> asyncio.subprocess.Process:
            launched.append(spec)
            wrapped = LaunchSpec(
                ["env", "WRAPPED=yes", *spec.argv], spec.cwd, spec.env, spec.limits
            )
            return await super().launch(wrapped)

    result = await run_command(
        "echo $WRAPPED", cwd=tmp_path, env=base_environment(), launcher=RecordingLauncher()
    )
    assert result.output.strip() == "yes"
    assert launched and launched[0].cwd == tmp_path


async def test_streamed_output_arrives_in_order(tmp_path: Path) -> None:
    chunks: list[str] = []
    result = await run_command(
        "for i in 1 2 3; do echo line$i; sleep 0.05; done",
        cwd=tmp_path,
        env=base_environment(),
        on_output=chunks.append,
        stream_interval_s=0.01,
    )
    assert "".join(chunks) == result.output == "line1\nline2\nline3\n"
    assert len(chunks) >= 2
    assert os.environ.get("PYTHONUNBUFFERED") != "sentinel"  # env of the test untouched
