"""The launcher itself: what a command sees, what it is told when the host falls short."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from ecode_jupyter.exceptions import SandboxUnavailable
from ecode_jupyter.sandbox import SandboxLauncher, SandboxPolicy
from ecode_jupyter.workspace.commands import base_environment, run_command

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@needs_bwrap
async def test_a_command_in_a_sub_folder_still_has_its_whole_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "sub").mkdir(parents=True)
    (workspace / "data.txt").write_text("top\n")
    result = await run_command(
        "cat ../data.txt && echo more > ../written.txt && pwd && echo $HOME",
        cwd=workspace / "sub",
        env=base_environment(),
        launcher=SandboxLauncher(),
        writable=(workspace,),
    )
    assert result.exit_code == 0, result.output
    lines = result.output.split()
    assert lines[:2] == ["top", str(workspace / "sub")]
    # The home is the project's own, inside its workspace, not the server user's.
    assert lines[2] == str(workspace / ".ecode" / "home")
    assert (workspace / "written.txt").read_text() == "more\n"
    assert result.sandbox.startswith("sandbox (bubblewrap")


async def test_required_refuses_to_run_without_bubblewrap(tmp_path: Path) -> None:
    launcher = SandboxLauncher(SandboxPolicy(mode="required", bwrap="no-such-bwrap"))
    with pytest.raises(SandboxUnavailable, match="not installed"):
        await run_command("touch ran", cwd=tmp_path, env=base_environment(), launcher=launcher)
    assert not (tmp_path / "ran").exists()


async def test_auto_without_bubblewrap_runs_and_says_what_is_missing(tmp_path: Path) -> None:
    launcher = SandboxLauncher(SandboxPolicy(mode="auto", bwrap="no-such-bwrap"))
    result = await run_command("echo ran", cwd=tmp_path, env=base_environment(), launcher=launcher)
    assert result.exit_code == 0
    assert result.output.startswith("ran")
    # Never silently: the output itself carries the line.
    assert "[sandbox: not applied on this host: namespaces (bubblewrap" in result.output
    assert "NOT applied" in result.sandbox


@needs_bwrap
async def test_a_launchs_cgroup_is_removed_after_it_exits(tmp_path: Path) -> None:
    launcher = SandboxLauncher(SandboxPolicy(memory_bytes=512 * 1024**2, pids=64))
    if launcher.cgroups is None or not launcher.cgroups.parents:
        pytest.skip("no cgroup this server may write")
    cgroups = launcher.cgroups

    def ours() -> set[Path]:
        # Only this process's: other servers on the host share the parent folder.
        return {
            c
            for p in cgroups.parents
            for c in p.path.iterdir()
            if c.is_dir() and c.name.startswith(f"{os.getpid()}-")
        }

    # Earlier tests in this process may still be tidying theirs: only this launch's count.
    before = ours()
    result = await run_command("true", cwd=tmp_path, env=base_environment(), launcher=launcher)
    assert "pids 64 (cgroup" in result.sandbox
    for _ in range(100):
        leftovers = ours() - before
        if not leftovers:
            break
        await asyncio.sleep(0.05)
    assert not leftovers
