"""The agent loop: model turns, tool calls, a verify step, and the limits that end a run.

One :class:`AgentLoop` drives one run::

    plan ─► [model turn ─► tool calls]* ─► model says it is done ─► verify (tests, preview)
                 ▲                                                     │ failed
                 └──────────────── "the tests fail: …" ◄───────────────┘

Every model call goes through :class:`Metering` (reserve, settle, release) and reports a
``usage`` event; every tool call goes through the tool layer as the run's user. The run ends
``completed`` only when the suite's own checks pass (see ``verification``: whatever tests the
model ran, they run again here, each with a ``verify.result`` event), or ``failed`` with a
reason: a limit (``max_steps``, ``max_tokens``, ``max_wall_time``, ``max_cost``),
``insufficient_credits``, ``tests_failing``, ``preview_failed`` (a served app that does not
start), ``provider_error``, ``refused``, ``context_window``, ``unknown_stop_reason``,
``empty_answer``, ``no_template`` (the offline provider has nothing that fits),
``install_failed`` and ``offline_cannot_change`` (the offline provider's requirements did not
install; a follow-up prompt it cannot carry out).

Model calls are retried here, not in the SDKs (whose retries are turned off), so that every
wait is a ``step.started`` event of kind ``retry`` in the feed: exponential backoff from
``retry_backoff_s``, or the provider's ``retry-after`` up to ``max_retry_after_s``.
Cancelling the task that runs :meth:`AgentLoop.run` stops it anywhere — a running command's
process group is killed by the tool layer's runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exceptions import ApprovalTimedOut, CostCapReached, InsufficientCredits, RateLimited
from ..projects.templating import ProjectTemplate
from .events import MESSAGE_DELTA, PLAN, STEP_STARTED, USAGE, VERIFY_RESULT, RunFeed
from .metering import Metering
from .modes import ASK, BUILD, PLAN_APPROVED, PLAN_APPROVED_AS_EDITED, PLAN_NOT_YET
from .modes import PLAN as PLAN_MODE
from .providers.base import (
    FINISHED_STOP_REASONS,
    STOP_CANNOT_BUILD,
    STOP_CONTEXT_WINDOW,
    STOP_MAX_TOKENS,
    STOP_PAUSE_TURN,
    STOP_REFUSAL,
    STOP_TOOL_USE,
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
from .toolbox import AgentToolbox, ToolOutcome, trim_middle
from .verification import DEFAULT_PYTEST, Check, VerifyResult, judge, plan_checks

if TYPE_CHECKING:
    from .approvals import RunApprover

log = logging.getLogger(__name__)

# Told after each step that called tools: (step, tool names, paths the run's tools have
# reported changing so far). The checkpoints of issue 19 hang here (checkpoints/manager.py).
StepHook = Callable[[int, list[str], list[str]], Awaitable[None]]
# Told right before a step's tools run (the step's number): what changed since the last
# step was not the agent's doing (a person typed while the model thought).
ToolsHook = Callable[[int], Awaitable[None]]

__all__ = ["AgentLoop", "LoopResult", "RunLimits", "RunStopped", "VerifyResult", "plan_steps"]

VERIFY_OUTPUT_CHARS = 6000
# The deploy tools' error when the app itself did not start (see deploy/tools.py).
PREVIEW_FAILED = "preview_failed"
# check_app saw the started app's first page throw or answer 5xx
APP_CHECK_FAILED = "app_check_failed"
COMPACT_RESULT_CHARS = 800
_PLAN_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$")
# Tools that only look: calling them changes nothing a failed check would see differently.
_LOOKING_TOOLS = frozenset(
    {"list_files", "read_file", "search_files", "read_notebook", "preview_status", "query_database"}
)
# Answers that are not a finished answer but ask for one more turn: how many in a row.
_MAX_NUDGES = 2
_MAX_PAUSES = 3
EMPTY_ANSWER = (
    "Your last answer was empty. If the project is finished, answer with a short summary of "
    "what you built; otherwise go on with the next tool call."
)
NO_CALL_ARRIVED = (
    "Your last answer ended for a tool call, but no tool call arrived. Make the call again, "
    "or, if the project is finished, answer with a short summary."
)
OUTPUT_CUT = (
    "your output was cut off by the output limit ({limit} tokens per answer) before this "
    "call's arguments were complete, so it was not run. Send it again, smaller: write a large "
    "file in parts (write_file with the first part, then edit_file to add the rest)."
)


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
    #: retries of a failed model call (rate limits, overload, timeouts, a cut stream)
    max_turn_retries: int = 4
    #: the first backoff; it doubles per retry (with jitter) up to ``max_backoff_s``
    retry_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: the longest ``retry-after`` obeyed; a provider asking for more ends the run
    max_retry_after_s: float = 60.0
    verify: bool = True
    test_timeout_s: float = 600.0


_FIX_REQUESTS = {
    "pytest": "Fix the project so that its tests pass (add pytest tests if there are none), "
    "then stop.",
    "npm": "Fix the project so that `npm test` passes (a package.json `test` script that runs "
    "real tests), then stop.",
    "notebook": "Fix the notebook so that it runs top to bottom in a fresh kernel, then stop.",
}
_PASSED_NOTES = {
    "pytest": "tests pass",
    "npm": "npm test passes",
    "notebook": "the notebook runs top to bottom",
}


class RunStopped(Exception):
    """The run ends as failed, for ``reason``; ``message`` tells the user why."""

    def __init__(self, message: str, *, reason: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details


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


class _DeltaStream:
    """Coalesces streamed text into ``message.delta`` events: at most one per interval.

    The text still pending when the turn ends is taken with :meth:`drain` and recorded in one
    transaction with the turn's ``usage`` event. A flush already writing is awaited, never
    cut, so the text stays in order.
    """

    def __init__(
        self, feed: RunFeed, step: int, interval_s: float = 0.05, *, attempt: int = 0
    ) -> None:
        self.feed = feed
        self.step = step
        self.attempt = attempt
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
        # A retried call's text is a new message: clients start one on each step.started.
        if self.attempt:
            return {"step": self.step, "text": text, "attempt": self.attempt}
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
        test_command: str = DEFAULT_PYTEST,
        serve_command: str | None = None,
        template: ProjectTemplate | None = None,
        on_step: StepHook | None = None,
        before_tools: ToolsHook | None = None,
        mode: str = BUILD,
        approver: RunApprover | None = None,
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
        self.template = template
        # The template's run command ({port} placeholder): the project is served, preview it.
        self.serve_command = serve_command
        self.on_step = on_step
        self.before_tools = before_tools
        self.step = 0
        self.files_changed: list[str] = []
        self._started = time.monotonic()
        self._planned = False
        self._changed_since_verify = True
        # Answers in a row that asked for another turn instead of finishing (empty, paused).
        self._nudges = 0
        self._pauses = 0
        self._passed: list[VerifyResult] = []
        self._verify_failures = 0
        self._last_verify: VerifyResult | None = None
        self._last_text = ""
        # The running usage total of the current model call, for settling a cut stream.
        self._seen_usage = Usage()
        self._preview: dict[str, Any] | None = None
        # Why the last verification failed: (reason, what failed), for the run's end.
        self._last_failure: tuple[str, str] | None = None
        self.mode = mode
        self.approver = approver
        # A plan-mode run gets no tools until a person approved its plan.
        self._plan_approved = mode != PLAN_MODE

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> LoopResult:
        try:
            async with asyncio.timeout(self.limits.max_wall_time_s) as deadline:
                if self.approver is not None:
                    # Time spent waiting for a person does not count against the run.
                    self.approver.deadline = deadline
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
            started: dict[str, Any] = {"step": self.step, "kind": "model"}
            # The offline provider knows which plan item a turn carries out; with it a client
            # ticks "install" only once pip has finished, not when the install turn begins.
            item = self.provider.next_plan_item(self.messages)
            if item is not None:
                started["plan_item"] = item
            await self.feed.emit(STEP_STARTED, started, changes={"steps": self.step})
            self._compact_history()
            turn = await self._model_turn(tools if self._plan_approved else [])
            self.messages.append(turn.to_message())
            if turn.stop_reason == STOP_CANNOT_BUILD:
                msg = turn.text.strip() or "the provider cannot build what was asked"
                raise RunStopped(msg, reason=self.provider.cannot_build_reason)
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
            if not self._plan_approved:
                await self._ask_for_plan_approval(turn)
                continue
            if turn.tool_calls:
                self._nudges = self._pauses = 0
                if self.before_tools is not None:
                    await self.before_tools(self.step)
                await self._call_tools(turn)
                if self.on_step is not None:
                    names = [call.name for call in turn.tool_calls]
                    # Every path the run's tools reported so far (files_changed lists each
                    # once, so a file written again in this step is not in a slice of it).
                    await self.on_step(self.step, names, list(self.files_changed))
                continue
            if not self._finished_answer(turn):
                continue
            done = await self._verify_or_continue()
            if done is not None:
                return done

    async def _ask_for_plan_approval(self, turn: TurnResult) -> None:
        """Plan mode: the turn's text is the plan; wait for a person to approve it. Approved,
        the same run goes on with tools; denied (or unanswered), it ends."""
        for call in turn.tool_calls:  # offered none; a call anyway is answered, not run
            self.messages.append(Message.tool_result(call.id, PLAN_NOT_YET, is_error=True))
        plan = turn.text.strip()
        if not plan:
            self._nudges += 1
            if self._nudges > _MAX_NUDGES:
                msg = "the model did not write a plan"
                raise RunStopped(msg, reason="empty_answer")
            self.messages.append(Message.user(PLAN_NOT_YET))
            return
        if self.approver is None:
            msg = "plan mode needs approvals, which this server cannot ask for"
            raise RunStopped(msg, reason="plan_not_approved")
        try:
            answer = await self.approver.approve_plan(plan)
        except ApprovalTimedOut as exc:
            raise RunStopped(exc.message, reason=exc.code) from exc
        if answer.decision == "deny":
            who = f" by {answer.by}" if answer.by else ""
            msg = f"the plan was not approved{who}; nothing was changed"
            raise RunStopped(msg, reason="plan_rejected")
        self._plan_approved = True
        self._nudges = 0
        if answer.plan is None:
            self.messages.append(Message.user(PLAN_APPROVED))
            return
        # Edited by the person: the feed (and Features) show that plan, and the model gets it.
        await self.feed.emit(
            PLAN,
            {
                "step": self.step,
                "text": answer.plan,
                "steps": plan_steps(answer.plan),
                "provider": self.provider.name,
                "model": self.provider.model,
                "ai": self.provider.name != "offline",
                "edited_by": answer.by,
            },
        )
        self.messages.append(Message.user(PLAN_APPROVED_AS_EDITED.format(plan=answer.plan)))

    async def _call_tools(self, turn: TurnResult) -> None:
        cut = turn.stop_reason == STOP_MAX_TOKENS
        for call in turn.tool_calls:
            if cut and call.arguments_error is not None:
                # Broken JSON because the answer hit the limit: say that, not "bad JSON".
                limit = self.limits.max_output_tokens
                call = ToolCall(
                    call.id, call.name, {}, arguments_error=OUTPUT_CUT.format(limit=limit), cut=True
                )
            outcome = await self.toolbox.call(call, step=self.step)
            if outcome.error_code == ApprovalTimedOut.code:
                # Nobody answered: the run stops there instead of the model guessing on.
                raise RunStopped(outcome.text.partition(": ")[2], reason=ApprovalTimedOut.code)
            self._note(call, outcome)
            self.messages.append(
                Message.tool_result(call.id, outcome.text, is_error=outcome.is_error)
            )

    def _finished_answer(self, turn: TurnResult) -> bool:
        """Whether a turn without tool calls is the model's finished answer; when it is not,
        either ask for another turn (False) or end the run (RunStopped). Only a known,
        finished stop reason with some text counts: nothing else may end a run completed."""
        reason = turn.stop_reason
        if reason == STOP_REFUSAL:
            msg = "the model declined to continue with this request"
            raise RunStopped(msg, reason="refused")
        if reason == STOP_CONTEXT_WINDOW:
            msg = (
                "the conversation outgrew the model's context window before the answer ended; "
                "continue the run to start over from the files in the workspace"
            )
            raise RunStopped(msg, reason="context_window")
        if reason == STOP_MAX_TOKENS:
            self.messages.append(
                Message.user("Your answer was cut off by the output limit; continue.")
            )
            return False
        if reason == STOP_PAUSE_TURN:
            # The API paused a long turn; sending the conversation back lets it go on.
            self._pauses += 1
            if self._pauses > _MAX_PAUSES:
                msg = f"the model paused its answer {self._pauses} times in a row"
                raise RunStopped(msg, reason="unknown_stop_reason", stop_reason=reason)
            return False
        if reason not in FINISHED_STOP_REASONS and reason != STOP_TOOL_USE:
            msg = (
                f"the model's answer ended for a reason this agent does not know ({reason!r}), "
                "so the run cannot count it as finished"
            )
            raise RunStopped(msg, reason="unknown_stop_reason", stop_reason=reason)
        if reason == STOP_TOOL_USE or not turn.text.strip():
            self._nudges += 1
            if self._nudges > _MAX_NUDGES:
                what = "no tool call arrived" if turn.text.strip() else "the answer was empty"
                msg = f"the model stopped without finishing: {what}, {self._nudges} times in a row"
                raise RunStopped(msg, reason="empty_answer")
            nudge = NO_CALL_ARRIVED if reason == STOP_TOOL_USE else EMPTY_ANSWER
            self.messages.append(Message.user(nudge))
            return False
        self._nudges = self._pauses = 0
        return True

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
        """Track what a tool call changed. What the model's own commands printed does not
        count for verification: a `pytest --co` exits 0 too."""
        for path in outcome.changed:
            if path not in self.files_changed:
                self.files_changed.append(path)
        # A command may change the project as much as an edit (npm install, sed -i).
        if outcome.changed or (not outcome.is_error and call.name not in _LOOKING_TOOLS):
            self._changed_since_verify = True

    # -- one model turn ------------------------------------------------------------------

    async def _model_turn(self, tools: list[ToolSpec]) -> TurnResult:
        attempt = 0
        while True:
            key = f"{self.run_id}:{self.step}:{attempt}"
            # The hold covers the worst the call can cost: every input token the provider
            # may bill, and max_tokens of output. Settling then never has to cap the charge.
            bound = self.provider.input_token_bound(
                system=self.system, messages=self.messages, tools=tools
            )

            async def count(tools: list[ToolSpec] = tools) -> int | None:
                return await self.provider.count_input_tokens(
                    system=self.system, messages=self.messages, tools=tools
                )

            try:
                reservation = await self.metering.reserve(
                    key, bound, self.limits.max_output_tokens, recount=count
                )
            except (InsufficientCredits, RateLimited, CostCapReached) as exc:
                # reason: "insufficient_credits", "rate_limited" (the user's model_calls) or
                # "max_credits" (the run's own cap; continue with a higher one)
                raise RunStopped(exc.message, reason=exc.code, **exc.details) from exc
            self._seen_usage = Usage()
            deltas = _DeltaStream(self.feed, self.step, attempt=attempt)
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
                wait = self._retry_wait(exc, attempt)
                attempt += 1
                await self._wait_to_retry(exc, attempt, wait)
                continue
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

    def _retry_wait(self, exc: ProviderError, attempt: int) -> float:
        """Seconds to wait before retrying a failed call, or RunStopped when it is not retried:
        not retryable, out of retries, or the provider asks for a longer wait than obeyed."""
        lim = self.limits
        details = {"kind": exc.kind, "http_status": exc.http_status}
        if not exc.retryable:
            raise RunStopped(exc.message, reason="provider_error", **details) from exc
        if attempt >= lim.max_turn_retries:
            tries = attempt + 1
            msg = f"{exc.message} (after {tries} attempts; c.EcodeApp.agent_max_retries)"
            raise RunStopped(msg, reason="provider_error", **details) from exc
        if exc.retry_after_s is not None:
            if exc.retry_after_s > lim.max_retry_after_s:
                msg = (
                    f"{exc.message}: the provider asked to wait {exc.retry_after_s:g} s before "
                    f"trying again, longer than this server waits ({lim.max_retry_after_s:g} s, "
                    "c.EcodeApp.agent_max_retry_after_s); try the run again later"
                )
                raise RunStopped(msg, reason="provider_error", **details) from exc
            return exc.retry_after_s
        # Full backoff doubles per attempt; jitter spreads the retries of concurrent runs.
        backoff = min(lim.retry_backoff_s * 2.0**attempt, lim.max_backoff_s)
        return backoff * (0.75 + random.random() / 4)

    async def _wait_to_retry(self, exc: ProviderError, attempt: int, wait: float) -> None:
        """Tell the feed why and how long the run waits, then wait (cancellable)."""
        log.info(
            "run %s: model turn %d failed (%s); retry %d in %.1fs",
            self.run_id,
            self.step,
            exc.kind,
            attempt,
            wait,
        )
        await self.feed.emit(
            STEP_STARTED,
            {
                "step": self.step,
                "kind": "retry",
                "title": (
                    f"retrying the model call in {wait:.1f} s ({exc.kind}, attempt {attempt} of "
                    f"{self.limits.max_turn_retries})"
                ),
                "attempt": attempt,
                "max_attempts": self.limits.max_turn_retries,
                "wait_s": round(wait, 3),
                "error": exc.kind,
                "http_status": exc.http_status,
                "message": exc.message,
            },
        )
        await asyncio.sleep(wait)

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
                    # Counted from the characters sent and received: the stream reported none.
                    "estimated": usage.estimated,
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

        The project's checks must pass and, for a served project where previews exist, the
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
            reason, what, detail = problem
            request = (
                "Fix the project so that the app starts, then stop."
                if reason == PREVIEW_FAILED
                else "Fix the page so that it loads without errors, then stop."
            )
        else:
            code = f"exited with {result.exit_code}" if result.exit_code is not None else "failed"
            note = f": {result.note}" if result.note else ""
            reason = "tests_failing"
            what = f"the project's checks fail (`{result.command}` {code}{note})"
            detail = result.output
            request = _FIX_REQUESTS.get(result.kind, _FIX_REQUESTS["pytest"])
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
        """Run the project's checks, each with a ``verify.result`` event; the first failure
        ends the round. What the model ran itself does not count."""
        self._passed = []
        result: VerifyResult | None = None
        for check in await self._plan_checks():
            await self.feed.emit(
                STEP_STARTED,
                {
                    "step": self.step,
                    "kind": "verify",
                    "command": check.shown,
                    "check": check.kind,
                },
            )
            result = await self._run_check(check)
            await self.feed.emit(VERIFY_RESULT, {"step": self.step, **result.to_json()})
            if not result.passed:
                return result
            self._passed.append(result)
        if result is None:  # plan_checks always plans one; keep the loop honest if not
            return VerifyResult(self.test_command, False, None, "", note="no checks to run")
        return result

    async def _plan_checks(self) -> list[Check]:
        """The checks for what the workspace holds now (read without feed events)."""
        listing = await self.toolbox.peek("list_files", {"recursive": True})
        entries = (listing.structured or {}).get("entries") or []
        files = [
            str(e.get("path")) for e in entries if isinstance(e, dict) and e.get("type") == "file"
        ]
        package_json = None
        if "package.json" in files:
            read = await self.toolbox.peek("read_file", {"path": "package.json"})
            package_json = None if read.is_error else read.text
        pytest_command = self.test_command if "pytest" in self.test_command else DEFAULT_PYTEST
        return plan_checks(
            files, package_json=package_json, template=self.template, pytest_command=pytest_command
        )

    async def _run_check(self, check: Check) -> VerifyResult:
        if check.problem is not None:
            return VerifyResult(
                check.shown, False, None, check.problem, note=check.problem, kind=check.kind
            )
        call = ToolCall(
            f"verify_{self.step}_{check.kind}",
            "run_command",
            {"command": check.command, "timeout_s": self.limits.test_timeout_s},
        )
        outcome = await self.toolbox.call(call, step=self.step)
        if outcome.is_error:
            return VerifyResult(
                check.shown,
                False,
                None,
                outcome.text,
                note="the check could not run",
                kind=check.kind,
            )
        structured = outcome.structured or {}
        result = judge(check, outcome.exit_code, str(structured.get("output", outcome.text)))
        if structured.get("timed_out"):
            result.passed = False
            result.note = f"timed out after {self.limits.test_timeout_s:g} s"
        return result

    async def _check_preview(self) -> tuple[str, str, str] | None:
        """Start a served project's preview when the deploy tools exist; a problem, or None.

        Only an app that did not start (``preview_failed``) is the project's problem; a
        server without previews (the CLI, previews turned off) just skips this check.
        """
        if self.serve_command is None or not await self.toolbox.can_preview():
            return None
        call = ToolCall(f"preview_{self.step}", "start_preview", {"command": self.serve_command})
        outcome = await self.toolbox.call(call, step=self.step)
        if outcome.is_error and outcome.error_code == PREVIEW_FAILED:
            return PREVIEW_FAILED, "the app did not start", outcome.text
        if outcome.is_error:
            log.info("run %s: preview not checked: %s", self.run_id, outcome.error_code)
            return None
        self._preview = outcome.structured
        return await self._check_in_browser()

    async def _check_in_browser(self) -> tuple[str, str, str] | None:
        """Open the started app's first page in a browser (``check_app``): a page that throws
        or answers 5xx is the project's problem. No browser on this server skips the check."""
        if not await self.toolbox.has("check_app"):
            return None
        call = ToolCall(f"browser_{self.step}", "check_app", {})
        outcome = await self.toolbox.call(call, step=self.step)
        if outcome.is_error:
            log.info("run %s: app not checked in a browser: %s", self.run_id, outcome.error_code)
            return None
        try:
            report, _ = json.JSONDecoder().raw_decode(outcome.text)
        except ValueError:
            return None
        if not isinstance(report, dict) or report.get("passed") is not False:
            return None
        detail = json.dumps(report, indent=1)[:4000]
        return APP_CHECK_FAILED, "the app's first page fails in a browser", detail

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
        summary["checks"] = [r.to_json() for r in self._passed]
        if self.mode == ASK:
            return LoopResult("completed", None, "answered; nothing was changed", summary)
        note = ""
        if self._passed:
            note = "; " + ", ".join(_PASSED_NOTES.get(r.kind, r.command) for r in self._passed)
        return LoopResult("completed", None, f"the project is built{note}", summary)

    def _failed(self, reason: str, message: str, **details: Any) -> LoopResult:
        summary = self._summary()
        tests = details.get("tests")
        if tests is None and self._last_verify is not None:
            tests = self._last_verify.to_json()
        summary["tests"] = tests
        return LoopResult("failed", reason, message, summary)
