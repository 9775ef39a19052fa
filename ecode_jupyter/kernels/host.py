"""KernelHost: what the ecode kernel provisioner needs from the running extension.

A provisioner is made by jupyter_client for each kernel start, knows only its kernel manager
and the launch arguments, and is called outside any ecode handler. The host is how it finds
the rest, through ``serverapp.web_app.settings["ecode_kernel_host"]``:

- **who asked.** jupyter_server starts kernels for ``POST /api/kernels`` and
  ``/api/sessions`` without telling the kernel manager who the caller was. The host wraps
  the server's Authorizer (whatever class it is) so that the check it already makes on those
  requests also records the caller in a context variable, which the start's task inherits.
  The agent sets the same variable before it starts a kernel. A kernel started with no known
  caller is refused: it could otherwise be pointed at any project's secrets.
- **which project.** ``KERNEL_ECODE_PROJECT`` in the start's environment (the agent, Enterprise
  Gateway style), else the workspace that holds the kernel's working folder (a notebook's
  folder). The caller must be an editor of it: the kernel gets the project's secrets.
- **which kernel is whose**, so that deleting a project stops its kernels, the agent finds
  the kernel a notebook already uses, and a restart (no request, no caller) keeps the
  project and user of the first start.
- **GPU leases** (``gpus``, :class:`~.gpus.GpuLeases`): set by the server when it has the
  ecode database; None on a hub user's server, whose GPUs come from the hub's spawner.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..exceptions import NotFound
from ..identity import EcodeUser
from ..sandbox import SandboxLauncher
from ..tools.context import ProjectAccess, ToolProject

if TYPE_CHECKING:
    from .gpus import GpuLeases

log = logging.getLogger(__name__)

SETTINGS_KEY = "ecode_kernel_host"
PROJECT_ENV = "KERNEL_ECODE_PROJECT"
# The kernelspec installed with the package (kernels/ecode-python/kernel.json).
KERNEL_NAME = "ecode-python"
SPEC_DIR = Path(__file__).parent

# Who asked for the kernel start running in this context (see the module docstring).
REQUESTER: contextvars.ContextVar[EcodeUser | None] = contextvars.ContextVar(
    "ecode_kernel_requester", default=None
)

UserResolver = Callable[[Any, Any], EcodeUser]


@dataclass
class KernelRecord:
    """One ecode kernel: its project, who started it and its private folder (the connection
    file and the IPC sockets; the only server-side path bound into its sandbox)."""

    project_id: str
    user: EcodeUser
    folder: Path


class KernelHost:
    """See the module docstring. One per server; every method runs on the server's loop."""

    def __init__(
        self,
        access: ProjectAccess,
        launcher: SandboxLauncher | None,
        workspace_root: Path,
        *,
        project_id: str | None = None,
    ) -> None:
        self.access = access
        self.launcher = launcher
        self.workspace_root = workspace_root.resolve()
        # A hub project's own server serves one project whose workspace is its root.
        self.project_id = project_id
        self.kernels: dict[str, KernelRecord] = {}
        # GPU leases of kernels that ask for GPUs (see the module docstring).
        self.gpus: GpuLeases | None = None
        self._folders = Path(tempfile.mkdtemp(prefix="ecode-kernels-"))

    # -- who and which project ---------------------------------------------------------------

    def watch_requests(self, serverapp: Any, to_user: UserResolver) -> None:
        """Record the caller of every kernel and session request (see the module docstring)."""
        authorizer = serverapp.authorizer
        checked = authorizer.is_authorized

        def is_authorized(handler: Any, user: Any, action: str, resource: str) -> Any:
            if resource in ("kernels", "sessions") and user is not None:
                try:
                    REQUESTER.set(to_user(handler, user))
                except Exception:  # an identity we cannot map: no ecode kernel for it
                    log.debug("kernel request by an unmapped user", exc_info=True)
            return checked(handler, user, action, resource)

        authorizer.is_authorized = is_authorized

    def project_for(self, env: dict[str, str], cwd: str | None) -> str | None:
        """The project a kernel start is for (see the module docstring), or None."""
        named = env.get(PROJECT_ENV, "").strip()
        if named:
            return named
        if self.project_id is not None:
            return self.project_id
        if not cwd:
            return None
        try:
            relative = Path(os.path.realpath(cwd)).relative_to(self.workspace_root)
        except ValueError:
            return None
        return relative.parts[0] if relative.parts else None

    async def open(
        self, kernel_id: str, env: dict[str, str], cwd: str | None
    ) -> tuple[ToolProject, KernelRecord]:
        """Authorize a start (first or restart) and return the project it runs."""
        record = self.kernels.get(kernel_id)
        if record is not None:
            # A restart: the same project for the same user, secrets read afresh.
            project = await self.access.open(record.user, record.project_id, write=True)
            return project, record
        user = REQUESTER.get()
        if user is None:
            msg = (
                "an ecode project kernel starts only for a known user (from Lab, the REST API "
                "or the agent); this start had none"
            )
            raise PermissionError(msg)
        project_id = self.project_for(env, cwd)
        if project_id is None:
            msg = (
                "this kernel runs an ecode project's code: open the notebook inside a "
                f"project's folder (under {self.workspace_root}) or set {PROJECT_ENV}"
            )
            raise NotFound(msg)
        project = await self.access.open(user, project_id, write=True)
        folder = self._folders / kernel_id[:12]
        folder.mkdir(mode=0o700, exist_ok=True)
        record = KernelRecord(project.id, user, folder)
        self.kernels[kernel_id] = record
        return project, record

    def forget(self, kernel_id: str) -> None:
        """The kernel is gone for good (not restarting): drop it and its folder."""
        record = self.kernels.pop(kernel_id, None)
        if record is not None:
            shutil.rmtree(record.folder, ignore_errors=True)

    def kernels_of(self, project_id: str) -> list[str]:
        return [kid for kid, record in self.kernels.items() if record.project_id == project_id]

    def close(self) -> None:
        shutil.rmtree(self._folders, ignore_errors=True)


def current_host(manager: Any) -> KernelHost:
    """The host of the server that owns ``manager`` (a kernel manager or provisioner)."""
    node = manager
    while node is not None:
        web_app = getattr(node, "web_app", None)
        if web_app is not None:
            host = web_app.settings.get(SETTINGS_KEY)
            if isinstance(host, KernelHost):
                return host
            break
        node = getattr(node, "parent", None)
    msg = (
        "the ecode project kernel runs only in a Jupyter server with the ecode_jupyter "
        "extension enabled"
    )
    raise RuntimeError(msg)
