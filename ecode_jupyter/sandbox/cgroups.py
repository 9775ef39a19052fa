"""A cgroup per launch: memory, CPU and process-count limits on cgroup v1 or v2.

Each launch gets a cgroup of its own in an ``ecode`` folder inside the server's own cgroup
(one per controller on v1, one for all on v2), so whatever limits the server lives under still
apply above it. The process joins between fork and exec (writing ``0`` to ``cgroup.procs``
moves the writer), so everything it starts is inside from its first instruction. The folder is
removed once the process has exited; folders a crashed server left behind are removed by the
next server that starts.

Only what the host offers is used: a controller that is not mounted, or a cgroup the server
may not write, is reported as missing with its reason, never silently skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
_counter = itertools.count(1)


@dataclass(frozen=True)
class CgroupLimits:
    memory_bytes: int | None = None
    pids: int | None = None
    cpus: float | None = None

    def wanted(self) -> dict[str, str]:
        """Controller → what is asked of it, for the report."""
        asked = {}
        if self.memory_bytes is not None:
            asked["memory"] = f"memory {self.memory_bytes // (1024 * 1024)} MiB"
        if self.pids is not None:
            asked["pids"] = f"pids {self.pids}"
        if self.cpus is not None:
            asked["cpu"] = f"cpu {self.cpus:g} cores"
        return asked


@dataclass(frozen=True)
class _Parent:
    """The ``ecode`` folder of one hierarchy and the controllers it carries."""

    path: Path
    version: int
    controllers: tuple[str, ...]


@dataclass
class ProcessCgroup:
    """The cgroup folder(s) of one launch. ``join`` runs in the child before exec."""

    folders: list[Path] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def join(self) -> None:
        # Between fork and exec: plain system calls only, no Python buffering or locks.
        for folder in self.folders:
            fd = os.open(os.path.join(folder, "cgroup.procs"), os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def remove(self) -> bool:
        """Remove the folders; False while a process in them is still exiting."""
        left = []
        for folder in self.folders:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                left.append(folder)
        self.folders = left
        return not left


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """(mount root, mount point, fs type, super options) of each mount."""
    mounts = []
    with open("/proc/self/mountinfo") as lines:
        for line in lines:
            before, _, after = line.partition(" - ")
            fields = before.split()
            fstype, _source, superopts = (after.split() + ["", "", ""])[:3]
            mounts.append((fields[3], fields[4], fstype, superopts))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for v2) → this process's cgroup path in that hierarchy."""
    own: dict[str, str] = {}
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _hid, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                own[name] = path
    return own


def _inside(mount_point: str, mount_root: str, path: str) -> Path:
    rel = os.path.relpath(path, mount_root) if mount_root != "/" else path.lstrip("/")
    return Path(mount_point) / ("" if rel == "." else rel)


def _write(path: Path, value: str) -> None:
    with open(path, "w") as out:
        out.write(value)


class CgroupHost:
    """Where this server makes its launches' cgroups; found once when the launcher starts."""

    def __init__(self, parents: list[_Parent], problems: dict[str, str]) -> None:
        self.parents = parents
        # Controller → why it cannot be used here.
        self.problems = problems

    @classmethod
    def detect(cls, name: str = "ecode") -> CgroupHost:
        try:
            mounts = _mountinfo()
            own = _own_cgroups()
        except OSError as exc:
            reason = f"cannot read /proc: {exc.strerror or exc}"
            return cls([], dict.fromkeys(CONTROLLERS, reason))
        parents: list[_Parent] = []
        problems: dict[str, str] = {}
        found: set[str] = set()
        for root, point, fstype, opts in mounts:
            if fstype != "cgroup":
                continue
            for controller in CONTROLLERS:
                # A hierarchy may be mounted twice: the first mount is the one used.
                if controller in opts.split(",") and controller in own and controller not in found:
                    parent = _inside(point, root, own[controller]) / name
                    problem = _make_parent(parent, ())
                    found.add(controller)
                    if problem:
                        problems[controller] = problem
                    else:
                        parents.append(_Parent(parent, 1, (controller,)))
        v2 = [m for m in mounts if m[2] == "cgroup2"]
        rest = [c for c in CONTROLLERS if c not in found]
        if rest and v2 and "" in own:
            root, point, _fstype, _opts = v2[0]
            base = _inside(point, root, own[""])
            try:
                offered = (base / "cgroup.controllers").read_text().split()
            except OSError:
                offered = []
            usable = tuple(c for c in rest if c in offered)
            for controller in rest:
                if controller not in usable:
                    problems[controller] = f"no {controller} controller in the server's cgroup"
            if usable:
                problem = _make_parent(base / name, usable, enable_in=base)
                if problem:
                    problems.update(dict.fromkeys(usable, problem))
                else:
                    parents.append(_Parent(base / name, 2, usable))
            found.update(rest)
        for controller in CONTROLLERS:
            if controller not in found:
                problems[controller] = f"no {controller} cgroup controller is mounted"
        host = cls(parents, problems)
        host.sweep()
        return host

    def sweep(self) -> None:
        """Remove empty per-launch folders of servers that are gone (a crash, a kill -9)."""
        for parent in self.parents:
            with contextlib.suppress(OSError):
                for child in parent.path.iterdir():
                    pid = child.name.split("-", 1)[0]
                    if child.is_dir() and pid.isdigit() and not _alive(int(pid)):
                        with contextlib.suppress(OSError):
                            child.rmdir()

    def create(self, limits: CgroupLimits) -> ProcessCgroup:
        """A cgroup with ``limits`` for one launch (whatever of it the host allows)."""
        cgroup = ProcessCgroup()
        wanted = limits.wanted()
        for controller, what in wanted.items():
            if controller in self.problems:
                cgroup.missing.append(f"{what} ({self.problems[controller]})")
        leaf = f"{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"
        for parent in self.parents:
            asked = [c for c in parent.controllers if c in wanted]
            if not asked:
                continue
            folder = parent.path / leaf
            try:
                folder.mkdir()
            except OSError as exc:
                reason = f"cannot create a cgroup: {exc.strerror or exc}"
                cgroup.missing.extend(f"{wanted[c]} ({reason})" for c in asked)
                continue
            cgroup.folders.append(folder)
            for controller in asked:
                try:
                    _limit(folder, parent.version, controller, limits)
                except OSError as exc:
                    reason = f"cgroup v{parent.version} refused it: {exc.strerror or exc}"
                    cgroup.missing.append(f"{wanted[controller]} ({reason})")
                else:
                    cgroup.applied.append(f"{wanted[controller]} (cgroup v{parent.version})")
        return cgroup


def _make_parent(parent: Path, enable: tuple[str, ...], enable_in: Path | None = None) -> str:
    """Create the ``ecode`` folder (and on v2 enable ``enable`` for its children)."""
    try:
        if enable_in is not None and enable:
            # v2: a controller reaches a child only when every ancestor enables it; this
            # fails where the server's own cgroup holds processes ("no internal processes").
            _write(enable_in / "cgroup.subtree_control", " ".join(f"+{c}" for c in enable))
        parent.mkdir(exist_ok=True)
        if enable:
            _write(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in enable))
    except OSError as exc:
        return f"cannot create {parent}: {exc.strerror or exc}"
    return ""


def _limit(folder: Path, version: int, controller: str, limits: CgroupLimits) -> None:
    if controller == "memory" and limits.memory_bytes is not None:
        value = str(limits.memory_bytes)
        if version == 1:
            _write(folder / "memory.limit_in_bytes", value)
            # With swap accounting, memory+swap gets the same cap: no escaping into swap.
            swap = folder / "memory.memsw.limit_in_bytes"
            if swap.exists():
                _write(swap, value)
        else:
            _write(folder / "memory.max", value)
            swap = folder / "memory.swap.max"
            if swap.exists():
                _write(swap, "0")
    elif controller == "pids" and limits.pids is not None:
        _write(folder / "pids.max", str(limits.pids))
    elif controller == "cpu" and limits.cpus is not None:
        quota = max(1000, int(limits.cpus * CPU_PERIOD_US))
        if version == 1:
            _write(folder / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(folder / "cpu.cfs_quota_us", str(quota))
        else:
            _write(folder / "cpu.max", f"{quota} {CPU_PERIOD_US}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
