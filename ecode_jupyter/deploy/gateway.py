"""The app gateway, seen from the Jupyter server: start it, tell it the routes, watch it.

With ``c.EcodeApp.preview_port`` set, apps are served on their own origin (``preview_origin``,
by default ``http://127.0.0.1:{preview_port}``) by a process of its own
(``deploy/gateway_server.py``). The Jupyter server binds the port itself (a bind error is
reported at start-up, and the port stays the same across restarts of the process), hands the
socket to the process, and sends it the route table — which key reaches which running app on
which port — whenever an app starts, restarts or stops. The process says which apps were used,
once a second at most: their idle clocks and Jupyter's own activity (for idle culling) move.

If the process dies it is started again (with a growing pause if it keeps dying); it ends by
itself when the Jupyter server does (its stdin closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .gateway_server import MAX_TABLE_BYTES, Upstream
from .manager import DeployManager

log = logging.getLogger(__name__)

_RESTART_PAUSE_S = (0.2, 30.0)  # first and longest pause before the process is started again
_HEALTHY_AFTER_S = 30.0  # a process that ran this long resets the pause


class AppGateway:
    def __init__(
        self,
        manager: DeployManager,
        *,
        ip: str,
        port: int,
        base_url: str,
        upstream: Upstream,
        on_activity: Callable[[], None] = lambda: None,
    ) -> None:
        self.manager = manager
        self.ip = ip
        self.port = port
        self.prefix = base_url.rstrip("/") + "/ecode/"
        self.upstream = upstream
        self.on_activity = on_activity
        origin = urlsplit(manager.options.preview_origin)
        self.scheme = origin.scheme or "http"
        # The Host headers the origin answers to: the public one and the listener's own.
        self.hosts = {origin.netloc}
        self.restarts = 0
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._push_pending = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> int:
        """Listen, and start the process (on the running event loop); the port."""
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        sock = socket.create_server((self.ip, self.port), family=family, backlog=1024)
        # Not inheritable: only the gateway process gets it (pass_fds), not apps or kernels.
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self.hosts |= {f"{host}:{self.port}" for host in (self.ip, "127.0.0.1", "localhost")}
        self.manager.route_listeners.append(self._routes_changed)
        self._task = asyncio.ensure_future(self._watch())
        return self.port

    async def ready(self, timeout: float = 30.0) -> None:
        """Until the process serves (requests made before wait in the listen queue)."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(ValueError):
            self.manager.route_listeners.remove(self._routes_changed)
        proc = self._proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()  # the process ends when its stdin does
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _argv(self) -> list[str]:
        assert self._sock is not None
        argv = [
            sys.executable,
            "-m",
            "ecode_jupyter.deploy.gateway_server",
            f"--fd={self._sock.fileno()}",
            f"--prefix={self.prefix}",
            f"--scheme={self.scheme}",
            f"--upstream-host={self.upstream.host}",
            f"--upstream-port={self.upstream.port}",
        ]
        argv += [f"--host={host}" for host in sorted(self.hosts)]
        if self.manager.options.preview_own_origin:
            argv.append("--own-origin")
        if self.upstream.unix_socket:
            argv.append(f"--upstream-unix={self.upstream.unix_socket}")
        if self.upstream.tls:
            argv.append("--upstream-tls")
        return argv

    async def _watch(self) -> None:
        """Run the process; start it again when it dies."""
        pause = _RESTART_PAUSE_S[0]
        while not self._stopping and self._sock is not None:
            started = time.monotonic()
            try:
                await self._run_once()
            except OSError as exc:
                log.error("the app gateway could not start: %s", exc)
            except Exception:
                log.exception("the app gateway failed")
                if self._proc is not None and self._proc.returncode is None:
                    self._proc.kill()
            if self._stopping:
                return
            self._ready.clear()
            self.restarts += 1
            if time.monotonic() - started > _HEALTHY_AFTER_S:
                pause = _RESTART_PAUSE_S[0]
            log.warning("the app gateway stopped; starting it again in %.1f s", pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, _RESTART_PAUSE_S[1])

    async def _run_once(self) -> None:
        assert self._sock is not None
        proc = await asyncio.create_subprocess_exec(
            *self._argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            pass_fds=(self._sock.fileno(),),
            limit=MAX_TABLE_BYTES,  # one line names every app used in the last second
        )
        self._proc = proc
        self._push_routes()
        assert proc.stdout is not None
        async for line in proc.stdout:
            self._heard(line)
        await proc.wait()

    # -- what crosses the pipes ----------------------------------------------------------------
    def _heard(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if message.get("ready"):
            self._ready.set()
        keys = message.get("active")
        if isinstance(keys, list) and keys:
            for key in keys:
                app = self.manager.app_for_key(str(key))
                if app is not None:
                    app.supervisor.touch()
            self.on_activity()

    def _routes_changed(self) -> None:
        # Several changes in one turn of the loop (an app stopping, another starting) go as one.
        if not self._push_pending:
            self._push_pending = True
            asyncio.get_running_loop().call_soon(self._push_routes)

    def _push_routes(self) -> None:
        self._push_pending = False
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return
        if proc.stdin.is_closing():
            return
        line = json.dumps({"routes": self.manager.gateway_routes()}) + "\n"
        proc.stdin.write(line.encode())


def start_gateway(app: Any, manager: DeployManager) -> AppGateway | None:
    """The gateway for an EcodeApp whose ``preview_port`` is set, started; else None."""
    if not app.preview_port:
        return None
    serverapp = app.serverapp
    ip = str(serverapp.ip or "")
    wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "::": "::1"}
    upstream = Upstream(
        host=wildcard.get(ip, "127.0.0.1" if ip == "localhost" else ip),
        port=int(serverapp.port),
        unix_socket=str(getattr(serverapp, "sock", "") or ""),
        tls=bool(getattr(serverapp, "certfile", "")),
    )
    activity = serverapp.web_app.settings.setdefault("last_activity_times", {})

    def on_activity() -> None:
        # Someone using an app is someone using this server: keep idle culling away.
        activity["ecode_apps"] = datetime.now(UTC)

    gateway = AppGateway(
        manager,
        ip=str(app.preview_ip),
        port=int(app.preview_port),
        base_url=manager.options.base_url,
        upstream=upstream,
        on_activity=on_activity,
    )
    gateway.start()
    return gateway
