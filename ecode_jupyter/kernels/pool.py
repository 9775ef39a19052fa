"""KernelPool: sandboxed project kernels started ahead, so opening a notebook is instant.

A project kernel's cold start is a few hundred milliseconds (ipykernel's imports dominate;
the sandbox adds about ten, ``benchmarks/bench_kernels.py``). A pooled kernel is started for
one project when the project is opened in Lab (``POST projects/{id}/kernels/warm``) and
refilled after each claim, so the next notebook or ``execute_code`` of that project gets a
kernel that already answers.

Rules:

- **Per project.** A kernel's sandbox binds its project's workspace and its environment holds
  that project's secrets, so a pooled kernel can only ever serve its own project.
- **A claimed kernel never returns.** Once a notebook or the agent has run code in it, its
  state is theirs; it leaves the pool for good and lives or dies like any other kernel.
- **No stampede.** One refill task per project at a time, started only when the project has
  fewer ready kernels than ``kernel_pool_size``; concurrent warms and claims wait on it or
  skip it, never start extra kernels.
- **Bounded.** At most ``kernel_pool_max`` pooled kernels on the server; warming a project
  beyond that shuts down the kernels of the project warmed longest ago.
- **Claims are authorized.** A notebook session's start claims a pooled kernel only for a
  caller who may start the project's kernel anyway (an editor), and only when the notebook's
  folder is the workspace itself (a pooled kernel's working folder); otherwise the start
  goes on as a cold one, with the provisioner's checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient

from ..identity import EcodeUser
from ..tools.context import ToolProject
from .host import KERNEL_NAME, PROJECT_ENV, REQUESTER, KernelHost

log = logging.getLogger(__name__)

REFILL_DELAY_S = 1.0
STARTUP_TIMEOUT_S = 60.0


async def connect_client(manager: Any, timeout_s: float) -> Any:
    """A started, ready client of a kernel of the server's kernel manager."""
    from jupyter_server.gateway.managers import GatewayKernelManager

    client: Any
    if not isinstance(manager, GatewayKernelManager):
        # A ZMQ client beside any WebSocket of the kernel: the same connection and key.
        client = AsyncKernelClient()
        client.load_connection_info(manager.get_connection_info())
    else:
        remote: Any = manager
        client = remote.client()  # a gateway kernel: a WebSocket client of its own
    started: Any = client.start_channels()
    if inspect.isawaitable(started):  # the gateway client's is a coroutine
        await started
    await client.wait_for_ready(timeout=timeout_s)
    return client


class KernelPool:
    """See the module docstring. Every method runs on the server's loop."""

    def __init__(self, serverapp: Any, host: KernelHost, *, size: int, limit: int) -> None:
        self._serverapp = serverapp
        self._host = host
        self.size = max(0, size)
        self.limit = max(0, limit)
        # project id → ready kernel ids, oldest warmed project first.
        self._ready: OrderedDict[str, list[str]] = OrderedDict()
        self._refills: dict[str, asyncio.Task[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.limit > 0

    @property
    def _manager(self) -> Any:
        return self._serverapp.kernel_manager

    def ready(self, project_id: str) -> list[str]:
        """The project's pooled kernels that are still alive (the culler may take some)."""
        kernels = [kid for kid in self._ready.get(project_id, []) if kid in self._manager]
        if project_id in self._ready:
            self._ready[project_id] = kernels
        return kernels

    def pooled(self) -> int:
        return sum(len(self.ready(pid)) for pid in list(self._ready))

    # -- filling ------------------------------------------------------------------------------

    def warm(self, project: ToolProject, user: EcodeUser) -> asyncio.Task[None] | None:
        """Start filling the project's pool in the background; the running refill if any."""
        if not self.enabled:
            return None
        running = self._refills.get(project.id)
        if running is not None and not running.done():
            return running
        if len(self.ready(project.id)) >= self.size:
            self._ready.move_to_end(project.id)
            return None
        self._ready.setdefault(project.id, [])
        self._ready.move_to_end(project.id)
        task = asyncio.create_task(self._fill(project, user), name=f"ecode-pool-{project.id}")
        self._refills[project.id] = task
        return task

    async def _fill(self, project: ToolProject, user: EcodeUser) -> None:
        try:
            while len(self.ready(project.id)) < self.size:
                if not await self._make_room(project.id):
                    return
                token = REQUESTER.set(user)
                try:
                    kernel_id = await self._manager.start_kernel(
                        kernel_name=KERNEL_NAME,
                        cwd=str(project.workspace),
                        env={PROJECT_ENV: project.id},
                    )
                finally:
                    REQUESTER.reset(token)
                await self._first_execution(str(kernel_id))
                if project.id not in self._ready:
                    # The project was dropped (deleted) while its kernel started.
                    await self._shutdown(str(kernel_id))
                    return
                self._ready[project.id].append(str(kernel_id))
                log.debug("pooled kernel %s for project %s", kernel_id, project.id)
        except Exception:
            # A pool that cannot fill is only slower: the next start is a cold one, which
            # reports the same problem to whoever asked.
            log.warning("could not warm a kernel for project %s", project.id, exc_info=True)
        finally:
            self._refills.pop(project.id, None)

    async def _first_execution(self, kernel_id: str) -> None:
        """Run one empty cell, so that the claimer's first cell does not pay for IPython's
        first-cell setup (tens of milliseconds)."""
        client = await connect_client(self._manager.get_kernel(kernel_id), STARTUP_TIMEOUT_S)
        try:
            await client.execute("pass", store_history=False, reply=True, timeout=STARTUP_TIMEOUT_S)
        finally:
            client.stop_channels()

    async def _make_room(self, project_id: str) -> bool:
        """Evict other projects' pooled kernels, oldest first, until one more fits; False
        when only this project's are left (the pool is full of its own)."""
        while self.pooled() >= self.limit:
            others = (pid for pid in self._ready if pid != project_id and self.ready(pid))
            oldest = next(others, None)
            if oldest is None:
                return False
            await self._shutdown(self._ready[oldest].pop(0))
        return True

    # -- claiming -----------------------------------------------------------------------------

    def claim(self, project_id: str) -> str | None:
        """Take a ready kernel of the project out of the pool (for good), or None."""
        kernels = self.ready(project_id)
        if not kernels:
            return None
        kernel_id = kernels.pop(0)
        log.debug("claimed pooled kernel %s of project %s", kernel_id, project_id)
        return kernel_id

    def refill_after_claim(self, project: ToolProject, user: EcodeUser) -> None:
        # Not at once: a kernel start takes a CPU for a few hundred milliseconds, which the
        # claimer's first execution (the WebSocket's connect, the first cell) should not
        # have to share.
        loop = asyncio.get_running_loop()
        loop.call_later(REFILL_DELAY_S, self.warm, project, user)

    async def claim_for_start(self, kwargs: dict[str, Any]) -> str | None:
        """A pooled kernel for a notebook session's start, when it may have one."""
        if not self.enabled or kwargs.get("kernel_name") != KERNEL_NAME:
            return None
        if kwargs.get("kernel_id") is not None or kwargs.get("env", {}).get(PROJECT_ENV):
            return None  # an explicit start (the pool's own, or a chosen id)
        user = REQUESTER.get()
        path = kwargs.get("path")
        if user is None or path is None:
            return None
        cwd = Path(self._manager.cwd_for_path(path)).resolve()
        project_id = self._host.project_for({}, str(cwd))
        if project_id is None or not self.ready(project_id):
            return None
        try:
            project = await self._host.access.open(user, project_id, write=True)
        except Exception:
            return None  # not theirs: the cold start refuses with the reason
        if project.workspace != cwd:
            return None
        kernel_id = self.claim(project_id)
        if kernel_id is not None:
            self.refill_after_claim(project, user)
        return kernel_id

    # -- emptying -----------------------------------------------------------------------------

    async def drop(self, project_id: str) -> None:
        """Shut the project's pooled kernels down (it was deleted)."""
        refill = self._refills.pop(project_id, None)
        kernels = self._ready.pop(project_id, [])
        if refill is not None:
            refill.cancel()
            with contextlib.suppress(BaseException):
                await refill
        for kernel_id in kernels:
            await self._shutdown(kernel_id)

    async def _shutdown(self, kernel_id: str) -> None:
        if kernel_id in self._manager:
            with contextlib.suppress(Exception):
                await self._manager.shutdown_kernel(kernel_id)

    async def close(self) -> None:
        for task in list(self._refills.values()):
            task.cancel()
        for task in list(self._refills.values()):
            with contextlib.suppress(BaseException):
                await task
        self._refills.clear()
