"""Rendering a run's progress feed in a terminal with rich (`jupyter ecode new`, `runs`)."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from .tables import model_label

log = logging.getLogger(__name__)

MAX_OUTPUT_LINES = 40  # per command; the rest is counted, not printed


def credits(micros: int) -> str:
    return f"{micros / 1_000_000:.4f}"


class FeedPrinter:
    """Prints each event of a run as it arrives; ``status`` holds the one-line state."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status = "starting"
        self._lines: dict[str, int] = {}
        self._text_open = False
        self._streamed: set[int] = set()
        self._run_id = ""

    def _end_text(self) -> None:
        if self._text_open:
            self.console.print()
            self._text_open = False

    def handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        data = event.get("data") or {}
        self._run_id = str(event.get("run_id") or self._run_id)
        if kind != "message.delta":
            self._end_text()
        handler = getattr(self, "_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(data)

    def _run_started(self, data: dict[str, Any]) -> None:
        self.console.print(
            f"[bold]agent run[/bold] with {escape(data.get('provider', '?'))} "
            f"[dim]({escape(data.get('model', '?'))})[/dim]"
        )

    def _plan(self, data: dict[str, Any]) -> None:
        if not data.get("ai", True):
            self.console.print("[yellow]offline provider: no AI model was used[/yellow]")
        if data.get("step") not in self._streamed:
            # The plan was not shown as it streamed (e.g. replayed from the middle).
            self.console.print(Panel(escape(data.get("text", "")), title="plan", expand=False))

    def _step_started(self, data: dict[str, Any]) -> None:
        if data.get("kind") == "retry":
            self.status = f"step {data.get('step')}: waiting to retry"
            self.console.print(f"[yellow]{escape(str(data.get('title', 'retrying')))}[/yellow]")
        elif data.get("kind") == "verify":
            self.status = f"verifying: {data.get('command', '')}"
            self.console.print(f"[bold]verify[/bold] {escape(str(data.get('command', '')))}")
        else:
            self.status = f"step {data.get('step')}: thinking"

    def _verify_result(self, data: dict[str, Any]) -> None:
        command = escape(str(data.get("command", "")))
        if data.get("passed"):
            self.console.print(f"[green]check passed[/green] {command}")
            return
        note = f": {data['note']}" if data.get("note") else ""
        self.console.print(
            f"[red]check failed[/red] {command} (exit {data.get('exit_code')}){escape(note)}"
        )

    def _message_delta(self, data: dict[str, Any]) -> None:
        # Text streams in pieces: print them on one line as they come.
        self._streamed.add(data.get("step", 0))
        self.console.print(escape(data.get("text", "")), end="", style="italic", soft_wrap=True)
        self._text_open = not str(data.get("text", "")).endswith("\n")

    def _tool_call(self, data: dict[str, Any]) -> None:
        args = data.get("arguments") or {}
        name = data.get("name", "?")
        shown = str(
            args.get("command") or args.get("path") or ", ".join(args.get("packages", [])) or ""
        )
        lines = shown.splitlines() or [""]
        shown = lines[0][:100] + (" …" if len(lines) > 1 or len(lines[0]) > 100 else "")
        self.status = f"step {data.get('step')}: {name}"
        self.console.print(f"[cyan]→ {escape(name)}[/cyan] {escape(shown)}")

    def _file_changed(self, data: dict[str, Any]) -> None:
        self.console.print(
            f"  [green]{escape(data.get('action', ''))}[/green] {escape(data.get('path', ''))} "
            f"[dim](+{data.get('added', 0)} -{data.get('removed', 0)})[/dim]"
        )

    def _command_output(self, data: dict[str, Any]) -> None:
        call = str(data.get("call_id", ""))
        for line in str(data.get("text", "")).splitlines():
            count = self._lines.get(call, 0) + 1
            self._lines[call] = count
            if count <= MAX_OUTPUT_LINES:
                self.console.print(f"  [dim]│ {escape(line)}[/dim]", soft_wrap=True)
            elif count == MAX_OUTPUT_LINES + 1:
                self.console.print("  [dim]│ …[/dim]")

    def _tool_result(self, data: dict[str, Any]) -> None:
        took = f"{data.get('duration_s', 0):.1f}s"
        if not data.get("ok"):
            first = str(data.get("output", "")).strip().splitlines()[:1]
            self.console.print(f"  [red]✗ {escape(first[0] if first else 'failed')}[/red]")
        elif data.get("exit_code") not in (None, 0):
            self.console.print(
                f"  [yellow]exit code {data['exit_code']}[/yellow] [dim]{took}[/dim]"
            )
        elif data.get("exit_code") == 0:
            self.console.print(f"  [green]✓[/green] [dim]{took}[/dim]")

    def _usage(self, data: dict[str, Any]) -> None:
        total = data.get("total") or {}
        tokens = sum(
            int(total.get(k, 0))
            for k in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
        )
        self.status += f" · {tokens} tokens · {credits(int(total.get('cost_micros', 0)))} credits"

    def _approval_requested(self, data: dict[str, Any]) -> None:
        # The run waits: say for what, and how to answer from another terminal.
        what = data.get("message") or data.get("tool") or "the plan"
        answer = f"jupyter ecode approve {self._run_id} {data.get('approval_id', '?')}"
        self.console.print(
            f"[bold yellow]waiting for approval:[/bold yellow] {escape(str(what))}\n"
            f"  answer with [bold]{escape(answer)}[/bold] (--deny to refuse, --always to "
            "allow it from now on)"
        )
        self.status = "waiting for approval"

    def _approval_resolved(self, data: dict[str, Any]) -> None:
        by = f" by {data['by']}" if data.get("by") else ""
        self.console.print(f"approval: {escape(str(data.get('decision', '?')))}{escape(by)}")
        self.status = "running"

    def _run_completed(self, data: dict[str, Any]) -> None:
        self.console.print(f"[bold green]✓ {escape(data.get('message', 'completed'))}[/bold green]")

    def _run_failed(self, data: dict[str, Any]) -> None:
        reason = data.get("reason", "failed")
        message = data.get("message", "")
        self.console.print(f"[bold red]✗ failed ({escape(reason)}): {escape(message)}[/bold red]")

    def _run_cancelled(self, data: dict[str, Any]) -> None:
        self.console.print("[bold yellow]cancelled[/bold yellow]")

    def _run_interrupted(self, data: dict[str, Any]) -> None:
        self.console.print(f"[bold yellow]interrupted: {escape(data.get('message', ''))}[/]")


def summary_table(run: dict[str, Any], project: dict[str, Any], workspace: str) -> Table:
    """The end-of-run summary: outcome, files, tests, cost, where to open the project."""
    summary = run.get("summary") or {}
    table = Table(show_header=False, title="summary", title_justify="left")
    status = run["status"] + (f" ({run['reason']})" if run.get("reason") else "")
    table.add_row("status", status)
    files = summary.get("files") or []
    table.add_row("files", "\n".join(files) if files else "(none changed)")
    tests = summary.get("tests")
    if tests:
        verdict = "passed" if tests.get("passed") else f"failed (exit {tests.get('exit_code')})"
        note = f" — {tests['note']}" if tests.get("note") else ""
        table.add_row("tests", f"{verdict}: {tests.get('command')}{note}")
    else:
        table.add_row("tests", "not run")
    usage = run.get("usage") or {}
    tokens = sum(int(v) for v in usage.values())
    table.add_row(
        "cost",
        f"{credits(int(run.get('cost_micros', 0)))} credits · {tokens} tokens · "
        f"{run.get('steps', 0)} model turns ({model_label(run['provider'], run['model'])})",
    )
    table.add_row("workspace", workspace)
    table.add_row("open", f"{project['url']} in JupyterLab (E-Code sidebar)")
    table.add_row("run", run["id"])
    return table
