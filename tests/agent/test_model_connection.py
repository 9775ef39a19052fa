"""The connection to the model: waits and retries in the feed, bounded backoff, timeouts as
settings, usage a stream never reported, and a cancelled run's cost — both wire formats."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from ecode_jupyter.billing.models import LedgerEntry
from ecode_jupyter.testing import CutStream, HTTPFault, ScriptedTurn, text_turn, tool_turn

from .feed import events, of_type, wait_final
from .scripts import use_loopback

PROVIDERS = ["anthropic", "openai"]


@pytest.fixture
def agent_config() -> dict[str, Any]:
    # Short waits so retries are quick; a read timeout a silent server can run past.
    return {
        "agent_offline_installs": False,
        "agent_max_wall_time_s": 120.0,
        "agent_retry_backoff_s": 0.01,
        "agent_read_timeout_s": 1.0,
        "agent_max_retry_after_s": 60.0,
    }


def make(provider: str, anthropic: Any, openai: Any, turns: list[ScriptedTurn], **kw: Any) -> Any:
    return (anthropic if provider == "anthropic" else openai)(turns, **kw)


async def start(ecode_api: Any) -> str:
    # The template's tests pass, so a run that gets its answers ends completed.
    body = {"name": "p", "template": "python-script"}
    pid = (await ecode_api("POST", "projects", body=body)).body["id"]
    resp = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "build it"})
    assert resp.status == 201, resp.body
    return str(resp.body["id"])


def retries(feed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["data"] for e in of_type(feed, "step.started") if e["data"]["kind"] == "retry"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_burst_of_overloaded_answers_is_waited_out_in_the_feed(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    burst = [HTTPFault(529), HTTPFault(429), HTTPFault(529), HTTPFault(503)]
    turn = text_turn("Done.", faults=burst)
    server = make(provider, ecode_anthropic_loopback, ecode_openai_loopback, [turn])
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, await start(ecode_api))
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    # Each attempt was one request (the SDK retries nothing itself), each wait an event.
    assert len(server.requests) == 5
    waits = retries(feed)
    assert [(w["attempt"], w["error"]) for w in waits] == [
        (1, "overloaded"),
        (2, "rate_limited"),
        (3, "overloaded"),
        (4, "overloaded"),
    ]
    assert all(w["http_status"] in (429, 503, 529) and w["wait_s"] >= 0 for w in waits)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_retries_are_bounded(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turn = text_turn("never", faults=[HTTPFault(529)] * 10)
    server = make(provider, ecode_anthropic_loopback, ecode_openai_loopback, [turn])
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, await start(ecode_api))
    assert (run["status"], run["reason"]) == ("failed", "provider_error")
    # The first attempt and c.EcodeApp.agent_max_retries (4) more.
    assert len(server.requests) == 5
    failed = of_type(await events(ecode_api, run["id"]), "run.failed")[0]["data"]
    assert "after 5 attempts" in failed["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_retry_after_longer_than_the_cap_ends_the_run_saying_so(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    turn = text_turn("never", faults=[HTTPFault(429, retry_after_ms=3_600_000)])
    server = make(provider, ecode_anthropic_loopback, ecode_openai_loopback, [turn])
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, await start(ecode_api))
    assert (run["status"], run["reason"]) == ("failed", "provider_error")
    assert len(server.requests) == 1  # not slept through, not retried
    failed = of_type(await events(ecode_api, run["id"]), "run.failed")[0]["data"]
    assert "3600 s" in failed["message"] and "agent_max_retry_after_s" in failed["message"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_silent_connection_times_out_and_is_retried(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server sends its first events, then goes quiet far longer than the 1 s read timeout.
    silent = ScriptedTurn(text="Thinking very slowly", text_chunk=4, event_delay=30)
    server = make(
        provider,
        ecode_anthropic_loopback,
        ecode_openai_loopback,
        [silent, text_turn("Done after all.")],
    )
    use_loopback(provider, server, monkeypatch)
    run = await wait_final(ecode_api, await start(ecode_api))
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    assert [w["error"] for w in retries(feed)] == ["timeout"]
    # The retried answer's text is a message of its own, not glued to the cut one's.
    deltas = of_type(feed, "message.delta")
    retried = "".join(d["data"]["text"] for d in deltas if d["data"].get("attempt") == 1)
    assert retried == "Done after all."
    retry_seq = next(
        e["seq"] for e in of_type(feed, "step.started") if e["data"]["kind"] == "retry"
    )
    assert all(d["seq"] > retry_seq for d in deltas if d["data"].get("attempt") == 1)
    assert all(d["seq"] < retry_seq for d in deltas if not d["data"].get("attempt"))


async def ledger_of(ecode_app: Any, run_id: str) -> list[LedgerEntry]:
    db = ecode_app.ecode.db

    def read(session: Any) -> list[LedgerEntry]:
        rows = session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.run_id == run_id, LedgerEntry.kind == "settlement"
            )
        )
        return list(rows)

    return list(await db.run(read))


@pytest.mark.parametrize(
    ("fault", "honour"),
    [(None, False), (CutStream(3), True), (CutStream(3, clean=True), True)],
    ids=["server-ignores-include-usage", "dropped-before-usage", "ended-before-usage"],
)
async def test_usage_a_stream_never_reported_is_estimated_not_free(
    fault: CutStream | None,
    honour: bool,
    ecode_api: Any,
    ecode_app: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # role, text and finish_reason chunks arrive; the usage chunk never does.
    turn = text_turn("Done.", faults=[fault] if fault else [])
    server = ecode_openai_loopback([turn], honour_include_usage=honour)
    use_loopback("openai", server, monkeypatch)
    run = await wait_final(ecode_api, await start(ecode_api))
    feed = await events(ecode_api, run["id"])

    assert run["status"] == "completed", run
    # The whole answer arrived, so the turn was not asked again (and not paid twice).
    assert len(server.requests) == 1
    (usage,) = of_type(feed, "usage")
    assert usage["data"]["estimated"] is True
    assert usage["data"]["input_tokens"] > 0 and usage["data"]["output_tokens"] > 0
    assert usage["data"]["cost_micros"] > 0 and run["cost_micros"] == usage["data"]["cost_micros"]
    entries = await ledger_of(ecode_app, run["id"])
    assert [e.details.get("estimated") for e in entries] == [True]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_cancelled_runs_feed_ends_with_its_cost(
    provider: str,
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    ecode_openai_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
    ecode_workspace_root: Any,
) -> None:
    turn = tool_turn("run_command", {"command": "touch started; sleep 60"})
    server = make(provider, ecode_anthropic_loopback, ecode_openai_loopback, [turn])
    use_loopback(provider, server, monkeypatch)
    run_id = await start(ecode_api)
    run = (await ecode_api("GET", f"runs/{run_id}")).body
    while not (ecode_workspace_root / run["project_id"] / "started").exists():
        await asyncio.sleep(0.02)
    cancelled = (await ecode_api("POST", f"runs/{run_id}/cancel")).body
    assert cancelled["status"] == "cancelled"
    last = (await events(ecode_api, run_id))[-1]
    assert last["type"] == "run.cancelled"
    assert last["data"]["cost_micros"] == cancelled["cost_micros"] > 0
    assert last["data"]["usage"]["input_tokens"] == cancelled["usage"]["input_tokens"] > 0
