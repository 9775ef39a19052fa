"""Notebook tools: read_notebook and edit_notebook_cell.

Both go through the writer, so a notebook open in JupyterLab is read from and edited in its
live collaborative document (the people in the room see the cell change as it happens).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field

from ecode_jupyter.tools.files import change_result
from ecode_jupyter.tools.kernel import cap_text

if TYPE_CHECKING:
    from ecode_jupyter.tools.server import ToolLayer

log = logging.getLogger(__name__)

ProjectId = Annotated[str, Field(description="The project id.")]
NotebookPath = Annotated[str, Field(description="Path of the .ipynb file, relative.")]
OUTPUT_CHARS_PER_CELL = 2000


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _render_output(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return _text(output.get("text"))
    if kind == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n"
    data = output.get("data", {})
    images = [m for m in data if m.startswith("image/")]
    if images:
        return f"[{images[0]} output]\n"
    if "text/plain" in data:
        return _text(data["text/plain"]) + "\n"
    return f"[{', '.join(sorted(data)) or kind} output]\n"


def render_notebook(nb: dict[str, Any], shown: str, include_outputs: bool, cap: int) -> str:
    cells = nb.get("cells", [])
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name", "unknown")
    parts = [f"{shown}: {len(cells)} cells (kernel: {kernel})\n"]
    for index, cell in enumerate(cells):
        header = f"--- cell {index} · {cell.get('cell_type')}"
        if cell.get("id"):
            header += f" · id {cell['id']}"
        if cell.get("cell_type") == "code":
            header += f" · [{cell.get('execution_count') or ' '}]"
        parts.append(header + "\n")
        source = _text(cell.get("source"))
        parts.append(source + ("" if source.endswith("\n") or not source else "\n"))
        outputs = cell.get("outputs") or []
        if include_outputs and outputs:
            rendered = "".join(_render_output(o) for o in outputs)
            rendered, _ = cap_text(rendered, OUTPUT_CHARS_PER_CELL)
            parts.append(">>> output:\n" + rendered)
    text, _ = cap_text("".join(parts), cap)
    return text


def register(layer: ToolLayer) -> None:
    settings = layer.settings

    @layer.mcp.tool(
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False),
        structured_output=False,
    )
    async def read_notebook(
        project: ProjectId,
        path: NotebookPath,
        include_outputs: Annotated[bool, Field(description="Show cell outputs (capped).")] = True,
        ctx: Context | None = None,
    ) -> str:
        """Read a notebook as numbered cells (index, type, id, source, and outputs as text)."""
        proj, caller = await layer.open(ctx, project, write=False)
        writer = layer.writer(proj, caller)
        nb = await writer.read_notebook(path)
        shown = writer.relative(writer.resolve(path))
        return render_notebook(nb, shown, include_outputs, settings.read_max_bytes)

    @layer.mcp.tool(annotations=ToolAnnotations(destructive_hint=True))
    async def edit_notebook_cell(
        project: ProjectId,
        path: NotebookPath,
        index: Annotated[
            int,
            Field(
                ge=0,
                description="0-based cell index; insert goes before it, and index = number "
                "of cells appends.",
            ),
        ],
        source: Annotated[
            str | None, Field(description="The cell's new source (not for delete).")
        ] = None,
        action: Annotated[
            Literal["replace", "insert", "delete"], Field(description="What to do.")
        ] = "replace",
        cell_type: Annotated[
            Literal["code", "markdown", "raw"] | None,
            Field(description="Cell type (insert: default code; replace: keeps the type)."),
        ] = None,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Replace a cell's source, insert a new cell, or delete a cell of a notebook."""
        proj, caller = await layer.open(ctx, project, write=True)
        change = await layer.writer(proj, caller).edit_notebook_cell(
            path, index, action=action, source=source, cell_type=cell_type
        )
        await layer.audit(
            caller,
            proj,
            "edit_notebook_cell",
            {"path": change.path, "index": index, "action": action},
        )
        return change_result(change)
