"""ServerKernels: the agent's ``execute_code`` on the Jupyter server's own kernels.

The kernel a project's code runs in is an ordinary kernel of ``serverapp.kernel_manager``,
started from the ``ecode-python`` kernelspec (so the ecode provisioner puts it in the
project's sandbox). Consequences a user sees:

- the agent uses the kernel a notebook of the project already has when there is one, so a
  human and the agent share variables, and the agent's executions appear in that kernel;
- a kernel the agent started is listed in Lab (Running, the kernel picker's "use kernel from
  other session"), is culled with the server's culling settings, and goes to Enterprise
  Gateway when ``c.GatewayClient`` is set;
- deleting a project shuts its kernels down (with their sessions).

Also here: :func:`without_nagle`, the kernel WebSocket with ``TCP_NODELAY``. Tornado leaves
Nagle's algorithm on, and a reply that fits in one small segment then waits for the
browser's delayed ACK: about 40 ms per round trip (``../shared/ENVIRONMENT.md`` item 14).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient

from ..identity import EcodeUser
from ..tools.context import ToolProject
from ..tools.kernel import ExecutionResult, OutputCallback, run_code
from .host import KERNEL_NAME, PROJECT_ENV, REQUESTER, KernelHost

log = logging.getLogger(__name__)


class ServerKernels:
    """:class:`~ecode_jupyter.tools.kernel.KernelProvider` on the server's kernel manager."""

    def __init__(self, serverapp: Any, host: KernelHost, *, startup_timeout_s: float = 60.0):
        self._serverapp = serverapp
        self._host = host
        self._startup_timeout_s = startup_timeout_s
        # Kernels the agent started, by project: the host knows only local ecode kernels,
        # and a remote (Enterprise Gateway) kernel never passes through the provisioner here.
        self._started: dict[str, str] = {}
        self._clients: dict[str, Any] = {}
        self._start_locks: dict[str, asyncio.Lock] = {}
        self._run_locks: dict[str, asyncio.Lock] = {}

    @property
    def _manager(self) -> Any:
        return self._serverapp.kernel_manager

    def _candidates(self, project_id: str) -> list[str]:
        found = self._host.kernels_of(project_id)
        started = self._started.get(project_id)
        if started is not None and started not in found:
            found.append(started)
        return [kid for kid in found if kid in self._manager]

    async def kernel_for(self, project: ToolProject, user: EcodeUser | None) -> str:
        """The project's kernel: a notebook's first, else the agent's, else a new one."""
        for gone in [kid for kid in self._clients if kid not in self._manager]:
            self._drop_client(gone)  # shut down from Lab or culled
        lock = self._start_locks.setdefault(project.id, asyncio.Lock())
        async with lock:
            candidates = self._candidates(project.id)
            if candidates:
                sessions = await self._serverapp.session_manager.list_sessions()
                used = {(s.get("kernel") or {}).get("id") for s in sessions}
                in_notebooks = [kid for kid in candidates if kid in used]
                return (in_notebooks or candidates)[0]
            token = REQUESTER.set(user)
            try:
                kernel_id = await self._manager.start_kernel(
                    kernel_name=KERNEL_NAME,
                    cwd=str(project.workspace),
                    env={PROJECT_ENV: project.id, "KERNEL_WORKING_DIR": str(project.workspace)},
                )
            finally:
                REQUESTER.reset(token)
            self._started[project.id] = str(kernel_id)
            log.info("started kernel %s for project %s", kernel_id, project.id)
            return str(kernel_id)

    async def _client(self, kernel_id: str) -> Any:
        client = self._clients.get(kernel_id)
        if client is not None:
            return client
        manager = self._manager.get_kernel(kernel_id)
        if hasattr(manager, "get_connection_info") and manager.transport in ("tcp", "ipc"):
            # A second ZMQ client beside the notebook's WebSocket: same session key.
            client = AsyncKernelClient()
            client.load_connection_info(manager.get_connection_info())
        else:
            client = manager.client()  # a gateway kernel: its own client class
        client.start_channels()
        await client.wait_for_ready(timeout=self._startup_timeout_s)
        self._clients[kernel_id] = client
        return client

    async def execute(
        self,
        project: ToolProject,
        code: str,
        *,
        timeout_s: float,
        on_output: OutputCallback | None = None,
        user: EcodeUser | None = None,
    ) -> ExecutionResult:
        kernel_id = await self.kernel_for(project, user)
        client = await self._client(kernel_id)
        manager = self._manager

        async def interrupt() -> None:
            await manager.interrupt_kernel(kernel_id)

        async def is_alive() -> bool:
            return kernel_id in manager and bool(await manager.get_kernel(kernel_id).is_alive())

        # One execution of the agent's at a time per kernel; a human's may interleave, and
        # the parent message id keeps their outputs apart.
        async with self._run_locks.setdefault(kernel_id, asyncio.Lock()):
            result, broken = await run_code(
                client,
                code,
                timeout_s=timeout_s,
                on_output=on_output,
                interrupt=interrupt,
                is_alive=is_alive,
            )
        if broken and kernel_id in manager:
            # Stuck past the interrupt, or dead (the server's restarter may already be on
            # it): restart, keeping the kernel's id, so notebooks stay attached.
            with contextlib.suppress(Exception):
                await manager.restart_kernel(kernel_id)
        return result

    async def shutdown_project(self, project_id: str) -> None:
        """Stop every kernel of the project (its notebooks' sessions go with them)."""
        kernels = set(self._candidates(project_id))
        self._started.pop(project_id, None)
        if not kernels:
            return
        sessions = self._serverapp.session_manager
        for session in await sessions.list_sessions():
            if (session.get("kernel") or {}).get("id") in kernels:
                with contextlib.suppress(Exception):
                    await sessions.delete_session(session["id"])
        for kernel_id in kernels:
            self._drop_client(kernel_id)
            if kernel_id in self._manager:
                with contextlib.suppress(Exception):
                    await self._manager.shutdown_kernel(kernel_id)
        log.info("stopped %d kernel(s) of deleted project %s", len(kernels), project_id)

    def _drop_client(self, kernel_id: str) -> None:
        client = self._clients.pop(kernel_id, None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.stop_channels()

    async def shutdown_all(self) -> None:
        # The server shuts its kernels down itself when it stops; only our clients go here.
        for kernel_id in list(self._clients):
            self._drop_client(kernel_id)


def without_nagle(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` with ``TCP_NODELAY`` on its WebSocket (see the module docstring)."""

    class NoDelayConnection(connection_class):  # type: ignore[misc]
        async def connect(self) -> Any:
            with contextlib.suppress(Exception):  # not a TCP stream (a test transport)
                self.websocket_handler.set_nodelay(True)
            return await super().connect()

    NoDelayConnection.__name__ = f"NoDelay{connection_class.__name__}"
    NoDelayConnection.__qualname__ = NoDelayConnection.__name__
    return NoDelayConnection
