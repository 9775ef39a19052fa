"""GPU leases of real project kernels: a server whose ``nvidia-smi`` (a fake on PATH) lists
one H200, Lab's sessions API and kernel WebSocket, the ecode-python-gpu kernelspec,
bubblewrap.

What a user would notice: a GPU notebook sees its device (``CUDA_VISIBLE_DEVICES`` and the
device node) and a plain one does not; a second GPU notebook is told clearly that none is
free while the first holds it; shutting a kernel down or killing its process frees the GPU;
the ledger charges GPU time; running out of credits stops the kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.kernels.gpus.leases import SCHEMA_ID
from ecode_jupyter.pytest_plugin import ApiCall

from .conftest import JupyterCall, WsExecute
from .test_gpus import H200, fake_nvidia_smi

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)

# 3600 credits an hour is one a second: enough to see charges quickly, in whole numbers.
PRICE = {"NVIDIA H200": 3600}
WAIT_S = 60.0


@pytest.fixture
def gpu_node(tmp_path: Path) -> Path:
    # Stands in for /dev/nvidia0: a file the kernel can read only when it is bound in.
    node = tmp_path / "dev" / "nvidia0"
    node.parent.mkdir()
    node.write_text("the H200")
    return node


@pytest.fixture
def fake_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = fake_nvidia_smi(tmp_path / "bin", f"GPU 0: NVIDIA H200 (UUID: {H200})\n")
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")


@pytest.fixture
def ecode_extra_config(
    fake_gpus: None, gpu_node: Path, request: pytest.FixtureRequest
) -> dict[str, Any]:
    # The devices come from the fake nvidia-smi (gpu_devices unset).
    culling = (
        # jupyter_server's culler at its quickest: an idle kernel with no client goes.
        {"MappingKernelManager": {"cull_idle_timeout": 1, "cull_interval": 1}}
        if request.node.get_closest_marker("culled")
        else {}
    )
    return {
        **culling,
        "EcodeApp": {
            "sandbox": "required",
            "gpu_prices": PRICE,
            "gpu_billing_slice_s": 0.5,
        },
        # Nothing brings a killed kernel back, so the test sees the crash itself (with the
        # restarter on, the restarted kernel asks for its GPU again).
        "KernelManager": {"autorestart": False},
    }


async def _gpu_session(
    jupyter_api: JupyterCall,
    workspace: Path,
    root: Path,
    name: str,
    *,
    kernel: str = "ecode-python-gpu",
    user: str = "alice",
) -> tuple[int, Any]:
    path = (workspace / f"{name}.ipynb").relative_to(root).as_posix()
    return await jupyter_api(
        "POST",
        "sessions",
        {"path": path, "type": "notebook", "name": "", "kernel": {"name": kernel}},
        user=user,
    )


async def _until(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _leases(ecode_app: Any) -> Any:
    return ecode_app.ecode.extras["gpus"]


async def _serve(ecode_app: Any, jp_serverapp: Any) -> None:
    # What jupyter_server runs once its loop starts (pytest-jupyter never starts that loop):
    # here, the metering and crash watch of GPU leases.
    await ecode_app._start_jupyter_server_extension(jp_serverapp)


PROBE = (
    "import json, os\n"
    "print(json.dumps({'cuda': os.environ.get('CUDA_VISIBLE_DEVICES'),\n"
    "  'node': os.path.exists(NODE)}))\n"
)


async def test_a_gpu_notebook_holds_the_gpu_alone_until_it_shuts_down(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    ecode_api: ApiCall,
    ecode_app: Any,
    jp_root_dir: Path,
    jp_serverapp: Any,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    pid, workspace = await make_project("training")
    status, first = await _gpu_session(jupyter_api, workspace, jp_root_dir, "train")
    assert status == 201, first
    kernel_id = first["kernel"]["id"]
    out = await ws_execute(kernel_id, "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])")
    assert out["stdout"].strip() == H200, out

    # A second GPU notebook, of another user's project too, is told why it gets no kernel.
    other, other_ws = await make_project("other", user="bob")
    status, refused = await _gpu_session(jupyter_api, other_ws, jp_root_dir, "more", user="bob")
    assert status == 500, refused
    assert "no GPU is free" in refused["message"], refused

    # Who holds what: alice sees her lease, bob sees the device taken and no one's lease,
    # the admin sees everything; the project's model lists it.
    mine = (await ecode_api("GET", "gpus")).body
    assert [d["id"] for d in mine["devices"]] == [H200]
    assert mine["devices"][0]["free"] is False
    assert [(lease["kernel_id"], lease["user"]) for lease in mine["leases"]] == [
        (kernel_id, "alice")
    ]
    theirs = (await ecode_api("GET", "gpus", user="bob")).body
    assert theirs["devices"][0]["free"] is False and theirs["leases"] == []
    assert len((await ecode_api("GET", "gpus", user="admin")).body["leases"]) == 1
    project = (await ecode_api("GET", f"projects/{pid}")).body
    assert [lease["device"] for lease in project["gpu_leases"]] == [H200]

    # Shutting the notebook's kernel down frees the GPU for bob at once.
    status, _ = await jupyter_api("DELETE", f"sessions/{first['id']}")
    assert status == 204
    assert kernel_id not in _leases(ecode_app).active
    status, second = await _gpu_session(jupyter_api, other_ws, jp_root_dir, "more", user="bob")
    assert status == 201, second
    assert (await ecode_api("GET", f"projects/{pid}")).body["gpu_leases"] == []
    assert [
        lease["project_id"] for lease in (await ecode_api("GET", "gpus", user="bob")).body["leases"]
    ] == [other]


async def test_only_a_gpu_kernel_sees_the_device_node(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    jp_root_dir: Path,
    gpu_node: Path,
    ecode_app: Any,
    jp_serverapp: Any,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    # This host has no /dev/nvidia0: the stand-in file is the device's node, as
    # c.EcodeApp.gpu_devices = [{"id": …, "nodes": [...]}] would make it.
    leases = _leases(ecode_app)
    leases.devices = (replace(leases.devices[0], nodes=(str(gpu_node),)),)
    _, workspace = await make_project("nodes")
    probe = f"NODE = {str(gpu_node)!r}\n" + PROBE
    status, gpu = await _gpu_session(jupyter_api, workspace, jp_root_dir, "gpu")
    assert status == 201, gpu
    seen = json.loads((await ws_execute(gpu["kernel"]["id"], probe))["stdout"])
    assert seen == {"cuda": H200, "node": True}
    status, plain = await _gpu_session(
        jupyter_api, workspace, jp_root_dir, "plain", kernel="ecode-python"
    )
    assert status == 201, plain
    seen = json.loads((await ws_execute(plain["kernel"]["id"], probe))["stdout"])
    # No lease: CUDA is told there is no device, and the sandbox's /dev has none.
    assert seen == {"cuda": "", "node": False}


async def test_a_restart_keeps_the_gpu(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    ecode_app: Any,
    jp_root_dir: Path,
    jp_serverapp: Any,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    _, workspace = await make_project("restarts")
    status, session = await _gpu_session(jupyter_api, workspace, jp_root_dir, "r")
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    leases = _leases(ecode_app)
    before = leases.active[kernel_id]
    status, _ = await jupyter_api("POST", f"kernels/{kernel_id}/restart")
    assert status == 200
    # Same lease (no gap another kernel could take the GPU in), and the new process has it.
    assert leases.active[kernel_id] is before
    out = await ws_execute(kernel_id, "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])")
    assert out["stdout"].strip() == H200, out
    await leases.check()  # the restarted process is alive: nothing ends
    assert [h["end_reason"] for h in await leases.kernel_history(kernel_id)] == [None]


@pytest.mark.culled
async def test_a_culled_kernel_releases_its_gpu(
    jupyter_api: JupyterCall,
    make_project: Any,
    ecode_app: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    _, workspace = await make_project("idle")
    status, session = await _gpu_session(jupyter_api, workspace, jp_root_dir, "idle")
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    leases = _leases(ecode_app)
    assert kernel_id in leases.active
    # Nobody uses it: the server's culler shuts it down, and the GPU goes with it.
    await _until(lambda: kernel_id not in jp_serverapp.kernel_manager, "the culler")
    await _until(lambda: kernel_id not in leases.active, "the culled kernel's lease to end")
    history = await leases.kernel_history(kernel_id)
    assert [h["end_reason"] for h in history] == ["kernel shut down"]


async def test_a_kernel_that_dies_releases_its_gpu(
    jupyter_api: JupyterCall,
    make_project: Any,
    ecode_app: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    _, workspace = await make_project("crashy")
    status, session = await _gpu_session(jupyter_api, workspace, jp_root_dir, "crash")
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    leases = _leases(ecode_app)
    assert kernel_id in leases.active
    # Kill the kernel's process (the sandbox's leader; its namespace goes with it).
    process = jp_serverapp.kernel_manager.get_kernel(kernel_id).provisioner.process
    os.kill(process.pid, signal.SIGKILL)
    await _until(lambda: kernel_id not in leases.active, "the dead kernel's lease to end")
    history = await leases.kernel_history(kernel_id)
    assert [h["end_reason"] for h in history] == ["kernel died"]
    # The GPU is free again.
    status, again = await _gpu_session(jupyter_api, workspace, jp_root_dir, "again")
    assert status == 201, again


async def test_gpu_time_is_charged_in_the_ledger(
    jupyter_api: JupyterCall,
    ws_execute: WsExecute,
    make_project: Any,
    ecode_api: ApiCall,
    ecode_app: Any,
    jp_root_dir: Path,
    jp_serverapp: Any,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    _, workspace = await make_project("metered")
    status, session = await _gpu_session(jupyter_api, workspace, jp_root_dir, "run")
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    leases = _leases(ecode_app)
    # A few slices settle while the kernel works.
    await _until(lambda: leases.active[kernel_id].slice_no >= 2, "two settled slices")
    out = await ws_execute(kernel_id, "print(sum(range(10)))")
    assert out["stdout"].strip() == "45"
    status, _ = await jupyter_api("DELETE", f"sessions/{session['id']}")
    assert status == 204
    usage = (await ecode_api("GET", "billing/usage?group=model")).body
    gpu = {row["group"]: row for row in usage["rows"]}["gpu:NVIDIA H200"]
    assert gpu["cost_micros"] > 0
    history = await leases.kernel_history(kernel_id)
    assert history[0]["billed_seconds"] > 0
    assert history[0]["cost_micros"] == gpu["cost_micros"]
    account = (await ecode_api("GET", "billing/account")).body
    assert account["reserved_micros"] == 0


async def test_running_out_of_credits_stops_the_gpu_kernel(
    jupyter_api: JupyterCall,
    make_project: Any,
    ecode_api: ApiCall,
    ecode_app: Any,
    jp_serverapp: Any,
    jp_root_dir: Path,
) -> None:
    await _serve(ecode_app, jp_serverapp)
    events: list[dict[str, Any]] = []

    async def listen(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        events.append(data)

    jp_serverapp.event_logger.add_listener(schema_id=SCHEMA_ID, listener=listen)
    billing = ecode_app.ecode.extras["billing"]
    _, workspace = await make_project("broke", user="carol")
    status, session = await _gpu_session(jupyter_api, workspace, jp_root_dir, "spend", user="carol")
    assert status == 201, session
    kernel_id = session["kernel"]["id"]
    # Carol spends what the lease does not hold on something else: its next slice cannot
    # be held ahead.
    await _drain(billing, "carol")
    await _until(lambda: kernel_id not in jp_serverapp.kernel_manager, "the kernel to stop")
    # Carol finds out why her kernel went away.
    ended = (await ecode_api("GET", "gpus", user="carol")).body["ended"]
    assert [(e["kernel_id"], e["end_reason"]) for e in ended] == [(kernel_id, "out_of_credits")]
    await _until(lambda: any(e["action"] == "released" for e in events), "the released event")
    assert [(e["action"], e["reason"]) for e in events] == [
        ("acquired", ""),
        ("ending", "out_of_credits"),
        ("released", "out_of_credits"),
    ]
    account = (await ecode_api("GET", "billing/account", user="carol")).body
    assert account["balance_micros"] >= 0 and account["reserved_micros"] == 0
    status, kernels = await jupyter_api("GET", "kernels", user="carol")
    assert kernels == []


async def _drain(billing: Any, user: str) -> None:
    """Spend every credit of ``user``'s not held by a lease (a hold settled in full), as a
    model call of the agent would."""
    account = await billing.account_summary(user)
    amount = account["balance_micros"] - account["reserved_micros"]
    held = await billing.reserve_micros(
        user=user, project_id="", what="gpu:elsewhere", amount_micros=amount, key="drain"
    )
    await billing.settle_micros(held, amount, key="drain")
