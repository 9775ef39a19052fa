from __future__ import annotations

import asyncio

from ecode_jupyter.deploy.logs import MAX_LINE_CHARS, LogBuffer


def test_output_is_split_into_numbered_lines_and_old_ones_fall_off() -> None:
    logs = LogBuffer(capacity=3)
    logs.feed(b"one\ntw")
    logs.feed(b"o\r\nthree\nfour\n\xe2\x82")
    logs.feed(b"\xac\n")  # a UTF-8 character split across reads
    assert [line.text for line in logs.since(0)] == ["three", "four", "\u20ac"]
    assert logs.last_seq == 5
    assert [line.seq for line in logs.since(3)] == [4, 5]


def test_a_huge_line_is_cut() -> None:
    logs = LogBuffer()
    logs.feed(b"x" * (MAX_LINE_CHARS * 3) + b"\n")
    assert all(len(line.text) < MAX_LINE_CHARS + 100 for line in logs.since(0))


async def test_follow_replays_then_streams_each_line_once() -> None:
    logs = LogBuffer()
    for n in range(5):
        logs.append(f"old {n}")
    seen: list[int] = []

    async def reader() -> None:
        async for line in logs.follow(after=2):
            seen.append(line.seq)

    task = asyncio.ensure_future(reader())
    await asyncio.sleep(0)
    logs.append("new 1")
    logs.system("stopped")
    await asyncio.sleep(0.01)
    logs.close()
    await asyncio.wait_for(task, 2)
    assert seen == [3, 4, 5, 6, 7]
    assert logs.since(6)[0].text == "[ecode] stopped"


async def test_a_stuck_follower_is_dropped_not_waited_for() -> None:
    logs = LogBuffer(capacity=10)
    follower = logs.follow()
    first = asyncio.ensure_future(follower.__anext__())
    await asyncio.sleep(0)
    for n in range(5000):
        logs.append(f"line {n}")  # never blocks, however slow the reader
    assert (await first).seq == 1
    remaining = [line.seq async for line in follower]
    # It gets an unbroken run of what was queued for it, then its stream ends.
    assert remaining == list(range(2, 2 + len(remaining)))
    assert len(remaining) < 4999
