"""The warm pool: kernels started ahead for an opened project, claimed once, refilled
without a stampede, bounded, and never handed to someone who may not run the project."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tools.conftest import McpConnect

from .conftest import JupyterCall

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed (.ci/run installs it)"
)


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    return {"EcodeApp": {"sandbox": "required", "kernel_pool_size": 1, "kernel_pool_max": 2}}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a background refill (a kernel start) to be seen; fails after a long while."""
    for _ in range(600):
        if await check():
            return
        await asyncio.sleep(0.05)
    msg = f"never happened: {what}"
    raise AssertionError(msg)


async def _kernels(ecode_api: Any, pid: str, user: str = "alice") -> list[dict[str, Any]]:
    answer = await ecode_api("GET", f"projects/{pid}/kernels", user=user)
    assert answer.status == 200, answer.body
    return list(answer.body["kernels"])


async def _pooled(ecode_api: Any, pid: str) -> list[str]:
    return [k["id"] for k in await _kernels(ecode_api, pid) if k["pooled"]]


async def _warm(ecode_api: Any, pid: str) -> list[str]:
    answer = await ecode_api("POST", f"projects/{pid}/kernels/warm")
    assert answer.status == 202, answer.body

    async def ready() -> bool:
        return len(await _pooled(ecode_api, pid)) == 1

    await until(ready, "a pooled kernel")
    return await _pooled(ecode_api, pid)


async def test_a_notebook_claims_the_pooled_kernel_which_never_returns(
    jupyter_api: JupyterCall, ecode_api: Any, make_project: Any, jp_root_dir: Path
) -> None:
    pid, workspace = await make_project("pooled")
    [pooled] = await _warm(ecode_api, pid)
    path = (workspace / "n.ipynb").relative_to(jp_root_dir).as_posix()
    status, session = await jupyter_api(
        "POST", "sessions", {"path": path, "type": "notebook", "kernel": {"name": "ecode-python"}}
    )
    assert status == 201, session
    assert session["kernel"]["id"] == pooled
    # The pool refills with a new kernel; the claimed one stays the notebook's.

    async def refilled() -> bool:
        again = await _pooled(ecode_api, pid)
        return len(again) == 1 and again != [pooled]

    await until(refilled, "a refill after the claim")
    kernels = {k["id"]: k["pooled"] for k in await _kernels(ecode_api, pid)}
    assert kernels[pooled] is False and len(kernels) == 2


async def test_execute_code_claims_a_pooled_kernel(
    mcp_connect: McpConnect, ecode_api: Any, make_project: Any
) -> None:
    pid, _ = await make_project("agent")
    [pooled] = await _warm(ecode_api, pid)
    async with mcp_connect("alice") as client:
        result = await client.call_tool("execute_code", {"project": pid, "code": "print(6 * 7)"})
    assert "42" in "".join(getattr(b, "text", "") for b in result.content)
    kernels = {k["id"]: k["pooled"] for k in await _kernels(ecode_api, pid)}
    assert kernels[pooled] is False


async def test_concurrent_warms_start_one_kernel(
    jupyter_api: JupyterCall, ecode_api: Any, make_project: Any
) -> None:
    pid, _ = await make_project("stampede")
    answers = await asyncio.gather(
        *(ecode_api("POST", f"projects/{pid}/kernels/warm") for _ in range(6))
    )
    assert {a.status for a in answers} == {202}

    async def ready() -> bool:
        return len(await _pooled(ecode_api, pid)) == 1

    await until(ready, "the pooled kernel")
    # Give any extra start a chance to show up: there must be none.
    await asyncio.sleep(0.5)
    status, kernels = await jupyter_api("GET", "kernels")
    assert len(kernels) == 1, kernels


async def test_the_pool_is_bounded_oldest_project_first(
    jupyter_api: JupyterCall, ecode_api: Any, make_project: Any
) -> None:
    first, _ = await make_project("first")
    second, _ = await make_project("second")
    third, _ = await make_project("third")
    for pid in (first, second, third):
        await _warm(ecode_api, pid)
    # kernel_pool_max = 2: the first project's kernel made room for the third's.
    assert await _pooled(ecode_api, first) == []
    status, kernels = await jupyter_api("GET", "kernels")
    assert len(kernels) == 2


async def test_strangers_neither_warm_nor_claim(
    jupyter_api: JupyterCall, ecode_api: Any, make_project: Any, jp_root_dir: Path
) -> None:
    pid, workspace = await make_project("private")
    [pooled] = await _warm(ecode_api, pid)
    assert (await ecode_api("POST", f"projects/{pid}/kernels/warm", user="bob")).status == 404
    assert (await ecode_api("GET", f"projects/{pid}/kernels", user="bob")).status == 404
    path = (workspace / "n.ipynb").relative_to(jp_root_dir).as_posix()
    status, answer = await jupyter_api(
        "POST",
        "sessions",
        {"path": path, "type": "notebook", "kernel": {"name": "ecode-python"}},
        user="bob",
    )
    assert (status, answer["message"]) == (500, "no such project")
    assert await _pooled(ecode_api, pid) == [pooled]


async def test_deleting_a_project_empties_its_pool(
    jupyter_api: JupyterCall, ecode_api: Any, make_project: Any
) -> None:
    pid, _ = await make_project("gone")
    await _warm(ecode_api, pid)
    assert (await ecode_api("DELETE", f"projects/{pid}")).status == 200
    status, kernels = await jupyter_api("GET", "kernels")
    assert kernels == []
