"""execute_code: run Python in the project's own kernel, and return what a model can use.

One kernel per project, started on demand with the workspace as its working folder, the
project's environment (secrets, ``DATABASE_URL``) and its virtual environment: the venv's own
Python when it has ipykernel, otherwise this server's Python with the venv's packages on the
path. Outputs come back fit for a model: text capped with a note, images as embedded MCP
resources (never base64 inside text), tracebacks without terminal colour codes.

:class:`KernelProvider` is the seam. In a Jupyter server it is
:class:`ecode_jupyter.kernels.ServerKernels`: the server's own kernels, started by the ecode
provisioner in the project's sandbox, shared with the project's notebooks and listed in Lab.
:class:`LocalKernels` (a private kernel manager, no sandbox) remains for a tool layer with no
server around it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import queue
import re
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from mcp.server.mcpserver import Context
from mcp_types import (
    BlobResourceContents,
    EmbeddedResource,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import Field

from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.tools.context import ToolProject, project_environment
from ecode_jupyter.tools.files import file_resource_uri
from ecode_jupyter.workspace.commands import base_environment
from ecode_jupyter.workspace.writer import atomic_write_bytes

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

OutputCallback = Callable[[str], Awaitable[None]]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
IMAGE_MIME = ("image/png", "image/jpeg", "image/gif", "image/webp")
INTERRUPT_GRACE_S = 5.0
OUTPUTS_DIR = ".ecode/outputs"
ProjectIdField = Annotated[str, Field(description="The project id.")]


@dataclass
class ExecutionResult:
    """What one execution produced, in order; ``text`` is uncapped (the tool caps it)."""

    status: str = "ok"  # ok | error | timeout | died
    execution_count: int | None = None
    text: str = ""
    images: list[tuple[str, bytes]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class KernelProvider(Protocol):
    """Runs code in a project's kernel. Called by the execute_code tool, and on a project's
    deletion. ``user`` is the authorized caller (a kernel that starts for the call starts as
    theirs)."""

    async def execute(
        self,
        project: ToolProject,
        code: str,
        *,
        timeout_s: float,
        on_output: OutputCallback | None = None,
        user: EcodeUser | None = None,
    ) -> ExecutionResult: ...

    async def shutdown_project(self, project_id: str) -> None: ...

    async def shutdown_all(self) -> None: ...


@dataclass
class _ProjectKernel:
    manager: AsyncKernelManager
    client: Any
    spec_dir: tempfile.TemporaryDirectory[str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _venv_site_packages(venv: Path) -> list[str]:
    return [str(p) for p in sorted((venv / "lib").glob("python3*/site-packages"))]


def kernel_python(project: ToolProject) -> tuple[str, dict[str, str]]:
    """The Python to run the kernel with, and extra environment for it."""
    venv_python = project.venv / "bin" / "python"
    site = _venv_site_packages(project.venv)
    if venv_python.exists() and any((Path(s) / "ipykernel").is_dir() for s in site):
        return str(venv_python), {}
    extra: dict[str, str] = {}
    if site:
        # The venv lacks ipykernel: run ours, but import the project's packages first.
        extra["PYTHONPATH"] = ":".join(site)
    return sys.executable, extra


class LocalKernels:
    """One local ipykernel per project (jupyter_client), started on first use."""

    def __init__(self, startup_timeout_s: float = 60.0) -> None:
        self._kernels: dict[str, _ProjectKernel] = {}
        self._start_locks: dict[str, asyncio.Lock] = {}
        self._startup_timeout_s = startup_timeout_s

    async def _kernel(self, project: ToolProject) -> _ProjectKernel:
        lock = self._start_locks.setdefault(project.id, asyncio.Lock())
        async with lock:
            current = self._kernels.get(project.id)
            if current is not None:
                if await current.manager.is_alive():
                    return current
                await self._discard(project.id)
            kernel = await self._start(project)
            self._kernels[project.id] = kernel
            return kernel

    async def _start(self, project: ToolProject) -> _ProjectKernel:
        python, extra = kernel_python(project)
        spec_dir = tempfile.TemporaryDirectory(prefix="ecode-kernelspec-")
        spec_path = Path(spec_dir.name) / "ecode-project"
        spec_path.mkdir()
        spec = {
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"ecode project {project.id}",
            "language": "python",
        }
        (spec_path / "kernel.json").write_text(json.dumps(spec))
        specs = KernelSpecManager(kernel_dirs=[spec_dir.name], ensure_native_kernel=False)
        manager = AsyncKernelManager(kernel_name="ecode-project", kernel_spec_manager=specs)
        env = base_environment(
            {**project_environment(project.workspace, dict(project.env)), **extra}
        )
        log.info("starting the kernel of project %s with %s", project.id, python)
        try:
            await manager.start_kernel(cwd=str(project.workspace), env=env)
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=self._startup_timeout_s)
        except Exception:
            with contextlib.suppress(Exception):
                await manager.shutdown_kernel(now=True)
            spec_dir.cleanup()
            raise
        return _ProjectKernel(manager=manager, client=client, spec_dir=spec_dir)

    async def _discard(self, project_id: str) -> None:
        kernel = self._kernels.pop(project_id, None)
        if kernel is None:
            return
        with contextlib.suppress(Exception):
            kernel.client.stop_channels()
        with contextlib.suppress(Exception):
            await kernel.manager.shutdown_kernel(now=True)
        kernel.spec_dir.cleanup()

    async def shutdown(self, project_id: str) -> None:
        await self._discard(project_id)

    async def shutdown_all(self) -> None:
        for project_id in list(self._kernels):
            await self._discard(project_id)

    async def execute(
        self,
        project: ToolProject,
        code: str,
        *,
        timeout_s: float,
        on_output: OutputCallback | None = None,
        user: EcodeUser | None = None,
    ) -> ExecutionResult:
        kernel = await self._kernel(project)
        # One execution at a time per kernel: its iopub messages must not interleave.
        async with kernel.lock:
            result, broken = await run_code(
                kernel.client,
                code,
                timeout_s=timeout_s,
                on_output=on_output,
                interrupt=kernel.manager.interrupt_kernel,
                is_alive=kernel.manager.is_alive,
            )
        if broken:
            await self._discard(project.id)
        return result

    async def shutdown_project(self, project_id: str) -> None:
        await self._discard(project_id)


async def run_code(
    client: Any,
    code: str,
    *,
    timeout_s: float,
    on_output: OutputCallback | None,
    interrupt: Callable[[], Awaitable[None]],
    is_alive: Callable[[], Awaitable[bool]],
) -> tuple[ExecutionResult, bool]:
    """Execute ``code`` with ``client`` and collect what it produced. The second value is
    True when the kernel is unusable after it (died, or did not stop after an interrupt):
    the caller restarts or drops it."""
    result = ExecutionResult()
    msg_id = client.execute(code, store_history=True, allow_stdin=False)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    interrupted = False
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            if interrupted:
                # The interrupt did not bring the kernel back: restart it.
                result.status = "timeout"
                result.notes.append("the kernel did not stop after an interrupt; restarted")
                return result, True
            result.status = "timeout"
            result.notes.append(f"timed out after {timeout_s:g}s; the kernel was interrupted")
            await interrupt()
            interrupted = True
            deadline = loop.time() + INTERRUPT_GRACE_S
            continue
        try:
            msg = await client.get_iopub_msg(timeout=min(remaining, 1.0))
        except queue.Empty:
            if not await is_alive():
                result.status = "died"
                result.notes.append("the kernel died; it will be restarted on the next call")
                return result, True
            continue
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "status" and content.get("execution_state") == "idle":
            return result, False
        piece = _apply_message(result, kind, content)
        if piece and on_output is not None:
            await on_output(piece)


def _apply_message(result: ExecutionResult, kind: str, content: dict[str, Any]) -> str:
    """Fold one iopub message into ``result``; return the text it added."""
    piece = ""
    if kind == "stream":
        piece = str(content.get("text", ""))
    elif kind in ("execute_result", "display_data"):
        data = content.get("data", {})
        if kind == "execute_result":
            result.execution_count = content.get("execution_count")
        image = next((m for m in IMAGE_MIME if m in data), None)
        if image is not None:
            result.images.append((image, base64.b64decode(data[image])))
            piece = f"[{image} output #{len(result.images)}, attached as a resource]\n"
        elif "text/plain" in data:
            piece = str(data["text/plain"]) + "\n"
        elif data:
            kinds = ", ".join(sorted(data))
            piece = f"[rich output ({kinds}) with no text form]\n"
    elif kind == "error":
        if result.status == "ok":  # the KeyboardInterrupt of a timeout stays a timeout
            result.status = "error"
        traceback = "\n".join(_ANSI.sub("", line) for line in content.get("traceback", []))
        piece = (
            traceback + "\n" if traceback else f"{content.get('ename')}: {content.get('evalue')}\n"
        )
    elif kind == "execute_input" and content.get("execution_count") is not None:
        result.execution_count = content["execution_count"]
    result.text += piece
    return piece


def cap_text(text: str, cap: int) -> tuple[str, bool]:
    """Keep the head and tail of ``text`` within ``cap`` characters, with a note between."""
    if len(text) <= cap:
        return text, False
    half = cap // 2
    omitted = len(text) - 2 * half
    note = f"\n[... {omitted} characters omitted: output is capped at {cap} characters ...]\n"
    return text[:half] + note + text[-half:], True


def register(layer: ToolLayer) -> None:
    settings = layer.settings

    @layer.mcp.tool(
        annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True),
        structured_output=False,
    )
    async def execute_code(
        project: ProjectIdField,
        code: Annotated[str, Field(description="Python code to run in the project's kernel.")],
        timeout_s: Annotated[
            float | None, Field(gt=0, description="Time limit in seconds (default 120).")
        ] = None,
        ctx: Context | None = None,
    ) -> list[TextContent | EmbeddedResource | ResourceLink]:
        """Run Python code in the project's kernel (state persists between calls; cwd is the
        workspace). Returns printed output, results and errors as text (capped) and images as
        embedded resources."""
        proj, caller = await layer.open(ctx, project, write=True)
        await layer.audit(caller, proj, "execute_code", {"chars": len(code)})
        limit = min(timeout_s or settings.execute_timeout_s, settings.command_max_timeout_s)
        result = await layer.kernels.execute(
            proj, code, timeout_s=limit, on_output=caller.reporter.output, user=caller.user
        )
        text, capped = cap_text(result.text, settings.execute_output_cap_chars)
        header = f"[status: {result.status}"
        if result.execution_count is not None:
            header += f", execution count {result.execution_count}"
        header += "]\n"
        link: ResourceLink | None = None
        if capped:
            # The whole output stays reachable: a file in the workspace, linked as a resource.
            rel = f"{OUTPUTS_DIR}/{uuid.uuid4().hex[:12]}.txt"
            data = result.text.encode("utf-8", "replace")
            await asyncio.to_thread(atomic_write_bytes, proj.workspace / rel, data)
            result.notes.append(f"full output saved to {rel}; page through it with read_file")
            link = ResourceLink(
                type="resource_link",
                uri=file_resource_uri(proj.id, rel),
                name=rel,
                mime_type="text/plain",
                size=len(data),
            )
        notes = "".join(f"[{note}]\n" for note in result.notes)
        blocks: list[TextContent | EmbeddedResource | ResourceLink] = [
            TextContent(type="text", text=header + text + notes)
        ]
        if link is not None:
            blocks.append(link)
        for index, (mime, data) in enumerate(result.images, start=1):
            ext = mime.split("/")[1]
            uri = f"ecode://projects/{proj.id}/outputs/{uuid.uuid4().hex}-{index}.{ext}"
            if len(data) > settings.execute_max_image_bytes:
                blocks.append(
                    TextContent(
                        type="text",
                        text=f"[{mime} output #{index} omitted: {len(data)} bytes is over "
                        f"{settings.execute_max_image_bytes}; save it to a file instead]",
                    )
                )
                continue
            blob = BlobResourceContents(
                uri=uri, mime_type=mime, blob=base64.b64encode(data).decode()
            )
            blocks.append(EmbeddedResource(type="resource", resource=blob))
        return blocks
