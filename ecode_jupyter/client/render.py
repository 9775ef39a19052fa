"""HTML and plain-text views of a run's progress and of the magics' tables.

Everything shown comes from the server (project names, agent text, command output), so every
value is escaped; the HTML uses inline styles with JupyterLab's CSS variables (and fallbacks)
so it reads well in light and dark themes and in a static notebook export.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from .progress import FileStat, RunProgress, ToolActivity, credits_text

STATUS_COLORS = {
    "queued": "#777",
    "running": "#1a73e8",
    "completed": "#188038",
    "failed": "#c5221f",
    "cancelled": "#b06000",
    "interrupted": "#b06000",
}
MESSAGE_HTML_CHARS = 1200
MAX_FILES_SHOWN = 30

_BOX = (
    "font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; "
    "border: 1px solid var(--jp-border-color1, #ccc); border-radius: 6px; "
    "padding: 8px 12px; margin: 2px 0; max-width: 960px; line-height: 1.45"
)
_PRE = (
    "background: var(--jp-layout-color2, #f5f5f5); padding: 4px 8px; margin: 4px 0; "
    "max-height: 16em; overflow: auto; font-size: 12px; white-space: pre-wrap"
)
_MUTED = "color: var(--jp-ui-font-color2, #666)"


def badge(status: str) -> str:
    color = STATUS_COLORS.get(status, "#777")
    return (
        f'<span style="background:{color};color:#fff;border-radius:9px;padding:0 8px;'
        f'font-size:12px">{escape(status)}</span>'
    )


def _tool_mark(tool: ToolActivity) -> str:
    if tool.ok is None:
        return "…"
    return "✓" if tool.ok else "✗"


def _tool_text(tool: ToolActivity) -> str:
    text = f"{_tool_mark(tool)} {tool.name}"
    if tool.brief:
        text += f" {tool.brief}"
    if tool.ok is False and tool.exit_code is not None:
        text += f" (exit {tool.exit_code})"
    return text


def _file_text(path: str, stat: FileStat) -> str:
    counts = f" +{stat.added} −{stat.removed}" if stat.added or stat.removed else ""
    return f"{stat.action} {path}{counts}"


def run_title(progress: RunProgress, project_label: str | None) -> str:
    where = f" · {project_label}" if project_label else ""
    model = progress.model or progress.provider
    return f"ecode run {progress.run_id}{where}" + (f" · {model}" if model else "")


def run_html(progress: RunProgress, project_label: str | None = None) -> str:
    """The live card of a run."""
    parts = [f'<div class="ecode-run" style="{_BOX}">']
    parts.append(
        f"<div><b>{escape(run_title(progress, project_label))}</b> {badge(progress.status)}</div>"
    )
    if progress.notice:
        parts.append(f'<div style="{_MUTED}"><i>{escape(progress.notice)}</i></div>')
    if progress.plan and not progress.finished:
        items = "".join(f"<li>{escape(s)}</li>" for s in progress.plan)
        parts.append(f"<details open><summary>Plan</summary><ol>{items}</ol></details>")
    if progress.steps:
        current = escape(progress.steps[-1])
        label = "Last step" if progress.finished else "Step"
        parts.append(f"<div><b>{label} {progress.step_number}:</b> {current}</div>")
    if progress.message.strip():
        text = progress.message.strip()[-MESSAGE_HTML_CHARS:]
        parts.append(f'<div style="white-space: pre-wrap; margin: 4px 0">{escape(text)}</div>')
    if progress.approval:
        how = "approve it in the JupyterLab sidebar"
        if progress.approval_id and progress.run_id:
            command = f"%ecode approve {progress.run_id} {progress.approval_id}"
            how += f", or run <code>{escape(command)}</code> (add <code>deny</code> to refuse)"
        parts.append(
            '<div style="color:#b06000"><b>Waiting for approval:</b> '
            f"{escape(progress.approval)} — {how}.</div>"
        )
    if progress.tools and not progress.finished:
        items = "".join(f"<li><code>{escape(_tool_text(t))}</code></li>" for t in progress.tools)
        parts.append(f'<ul style="margin: 2px 0">{items}</ul>')
    if progress.output and not progress.finished:
        parts.append(f'<pre style="{_PRE}">{escape(chr(10).join(progress.output))}</pre>')
    if progress.files:
        files = progress.changed_files()
        items = "".join(
            f"<li><code>{escape(path)}</code> <span style='{_MUTED}'>"
            f"{escape(_file_text('', stat).strip())}</span></li>"
            for path, stat in files[:MAX_FILES_SHOWN]
        )
        more = len(files) - MAX_FILES_SHOWN
        if more > 0:
            items += f"<li>… and {more} more</li>"
        opened = " open" if progress.finished else ""
        parts.append(
            f"<details{opened}><summary>{len(files)} file(s) changed</summary>"
            f'<ul style="margin: 2px 0">{items}</ul></details>'
        )
    if progress.finished and progress.reason:
        parts.append(f"<div><b>{_outcome_label(progress)}:</b> {escape(progress.reason)}</div>")
    parts.append(f'<div style="{_MUTED}">{escape(footer_text(progress))}</div>')
    parts.append("</div>")
    return "".join(parts)


def _outcome_label(progress: RunProgress) -> str:
    return "Result" if progress.status == "completed" else "Why"


def footer_text(progress: RunProgress) -> str:
    bits = [f"{progress.tool_calls} tool call(s)"]
    if progress.tests:
        bits.append(f"tests: {progress.tests}")
    tokens = progress.usage["input_tokens"] + progress.usage["output_tokens"]
    bits.append(f"{tokens:,} tokens")
    bits.append(credits_text(progress.cost_micros))
    return " · ".join(bits)


def run_text(progress: RunProgress, project_label: str | None = None) -> str:
    """The same card as plain text (what a text-only frontend or a test reads)."""
    lines = [f"{run_title(progress, project_label)} — {progress.status}"]
    if progress.notice:
        lines.append(progress.notice)
    if progress.steps:
        lines.append(f"step {progress.step_number}: {progress.steps[-1]}")
    if progress.approval:
        lines.append(f"waiting for approval: {progress.approval}")
        if progress.approval_id and progress.run_id:
            answer = f"%ecode approve {progress.run_id} {progress.approval_id}"
            lines.append(f"  answer: {answer} (add deny to refuse)")
    if not progress.finished:
        lines.extend(f"  {_tool_text(t)}" for t in list(progress.tools)[-3:])
        lines.extend(f"  | {line}" for line in list(progress.output)[-5:])
    if progress.files:
        lines.append(f"files changed: {len(progress.files)}")
    if progress.finished and progress.reason:
        lines.append(f"{_outcome_label(progress).lower()}: {progress.reason}")
    lines.append(footer_text(progress))
    return "\n".join(lines)


def summary_text(progress: RunProgress, project_label: str | None = None) -> str:
    """The lines printed when a run ends: what happened, files, tests, cost, what next."""
    where = f" in {project_label}" if project_label else ""
    lines = [f"ecode: run {progress.run_id}{where} {progress.headline()}"]
    if progress.reason and progress.status != "completed":
        lines.append(f"  why: {progress.reason}")
    for path, stat in progress.changed_files()[:MAX_FILES_SHOWN]:
        lines.append(f"  {_file_text(path, stat)}")
    if len(progress.files) > MAX_FILES_SHOWN:
        lines.append(f"  … and {len(progress.files) - MAX_FILES_SHOWN} more")
    if progress.reason_code == "insufficient_credits":
        lines.append("  next: out of credits — ask your admin (`%ecode credits` shows them)")
    elif progress.status in ("failed", "cancelled", "interrupted"):
        lines.append("  next: `%ecode <what to change>` starts a new run in the same project")
    return "\n".join(lines)


def table_html(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f'<th style="text-align:left">{escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td style="text-align:left">{escape(str(v))}</td>' for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(columns)] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
