"""kill -9 of a server whose kernel holds a GPU, then a restart on the same data: the kernel
died with its server, and the new server frees the GPU and lets the held credits go.

A real server runs as a subprocess (``ecode_jupyter.testing.server_process``), its
``nvidia-smi`` a fake on PATH, with the sandbox (bubblewrap) and without it: either way the
kernel must not outlive its server, or the freed GPU would still be in use.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.testing.server_process import EcodeServerProcess

from .test_gpus import H200, fake_nvidia_smi


def _until(check: Callable[[], Any], what: str, limit_s: float = 90.0) -> Any:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _kernel_processes(project_id: str) -> list[int]:
    """Live processes of the project's kernels (by the project in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            b"ipykernel_launcher" in cmdline
            and f"KERNEL_ECODE_PROJECT={project_id}".encode() in environ
            and state != "Z"
        ):
            found.append(int(entry.name))
    return found


@pytest.fixture
def servers(tmp_path: Path, ecode_database_url: str) -> Iterator[list[EcodeServerProcess]]:
    started: list[EcodeServerProcess] = []
    yield started
    for server in started:
        server.stop()


SANDBOXES = ["auto", "off"]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_killed_servers_gpu_lease_ends_at_the_next_start(
    tmp_path: Path,
    ecode_database_url: str,
    servers: list[EcodeServerProcess],
    sandbox: str,
) -> None:
    if sandbox == "auto" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (.ci/run installs it)")
    folder = fake_nvidia_smi(tmp_path / "bin", f"GPU 0: NVIDIA H200 (UUID: {H200})\n")
    env = {"PATH": f"{folder}:{os.environ['PATH']}"}
    args = [f"--EcodeApp.sandbox={sandbox}", "--EcodeApp.gpu_billing_slice_s=30"]

    def start() -> EcodeServerProcess:
        server = EcodeServerProcess(
            tmp_path / "server", database_url=ecode_database_url, args=args, env=env
        )
        servers.append(server)
        return server

    first = start()
    status, project = first.api("POST", "projects", {"name": "trainer"})
    assert status == 201, project
    pid = project["id"]
    status, _, raw = first.request(
        "POST",
        "/api/kernels",
        {"name": "ecode-python-gpu", "path": f"ecode-projects/{pid}"},
    )
    assert status == 201, raw
    kernels = _until(lambda: _kernel_processes(pid), "the GPU kernel's process")
    held = first.api("GET", "gpus")[1]
    assert [lease["project_id"] for lease in held["leases"]] == [pid]
    assert first.api("GET", "billing/account")[1]["reserved_micros"] > 0

    first.kill()
    # The kernel goes with its server (bubblewrap's --die-with-parent, or the parent-death
    # signal without a sandbox), so nothing uses the GPU the next start frees.
    _until(lambda: not set(kernels) & set(_kernel_processes(pid)), "the kernel to die")

    second = start()
    gpus = second.api("GET", "gpus")[1]
    assert [(d["id"], d["free"]) for d in gpus["devices"]] == [(H200, True)]
    assert gpus["leases"] == []
    assert [(e["project_id"], e["end_reason"]) for e in gpus["ended"]] == [
        (pid, "server restarted")
    ]
    account = second.api("GET", "billing/account")[1]
    assert account["reserved_micros"] == 0
