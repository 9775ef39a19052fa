"""GPU leases of project kernels: the host's devices and who holds them."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .base import EcodeHandler


class GpusHandler(EcodeHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        leases = self.ecode.extras.get("gpus")
        if leases is None:
            # The hub service runs no kernels: its users' servers get GPUs from the spawner.
            self.finish_json(
                {"host": None, "exclusive": True, "devices": [], "leases": [], "ended": []}
            )
            return
        self.finish_json(await leases.snapshot(self.ecode_user))


default_handlers = [(r"/api/ecode/gpus", GpusHandler)]
