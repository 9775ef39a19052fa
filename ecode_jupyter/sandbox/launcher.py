"""SandboxLauncher: every process a project runs starts here.

``prepare(spec)`` turns a :class:`~ecode_jupyter.workspace.commands.LaunchSpec` into what to
execute — the bubblewrap command line, the environment, a ``preexec`` that sets rlimits and
joins the launch's cgroup, and the :class:`SandboxReport` — without starting anything, so a
synchronous caller (a kernel provisioner's ``Popen``) uses the same confinement as the async
``start``/``launch`` that ``run_command`` and the deploy supervisor call.

The process tree: bwrap (the process group leader ``run_command`` signals) → bwrap's init,
PID 1 of a new PID namespace → the command. Killing the leader kills the init
(``--die-with-parent``), and the end of a PID namespace's init ends everything in it, so
nothing a command started survives it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..exceptions import SandboxUnavailable
from ..workspace.commands import Launched, LaunchSpec, ResourceLimits
from .cgroups import CgroupHost, CgroupLimits, ProcessCgroup
from .mounts import EtcSnapshot, env_paths, hidden_args, runtime_paths, system_args
from .policy import SandboxPolicy, SandboxReport

log = logging.getLogger(__name__)

# The uid a root server's processes get inside: anything but 0 (it maps to the host's root,
# with no capabilities, but tools that check "am I root" should say no).
UNPRIVILEGED_UID = 1000
# A cgroup still emptying after its process exited is retried this often, this many times.
_REMOVE_RETRY_S = 0.05
_REMOVE_ATTEMPTS = 40


@dataclass(frozen=True)
class BwrapSupport:
    """What bubblewrap can do on this host, found by running it once at start."""

    path: str = ""
    version: str = ""
    user_namespace: bool = False
    disable_userns: bool = False
    problem: str = ""  # why it cannot be used at all; "" when it can

    @classmethod
    def probe(cls, name: str, *, unshare_net: bool) -> BwrapSupport:
        """Run bubblewrap the way launches will (once per process and setting: the host does
        not change while the server runs, and tests start many servers)."""
        key = (name, unshare_net)
        if key not in _PROBES:
            _PROBES[key] = cls._probe(name, unshare_net)
        return _PROBES[key]

    @classmethod
    def _probe(cls, name: str, unshare_net: bool) -> BwrapSupport:
        path = shutil.which(name)
        if path is None:
            return cls(problem=f"bubblewrap ({name}) is not installed")
        try:
            version = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            return cls(path=path, problem=f"bubblewrap does not run: {exc}")
        base = ["--unshare-pid", "--die-with-parent", "--new-session", *system_args()]
        base += ["--proc", "/proc", "--dev", "/dev"]
        if unshare_net:
            base.append("--unshare-net")
        problem = ""
        # Strongest first: a user namespace that cannot make further ones, then one that can,
        # then none (only a root server or a setuid bwrap gets that far).
        for userns, disable in ((True, True), (True, False), (False, False)):
            flags = (["--unshare-user"] if userns else []) + (
                ["--disable-userns"] if disable else []
            )
            try:
                done = subprocess.run(
                    [path, *flags, *base, "true"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                problem = str(exc)
                continue
            if done.returncode == 0:
                return cls(path, version, userns, disable)
            problem = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return cls(path=path, version=version, problem=f"bubblewrap cannot start: {problem}")


_PROBES: dict[tuple[str, bool], BwrapSupport] = {}


@dataclass
class PreparedLaunch:
    """Everything needed to start one confined process, for any way of starting it."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    report: SandboxReport
    limits: ResourceLimits
    cgroup: ProcessCgroup | None = None
    _released: bool = field(default=False, repr=False)

    def preexec(self) -> None:
        """Runs in the child between fork and exec: rlimits, no core files, the cgroup."""
        self.limits.apply()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.cgroup is not None:
            self.cgroup.join()

    def release(self) -> bool:
        """Remove the launch's cgroup once its processes are gone; False while they exit."""
        if self.cgroup is None or self._released:
            return True
        self._released = self.cgroup.remove()
        return self._released


def _smaller(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


class SandboxLauncher:
    """The one launcher of project code (see the module docstring). Thread-compatible;
    one per server."""

    def __init__(self, policy: SandboxPolicy | None = None) -> None:
        self.policy = policy or SandboxPolicy()
        off = self.policy.mode == "off"
        self.bwrap = (
            BwrapSupport(problem="the sandbox is off (c.EcodeApp.sandbox)")
            if off
            else BwrapSupport.probe(self.policy.bwrap, unshare_net=self.policy.network != "on")
        )
        self.cgroups = None if off else CgroupHost.detect()
        self.runtimes = runtime_paths(self.policy.read_only)
        self._system = system_args()
        self._etc = EtcSnapshot.shared() if self.usable else None
        self._waiters: set[asyncio.Future[int]] = set()
        if os.geteuid() == 0:
            self.uid = self.gid = UNPRIVILEGED_UID
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()

    @property
    def usable(self) -> bool:
        """Whether project processes get namespaces (bubblewrap works here)."""
        return not self.bwrap.problem

    def host_report(self) -> SandboxReport:
        """What a command launched now would get (host-wide; for logs and status)."""
        probe = Path(os.sep)
        return self._report(probe, host_network=False, cgroup=None, describe_cgroups=True)

    # -- preparing ------------------------------------------------------------------------

    def prepare(self, spec: LaunchSpec) -> PreparedLaunch:
        """What to execute for ``spec``. The caller starts it with ``preexec`` as the
        child's pre-exec hook, stdin closed, its own session, and calls ``release()`` after
        the process has exited. Raises :class:`SandboxUnavailable` when the sandbox is
        required and cannot be had."""
        policy = self.policy
        if policy.mode == "required" and not self.usable:
            msg = (
                f"project code was not run: the sandbox is required (c.EcodeApp.sandbox) "
                f"and {self.bwrap.problem}"
            )
            raise SandboxUnavailable(msg)
        limits = replace(
            spec.limits,
            file_size_bytes=_smaller(spec.limits.file_size_bytes, policy.file_size_bytes),
            open_files=_smaller(spec.limits.open_files, policy.open_files),
        )
        cgroup = None
        if self.cgroups is not None:
            wanted = CgroupLimits(policy.memory_bytes, policy.pids, policy.cpus)
            # cgroupfs mkdir and writes are in-kernel and take microseconds: not worth a thread.
            cgroup = self.cgroups.create(wanted)
        env = dict(spec.env)
        writable = spec.writable or (spec.cwd,)
        argv = self._bwrap_argv(spec, writable, env) if self.usable else list(spec.argv)
        report = self._report(writable[0], host_network=spec.host_network, cgroup=cgroup)
        if spec.devices:
            report = report.with_devices(spec.devices, isolated=self.usable)
        log.debug("launch %s: %s", spec.argv[0], report.summary())
        return PreparedLaunch(argv, env, str(spec.cwd), report, limits, cgroup)

    def _bwrap_argv(
        self, spec: LaunchSpec, writable: tuple[Path, ...], env: dict[str, str]
    ) -> list[str]:
        policy = self.policy
        bw = self.bwrap
        # A home of its own inside the workspace: tools' caches (pip, npm) persist between
        # commands of this project and of no other, and the server's home stays out of reach.
        home = writable[0] / ".ecode" / "home"
        home.mkdir(parents=True, exist_ok=True)
        env.update({"HOME": str(home), "TMPDIR": "/tmp"})
        args = [bw.path]
        if bw.user_namespace:
            args += ["--unshare-user", "--uid", str(self.uid), "--gid", str(self.gid)]
            if bw.disable_userns:
                args.append("--disable-userns")
        args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
        args += ["--die-with-parent", "--new-session", "--hostname", "ecode", "--cap-drop", "ALL"]
        if policy.network == "loopback" and not spec.host_network:
            args.append("--unshare-net")
        args += self._system
        assert self._etc is not None
        args += ["--ro-bind", str(self._etc.path()), "/etc"]
        args += [
            "--size",
            str(policy.tmp_bytes),
            "--tmpfs",
            "/tmp",
            "--symlink",
            "/tmp",
            "/var/tmp",
        ]
        args += ["--dev", "/dev", "--proc", "/proc"]
        # A minimal /dev has no GPU: only the devices this launch leased are bound into it
        # (device access is by node, so an unbound GPU cannot be opened at all).
        for node in spec.devices:
            args += ["--dev-bind", str(node), str(node)]
        # After /tmp's tmpfs, so runtimes and workspaces that live under /tmp show through.
        read_only = (*self.runtimes, *env_paths(env))
        for path in read_only:
            args += ["--ro-bind", str(path), str(path)]
        for path in writable:
            args += ["--bind", str(path), str(path)]
        # A project's own server has the workspace as its root folder, one of the server's
        # paths: the workspace itself is never covered, only what lies in it.
        hidden = tuple(path for path in policy.hidden if path not in writable)
        args += hidden_args(hidden, (*read_only, *writable, Path("/usr")))
        # The root itself is a tmpfs bwrap made: read-only too, so nothing can be written
        # outside the project, /tmp and /dev/shm, even where it would vanish at exit.
        args += ["--remount-ro", "/", "--chdir", str(spec.cwd), "--", *spec.argv]
        return args

    def _report(
        self,
        workspace: Path,
        *,
        host_network: bool,
        cgroup: ProcessCgroup | None,
        describe_cgroups: bool = False,
    ) -> SandboxReport:
        policy = self.policy
        bw = self.bwrap
        applied: list[str] = []
        missing: list[str] = []
        if self.usable:
            mechanism = f"sandbox ({bw.version or 'bubblewrap'})"
            applied.append("own mount namespace (system read-only, only the project writable)")
            applied.append("own PID namespace")
            if bw.user_namespace:
                applied.append(f"user namespace (uid {self.uid}, no capabilities)")
            else:
                missing.append("user namespace (bubblewrap could not make one)")
            applied.append("no new privileges")
            if policy.network == "loopback" and not host_network:
                applied.append("network: private loopback only")
            elif policy.network == "loopback":
                missing.append(
                    "loopback-only network (an app must answer the server's proxy on the "
                    "host's loopback)"
                )
            else:
                applied.append("network: the host's")
        elif policy.mode == "off":
            mechanism = "no sandbox"
            missing.append("namespaces (c.EcodeApp.sandbox is off: the server's rights)")
        else:
            mechanism = "no sandbox"
            missing.append(f"namespaces ({bw.problem}; the process can read what the server can)")
        applied.append("rlimits (core 0, file size, open files, CPU time)")
        if cgroup is not None:
            applied.extend(cgroup.applied)
            missing.extend(cgroup.missing)
        elif describe_cgroups and self.cgroups is not None:
            wanted = CgroupLimits(policy.memory_bytes, policy.pids, policy.cpus).wanted()
            for controller, what in wanted.items():
                problem = self.cgroups.problems.get(controller)
                (missing if problem else applied).append(f"{what} ({problem})" if problem else what)
        return SandboxReport(mechanism, tuple(applied), tuple(missing))

    # -- starting -------------------------------------------------------------------------

    async def start(self, spec: LaunchSpec) -> Launched:
        prepared = self.prepare(spec)
        try:
            proc = await asyncio.create_subprocess_exec(
                *prepared.argv,
                cwd=prepared.cwd,
                env=prepared.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=prepared.preexec,
            )
        except BaseException:
            prepared.release()
            raise
        self._release_after_exit(proc, prepared)
        report = prepared.report
        return Launched(proc, sandbox=report.summary(), notes=report.notes())

    async def launch(self, spec: LaunchSpec) -> asyncio.subprocess.Process:
        return (await self.start(spec)).process

    def _release_after_exit(
        self, proc: asyncio.subprocess.Process, prepared: PreparedLaunch
    ) -> None:
        if prepared.cgroup is None:
            return
        waiter = asyncio.ensure_future(proc.wait())
        self._waiters.add(waiter)
        loop = asyncio.get_running_loop()

        def retry(attempts: int) -> None:
            if prepared.release():
                return
            if attempts <= 0:
                log.warning(
                    "a cgroup of an exited command is still busy; the next start removes it"
                )
                return
            loop.call_later(_REMOVE_RETRY_S, retry, attempts - 1)

        def exited(done: asyncio.Future[int]) -> None:
            self._waiters.discard(done)
            retry(_REMOVE_ATTEMPTS)

        waiter.add_done_callback(exited)
