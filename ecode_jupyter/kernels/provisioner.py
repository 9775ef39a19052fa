"""EcodeProvisioner: a project's kernel, started in the project's sandbox.

jupyter_client's LocalProvisioner gives a kernel the server's whole environment (a copy of
``os.environ``: tokens, keys, the database URL) and the server's rights. This one, named by
the ``ecode-python`` kernelspec:

- finds the project and authorizes the caller through the :class:`~.host.KernelHost`;
- builds the environment from nothing: the clean base every project command gets, the
  project's own variables (``DATABASE_URL``, its secrets, its venv on ``PATH``) and the
  start's ``KERNEL_*`` variables, never the server's;
- runs the project venv's Python when it has ipykernel, else the server's with the venv's
  packages on the path (as ``run_command`` sees them);
- starts the kernel through ``SandboxLauncher.prepare`` (the one launcher of project code):
  only the workspace and the kernel's private folder writable, the server's files absent;
- connects over IPC sockets in that private folder when the sandbox is on, so a kernel
  works with the network off (a namespace of its own has no route to the host's loopback)
  and its ports are not open to every local process;
- interrupts by message (``interrupt_mode`` in the kernelspec): the kernel runs in a session
  and PID namespace of its own, which a signal to bubblewrap's process group never reaches.
  Killing that group does end it: bubblewrap dies, and ``--die-with-parent`` takes the
  namespace with it;
- leases GPUs when the start asks for them (``KERNEL_ECODE_GPUS``, set by the
  ``ecode-python-gpu`` kernelspec): the devices are the kernel's alone
  (``CUDA_VISIBLE_DEVICES`` names them, the sandbox binds only their device nodes) until it
  shuts down — a restart keeps them — and their time is billed (``gpus/leases.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
from pathlib import Path
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from ..sandbox import PreparedLaunch
from ..tools.kernel import kernel_python
from ..workspace.commands import LaunchSpec, ResourceLimits, base_environment
from .gpus import GpuUnavailable, KernelLease, requested_gpus
from .gpus.devices import existing_nodes
from .host import PROJECT_ENV, KernelHost, KernelRecord, current_host

# How many GPUs a kernel start asks for (the ecode-python-gpu kernelspec sets it to 1).
GPU_ENV = "KERNEL_ECODE_GPUS"

# Variables of a start's environment a kernel may keep: the Jupyter session name and the
# KERNEL_* convention (Enterprise Gateway passes these on to remote kernels too).
_KEPT = ("JPY_SESSION_NAME",)
# A kernel lives for hours: no CPU-time rlimit (the cgroup's CPU share bounds it) and no
# address-space cap (CUDA and JAX reserve far more virtual memory than they touch; the
# cgroup's memory limit bounds what is used). It dies with the server, even one killed with
# SIGKILL, where no bubblewrap does it (the sandbox off): the next start frees the GPUs of
# the dead server's kernels, which must then be gone. (Popen runs on the loop's thread, the
# thread the parent-death signal follows.)
KERNEL_LIMITS = ResourceLimits(address_space_bytes=None, cpu_seconds=None, die_with_parent=True)
_RELEASE_TRIES = 40
_RELEASE_WAIT_S = 0.05


class EcodeProvisioner(LocalProvisioner):
    """See the module docstring."""

    _host: KernelHost | None = None
    _record: KernelRecord | None = None
    _prepared: PreparedLaunch | None = None
    _lease: KernelLease | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        host = current_host(self.parent)
        kernel_id = str(self.kernel_id)
        given = dict(kwargs.get("env") or {})
        # A project's own kernelspec (kernels/specs.py) names its project in its env.
        named = {**(self.kernel_spec.env or {}), **given}
        project, record = await host.open(kernel_id, named, kwargs.get("cwd"))
        self._host, self._record = host, record
        wanted = requested_gpus(given.get(GPU_ENV) or (self.kernel_spec.env or {}).get(GPU_ENV))
        self._lease = await self._lease_gpus(host, kernel_id, project.id, record, wanted)
        try:
            return await self._prepare(host, record, project, given, kwargs)
        except BaseException:
            await self._release_gpus("the kernel did not start")
            raise

    async def _lease_gpus(
        self, host: KernelHost, kernel_id: str, project_id: str, record: KernelRecord, wanted: int
    ) -> KernelLease | None:
        if not wanted:
            return None
        if host.gpus is None:
            msg = (
                "this kernel asked for a GPU, and this server leases none: on a JupyterHub "
                "the GPUs of a server come from the hub's spawner (a profile with GPUs)"
            )
            raise GpuUnavailable(msg, wanted=wanted, free=0, total=0)
        # A restart gets the lease it already holds back; a first start may wait on nothing:
        # no GPU free is a clear error at once (the caller retries when one is).
        return await host.gpus.acquire(kernel_id, project_id, record.user, wanted)

    async def _release_gpus(self, reason: str) -> None:
        host = self._host
        if host is not None and host.gpus is not None and self._lease is not None:
            await host.gpus.release(str(self.kernel_id), reason)

    async def _prepare(
        self,
        host: KernelHost,
        record: KernelRecord,
        project: Any,
        given: dict[str, str],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        km = self.parent
        assert km is not None  # a provisioner is always made by its kernel manager
        if host.launcher is not None and host.launcher.usable:
            # IPC sockets in the kernel's own folder (see the module docstring). Paths stay
            # the same across restarts, so open clients reconnect to the same places.
            km.transport = "ipc"
            km.ip = str(record.folder / "k")
            km.cache_ports = False
            km.connection_file = str(record.folder / "connection.json")
        python, extra = kernel_python(project)
        env = {**project.env, **extra, PROJECT_ENV: project.id}
        env.update({k: v for k, v in given.items() if k.startswith("KERNEL_") or k in _KEPT})
        env.update(self.kernel_spec.env or {})
        if self._lease is not None:
            # By UUID: indexes renumber inside a process that sees only some devices.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self._lease.device_ids)
        elif host.gpus is not None and host.gpus.devices:
            # This server leases its GPUs: a kernel without a lease uses none of them (it
            # could otherwise reach them where the sandbox is off and /dev is the host's).
            env["CUDA_VISIBLE_DEVICES"] = ""
        kwargs["cwd"] = str(project.workspace)
        kwargs["env"] = env
        launched = await super().pre_launch(**kwargs)
        cmd = list(launched["cmd"])
        if cmd and Path(cmd[0]).name.startswith("python"):
            cmd[0] = python
        launched["cmd"] = cmd
        # KernelProvisionerBase starts from os.environ when it finalizes: start over from the
        # clean base, keeping what was set above.
        launched["env"] = base_environment(env)
        return launched

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        host, record = self._host, self._record
        assert host is not None and record is not None
        cwd = Path(kwargs["cwd"])
        env = dict(kwargs["env"])
        try:
            await self._start_process(host, record, cmd, cwd, env)
        except BaseException:
            await self._release_gpus("the kernel did not start")
            raise
        assert self.process is not None  # _start_process set it or raised
        self.pid = self.process.pid
        self.pgid = self.pid  # the leader of its own session
        self.cwd = str(cwd)
        if self._lease is not None and host.gpus is not None:
            host.gpus.watch(str(self.kernel_id), self._process_alive, self._stop_kernel)
        return self.connection_info

    def _process_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def _stop_kernel(self) -> None:
        """Shut this kernel down the way Lab's shutdown does (its GPU lease is ending)."""
        km = self.parent
        multi = getattr(km, "parent", None)
        kernel_id = str(self.kernel_id)
        if multi is not None and kernel_id in multi:
            result = multi.shutdown_kernel(kernel_id)
        else:
            result = km.shutdown_kernel() if km is not None else None
        if inspect.isawaitable(result):
            await result

    async def _start_process(
        self, host: KernelHost, record: KernelRecord, cmd: list[str], cwd: Path, env: dict[str, str]
    ) -> None:
        if host.launcher is None:
            # No launcher (a server built without one): the clean environment, no sandbox.
            self.process = subprocess.Popen(  # noqa: S603 - argv from the kernelspec
                cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        else:
            # The leased GPUs' device nodes (and the driver's control nodes) are bound in.
            devices = existing_nodes(self._lease.devices) if self._lease is not None else ()
            spec = LaunchSpec(
                argv=cmd,
                cwd=cwd,
                env=env,
                limits=KERNEL_LIMITS,
                writable=(cwd, record.folder),
                devices=devices,
            )
            prepared = host.launcher.prepare(spec)
            try:
                self.process = subprocess.Popen(  # noqa: S603 - bubblewrap's argv
                    prepared.argv,
                    cwd=prepared.cwd,
                    env=prepared.env,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    preexec_fn=prepared.preexec,  # noqa: PLW1509 - rlimits and the cgroup
                )
            except BaseException:
                prepared.release()
                raise
            self._prepared = prepared
            if prepared.report.missing:
                self.log.warning(
                    "ecode kernel of project %s: %s", record.project_id, prepared.report.summary()
                )

    async def shutdown_requested(self, restart: bool = False) -> None:
        self._stopping()
        await super().shutdown_requested(restart=restart)

    async def terminate(self, restart: bool = False) -> None:
        self._stopping()
        await super().terminate(restart=restart)

    async def kill(self, restart: bool = False) -> None:
        self._stopping()
        await super().kill(restart=restart)

    def _stopping(self) -> None:
        # A stop or restart on purpose: the GPU lease's crash watch leaves the kernel be.
        host = self._host
        if host is not None and host.gpus is not None:
            host.gpus.stopping(str(self.kernel_id))

    async def cleanup(self, restart: bool = False) -> None:
        if not restart:
            # Shutdown, culling, a deleted project: the devices are free again (a restart
            # keeps them for the same kernel).
            await self._release_gpus("kernel shut down")
        await super().cleanup(restart=restart)
        prepared, self._prepared = self._prepared, None
        if prepared is not None:
            # The cgroup can be removed once its last process has gone; that may lag the
            # kernel's exit by a few milliseconds.
            for _ in range(_RELEASE_TRIES):
                if prepared.release():
                    break
                await asyncio.sleep(_RELEASE_WAIT_S)
        if not restart and self._host is not None:
            self._host.forget(str(self.kernel_id))

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        if self._record is not None:
            info["ecode_project"] = self._record.project_id
        if self._lease is not None:
            info["ecode_gpus"] = self._lease.device_ids
        return info
