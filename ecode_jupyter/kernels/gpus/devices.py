"""The GPUs of this host: from ``c.EcodeApp.gpu_devices`` or found with ``nvidia-smi -L``.

``nvidia-smi -L`` prints one line per GPU and, indented under it, one per MIG instance::

    GPU 0: NVIDIA H200 (UUID: GPU-6f0c…)
    GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2e…)
      MIG 3g.20gb     Device  0: (UUID: MIG-9a1c…)
      MIG 3g.20gb     Device  1: (UUID: MIG-77d0…)

A GPU in MIG mode cannot run CUDA work as a whole, so its instances are leased, not the GPU.
Every device is named to CUDA by its UUID (``CUDA_VISIBLE_DEVICES=GPU-…`` or ``MIG-…``):
indexes renumber inside a process that sees fewer devices, UUIDs do not.

Device nodes: a GPU's own ``/dev/nvidia{N}`` (N its index, which is the driver's minor
number on ordinary hosts; config can name other nodes), and the shared control nodes
(``nvidiactl``, ``nvidia-uvm``…) that every CUDA process opens. A MIG instance gets its parent
GPU's node; the ``/dev/nvidia-caps`` nodes that select an instance under the driver's
``/dev`` capability mode are not found by themselves (name them in config).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...exceptions import InvalidInput

log = logging.getLogger(__name__)

# Opened by every CUDA process whatever device it uses: bound when they exist.
CONTROL_NODES = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
)
# The price of a device whose model gpu_prices does not name (c.EcodeApp.gpu_prices).
DEFAULT_PRICE_KEY = "default"
_DISCOVERY_TIMEOUT_S = 15

_GPU_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[^)\s]+)\)\s*$")
_MIG_LINE = re.compile(
    r"^\s+MIG (?P<profile>\S+)\s+Device\s+(?P<index>\d+): \(UUID: (?P<uuid>MIG-[^)\s]+)\)\s*$"
)


@dataclass(frozen=True)
class GpuDevice:
    """One leasable device: a whole GPU or a MIG instance."""

    id: str  # what CUDA_VISIBLE_DEVICES gets: a UUID, or an index from config
    name: str  # the model, e.g. "NVIDIA H200" or "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    nodes: tuple[str, ...]  # its own device nodes (the control nodes are added at launch)
    model: str = ""  # the GPU model a MIG instance belongs to ("" for a whole GPU)

    def price_keys(self) -> tuple[str, ...]:
        """Where its price is looked up in gpu_prices, most specific first."""
        keys = [self.name]
        if self.model and self.model != self.name:
            keys.append(self.model)
        return (*keys, DEFAULT_PRICE_KEY)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


def parse_nvidia_smi(text: str) -> list[GpuDevice]:
    """The devices in ``nvidia-smi -L`` output (see the module docstring)."""
    gpus: list[tuple[GpuDevice, list[GpuDevice]]] = []
    for line in text.splitlines():
        gpu = _GPU_LINE.match(line)
        if gpu is not None:
            node = f"/dev/nvidia{int(gpu['index'])}"
            gpus.append((GpuDevice(gpu["uuid"], gpu["name"].strip(), (node,)), []))
            continue
        mig = _MIG_LINE.match(line)
        if mig is not None and gpus:
            parent = gpus[-1][0]
            name = f"{parent.name} MIG {mig['profile']}"
            gpus[-1][1].append(GpuDevice(mig["uuid"], name, parent.nodes, model=parent.name))
        elif line.strip():
            log.debug("nvidia-smi -L: line not understood: %r", line)
    devices: list[GpuDevice] = []
    for gpu_device, instances in gpus:
        devices.extend(instances or [gpu_device])
    return devices


def discover(command: str = "nvidia-smi") -> list[GpuDevice]:
    """The devices ``nvidia-smi -L`` lists; [] where it is missing or fails (logged)."""
    path = shutil.which(command)
    if path is None:
        log.info("no GPUs: %s is not on PATH", command)
        return []
    try:
        done = subprocess.run(  # noqa: S603 - a fixed argv, the tool found on PATH
            [path, "-L"],
            capture_output=True,
            text=True,
            timeout=_DISCOVERY_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("no GPUs: %s -L failed: %s", command, exc)
        return []
    if done.returncode != 0:
        # No driver loaded, or no devices: nvidia-smi says so on stderr or stdout.
        why = (done.stderr or done.stdout).strip().splitlines()[:1]
        log.warning("no GPUs: %s -L exited %d %s", command, done.returncode, why)
        return []
    return parse_nvidia_smi(done.stdout)


def from_config(entries: Iterable[Any]) -> list[GpuDevice]:
    """Devices named in ``c.EcodeApp.gpu_devices``: ids (a UUID or an index) or dicts
    ``{"id", "name"?, "nodes"?}``."""
    devices: list[GpuDevice] = []
    for entry in entries:
        raw: Mapping[str, Any] = entry if isinstance(entry, Mapping) else {"id": entry}
        unknown = set(raw) - {"id", "name", "nodes", "model"}
        if unknown:
            msg = f"gpu_devices: unknown fields {', '.join(sorted(unknown))} in {dict(raw)!r}"
            raise InvalidInput(msg)
        device_id = str(raw.get("id", "")).strip()
        if not device_id or len(device_id) > 128 or "," in device_id:
            msg = f"gpu_devices: each device needs an id (a UUID or an index), got {raw!r}"
            raise InvalidInput(msg)
        nodes = raw.get("nodes")
        if nodes is None:
            # An index is the driver's minor number on ordinary hosts; a UUID names no node.
            nodes = [f"/dev/nvidia{device_id}"] if device_id.isdigit() else []
        if isinstance(nodes, str) or not all(isinstance(n, str) for n in nodes):
            msg = f"gpu_devices: nodes of {device_id} must be a list of paths"
            raise InvalidInput(msg)
        if any(not Path(n).is_absolute() for n in nodes):
            msg = f"gpu_devices: nodes of {device_id} must be absolute paths"
            raise InvalidInput(msg)
        name = str(raw.get("name") or "gpu")
        devices.append(GpuDevice(device_id, name, tuple(nodes), str(raw.get("model") or "")))
    ids = [d.id for d in devices]
    if len(set(ids)) != len(ids):
        msg = "gpu_devices: the same device id is listed twice"
        raise InvalidInput(msg)
    return devices


def existing_nodes(devices: Iterable[GpuDevice]) -> tuple[Path, ...]:
    """The nodes a kernel holding ``devices`` gets: theirs and the control nodes, where they
    exist on this host (bubblewrap refuses to bind a missing path)."""
    wanted: list[str] = []
    for device in devices:
        wanted.extend(device.nodes)
    wanted.extend(CONTROL_NODES)
    seen: dict[str, None] = {}
    for node in wanted:
        seen.setdefault(node, None)
    return tuple(Path(node) for node in seen if Path(node).exists())
