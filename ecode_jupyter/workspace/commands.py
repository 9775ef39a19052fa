"""Running a project's commands: bounded in time, output, and resources; nothing left behind.

Each command runs in its own session (so its own process group), with rlimits applied in the
child before ``exec``. On timeout or cancellation the whole group gets SIGTERM, then SIGKILL
after a grace period; when the command finishes, stragglers it left in its group are killed
too. Output (stdout and stderr merged, in order) is read incrementally: the result keeps the
head and the tail within a cap, and ``on_output`` receives bounded, coalesced chunks while it
runs, so a command printing 100 MB neither fills memory nor floods listeners, and the event
loop keeps serving other requests.

The :class:`Launcher` is the seam where ``ecode_jupyter.sandbox`` adds namespaces, cgroups
and the network policy: it turns a :class:`LaunchSpec` into a running process; everything
else here stays the same.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import inspect
import logging
import os
import resource
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)

GiB = 1024**3
OutputCallback = Callable[[str], Awaitable[None] | None]

# Variables a command may inherit from the server's environment. Everything else (API keys,
# the Jupyter token, database URLs of the suite itself) stays out of a project's commands.
_PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "TZ",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
    "PIP_CONFIG_FILE",
    "NPM_CONFIG_REGISTRY",
)


def base_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for project commands: a safe subset of ours plus ``extra``."""
    env = {name: os.environ[name] for name in _PASSTHROUGH_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "dumb",
            # Output should stream as it happens, not in 8 KiB blocks at exit.
            "PYTHONUNBUFFERED": "1",
            # A .pyc is checked by whole-second mtime and size: an edit within the second after
            # a test run that keeps the size (200 -> 201) would run the stale compiled module.
            "PYTHONDONTWRITEBYTECODE": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_INPUT": "1",
            "NPM_CONFIG_UPDATE_NOTIFIER": "false",
            "NPM_CONFIG_FUND": "false",
        }
    )
    if extra:
        env.update(extra)
    return env


_PR_SET_PDEATHSIG = 1
# Loaded before any fork: a child between fork and exec should not load libraries.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    # A server killed between fork and this call leaves the process running: the start-up
    # sweep of apps (deploy/orphans.py) ends those.
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class ResourceLimits:
    """rlimits for a command and everything it starts; ``None`` leaves a limit as inherited.

    Defaults stop runaway programs without breaking ordinary toolchains: the address space is
    generous because V8, the JVM and Go reserve far more virtual memory than they use. V8
    reserves about 10 GiB for each WebAssembly memory (guard regions), and a test runner's
    worker threads share one process: Vitest on a Vite project failed under 16 GiB ("Cannot
    allocate Wasm memory"). Real memory is the sandbox's memory cgroup's to bound.
    """

    address_space_bytes: int | None = 128 * GiB
    cpu_seconds: int | None = 600
    file_size_bytes: int | None = 2 * GiB
    # RLIMIT_NPROC counts all processes of the user (and root is exempt): a fork-bomb brake.
    processes: int | None = 4096
    open_files: int | None = 4096
    # Not an rlimit, but set in the same place: the process gets SIGKILL when the server
    # dies (PR_SET_PDEATHSIG), even by kill -9, instead of living on with its secrets.
    # Only for processes started from the event loop's thread: the signal follows the
    # thread that forked, not the process.
    die_with_parent: bool = False

    def apply(self) -> None:
        """Set the limits in the current process. Runs in the child between fork and exec."""
        if self.die_with_parent:
            _die_with_parent()
        for kind, value in (
            (resource.RLIMIT_AS, self.address_space_bytes),
            (resource.RLIMIT_CPU, self.cpu_seconds),
            (resource.RLIMIT_FSIZE, self.file_size_bytes),
            (resource.RLIMIT_NPROC, self.processes),
            (resource.RLIMIT_NOFILE, self.open_files),
        ):
            if value is None:
                continue
            _soft, hard = resource.getrlimit(kind)
            capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (capped, capped))


@dataclass(frozen=True)
class LaunchSpec:
    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # Folders the process may write; the first is the project's workspace. A sandboxing
    # launcher shows the process these and the system (read-only) and nothing else. Empty:
    # just ``cwd``.
    writable: tuple[Path, ...] = ()
    # The process serves HTTP that the server's proxy reaches on the host's loopback (a
    # preview or release), so it cannot get a network namespace of its own.
    host_network: bool = False
    # Device nodes the process may open besides the sandbox's minimal /dev (a kernel's
    # leased GPUs: /dev/nvidia0, /dev/nvidiactl…). Empty for every other launch.
    devices: tuple[Path, ...] = ()


class Launcher(Protocol):
    """Starts a command. Called by :func:`run_command` and the deploy supervisor.

    The process must lead its own process group (``run_command`` signals the group by the
    leader's pid), have stdin closed and stdout+stderr merged into one pipe.
    """

    async def launch(self, spec: LaunchSpec) -> asyncio.subprocess.Process: ...


@dataclass(frozen=True)
class Launched:
    """A started process and what its launcher says about how it is confined."""

    process: asyncio.subprocess.Process
    # One line: what confines the process ("" when the launcher says nothing).
    sandbox: str = ""
    # What the launcher could not apply, said plainly; shown with the command's output.
    notes: tuple[str, ...] = ()


@runtime_checkable
class ReportingLauncher(Protocol):
    """A launcher that also reports what it applied (``ecode_jupyter.sandbox``)."""

    async def start(self, spec: LaunchSpec) -> Launched: ...


async def start_process(launcher: Launcher, spec: LaunchSpec) -> Launched:
    """Start ``spec`` through ``launcher``, with its report when it gives one."""
    if isinstance(launcher, ReportingLauncher):
        return await launcher.start(spec)
    return Launched(await launcher.launch(spec))


class LocalLauncher:
    """A plain child process: new session, rlimits, nothing else."""

    async def launch(self, spec: LaunchSpec) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *spec.argv,
            cwd=str(spec.cwd),
            env=dict(spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=spec.limits.apply,
        )


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None
    output: str
    truncated: bool
    timed_out: bool
    duration_s: float
    output_bytes: int = 0
    notes: tuple[str, ...] = ()
    # How the command was confined (the launcher's one-line report), "" when unknown.
    sandbox: str = ""


class _CappedOutput:
    """Keeps the first and last bytes of a stream within ``cap``, counting the rest."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_cap:
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        head = self.head.decode("utf-8", "replace")
        if not self.dropped:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
        tail = bytes(self.tail)
        # The cut may land inside a UTF-8 sequence; start the tail at a character boundary.
        while tail and (tail[0] & 0xC0) == 0x80:
            tail = tail[1:]
        note = (
            f"\n[... {self.dropped} bytes omitted: output is capped at "
            f"{self.head_cap + self.tail_cap} bytes, showing the first and last parts ...]\n"
        )
        return head + note + tail.decode("utf-8", "replace")


class _Streamer:
    """Coalesces output for ``on_output``: at most one chunk per interval, each bounded."""

    def __init__(self, callback: OutputCallback | None, chunk_cap: int) -> None:
        self.callback = callback
        self.chunk_cap = chunk_cap
        self.pending = bytearray()
        self.skipped = 0
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def add(self, chunk: bytes) -> None:
        if self.callback is None:
            return
        room = self.chunk_cap - len(self.pending)
        if room > 0:
            self.pending += chunk[:room]
        self.skipped += max(0, len(chunk) - max(room, 0))

    async def flush(self, final: bool = False) -> None:
        if self.callback is None or (not self.pending and not self.skipped):
            return
        text = self.decoder.decode(bytes(self.pending), final=final)
        if self.skipped:
            text += f"\n[... {self.skipped} bytes not streamed ...]\n"
            self.decoder.reset()  # the skipped bytes broke the sequence
        self.pending.clear()
        self.skipped = 0
        try:
            result = self.callback(text)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("command output listener failed")


def shell_argv(command: str) -> list[str]:
    shell = shutil.which("bash") or "/bin/sh"
    return [shell, "-c", command]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _stop_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to go, then SIGKILL what is left."""
    _signal_group(pgid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    try:
        while _group_alive(pgid) and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        _signal_group(pgid, signal.SIGKILL)


async def _wait_exit_or_eof(proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
    """Return when the output reaches EOF or the command itself has exited.

    ``Process.wait()`` also waits for the pipes to close, which a background child can hold
    open forever; so while the pipe is open, the exit status (set by asyncio's child watcher)
    is polled. The usual path — EOF at exit — returns without polling latency.
    """

    async def exited() -> None:
        while proc.returncode is None:
            await asyncio.sleep(0.05)

    poll = asyncio.create_task(exited())
    try:
        await asyncio.wait({reader, poll}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        poll.cancel()
    if reader.done():
        await proc.wait()


async def run_command(
    command: str | Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float = 120.0,
    output_cap_bytes: int = 64 * 1024,
    on_output: OutputCallback | None = None,
    limits: ResourceLimits | None = None,
    launcher: Launcher | None = None,
    writable: tuple[Path, ...] = (),
    kill_grace_s: float = 2.0,
    linger_s: float = 1.0,
    stream_interval_s: float = 0.1,
    stream_chunk_cap: int = 8192,
) -> CommandResult:
    """Run ``command`` (a shell string, or an argv list run without a shell) to completion.

    Returns even on timeout (``timed_out=True``, the group killed). On cancellation the group is
    stopped and ``CancelledError`` propagates. ``linger_s`` is how long the output pipe may stay
    open after the command exits (background children holding it are then killed).
    ``writable`` is what a sandboxing launcher lets it write (the workspace; default ``cwd``).
    """
    argv = shell_argv(command) if isinstance(command, str) else list(command)
    if not argv:
        msg = "empty command"
        raise ValueError(msg)
    spec = LaunchSpec(
        argv=argv, cwd=cwd, env=env, limits=limits or ResourceLimits(), writable=writable
    )
    started = time.monotonic()
    launched = await start_process(launcher or LocalLauncher(), spec)
    proc = launched.process
    pgid = proc.pid  # leader of its own session, so its pid is the group id
    assert proc.stdout is not None
    capture = _CappedOutput(output_cap_bytes)
    streamer = _Streamer(on_output, stream_chunk_cap)
    # What the sandbox could not apply goes with the output, never silently dropped.
    notes: list[str] = list(launched.notes)

    async def pump(stdout: asyncio.StreamReader) -> None:
        while chunk := await stdout.read(65536):
            capture.add(chunk)
            streamer.add(chunk)

    async def stream_periodically() -> None:
        while True:
            await asyncio.sleep(stream_interval_s)
            await streamer.flush()

    reader = asyncio.create_task(pump(proc.stdout))
    ticker = asyncio.create_task(stream_periodically()) if on_output is not None else None
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await _wait_exit_or_eof(proc, reader)
                if not reader.done():
                    # The command is done but something it started still holds the output.
                    done, _ = await asyncio.wait({reader}, timeout=linger_s)
                    if not done:
                        notes.append("background processes still writing output were stopped")
        except TimeoutError:
            timed_out = True
            notes.append(
                f"timed out after {timeout_s:g}s; the command and its children were killed"
            )
            await _stop_group(pgid, kill_grace_s)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await _stop_group(pgid, kill_grace_s)
        raise
    finally:
        # Whatever happened, nothing the command started outlives it.
        _signal_group(pgid, signal.SIGKILL)
        if ticker is not None:
            ticker.cancel()
        # Once the group is dead the pipe reaches EOF; don't wait forever on a stuck reader.
        done, _ = await asyncio.wait({reader}, timeout=2.0)
        if not done:
            reader.cancel()
        with contextlib.suppress(ProcessLookupError):
            if proc.returncode is None:
                proc.kill()
        await streamer.flush(final=True)
    exit_code = await proc.wait()
    duration = time.monotonic() - started
    output = capture.text()
    if notes:
        output += "".join(f"\n[{note}]" for note in notes)
    log.debug("command finished: exit %s in %.2fs, %d bytes", exit_code, duration, capture.total)
    return CommandResult(
        exit_code=exit_code,
        output=output,
        truncated=capture.dropped > 0,
        timed_out=timed_out,
        duration_s=duration,
        output_bytes=capture.total,
        notes=tuple(notes),
        sandbox=launched.sandbox,
    )
