"""The Anthropic provider through the real SDK against the Messages API loopback."""

import asyncio

import pytest

from ecode_jupyter.agent.providers import (
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
    TurnEnd,
    Usage,
    UsageReport,
    collect_turn,
    make_provider,
)
from ecode_jupyter.testing import (
    CutStream,
    HTTPFault,
    MalformedEvent,
    ScriptedToolCall,
    ScriptedTurn,
    StreamError,
    text_turn,
    tool_turn,
)

MODEL = "claude-sonnet-4-6"
SYSTEM = "You build projects. " * 200
TOOLS = [
    ToolSpec("read_file", "Read a file", {"type": "object", "properties": {"path": {}}}),
    ToolSpec("write_file", "Write a file", {"type": "object", "properties": {"path": {}}}),
]


def provider_for(server, **opts):
    return make_provider("anthropic", MODEL, api_key="sk-test", base_url=server.base_url, **opts)


async def run_turn(provider, messages=None, tools=TOOLS, max_tokens=1024):
    return [
        event
        async for event in provider.stream_turn(
            system=SYSTEM,
            messages=messages or [Message.user("build it")],
            tools=tools,
            max_tokens=max_tokens,
        )
    ]


async def test_text_streams_as_deltas_then_turn_end(ecode_anthropic_loopback):
    srv = ecode_anthropic_loopback([text_turn("Hello from the loopback model.", text_chunk=5)])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 6
    assert "".join(deltas) == "Hello from the loopback model."
    assert isinstance(events[0], UsageReport)
    assert events[-1] == TurnEnd("end_turn", events[-2].usage)


async def test_tool_call_arguments_split_over_many_deltas(ecode_anthropic_loopback):
    content = "from flask import Flask\napp = Flask(__name__)\n" * 20
    turn = tool_turn("write_file", {"path": "app.py", "content": content}, text="Writing.")
    turn.args_chunk = 3
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    (ready,) = [e for e in events if isinstance(e, ToolCallReady)]
    assert ready.call.name == "write_file"
    assert ready.call.arguments == {"path": "app.py", "content": content}
    assert ready.call.id.startswith("toolu_")
    assert events[-1].stop_reason == "tool_use"


async def test_several_tool_calls_keep_their_order_and_ids(ecode_anthropic_loopback):
    turn = ScriptedTurn(
        tool_calls=[
            ScriptedToolCall("read_file", {"path": "a.py"}, id="toolu_a"),
            ScriptedToolCall("read_file", {"path": "b.py"}, id="toolu_b"),
        ]
    )
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv) as provider:
        result = await collect_turn(
            provider.stream_turn(
                system=SYSTEM, messages=[Message.user("x")], tools=TOOLS, max_tokens=99
            )
        )
    assert result.tool_calls == [
        ToolCall("toolu_a", "read_file", {"path": "a.py"}),
        ToolCall("toolu_b", "read_file", {"path": "b.py"}),
    ]


async def test_usage_reports_input_first_and_cache_fields(ecode_anthropic_loopback):
    usage = Usage(input_tokens=120, output_tokens=45, cache_read_tokens=3000, cache_write_tokens=80)
    srv = ecode_anthropic_loopback([text_turn("ok", usage=usage)])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    reports = [e.usage for e in events if isinstance(e, UsageReport)]
    # message_start already tells the input side, before any text.
    assert reports[0].input_tokens == 120
    assert reports[0].cache_read_tokens == 3000
    assert reports[0].cache_write_tokens == 80
    assert reports[-1] == usage
    assert events[-1].usage == usage


async def test_request_marks_system_tools_and_history_for_prompt_caching(ecode_anthropic_loopback):
    srv = ecode_anthropic_loopback([text_turn("done")])
    history = [
        Message.user("make a todo app"),
        Message.assistant("Reading.", [ToolCall("toolu_1", "read_file", {"path": "a"})]),
        Message.tool_result("toolu_1", "no such file", is_error=True),
        Message.user("go on"),
    ]
    async with provider_for(srv) as provider:
        await run_turn(provider, messages=history, max_tokens=777)
    (request,) = srv.requests
    body = request.json
    assert request.path == "/v1/messages" and request.stream
    assert body["model"] == MODEL and body["max_tokens"] == 777
    assert body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    assert "cache_control" not in body["tools"][0]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["input_schema"] == TOOLS[-1].input_schema
    # The tool result and the next user text share one user turn; roles alternate.
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assistant = body["messages"][1]["content"]
    assert assistant[1] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "read_file",
        "input": {"path": "a"},
    }
    last = body["messages"][2]["content"]
    assert last[0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "no such file",
        "is_error": True,
    }
    assert last[-1] == {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}
    assert request.tool_results()[0].is_error


async def test_prompt_caching_can_be_turned_off(ecode_anthropic_loopback):
    srv = ecode_anthropic_loopback([text_turn("done")])
    async with provider_for(srv, prompt_caching=False) as provider:
        await run_turn(provider)
    assert "cache_control" not in repr(srv.requests[0].body)


async def test_rate_limit_is_retried_by_the_sdk_then_succeeds(ecode_anthropic_loopback):
    turn = text_turn("after the wait", faults=[HTTPFault(429), HTTPFault(429)])
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv, max_retries=2) as provider:
        result = await collect_turn(
            provider.stream_turn(system="", messages=[Message.user("x")], tools=[], max_tokens=9)
        )
    assert result.text == "after the wait"
    assert [r.attempt for r in srv.requests] == [0, 1, 2]
    assert [r.headers["x-stainless-retry-count"] for r in srv.requests] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "rate_limited"), (500, "server_error"), (529, "overloaded")]
)
async def test_errors_left_after_retries_are_retryable_provider_errors(
    ecode_anthropic_loopback, status, kind
):
    srv = ecode_anthropic_loopback([text_turn("never", faults=[HTTPFault(status)] * 3)])
    async with provider_for(srv, max_retries=1) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    err = info.value
    assert (err.kind, err.http_status, err.retryable) == (kind, status, True)
    assert err.partial_usage == Usage()
    assert len(srv.requests) == 2
    assert srv.turns_served == 0


async def test_bad_request_is_not_retried(ecode_anthropic_loopback):
    srv = ecode_anthropic_loopback([text_turn("never", faults=[HTTPFault(400, message="bad")])])
    async with provider_for(srv, max_retries=3) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.retryable) == ("bad_request", False)
    assert "bad" in info.value.message
    assert len(srv.requests) == 1


async def test_stream_cut_mid_way_raises_with_the_usage_already_reported(
    ecode_anthropic_loopback,
):
    usage = Usage(input_tokens=900, output_tokens=300, cache_read_tokens=50)
    # message_start, ping, block start, 2 text deltas, then the connection drops.
    turn = text_turn("a fairly long answer that never ends", usage=usage, faults=[CutStream(5)])
    srv = ecode_anthropic_loopback([turn, text_turn("second try")])
    seen: list[str] = []
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            async for event in provider.stream_turn(
                system="", messages=[Message.user("x")], tools=[], max_tokens=9
            ):
                if isinstance(event, TextDelta):
                    seen.append(event.text)
        err = info.value
        assert (err.kind, err.retryable, err.http_status) == ("connection", True, None)
        assert seen == ["a fairly", " long an"]
        # Input was billed at message_start; output only the placeholder count.
        assert err.partial_usage == Usage(input_tokens=900, output_tokens=1, cache_read_tokens=50)
        # The same turn asked again is served whole: the cut was a fault of one attempt.
        result = await collect_turn(
            provider.stream_turn(system="", messages=[Message.user("x")], tools=[], max_tokens=9)
        )
    assert result.text == "a fairly long answer that never ends"
    assert [r.turn for r in srv.requests] == [0, 0]


async def test_stream_ending_cleanly_before_message_stop_is_incomplete(ecode_anthropic_loopback):
    usage = Usage(input_tokens=10, output_tokens=20)
    turn = tool_turn("read_file", {"path": "x"}, usage=usage, faults=[CutStream(8, clean=True)])
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert info.value.kind == "stream_incomplete" and info.value.retryable
    assert info.value.partial_usage.input_tokens == 10


async def test_overloaded_error_event_inside_the_stream(ecode_anthropic_loopback):
    turn = text_turn("hello", usage=Usage(input_tokens=7, output_tokens=3), faults=[StreamError(3)])
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.retryable) == ("overloaded", True)
    assert info.value.http_status is None
    assert info.value.partial_usage.input_tokens == 7


async def test_tool_arguments_cut_by_max_tokens_are_flagged(ecode_anthropic_loopback):
    call = ScriptedToolCall("write_file", raw_arguments='{"path": "app.py", "content": "imp')
    srv = ecode_anthropic_loopback([ScriptedTurn(tool_calls=[call], stop_reason="max_tokens")])
    async with provider_for(srv) as provider:
        result = await collect_turn(
            provider.stream_turn(system="", messages=[Message.user("x")], tools=TOOLS, max_tokens=9)
        )
    assert result.stop_reason == "max_tokens"
    (bad,) = result.tool_calls
    assert bad.arguments == {} and "not valid JSON" in (bad.arguments_error or "")


async def test_closing_the_turn_early_closes_the_http_stream(ecode_anthropic_loopback):
    turn = text_turn("x" * 400, text_chunk=1, event_delay=0.002)
    srv = ecode_anthropic_loopback([turn, text_turn("next")])
    async with provider_for(srv) as provider:
        stream = provider.stream_turn(
            system="", messages=[Message.user("x")], tools=[], max_tokens=9
        )
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        for _ in range(200):
            if srv.streams_abandoned:
                break
            await asyncio.sleep(0.01)
        assert srv.streams_abandoned == 1
        # The provider stays usable for the next turn.
        result = await collect_turn(
            provider.stream_turn(system="", messages=[Message.user("x")], tools=[], max_tokens=9)
        )
    assert result.text == "next"


async def test_unreadable_event_is_a_bad_response_keeping_usage(ecode_anthropic_loopback):
    turn = text_turn("hello", usage=Usage(input_tokens=31), faults=[MalformedEvent(3)])
    srv = ecode_anthropic_loopback([turn])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.retryable) == ("bad_response", False)
    assert info.value.partial_usage.input_tokens == 31
