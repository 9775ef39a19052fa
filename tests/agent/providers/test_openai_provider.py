"""The OpenAI provider through the real SDK against the Chat Completions loopback."""

import json

import pytest

from ecode_jupyter.agent.providers import (
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallReady,
    ToolSpec,
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

MODEL = "gpt-5.4"
TOOLS = [
    ToolSpec("run_command", "Run a shell command", {"type": "object", "properties": {"cmd": {}}}),
    ToolSpec("write_file", "Write a file", {"type": "object", "properties": {"path": {}}}),
]


def provider_for(server, **opts):
    return make_provider("openai", MODEL, api_key="sk-test", base_url=server.base_url, **opts)


async def run_turn(provider, messages=None, tools=TOOLS, system="be brief"):
    return [
        event
        async for event in provider.stream_turn(
            system=system,
            messages=messages or [Message.user("build it")],
            tools=tools,
            max_tokens=512,
        )
    ]


async def test_text_streams_and_usage_arrives_last(ecode_openai_loopback):
    usage = Usage(input_tokens=70, output_tokens=12)
    srv = ecode_openai_loopback([text_turn("Streaming over SSE works.", usage=usage)])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == (
        "Streaming over SSE works."
    )
    assert [type(e).__name__ for e in events[-2:]] == ["UsageReport", "TurnEnd"]
    assert events[-1].stop_reason == "end_turn"
    assert events[-1].usage == usage


async def test_request_asks_for_usage_and_sends_tools_as_functions(ecode_openai_loopback):
    srv = ecode_openai_loopback([text_turn("ok")])
    history = [
        Message.user("run the tests"),
        Message.assistant("", [ToolCall("call_1", "run_command", {"cmd": "pytest -q"})]),
        Message.tool_result("call_1", "1 failed", is_error=True),
        Message.tool_result("call_2", "fine"),
    ]
    async with provider_for(srv) as provider:
        await run_turn(provider, messages=history)
    (request,) = srv.requests
    body = request.json
    assert request.path == "/v1/chat/completions"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_completion_tokens"] == 512 and "max_tokens" not in body
    assert body["tools"][0] == {
        "type": "function",
        "function": {
            "name": "run_command",
            "description": "Run a shell command",
            "parameters": TOOLS[0].input_schema,
        },
    }
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    call = body["messages"][2]["tool_calls"][0]
    assert call["function"]["name"] == "run_command"
    assert json.loads(call["function"]["arguments"]) == {"cmd": "pytest -q"}
    results = request.tool_results()
    assert [(r.tool_call_id, r.is_error) for r in results] == [("call_1", True), ("call_2", False)]
    assert request.tool_names() == ["run_command", "write_file"]


async def test_parallel_tool_calls_are_joined_by_index(ecode_openai_loopback):
    script = "import sys\nprint(sys.argv)\n" * 10
    turn = ScriptedTurn(
        text="Two things.",
        tool_calls=[
            ScriptedToolCall("write_file", {"path": "main.py", "content": script}),
            ScriptedToolCall("run_command", {"cmd": "python main.py a b"}),
        ],
        args_chunk=4,
    )
    srv = ecode_openai_loopback([turn])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    calls = [e.call for e in events if isinstance(e, ToolCallReady)]
    assert [c.name for c in calls] == ["write_file", "run_command"]
    assert calls[0].arguments == {"path": "main.py", "content": script}
    assert calls[1].arguments == {"cmd": "python main.py a b"}
    assert all(c.id.startswith("call_") for c in calls)
    assert events[-1].stop_reason == "tool_use"


async def test_cached_prompt_tokens_are_split_out(ecode_openai_loopback):
    usage = Usage(input_tokens=200, output_tokens=30, cache_read_tokens=1800)
    srv = ecode_openai_loopback([text_turn("cached", usage=usage)])
    async with provider_for(srv) as provider:
        events = await run_turn(provider)
    (report,) = [e.usage for e in events if isinstance(e, UsageReport)]
    # On the wire prompt_tokens was 2000 with cached_tokens 1800.
    assert report == usage
    assert report.total_input_tokens == 2000


async def test_rate_limit_then_success(ecode_openai_loopback):
    srv = ecode_openai_loopback([tool_turn("run_command", {"cmd": "ls"}, faults=[HTTPFault(429)])])
    async with provider_for(srv) as provider:
        result = await collect_turn(
            provider.stream_turn(system="", messages=[Message.user("x")], tools=TOOLS, max_tokens=9)
        )
    assert result.tool_calls[0].arguments == {"cmd": "ls"}
    assert [r.attempt for r in srv.requests] == [0, 1]


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "rate_limited"), (500, "server_error"), (529, "overloaded")]
)
async def test_errors_left_after_retries(ecode_openai_loopback, status, kind):
    srv = ecode_openai_loopback([text_turn("never", faults=[HTTPFault(status)] * 3)])
    async with provider_for(srv, max_retries=2) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.http_status, info.value.retryable) == (kind, status, True)
    assert len(srv.requests) == 3


async def test_stream_cut_mid_way_is_a_retryable_error(ecode_openai_loopback):
    turn = text_turn("partial answer " * 5, usage=Usage(50, 20), faults=[CutStream(3)])
    srv = ecode_openai_loopback([turn])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.retryable) == ("connection", True)
    # Chat Completions reports usage only in its last chunk: nothing was reported yet, but
    # the cut call was billed, so the error carries an estimate, marked as one.
    partial = info.value.partial_usage
    assert partial.estimated and partial.input_tokens > 0 and partial.output_tokens > 0


async def test_stream_without_finish_reason_is_incomplete(ecode_openai_loopback):
    srv = ecode_openai_loopback([text_turn("abc", faults=[CutStream(2, clean=True)])])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert info.value.kind == "stream_incomplete"


async def test_error_object_inside_the_stream(ecode_openai_loopback):
    fault = StreamError(2, error_type="server_error", message="The server had an error")
    srv = ecode_openai_loopback([text_turn("abc", faults=[fault])])
    async with provider_for(srv) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert (info.value.kind, info.value.retryable) == ("server_error", True)
    assert "The server had an error" in info.value.message


async def test_openai_compatible_server_with_custom_base_url_and_model(ecode_openai_loopback):
    srv = ecode_openai_loopback(
        [tool_turn("write_file", {"path": "app.py"}), text_turn("all done")],
        models=["qwen2.5-coder:7b"],
    )
    env = {"OPENAI_BASE_URL": srv.base_url}
    async with make_provider("openai-compatible", "qwen2.5-coder:7b", env=env) as provider:
        first = await collect_turn(
            provider.stream_turn(
                system="", messages=[Message.user("x")], tools=TOOLS, max_tokens=300
            )
        )
        history = [
            Message.user("x"),
            first.to_message(),
            Message.tool_result(first.tool_calls[0].id, "written"),
        ]
        second = await collect_turn(
            provider.stream_turn(system="", messages=history, tools=TOOLS, max_tokens=300)
        )
    assert second.text == "all done"
    first_request, second_request = srv.requests
    assert first_request.model == "qwen2.5-coder:7b"
    # Compatible servers get the widely supported max_tokens, and a placeholder key.
    assert first_request.json["max_tokens"] == 300
    assert "max_completion_tokens" not in first_request.json
    assert first_request.headers["authorization"] == "<redacted>"
    assert second_request.tool_results()[0].content == "written"


async def test_unreadable_chunk_from_a_compatible_server(ecode_openai_loopback):
    srv = ecode_openai_loopback([text_turn("hello", faults=[MalformedEvent(2)])])
    env = {"OPENAI_BASE_URL": srv.base_url}
    async with make_provider("openai-compatible", "phi4", env=env) as provider:
        with pytest.raises(ProviderError) as info:
            await run_turn(provider)
    assert info.value.kind == "bad_response"
    assert info.value.provider == "openai-compatible"
