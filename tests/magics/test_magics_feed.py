"""Following a run's feed: replay, live events, reconnects that lose and repeat nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ecode_jupyter.client.discovery import ServerInfo
from ecode_jupyter.client.feed import FeedLost, follow_events
from ecode_jupyter.client.rest import ApiError

from .fake_server import TOKEN, FakeServer, event, fake_ecode_server


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    with fake_ecode_server() as server:
        yield server


def _run(fake: FakeServer, n_events: int, *, terminal: bool = True) -> str:
    fake.state.script = [event(i, "message.delta", text=f"part {i} ") for i in range(1, n_events)]
    last = "run.completed" if terminal else "message.delta"
    fake.state.script.append(event(n_events, last, message="done", text="end"))
    return fake.state.new_run("p1", "prompt").id


def _server(fake: FakeServer, token: str = TOKEN) -> ServerInfo:
    return ServerInfo(fake.url, token, "test")


def test_replays_every_event_in_order_and_stops_at_the_final_one(fake: FakeServer) -> None:
    run_id = _run(fake, 5)
    seen: list[dict[str, Any]] = []
    last = follow_events(_server(fake), run_id, seen.append)
    assert [e["seq"] for e in seen] == [1, 2, 3, 4, 5]
    assert seen[-1]["type"] == "run.completed"
    assert last == 5
    assert fake.state.connections == [0]


def test_starts_after_the_given_seq(fake: FakeServer) -> None:
    run_id = _run(fake, 5)
    seen: list[int] = []
    follow_events(_server(fake), run_id, lambda e: seen.append(e["seq"]), after=3)
    assert seen == [4, 5]
    assert fake.state.connections == [3]


def test_reconnects_after_a_close_and_a_cut_connection_without_loss_or_repeats(
    fake: FakeServer,
) -> None:
    run_id = _run(fake, 7)
    # First connection closes cleanly after 2 events, the second is cut after 1, then whole.
    fake.state.runs[run_id].drops = [(2, "close"), (1, "cut")]
    seen: list[int] = []
    follow_events(_server(fake), run_id, lambda e: seen.append(e["seq"]), sleep=lambda s: None)
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    # Each reconnect asked for exactly what it had not seen.
    assert fake.state.connections == [0, 2, 3]


def test_live_events_arrive_after_the_replay(fake: FakeServer) -> None:
    run_id = _run(fake, 2, terminal=False)
    run = fake.state.runs[run_id]
    seen: list[str] = []

    def on_event(ev: dict[str, Any]) -> None:
        seen.append(ev["type"])
        if ev["seq"] == 2:  # the replay is over: the run goes on, live
            for type_ in ("tool.call", "file.changed", "run.completed"):
                asyncio.run_coroutine_threadsafe(fake.state.append(run, type_), fake.loop)

    follow_events(_server(fake), run_id, on_event)
    assert seen == ["message.delta", "message.delta", "tool.call", "file.changed", "run.completed"]


def test_a_refused_token_is_reported_at_once_not_retried(fake: FakeServer) -> None:
    run_id = _run(fake, 3)
    with pytest.raises(ApiError) as info:
        follow_events(_server(fake, "wrong"), run_id, lambda e: None, sleep=lambda s: None)
    assert info.value.status == 401
    assert info.value.code == "not_authenticated"
    assert "token" in info.value.hint


def test_an_unknown_run_is_not_found(fake: FakeServer) -> None:
    with pytest.raises(ApiError) as info:
        follow_events(_server(fake), "nosuchrun", lambda e: None)
    assert info.value.status == 404
    assert info.value.message == "no such run"


def test_an_application_close_code_ends_the_follow(fake: FakeServer) -> None:
    run_id = _run(fake, 4)
    fake.state.runs[run_id].drops = [(1, 4403)]
    seen: list[int] = []
    with pytest.raises(ApiError) as info:
        follow_events(_server(fake), run_id, lambda e: seen.append(e["seq"]))
    assert seen == [1]
    assert "dropped on purpose" in info.value.message
    assert fake.state.connections == [0]


def test_gives_up_after_attempts_that_bring_nothing(fake: FakeServer) -> None:
    run_id = _run(fake, 4)
    fake.state.runs[run_id].drops = [(1, "cut")] + [(0, "cut")] * 10
    seen: list[int] = []
    with pytest.raises(FeedLost) as info:
        follow_events(
            _server(fake),
            run_id,
            lambda e: seen.append(e["seq"]),
            max_attempts=3,
            sleep=lambda s: None,
        )
    assert seen == [1]
    assert "after event 1" in str(info.value)
    assert "%ecode watch" in info.value.hint
    assert fake.state.connections == [0, 1, 1, 1]


def test_a_deadline_returns_while_the_run_goes_on(fake: FakeServer) -> None:
    run_id = _run(fake, 3, terminal=False)
    seen: list[int] = []
    last = follow_events(
        _server(fake), run_id, lambda e: seen.append(e["seq"]), deadline=time.monotonic() + 0.5
    )
    assert seen == [1, 2, 3]
    assert last == 3


def test_a_quiet_feed_ticks_and_a_silent_socket_is_replaced(fake: FakeServer) -> None:
    run_id = _run(fake, 3, terminal=False)
    seen: list[int] = []
    ticks: list[float] = []
    follow_events(
        _server(fake),
        run_id,
        lambda e: seen.append(e["seq"]),
        deadline=time.monotonic() + 1.0,
        idle_timeout=0.3,
        tick_interval=0.05,
        tick=lambda: ticks.append(time.monotonic()),
        sleep=lambda s: None,
    )
    assert seen == [1, 2, 3]
    assert ticks  # the display got its chances to redraw while nothing came
    # A socket silent for the idle timeout is replaced, asking only for what is new.
    assert fake.state.connections[0] == 0
    assert len(fake.state.connections) >= 2
    assert set(fake.state.connections[1:]) == {3}
