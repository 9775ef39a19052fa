"""The state of one run as its progress feed describes it, for any display to render.

:class:`RunProgress` folds events (``{seq, run_id, ts, type, data}``) into what a person
watching wants to see: the plan, the current step, the agent's words, the tools it is calling,
the tail of the running command's output, the files it changed, tokens and cost, and at the
end a one-paragraph summary. It renders nothing itself; the notebook magics draw it as HTML
and text, and a terminal display can draw it as it likes.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUS = {
    "run.completed": "completed",
    "run.failed": "failed",
    "run.cancelled": "cancelled",
    "run.interrupted": "interrupted",
}
MESSAGE_TAIL_CHARS = 3000
OUTPUT_TAIL_LINES = 20
RECENT_TOOLS = 8
# pytest's last line, e.g. "==== 3 passed, 1 warning in 0.12s ====" or "2 failed, 5 passed".
_PYTEST_SUMMARY = re.compile(
    r"(\d+ (?:passed|failed|errors?|skipped|xfailed|xpassed)(?:, \d+ \w+)*)(?: in [\d.]+s)?"
)
_TEST_WORDS = ("pytest", "unittest", "npm test", "jest", "make test", "tox")
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")


def credits_text(micros: int | float | None) -> str:
    """Micro-credits as credits: ``1_250_000`` → ``1.25 credits``."""
    value = (micros or 0) / 1_000_000
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return f"{text} credit" if text == "1" else f"{text} credits"


@dataclass
class ToolActivity:
    call_id: str
    name: str
    brief: str
    ok: bool | None = None  # None while running
    exit_code: int | None = None
    duration_s: float | None = None


@dataclass
class FileStat:
    action: str
    added: int = 0
    removed: int = 0


def _brief_arguments(name: str, args: Any) -> str:
    """The one argument that says what a tool call does (a path, a command, packages)."""
    if not isinstance(args, dict):
        return ""
    for key in ("command", "path", "packages", "query", "code", "pattern", "cell"):
        value = args.get(key)
        if value:
            text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
            text = text.strip().splitlines()[0] if text.strip() else ""
            return text if len(text) <= 80 else text[:77] + "..."
    return ""


def _looks_like_tests(activity: ToolActivity | None) -> bool:
    text = activity.brief.lower() if activity else ""
    return any(word in text for word in _TEST_WORDS)


@dataclass
class RunProgress:
    """Everything a display needs, updated by :meth:`apply` one event at a time."""

    run_id: str
    status: str = "queued"
    provider: str | None = None
    model: str | None = None
    prompt: str | None = None
    notice: str | None = None
    plan: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    message: str = ""
    tools: deque[ToolActivity] = field(default_factory=lambda: deque(maxlen=RECENT_TOOLS))
    tool_calls: int = 0
    output: deque[str] = field(default_factory=lambda: deque(maxlen=OUTPUT_TAIL_LINES))
    files: dict[str, FileStat] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_USAGE_KEYS, 0))
    cost_micros: int = 0
    tests: str | None = None
    tests_ok: bool | None = None
    approval: str | None = None
    #: the id to answer the pending approval with (jupyter ecode approve RUN ID)
    approval_id: str | None = None
    reason: str | None = None
    reason_code: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    last_seq: int = 0
    events: int = 0
    started_ts: str | None = None
    finished_ts: str | None = None
    step_number: int = 0  # the agent's own numbering (a verify step shares its turn's number)
    _open_line: bool = field(default=False, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUS.values()

    def apply(self, event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        raw = event.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        self.last_seq = max(self.last_seq, int(event.get("seq") or 0))
        self.events += 1
        handler = getattr(self, "_on_" + kind.replace(".", "_"), None)
        if handler is not None:
            handler(data, event)

    # -- one method per event type ------------------------------------------------------------

    def _on_run_started(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        self.status = "running"
        self.started_ts = str(event.get("ts") or "") or None
        self.provider = data.get("provider") or self.provider
        self.model = data.get("model") or self.model
        self.prompt = data.get("prompt") or self.prompt
        note = data.get("notice") or data.get("note") or data.get("message")
        if note:
            self.notice = str(note)

    def _on_plan(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        steps = data.get("steps")
        if isinstance(steps, list):
            self.plan = [_step_title(s) for s in steps]
        elif data.get("text"):
            self.plan = [line.strip() for line in str(data["text"]).splitlines() if line.strip()]
        if data.get("ai") is False and not self.notice:
            self.notice = (
                "No AI model is configured: the offline provider builds from a template. "
                "Set ANTHROPIC_API_KEY or OPENAI_API_KEY on the server to use a model."
            )

    def _on_step_started(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        self.status = "running"
        if data.get("kind") == "verify":
            title = f"verifying: {data.get('command') or 'the project'}"
        elif data.get("kind") == "model":
            title = "the agent is working"
        else:
            title = _step_title(data) or f"step {data.get('step', len(self.steps) + 1)}"
        self.steps.append(title)
        step = data.get("step")
        self.step_number = step if isinstance(step, int) else len(self.steps)
        # Each step's text stands on its own; the previous one's is in the transcript.
        self.message = ""

    def _on_message_delta(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        text = data.get("text") or data.get("delta") or ""
        self.message = (self.message + str(text))[-MESSAGE_TAIL_CHARS:]

    def _on_tool_call(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        name = str(data.get("name") or data.get("tool") or "tool")
        args = data.get("arguments", data.get("args"))
        self.tool_calls += 1
        self.tools.append(
            ToolActivity(str(data.get("call_id") or ""), name, _brief_arguments(name, args))
        )

    def _on_tool_result(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        call_id = str(data.get("call_id") or "")
        activity = next((t for t in reversed(self.tools) if t.call_id == call_id), None)
        if activity is not None:
            activity.ok = bool(data.get("ok", True))
            code = data.get("exit_code")
            activity.exit_code = code if isinstance(code, int) else None
            duration = data.get("duration_s")
            activity.duration_s = float(duration) if isinstance(duration, int | float) else None
        name = str(data.get("name") or (activity.name if activity else ""))
        if name in ("run_command", "execute_code") and _looks_like_tests(activity):
            self._note_tests(str(data.get("output") or ""), bool(data.get("ok", True)))

    def _note_tests(self, output: str, ok: bool) -> None:
        found = _PYTEST_SUMMARY.findall(output)
        self.tests = found[-1] if found else ("passed" if ok else "failed")
        self.tests_ok = ok and "failed" not in self.tests and "error" not in self.tests

    def _on_command_output(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        text = str(data.get("text") or data.get("output") or "")
        if not text:
            return
        lines = text.split("\n")
        if self._open_line and self.output:
            # The previous chunk ended mid-line (pytest's dots); this one continues it.
            self.output[-1] += lines.pop(0)
        self._open_line = not text.endswith("\n")
        if not self._open_line:
            lines.pop()  # the empty string after the final newline
        self.output.extend(lines)

    def _on_file_changed(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        path = str(data.get("path") or "")
        if not path:
            return
        action = str(data.get("action") or "modified")
        stat = self.files.get(path)
        if stat is None:
            stat = self.files[path] = FileStat(action)
        elif action == "deleted" or stat.action != "created":
            stat.action = action  # a file created then edited in one run stays "created"
        stat.added += int(data.get("added") or 0)
        stat.removed += int(data.get("removed") or 0)

    def _on_usage(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        # A usage event reports one model call.
        # When the event carries the run's running total, that is the truth; otherwise sum.
        raw_total = data.get("total", data.get("totals"))
        totals = raw_total if isinstance(raw_total, dict) else None
        source = totals or data
        for key in _USAGE_KEYS:
            value = source.get(key)
            if isinstance(value, int):
                self.usage[key] = value if totals else self.usage[key] + value
        cost = (totals or {}).get("cost_micros", data.get("cost_micros"))
        if isinstance(cost, int):
            self.cost_micros = cost if totals else self.cost_micros + cost

    def _on_approval_requested(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        self.approval = str(
            data.get("message")
            or data.get("reason")
            or data.get("tool")
            or "the agent is waiting for an approval"
        )
        self.approval_id = str(data.get("approval_id") or "") or None

    def _on_approval_resolved(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        if self.approval_id in (None, data.get("approval_id")):
            self.approval = self.approval_id = None

    def _terminal(self, data: dict[str, Any], event: dict[str, Any]) -> None:
        self.status = TERMINAL_STATUS[str(event["type"])]
        self.finished_ts = str(event.get("ts") or "") or None
        self.approval = self.approval_id = None
        # "message" is the human sentence; "reason" a code such as tests_failing.
        if data.get("reason"):
            self.reason_code = str(data["reason"])
        reason = data.get("message") or data.get("reason") or data.get("error")
        if reason:
            self.reason = str(reason)
        if isinstance(data.get("summary"), dict):
            self.summary.update(data["summary"])
        self._summary_tests(self.summary)

    _on_run_completed = _terminal
    _on_run_failed = _terminal
    _on_run_cancelled = _terminal
    _on_run_interrupted = _terminal

    # -- the final answer -------------------------------------------------------------------

    def update_from_run(self, run: dict[str, Any]) -> None:
        """Take the server's final word (status, totals, summary) from ``GET runs/{id}``."""
        status = run.get("status")
        if isinstance(status, str) and status:
            self.status = status
        # The run's "reason" is a code; the feed's final message, when seen, says it better.
        self.reason = self.reason or run.get("reason")
        self.reason_code = self.reason_code or run.get("reason")
        self.model = run.get("model") or self.model
        self.provider = run.get("provider") or self.provider
        usage = run.get("usage")
        if isinstance(usage, dict):
            for key in _USAGE_KEYS:
                if isinstance(usage.get(key), int):
                    self.usage[key] = usage[key]
        if isinstance(run.get("cost_micros"), int):
            self.cost_micros = run["cost_micros"]
        if isinstance(run.get("summary"), dict):
            self.summary.update(run["summary"])
            self._summary_tests(self.summary)
        self.started_ts = run.get("started_at") or self.started_ts
        self.finished_ts = run.get("finished_at") or self.finished_ts

    def _summary_tests(self, summary: dict[str, Any]) -> None:
        """The agent's verification (``summary["tests"]``): command, passed, exit code, tail."""
        for path in summary.get("files") or ():
            if isinstance(path, str) and path not in self.files:
                self.files[path] = FileStat("modified")
        tests = summary.get("tests")
        if isinstance(tests, str) and tests:
            self.tests = tests
            return
        if not isinstance(tests, dict):
            return
        passed = tests.get("passed", tests.get("ok"))
        if isinstance(passed, bool):
            self.tests_ok = passed
        found = _PYTEST_SUMMARY.findall(str(tests.get("output_tail") or ""))
        if found:
            self.tests = found[-1]
            return
        code = tests.get("exit_code")
        if isinstance(passed, bool):
            word = "passed" if passed else "failed" + (f" (exit {code})" if code else "")
        else:
            word = ""
        note = str(tests.get("note") or "")
        self.tests = f"{word} ({note})" if word and note else (word or note or None)

    def changed_files(self) -> list[tuple[str, FileStat]]:
        return sorted(self.files.items())

    def headline(self) -> str:
        """``completed · 4 files changed · tests: 3 passed · 0 credits``."""
        parts = [self.status]
        if self.files:
            n = len(self.files)
            parts.append(f"{n} file{'s' if n != 1 else ''} changed")
        if self.tests:
            parts.append(f"tests: {self.tests}")
        tokens = self.usage["input_tokens"] + self.usage["output_tokens"]
        if tokens:
            parts.append(f"{tokens:,} tokens")
        parts.append(credits_text(self.cost_micros))
        return " · ".join(parts)


def _step_title(step: Any) -> str:
    if isinstance(step, dict):
        for key in ("title", "name", "description", "text"):
            if step.get(key):
                return str(step[key])
        return ""
    return str(step)
