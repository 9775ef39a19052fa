"""Keeps one app running: start on a free port, health check, restart with backoff, reload, stop.

An :class:`AppInstance` is one process of the app on one port. The :class:`Supervisor` owns
the current instance: it starts one through the workspace's :class:`Launcher` seam (its own
process group and rlimits; in a server, the sandbox's namespaces and cgroups), waits until the
health path answers, and while it is supervising restarts a crashed app after a delay that
doubles per consecutive failure. In ``watch`` mode it also restarts the app when a source file
changes (one mechanism for every framework, and no reloader child processes to track).
Every restart gets a fresh port, so a stale process still holding the old one cannot clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..workspace.commands import (
    Launcher,
    LaunchSpec,
    LocalLauncher,
    ResourceLimits,
    start_process,
)
from .detection import RunSpec
from .logs import LogBuffer

log = logging.getLogger(__name__)

# Servers run for hours: no CPU-time cap (the other rlimits still apply). An app dies with
# the server: it holds the project's secrets, and only this server can stop it.
APP_LIMITS = ResourceLimits(cpu_seconds=None, die_with_parent=True)
# Source files whose change restarts a watched app; data files an app writes do not.
WATCHED_SUFFIXES = frozenset(
    {
        ".py",
        ".js",
        ".mjs",
        ".cjs",
        ".ts",
        ".html",
        ".htm",
        ".css",
        ".json",
        ".toml",
        ".cfg",
        ".ini",
        ".yaml",
        ".yml",
        ".jinja",
        ".jinja2",
        ".j2",
        ".txt",
        ".env",
    }
)
WATCHED_NAMES = frozenset({"Procfile", "requirements.txt", "package.json"})
SKIPPED_DIRS = frozenset(
    {
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".git",
        ".ipynb_checkpoints",
        ".pytest_cache",
        ".ruff_cache",
        ".mypy_cache",
        ".ecode",
        ".jupyter",
        # Build output: an app whose command builds before serving (vite build && vite
        # preview) would otherwise restart itself for ever on its own files.
        "dist",
        "build",
        ".next",
        ".vite",
        "coverage",
    }
)
MAX_WATCHED_FILES = 5000


def free_port() -> int:
    """A port nobody listens on right now (the app binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class AppLaunch:
    """Everything needed to start the app. ``env`` holds secrets: never log it."""

    spec: RunSpec
    cwd: Path
    env: dict[str, str] = field(repr=False)
    base_path: str
    python: str
    shell: str = "/bin/sh"
    limits: ResourceLimits = APP_LIMITS
    # What the app may write (the workspace first); empty: ``cwd``.
    writable: tuple[Path, ...] = ()


class AppInstance:
    """One process of the app, listening (once healthy) on ``port``."""

    def __init__(self, launch: AppLaunch, port: int, launcher: Launcher, logs: LogBuffer) -> None:
        self.launch = launch
        self.port = port
        self._launcher = launcher
        self._logs = logs
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.exited = asyncio.Event()
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        launch = self.launch
        argv = launch.spec.argv(
            port=self.port, base_path=launch.base_path, python=launch.python, shell=launch.shell
        )
        env = dict(launch.env)
        env.update(
            {"PORT": str(self.port), "HOST": "127.0.0.1", "ECODE_BASE_PATH": launch.base_path}
        )
        spec = LaunchSpec(
            argv=argv,
            cwd=launch.cwd,
            env=env,
            limits=launch.limits,
            writable=launch.writable,
            host_network=True,  # the proxy reaches the app on the host's loopback
        )
        launched = await start_process(self._launcher, spec)
        self._proc = launched.process
        # How the app is confined, and what of that this host could not apply, in its log.
        if launched.sandbox:
            self._logs.system(launched.sandbox)
        for note in launched.notes:
            self._logs.system(note)
        self._reader = asyncio.create_task(self._pump())
        log.info(
            "app started: pid %s on port %s (%s)", self._proc.pid, self.port, launch.spec.framework
        )

    async def _pump(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        reader = asyncio.ensure_future(self._read(proc.stdout))
        try:
            # The pipe may stay open after the app exits (a child holds it): watch both.
            while proc.returncode is None and not reader.done():
                await asyncio.wait({reader}, timeout=0.2)
            if proc.returncode is None:
                await proc.wait()
        finally:
            # Whatever the app started goes with it.
            _signal_group(proc.pid, signal.SIGKILL)
            done, _ = await asyncio.wait({reader}, timeout=2.0)
            if not done:
                reader.cancel()
            self._logs.flush_partial()
            self.exited.set()

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        while chunk := await stdout.read(65536):
            self._logs.feed(chunk)

    async def check_health(self, timeout_s: float = 2.0) -> int | None:
        """The status code of the health path, or None when nothing answers."""
        path = self.launch.spec.health_path(self.launch.base_path)
        request = HTTPRequest(
            f"http://127.0.0.1:{self.port}{path}",
            connect_timeout=timeout_s,
            request_timeout=timeout_s,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError):
            return None  # refused, reset or timed out: not up (yet)
        return None if response.code == 599 else response.code

    async def wait_healthy(self, timeout_s: float) -> str | None:
        """None once healthy; otherwise why not (the app exited, or time ran out)."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        spec = self.launch.spec
        last: int | None = None
        while time.monotonic() < deadline:
            if self.exited.is_set():
                return f"the app exited with code {self.returncode} before it answered"
            last = await self.check_health()
            # A known health path must say 200; without one, any answer but a 5xx will do.
            if last is not None and (last == 200 if spec.health else last < 500):
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.exited.wait(), delay)
            delay = min(delay * 1.5, 0.5)
        path = spec.health_path(self.launch.base_path)
        answer = f"it answered {last}" if last is not None else "nothing answered"
        return f"no healthy answer from {path} within {timeout_s:g}s ({answer})"

    async def stop(self, grace_s: float = 3.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _group_alive(proc.pid) and proc.returncode is None:
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.05)
        _signal_group(proc.pid, signal.SIGKILL)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({self._reader}, timeout=grace_s + 2.0)


def _scan(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of the watched files, for cheap change detection."""
    found: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIPPED_DIRS]
        for name in filenames:
            if name not in WATCHED_NAMES and os.path.splitext(name)[1] not in WATCHED_SUFFIXES:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            found.append((path, st.st_mtime_ns, st.st_size))
            if len(found) >= MAX_WATCHED_FILES:
                return tuple(sorted(found))
    return tuple(sorted(found))


@dataclass
class SupervisorOptions:
    start_timeout_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    # An app that stayed up this long has its failure count reset.
    stable_after_s: float = 30.0
    max_failures: int = 10
    watch_interval_s: float = 1.0
    stop_grace_s: float = 3.0


StateListener = Callable[["Supervisor"], None]


class Supervisor:
    """Runs one app and keeps it running until :meth:`stop`.

    States: ``starting`` → ``running``; on a crash ``restarting`` (then ``running`` again);
    ``failed`` after too many failures in a row (a file change in watch mode revives it);
    ``stopped`` at the end. ``retry_first=False`` (releases) gives up after a failed first
    start instead of retrying.
    """

    def __init__(
        self,
        launch: AppLaunch,
        *,
        logs: LogBuffer,
        options: SupervisorOptions | None = None,
        launcher: Launcher | None = None,
        retry_first: bool = True,
        on_state: StateListener | None = None,
    ) -> None:
        self.launch = launch
        self.logs = logs
        self.options = options or SupervisorOptions()
        self._launcher = launcher or LocalLauncher()
        self._retry_first = retry_first
        self._on_state = on_state
        self.state = "starting"
        self.reason: str | None = None
        self.restarts = 0
        self.instance: AppInstance | None = None
        self.last_activity = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[bool] | None = None
        self._reload = asyncio.Event()
        self._stopping = asyncio.Event()
        # Set (and replaced) on every state change: what settle() waits on.
        self._state_changed = asyncio.Event()
        # The watched files as the app last saw them; the watcher and settle() share it so a
        # change is acted on once, by whichever of them notices it first.
        self._seen: tuple[tuple[str, int, int], ...] | None = None

    # -- what the proxy and the manager read ----------------------------------------------
    @property
    def port(self) -> int | None:
        """Where the app answers now, or None while it is not running."""
        inst = self.instance
        if self.state == "running" and inst is not None and not inst.exited.is_set():
            return inst.port
        return None

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def _set_state(self, state: str, reason: str | None = None) -> None:
        self.state = state
        self.reason = reason
        changed, self._state_changed = self._state_changed, asyncio.Event()
        changed.set()
        if self._on_state is not None:
            try:
                self._on_state(self)
            except Exception:
                log.exception("deployment state listener failed")

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> bool:
        """Start and wait until the app is healthy (True) or its first start failed (False).

        Supervision continues in the background either way (unless ``retry_first`` is off).
        """
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = asyncio.create_task(self._run())
        if self.launch.spec.reload == "watch":
            self._watch_task = asyncio.create_task(self._watch())
        return await asyncio.shield(self._first)

    def request_reload(self) -> None:
        self._reload.set()

    async def settle(self, timeout: float | None = None) -> str:
        """Wait until the app runs the files as they are now (or has failed); its state.

        Someone who asks for a preview right after saving a file (the agent's verification
        does) must not be answered by the app as it was before the save, nor see it halfway
        through the restart the save causes. In watch mode the files are looked at now rather
        than at the watcher's next poll; a pending reload, a start or a restart is waited
        out, for at most ``timeout`` seconds (then the state at that moment is returned).
        """
        if self.launch.spec.reload == "watch" and self._seen is not None:
            now = await asyncio.to_thread(_scan, self.launch.cwd)
            if now != self._seen:
                self._seen = now
                self.request_reload()
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._reload.is_set() or self.state in ("starting", "restarting"):
            changed = self._state_changed
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)
        return self.state

    async def stop(self, reason: str = "stopped") -> None:
        if self.state == "stopped":
            return
        self._stopping.set()
        for task in (self._watch_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.instance is not None:
            await self.instance.stop(self.options.stop_grace_s)
        if self._first is not None and not self._first.done():
            self._first.set_result(False)
        self.logs.system(f"stopped: {reason}")
        self._set_state("stopped", reason)

    def _resolve_first(self, ok: bool) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(ok)

    async def _start_instance(self) -> tuple[AppInstance, str | None]:
        inst = AppInstance(self.launch, free_port(), self._launcher, self.logs)
        self.instance = inst
        try:
            await inst.start()
        except OSError as exc:
            return inst, f"the command could not be started: {exc.strerror or exc}"
        problem = await inst.wait_healthy(self.options.start_timeout_s)
        return inst, problem

    async def _wait_any(self, *aws: asyncio.Event, timeout: float | None = None) -> None:
        tasks = {asyncio.ensure_future(ev.wait()) for ev in aws}
        try:
            await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()

    async def _run(self) -> None:
        opts = self.options
        failures = 0
        first = True
        try:
            while True:
                self.logs.system("starting: " + " ".join(self.launch.spec.command.split())[:500])
                inst, problem = await self._start_instance()
                if problem is None:
                    self._set_state("running")
                    self.logs.system(f"ready on port {inst.port}")
                    self._resolve_first(True)
                    first = False
                    up_at = time.monotonic()
                    await self._wait_any(inst.exited, self._reload)
                    if self._reload.is_set():
                        # "restarting" before the reload is cleared and the old app stopped:
                        # settle() must never see "running" with no reload pending while the
                        # old code is still the one answering.
                        self._set_state("restarting", "files changed")
                        self._reload.clear()
                        failures = 0
                        self.logs.system("files changed: restarting")
                        await inst.stop(opts.stop_grace_s)
                        self.restarts += 1
                        continue
                    if time.monotonic() - up_at >= opts.stable_after_s:
                        failures = 0
                    problem = f"the app exited with code {inst.returncode}"
                else:
                    await inst.stop(opts.stop_grace_s)
                failures += 1
                self.logs.system(problem)
                if first and not self._retry_first:
                    self._set_state("failed", problem)
                    self._resolve_first(False)
                    return
                self._resolve_first(False)
                if failures >= opts.max_failures:
                    self._set_state("failed", f"{problem} ({failures} failures in a row)")
                    self.logs.system("giving up until a file changes or it is restarted")
                    await self._reload.wait()
                    # Out of "failed" before the reload is cleared, for settle() (above).
                    self._set_state("restarting", "files changed")
                    self._reload.clear()
                    failures = 0
                    continue
                delay = min(opts.backoff_initial_s * 2 ** (failures - 1), opts.backoff_max_s)
                self._set_state("restarting", problem)
                self.logs.system(f"restarting in {delay:.1f}s")
                await self._wait_any(self._reload, timeout=delay)
                self._reload.clear()
                self.restarts += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("supervisor of %s failed", self.launch.cwd)
            self._set_state("failed", f"supervisor error: {type(exc).__name__}")
            self._resolve_first(False)

    async def _watch(self) -> None:
        root = self.launch.cwd
        self._seen = await asyncio.to_thread(_scan, root)
        while True:
            await asyncio.sleep(self.options.watch_interval_s)
            now = await asyncio.to_thread(_scan, root)
            if now == self._seen:
                continue
            # Editors and agents often save several files at once: settle, then restart.
            await asyncio.sleep(0.3)
            self._seen = await asyncio.to_thread(_scan, root)
            self.request_reload()
