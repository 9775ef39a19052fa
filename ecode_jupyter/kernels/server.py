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

from ..identity import EcodeUser
from ..tools.context import ToolProject
from ..tools.kernel import ExecutionResult, OutputCallback, run_code
from .host import KERNEL_NAME, PROJECT_ENV, REQUESTER, KernelHost
from .pool import KernelPool, connect_client

log = logging.getLogger(__name__)


class ServerKernels:
    """:class:`~ecode_jupyter.tools.kernel.KernelProvider` on the server's kernel manager."""

    def __init__(
        self,
        serverapp: Any,
        host: KernelHost,
        *,
        pool: KernelPool | None = None,
        startup_timeout_s: float = 60.0,
    ) -> None:
        self._serverapp = serverapp
        self._host = host
        self.host = host
        self.pool = pool or KernelPool(serverapp, host, size=0, limit=0)
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
            pooled = set(self.pool.ready(project.id))
            candidates = [kid for kid in self._candidates(project.id) if kid not in pooled]
            if candidates:
                sessions = await self._serverapp.session_manager.list_sessions()
                used = {(s.get("kernel") or {}).get("id") for s in sessions}
                in_notebooks = [kid for kid in candidates if kid in used]
                return (in_notebooks or candidates)[0]
            claimed = self.pool.claim(project.id)
            if claimed is not None:
                self._started[project.id] = claimed
                if user is not None:
                    self.pool.refill_after_claim(project, user)
                return claimed
            token = REQUESTER.set(user)
            try:
                env = {PROJECT_ENV: project.id, "KERNEL_WORKING_DIR": str(project.workspace)}
                if user is not None:
                    # Enterprise Gateway starts a kernel as this user (and refuses root).
                    env["KERNEL_USERNAME"] = user.username
                kernel_id = await self._manager.start_kernel(
                    kernel_name=KERNEL_NAME, cwd=str(project.workspace), env=env
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
        client = await connect_client(self._manager.get_kernel(kernel_id), self._startup_timeout_s)
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
        await self.pool.drop(project_id)
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

    def install(self) -> None:
        """Wrap the server's ``start_kernel``: notebook sessions claim pooled kernels, and a
        failed start leaves nothing behind.

        jupyter_client keeps a failed start's id among its pending kernels for good, and the
        server's ``shutdown_all`` at exit then fails on that id (404) before it has stopped
        the kernels after it; refused ecode starts (a stranger's, no project) are expected,
        so their ids are removed here.
        """
        manager = self._manager
        start = manager.start_kernel
        pool = self.pool

        async def start_kernel(*args: Any, **kwargs: Any) -> Any:
            claimed = await pool.claim_for_start(kwargs)
            if claimed is not None:
                return claimed
            try:
                return await start(*args, **kwargs)
            except Exception:
                pending = getattr(manager, "_pending_kernels", {})
                for kernel_id, task in list(pending.items()):
                    if task.done() and kernel_id not in manager:
                        pending.pop(kernel_id, None)
                raise

        manager.start_kernel = start_kernel

    def project_kernels(self, project_id: str) -> list[dict[str, Any]]:
        """The project's kernels as ``/api/kernels`` models, with ``pooled`` for the ready
        ones nobody has claimed yet."""
        pooled = set(self.pool.ready(project_id))
        models = []
        for kernel_id in self._candidates(project_id):
            model = dict(self._manager.kernel_model(kernel_id))
            model["pooled"] = kernel_id in pooled
            models.append(model)
        return models

    async def shutdown_all(self) -> None:
        # The server shuts its kernels down itself when it stops; only our clients and the
        # pool's refills go here.
        await self.pool.close()
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
