from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ecode_jupyter.deploy.detection import RunSpec
from ecode_jupyter.deploy.logs import LogBuffer
from ecode_jupyter.deploy.supervisor import AppLaunch, Supervisor, SupervisorOptions
from ecode_jupyter.workspace.commands import base_environment

from .apps import VERSIONED

FAST = SupervisorOptions(
    start_timeout_s=15,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    max_failures=3,
    watch_interval_s=0.1,
    stop_grace_s=2,
)


def _spec(
    command: str = "python app.py", health: str | None = "/", reload: str = "watch"
) -> RunSpec:
    return RunSpec(
        command=command,
        shell=False,
        health=health,
        kind="http",
        base_path_mode="strip",
        reload=reload,  # type: ignore[arg-type]
        source="override",
        framework="custom",
    )


def _supervisor(cwd: Path, spec: RunSpec, **kwargs: object) -> Supervisor:
    launch = AppLaunch(
        spec=spec, cwd=cwd, env=base_environment(), base_path="/p", python=sys.executable
    )
    return Supervisor(launch, logs=LogBuffer(), options=FAST, **kwargs)  # type: ignore[arg-type]


async def _get(sup: Supervisor, path: str = "/") -> str:
    response = await AsyncHTTPClient().fetch(
        f"http://127.0.0.1:{sup.port}{path}", request_timeout=5
    )
    return response.body.decode()


async def _until(predicate, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_a_crashing_app_is_restarted(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "v1"))
    sup = _supervisor(tmp_path, _spec())
    try:
        assert await sup.start()
        first_port = sup.port
        assert await _get(sup) == "v1"
        with contextlib.suppress(HTTPClientError):  # the app dies mid-request
            await AsyncHTTPClient().fetch(f"http://127.0.0.1:{sup.port}/crash", raise_error=False)
        await _until(lambda: sup.restarts >= 1 and sup.state == "running")
        assert await _get(sup) == "v1"
        assert sup.port != first_port
        texts = [line.text for line in sup.logs.since(0)]
        assert "[ecode] the app exited with code 3" in texts
        assert any(t.startswith("[ecode] restarting in") for t in texts)
    finally:
        await sup.stop()
    assert sup.state == "stopped" and sup.port is None


async def test_an_app_that_keeps_failing_backs_off_then_waits_for_a_fix(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import sys\nprint('boom', flush=True)\nsys.exit(2)\n")
    sup = _supervisor(tmp_path, _spec())
    try:
        assert not await sup.start()
        await _until(lambda: sup.state == "failed")
        assert "3 failures in a row" in (sup.reason or "")
        delays = [
            float(line.text.split()[-1].rstrip("s"))
            for line in sup.logs.since(0)
            if "restarting in" in line.text
        ]
        # Two waits (the third failure gives up), the second twice the first.
        assert len(delays) == 2 and delays[1] == 2 * 0.05
        # Saving a fixed file brings it back.
        (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "fixed"))
        await _until(lambda: sup.state == "running")
        assert await _get(sup) == "fixed"
    finally:
        await sup.stop()


async def test_reload_on_save_serves_the_new_code(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "v1"))
    (tmp_path / "data.sqlite").write_text("")
    sup = _supervisor(tmp_path, _spec())
    try:
        assert await sup.start()
        (tmp_path / "data.sqlite").write_text("an app writing its data is not a change")
        await asyncio.sleep(0.4)
        assert sup.restarts == 0
        (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "v2"))
        await _until(lambda: sup.restarts == 1 and sup.state == "running")
        assert await _get(sup) == "v2"
    finally:
        await sup.stop()


async def test_a_release_that_fails_its_first_health_check_is_not_retried(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "broken"))
    sup = _supervisor(tmp_path, _spec(health="/", reload="none"), retry_first=False)
    fast = SupervisorOptions(start_timeout_s=1.5, backoff_initial_s=0.05)
    sup.options = fast
    try:
        assert not await sup.start()
        assert sup.state == "failed"
        assert "answered 500" in (sup.reason or "")
        assert sup.restarts == 0
    finally:
        await sup.stop()


async def test_stop_ends_the_app_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    (tmp_path / "app.py").write_text(
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        + VERSIONED.replace("{version}", "v1")
    )
    sup = _supervisor(tmp_path, _spec())
    assert await sup.start()
    child = int(pidfile.read_text())
    await sup.stop()
    await _until(lambda: not _alive(child), timeout=5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_settle_answers_for_the_files_as_they_are_now(tmp_path: Path) -> None:
    # The agent saves a file and asks for the preview at once: the answer must come from the
    # new code, not the old one nor the app halfway through its restart. The watcher here
    # polls too slowly to notice the save by itself, so settle() has to look.
    (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "v1"))
    sup = _supervisor(tmp_path, _spec())
    sup.options = dataclasses.replace(FAST, watch_interval_s=60.0)
    try:
        assert await sup.start()
        assert await sup.settle(5) == "running" and sup.restarts == 0  # nothing changed
        (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "second"))
        assert await sup.settle(15) == "running"
        assert sup.restarts == 1
        assert await _get(sup) == "second"
    finally:
        await sup.stop()


async def test_settle_waits_for_a_failed_app_brought_back_by_a_fix(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import sys\nsys.exit(2)\n")
    sup = _supervisor(tmp_path, _spec())
    try:
        assert not await sup.start()
        await _until(lambda: sup.state == "failed")
        assert await sup.settle(1) == "failed"  # no change: it stays failed, and says so
        (tmp_path / "app.py").write_text(VERSIONED.replace("{version}", "fixed"))
        assert await sup.settle(15) == "running"
        assert await _get(sup) == "fixed"
    finally:
        await sup.stop()
