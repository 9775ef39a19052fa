"""The progress feed over a WebSocket: replay, then live, each event exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from ecode_jupyter.testing import text_turn, tool_turn

from .feed import events, of_type, open_feed, read_feed, wait_final

# Prints a line every 20 ms for about a second: a steady stream of command.output events.
TICKER = "for i in $(seq 1 50); do echo tick $i; sleep 0.02; done"


def use_anthropic(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)


async def wait_for_seq(ecode_api: Any, run_id: str, seq: int) -> None:
    while not any(e["seq"] >= seq for e in await events(ecode_api, run_id)):
        await asyncio.sleep(0.02)


async def test_reconnecting_with_after_gets_every_event_exactly_once(
    ecode_api: Any,
    ecode_anthropic_loopback: Any,
    monkeypatch: pytest.MonkeyPatch,
    jp_http_port: int,
    jp_base_url: str,
) -> None:
    server = ecode_anthropic_loopback(
        [
            tool_turn("run_command", {"command": TICKER}, text="Counting."),
            tool_turn("run_command", {"command": TICKER}),
            text_turn("Counted twice."),
        ]
    )
    use_anthropic(server, monkeypatch)
    # A template's project has tests, so the run can end completed.
    body = {"name": "feed", "template": "python-script"}
    pid = (await ecode_api("POST", "projects", body=body)).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "count"})).body
    await wait_for_seq(ecode_api, run["id"], 3)

    # A client that follows from the start, throughout.
    whole = await open_feed(jp_http_port, jp_base_url, run["id"])
    # Another reads a few events, drops, and reconnects while events keep arriving.
    first = await open_feed(jp_http_port, jp_base_url, run["id"])
    part_one = await read_feed(first, limit=4)
    first.close()
    await wait_for_seq(ecode_api, run["id"], part_one[-1]["seq"] + 5)
    second = await open_feed(jp_http_port, jp_base_url, run["id"], after=part_one[-1]["seq"])
    part_two = await read_feed(second)
    everything = await read_feed(whole)

    final = await wait_final(ecode_api, run["id"])
    recorded = await events(ecode_api, run["id"])
    assert final["status"] == "completed"
    assert [e["seq"] for e in recorded] == list(range(1, final["last_seq"] + 1))
    # Each client got each event once, in order, identical to what was recorded.
    assert everything == recorded
    assert part_one + part_two == recorded
    assert len(of_type(recorded, "command.output")) >= 4
    assert everything[-1]["type"] == "run.completed"


async def test_a_finished_runs_feed_replays_and_closes(
    ecode_api: Any, jp_http_port: int, jp_base_url: str
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})).body
    final = await wait_final(ecode_api, run["id"])
    ws = await open_feed(jp_http_port, jp_base_url, run["id"], after=final["last_seq"] - 2)
    tail = await read_feed(ws)
    assert [e["seq"] for e in tail] == [final["last_seq"] - 1, final["last_seq"]]
    assert tail[-1]["type"] == "run.completed"
    ws = await open_feed(jp_http_port, jp_base_url, run["id"], after=final["last_seq"])
    assert await read_feed(ws) == []


async def test_the_feed_is_for_project_members_only(
    ecode_api: Any, jp_http_port: int, jp_base_url: str
) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "p"})).body["id"]
    run = (await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": "a cli script"})).body
    await wait_final(ecode_api, run["id"])
    with pytest.raises(HTTPClientError) as stranger:
        await open_feed(jp_http_port, jp_base_url, run["id"], user="bob")
    assert stranger.value.code == 404
    with pytest.raises(HTTPClientError) as bad:
        await open_feed(jp_http_port, jp_base_url, run["id"], after=-1)
    assert bad.value.code == 400
