"""The agent loop: model turns, tool calls, a verify step, and the limits that end a run.

One :class:`AgentLoop` drives one run::

    plan ─► [model turn ─► tool calls]* ─► model says it is done ─► verify (tests, preview)
                 ▲                                                     │ failed
                 └──────────────── "the tests fail: …" ◄───────────────┘

Every model call goes through :class:`Metering` (reserve, settle, release) and reports a
``usage`` event; every tool call goes through the tool layer as the run's user. The run ends
``completed`` when verification passes, or ``failed`` with a reason: a limit (``max_steps``,
``max_tokens``, ``max_wall_time``, ``max_cost``), ``insufficient_credits``, ``tests_failing``,
``preview_failed`` (a served app that does not start), ``provider_error``, ``refused``.
Cancelling the task that runs :meth:`AgentLoop.run` stops it anywhere — a running command's
process group is killed by the tool layer's runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import InsufficientCredits
from .events import MESSAGE_DELTA, PLAN, STEP_STARTED, USAGE, RunFeed
from .metering import Metering
from .providers.base import (
    STOP_MAX_TOKENS,
    STOP_REFUSAL,
    Message,
    Provider,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    TurnResult,
    Usage,
    UsageReport,
)
from .store import usage_changes
from .toolbox import CHANGING_TOOLS, AgentToolbox, ToolOutcome, trim_middle

log = logging.getLogger(__name__)

# pytest's exit code when it collected no tests: nothing failed, there is just nothing to run.
PYTEST_NO_TESTS = 5
VERIFY_OUTPUT_CHARS = 6000
# The deploy tools' error when the app itself did not start (see deploy/tools.py).
PREVIEW_FAILED = "preview_failed"
COMPACT_RESULT_CHARS = 800
_PLAN_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$")
# A command that runs the whole pytest suite: `pytest -q`, `python -m pytest -x --tb=short`
# (flags only: a path or `-k expr` runs part of it, which does not verify the project).
_WHOLE_PYTEST = re.compile(r"^\s*(?:\S*/)?(?:python[\d.]*\s+-m\s+)?pytest(?:\s+--?[\w=.-]+)*\s*$")


@dataclass(frozen=True)
class RunLimits:
    """What one run may spend. ``max_cost_micros`` 0 means no cap of the run's own."""

    max_steps: int = 40
    max_total_tokens: int = 2_000_000
    max_wall_time_s: float = 1800.0
    max_cost_micros: int = 0
    max_output_tokens: int = 8192
    tool_result_chars: int = 12_000
    context_chars: int = 400_000
    max_verify_attempts: int = 3
    max_turn_retries: int = 2
    retry_backoff_s: float = 1.0
    verify: bool = True
    test_timeout_s: float = 600.0


class RunStopped(Exception):
    """The run ends as failed, for ``reason``; ``message`` tells the user why."""

    def __init__(self, message: str, *, reason: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details


@dataclass
class VerifyResult:
    command: str
    passed: bool
    exit_code: int | None
    output: str
    note: str = ""
    reran: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "note": self.note,
            "output_tail": self.output[-1500:],
        }


@dataclass
class LoopResult:
    """How the loop ended when it was not cancelled (cancellation raises)."""

    status: str  # "completed" or "failed"
    reason: str | None
    message: str
    summary: dict[str, Any] = field(default_factory=dict)


def plan_steps(text: str) -> list[str]:
    """The numbered or bulleted lines of a plan, as steps."""
    return [m.group(1).strip() for line in text.splitlines() if (m := _PLAN_LINE.match(line))]


def estimate_tokens(system: str, messages: list[Message], tools: list[ToolSpec]) -> int:
    """A rough input size for a reservation: about four characters per token."""
    chars = len(system) + sum(
        len(m.text) + sum(len(json.dumps(c.arguments)) for c in m.tool_calls) for m in messages
    )
    chars += sum(len(t.description) + len(json.dumps(t.input_schema)) for t in tools)
    return chars // 4 + 16 * len(messages)


class _DeltaStream:
    """Coalesces streamed text into ``message.delta`` events: at most one per interval.

    The text still pending when the turn ends is taken with :meth:`drain` and recorded in one
    transaction with the turn's ``usage`` event. A flush already writing is awaited, never
    cut, so the text stays in order.
    """

    def __init__(self, feed: RunFeed, step: int, interval_s: float = 0.05) -> None:
        self.feed = feed
        self.step = step
        self.interval_s = interval_s
        self.parts: list[str] = []
        self._timer: asyncio.Task[None] | None = None
        self._writing = False

    def add(self, text: str) -> None:
        self.parts.append(text)
        if self._timer is None or self._timer.done():
            self._timer = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.interval_s)
        text, self.parts = "".join(self.parts), []
        if text:
            self._writing = True
            try:
                await self.feed.emit(MESSAGE_DELTA, self.event(text))
            finally:
                self._writing = False

    def event(self, text: str) -> dict[str, Any]:
        return {"step": self.step, "text": text}

    async def drain(self) -> str:
        """Stop the timer and return the text not yet recorded."""
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            if not self._writing:
                timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        text, self.parts = "".join(self.parts), []
        return text

    async def close(self) -> None:
        """Record what is pending on its own (a turn that failed)."""
        text = await self.drain()
        if text:
            await self.feed.emit(MESSAGE_DELTA, self.event(text))


class AgentLoop:
    """Runs one agent run to its end. Create per run; call :meth:`run` once."""

    def __init__(
        self,
        *,
        run_id: str,
        provider: Provider,
        toolbox: AgentToolbox,
        feed: RunFeed,
        metering: Metering,
        system: str,
        messages: list[Message],
        limits: RunLimits,
        test_command: str,
        serve_command: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.provider = provider
        self.toolbox = toolbox
        self.feed = feed
        self.metering = metering
        self.system = system
        self.messages = messages
        self.limits = limits
        self.test_command = test_command
        # The template's run command ({port} placeholder): the project is served, preview it.
        self.serve_command = serve_command
        self.step = 0
        self.files_changed: list[str] = []
        self._started = time.monotonic()
        self._planned = False
        # Tests the model itself ran green after the last change need not run again.
        self._tests_green: VerifyResult | None = None
        self._changed_since_verify = True
        self._verify_failures = 0
        self._last_verify: VerifyResult | None = None
        self._last_text = ""
        # The running usage total of the current model call, for settling a cut stream.
        self._seen_usage = Usage()
        self._stream_began = False
        self._preview: dict[str, Any] | None = None
        # Why the last verification failed: (reason, what failed), for the run's end.
        self._last_failure: tuple[str, str] | None = None

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> LoopResult:
        try:
            async with asyncio.timeout(self.limits.max_wall_time_s):
                return await self._run()
        except TimeoutError:
            minutes = self.limits.max_wall_time_s / 60
            return self._failed(
                "max_wall_time",
                f"stopped after {minutes:g} minutes, the run's time limit "
                "(c.EcodeApp.agent_max_wall_time_s)",
            )
        except RunStopped as stop:
            return self._failed(stop.reason, stop.message, **stop.details)

    async def _run(self) -> LoopResult:
        await self.metering.check_model()
        tools = await self.toolbox.specs()
        while True:
            self._check_limits()
            self.step += 1
            await self.feed.emit(
                STEP_STARTED, {"step": self.step, "kind": "model"}, changes={"steps": self.step}
            )
            self._compact_history()
            turn = await self._model_turn(tools)
            self.messages.append(turn.to_message())
            if turn.text.strip():
                self._last_text = turn.text.strip()
                if not self._planned:
                    self._planned = True
                    await self.feed.emit(
                        PLAN,
                        {
                            "step": self.step,
                            "text": turn.text.strip(),
                            "steps": plan_steps(turn.text),
                            "provider": self.provider.name,
                            "model": self.provider.model,
                            "ai": self.provider.name != "offline",
                        },
                    )
            if turn.tool_calls:
                for call in turn.tool_calls:
                    outcome = await self.toolbox.call(call, step=self.step)
                    self._note(call, outcome)
                    self.messages.append(
                        Message.tool_result(call.id, outcome.text, is_error=outcome.is_error)
                    )
                continue
            if turn.stop_reason == STOP_REFUSAL:
                msg = "the model declined to continue with this request"
                raise RunStopped(msg, reason="refused")
            if turn.stop_reason == STOP_MAX_TOKENS:
                self.messages.append(
                    Message.user("Your answer was cut off by the output limit; continue.")
                )
                continue
            done = await self._verify_or_continue()
            if done is not None:
                return done

    def _check_limits(self) -> None:
        lim = self.limits
        if self.step >= lim.max_steps:
            msg = (
                f"stopped after {self.step} model turns, the run's limit "
                "(c.EcodeApp.agent_max_steps)"
            )
            raise RunStopped(msg, reason="max_steps")
        usage = self.metering.usage
        total = usage.total_input_tokens + usage.output_tokens
        if total >= lim.max_total_tokens:
            msg = f"stopped after {total} tokens, the run's limit (c.EcodeApp.agent_max_tokens)"
            raise RunStopped(msg, reason="max_tokens")
        if lim.max_cost_micros and self.metering.cost_micros >= lim.max_cost_micros:
            msg = (
                f"stopped after spending {self.metering.cost_micros} micro-credits, the run's "
                "limit (c.EcodeApp.agent_max_cost_micros)"
            )
            raise RunStopped(msg, reason="max_cost")

    def _compact_history(self) -> None:
        """Shorten old tool results once the conversation outgrows its budget."""
        size = sum(len(m.text) for m in self.messages)
        if size <= self.limits.context_chars:
            return
        # The latest results are what the model is working on; older ones it has acted on.
        for message in self.messages[:-6]:
            if message.role == "tool" and len(message.text) > COMPACT_RESULT_CHARS:
                message.text = trim_middle(message.text, COMPACT_RESULT_CHARS)
                size = sum(len(m.text) for m in self.messages)
                if size <= self.limits.context_chars:
                    return

    def _note(self, call: ToolCall, outcome: ToolOutcome) -> None:
        """Track what a tool call changed and whether it ran the tests green."""
        for path in outcome.changed:
            if path not in self.files_changed:
                self.files_changed.append(path)
        if outcome.is_error:
            return
        if call.name in CHANGING_TOOLS:
            self._tests_green = None
            self._changed_since_verify = True
        elif call.name == "run_command":
            command = str(call.arguments.get("command", ""))
            if outcome.exit_code == 0 and (
                command.strip() == self.test_command or _WHOLE_PYTEST.match(command)
            ):
                self._tests_green = VerifyResult(
                    command,
                    True,
                    0,
                    str((outcome.structured or {}).get("output", "")),
                    note="the agent's own test run",
                    reran=False,
                )

    # -- one model turn ------------------------------------------------------------------

    async def _model_turn(self, tools: list[ToolSpec]) -> TurnResult:
        attempt = 0
        while True:
            key = f"{self.run_id}:{self.step}:{attempt}"
            estimate = estimate_tokens(self.system, self.messages, tools)
            try:
                reservation = await self.metering.reserve(
                    key, estimate, self.limits.max_output_tokens
                )
            except InsufficientCredits as exc:
                raise RunStopped(exc.message, reason="insufficient_credits") from exc
            self._seen_usage = Usage()
            self._stream_began = False
            deltas = _DeltaStream(self.feed, self.step)
            try:
                try:
                    result = await self._stream(tools, deltas)
                except BaseException:
                    await deltas.close()
                    raise
            except ProviderError as exc:
                used = exc.partial_usage if not exc.partial_usage.is_zero else self._seen_usage
                cost = await self.metering.finish_call(reservation, used, key, "provider_error")
                if not used.is_zero:
                    await self._record_usage(used, cost, partial=True)
                # The SDK already retried what failed before the stream began; a stream that
                # broke off part-way is this loop's to retry.
                if exc.retryable and self._stream_began and attempt < self.limits.max_turn_retries:
                    attempt += 1
                    log.info(
                        "run %s: retrying model turn %d after %s", self.run_id, self.step, exc.kind
                    )
                    await asyncio.sleep(self.limits.retry_backoff_s * attempt)
                    continue
                raise RunStopped(exc.message, reason="provider_error", kind=exc.kind) from exc
            except asyncio.CancelledError:
                # Tokens the provider reported before the cut were billed upstream: settle them.
                await self.metering.finish_cancelled_call(
                    reservation, self._seen_usage, key, "cancelled"
                )
                raise
            except BaseException:
                await self.metering.release(reservation, "error")
                raise
            cost = await self.metering.settle(reservation, result.usage, key)
            await self._record_usage(result.usage, cost, text=await deltas.drain(), deltas=deltas)
            return result

    async def _stream(self, tools: list[ToolSpec], deltas: _DeltaStream) -> TurnResult:
        parts: list[str] = []
        calls: list[ToolCall] = []
        events = self.provider.stream_turn(
            system=self.system,
            messages=self.messages,
            tools=tools,
            max_tokens=self.limits.max_output_tokens,
        )
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                self._stream_began = True
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                    deltas.add(event.text)
                elif isinstance(event, ToolCallReady):
                    calls.append(event.call)
                elif isinstance(event, UsageReport):
                    self._seen_usage = event.usage
                elif isinstance(event, TurnEnd):
                    return TurnResult("".join(parts), calls, event.stop_reason, event.usage)
        msg = "the provider's stream ended without a TurnEnd event"
        raise RuntimeError(msg)

    async def _record_usage(
        self,
        usage: Usage,
        cost: int,
        *,
        partial: bool = False,
        text: str = "",
        deltas: _DeltaStream | None = None,
    ) -> None:
        """The ``usage`` event, and the call's tokens and cost added to the run, in one
        transaction with the turn's last ``message.delta`` (``text``), when there is one."""
        total = self.metering.usage
        batch: list[tuple[str, dict[str, Any], Any]] = []
        if text and deltas is not None:
            batch.append((MESSAGE_DELTA, deltas.event(text), None))
        batch.append(
            (
                USAGE,
                {
                    "step": self.step,
                    "model": self.provider.model,
                    "provider": self.provider.name,
                    **usage.to_json(),
                    "cost_micros": cost,
                    "partial": partial,
                    "total": {**total.to_json(), "cost_micros": self.metering.cost_micros},
                },
                usage_changes(usage, cost),
            )
        )
        await self.feed.emit_many(batch)

    # -- verification --------------------------------------------------------------------

    async def _verify_or_continue(self) -> LoopResult | None:
        """The model says it is done: check. None means the loop goes on with a fix request.

        The project's tests must pass and, for a served project where previews exist, the
        app must start. A failure goes back to the model, at most ``max_verify_attempts``
        times, and not again when the model changed nothing since the last one.
        """
        if not self.limits.verify or not await self.toolbox.has("run_command"):
            return self._completed(None)
        if not self._changed_since_verify and self._last_failure is not None:
            reason, what = self._last_failure
            msg = f"{what}, and the agent made no further changes"
            raise RunStopped(msg, reason=reason, tests=self._tests_json())
        result = await self._verify()
        self._last_verify = result
        self._changed_since_verify = False
        if result.passed:
            problem = await self._check_preview()
            if problem is None:
                return self._completed(result)
            reason, what, detail = PREVIEW_FAILED, "the app did not start", problem
            request = "Fix the project so that the app starts, then stop."
        else:
            code = f"exited with {result.exit_code}" if result.exit_code is not None else "failed"
            reason, what = "tests_failing", f"the project's tests fail (`{result.command}` {code})"
            detail = result.output
            request = "Fix the project so that its tests pass, then stop."
        self._last_failure = (reason, what)
        self._verify_failures += 1
        if self._verify_failures >= self.limits.max_verify_attempts:
            msg = f"{what}, after {self._verify_failures} attempts to fix it"
            raise RunStopped(msg, reason=reason, tests=self._tests_json())
        output = trim_middle(detail, VERIFY_OUTPUT_CHARS)
        self.messages.append(Message.user(f"Verification failed: {what}.\n{output}\n\n{request}"))
        return None

    def _tests_json(self) -> dict[str, Any] | None:
        return self._last_verify.to_json() if self._last_verify is not None else None

    async def _verify(self) -> VerifyResult:
        await self.feed.emit(
            STEP_STARTED, {"step": self.step, "kind": "verify", "command": self.test_command}
        )
        if self._tests_green is not None:
            return self._tests_green
        call = ToolCall(
            f"verify_{self.step}",
            "run_command",
            {"command": self.test_command, "timeout_s": self.limits.test_timeout_s},
        )
        outcome = await self.toolbox.call(call, step=self.step)
        code = outcome.exit_code
        output = str((outcome.structured or {}).get("output", outcome.text))
        if outcome.is_error:
            return VerifyResult(self.test_command, False, None, outcome.text)
        if code == PYTEST_NO_TESTS and "pytest" in self.test_command:
            return VerifyResult(self.test_command, True, code, output, note="no tests were found")
        return VerifyResult(self.test_command, code == 0, code, output)

    async def _check_preview(self) -> str | None:
        """Start a served project's preview when the deploy tools exist; a problem, or None.

        Only an app that did not start (``preview_failed``) is the project's problem; a
        server without previews (the CLI, previews turned off) just skips this check.
        """
        if self.serve_command is None or not await self.toolbox.can_preview():
            return None
        call = ToolCall(f"preview_{self.step}", "start_preview", {"command": self.serve_command})
        outcome = await self.toolbox.call(call, step=self.step)
        if outcome.is_error and outcome.error_code == PREVIEW_FAILED:
            return outcome.text
        if outcome.is_error:
            log.info("run %s: preview not checked: %s", self.run_id, outcome.error_code)
        else:
            self._preview = outcome.structured
        return None

    # -- endings -------------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        return {
            "files": list(self.files_changed),
            "steps": self.step,
            "usage": self.metering.usage.to_json(),
            "cost_micros": self.metering.cost_micros,
            "message": self._last_text[-2000:],
        }

    def _completed(self, tests: VerifyResult | None) -> LoopResult:
        summary = self._summary()
        summary["tests"] = tests.to_json() if tests is not None else None
        if self._preview is not None:
            summary["preview"] = {
                k: self._preview.get(k) for k in ("id", "status", "url") if k in self._preview
            }
        note = ""
        if tests is not None:
            note = f"; tests: {tests.note}" if tests.note else "; tests pass"
        return LoopResult("completed", None, f"the project is built{note}", summary)

    def _failed(self, reason: str, message: str, **details: Any) -> LoopResult:
        summary = self._summary()
        tests = details.get("tests")
        if tests is None and self._last_verify is not None:
            tests = self._last_verify.to_json()
        summary["tests"] = tests
        return LoopResult("failed", reason, message, summary)
