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
    estimate_input_tokens,
    input_token_bound,
)
from ecode_jupyter.agent.providers.base import parse_tool_arguments


def test_usage_adds_field_by_field_and_totals_input():
    a = Usage(input_tokens=10, output_tokens=2, cache_read_tokens=100, cache_write_tokens=5)
    b = Usage(input_tokens=1, output_tokens=3, cache_read_tokens=0, cache_write_tokens=7)
    total = a + b
    assert total == Usage(11, 5, 100, 12)
    assert total.total_input_tokens == 11 + 100 + 12
    assert Usage().is_zero and not total.is_zero
    assert total.to_json() == {
        "input_tokens": 11,
        "output_tokens": 5,
        "cache_read_tokens": 100,
        "cache_write_tokens": 12,
    }


def test_message_constructors_build_the_neutral_history():
    call = ToolCall("c1", "read_file", {"path": "a.py"})
    history = [
        Message.user("hi"),
        Message.assistant("reading", [call]),
        Message.tool_result("c1", "boom", is_error=True),
    ]
    assert [m.role for m in history] == ["user", "assistant", "tool"]
    assert history[1].tool_calls == [call]
    assert history[2].tool_call_id == "c1" and history[2].is_error


def test_broken_tool_arguments_are_reported_not_raised():
    ok = parse_tool_arguments("c", "t", '{"a": 1}')
    assert ok.arguments == {"a": 1} and ok.arguments_error is None
    cut = parse_tool_arguments("c", "t", '{"path": "app')
    assert cut.arguments == {} and "not valid JSON" in (cut.arguments_error or "")
    array = parse_tool_arguments("c", "t", "[1, 2]")
    assert "not object" in (array.arguments_error or "")
    assert parse_tool_arguments("c", "t", "").arguments == {}


async def test_collect_turn_gathers_text_calls_and_final_usage():
    call = ToolCall("c1", "run_command", {"cmd": "pytest"})

    async def events():
        yield UsageReport(Usage(input_tokens=5))
        yield TextDelta("Run")
        yield TextDelta("ning")
        yield ToolCallReady(call)
        yield TurnEnd("tool_use", Usage(input_tokens=5, output_tokens=9))

    result = await collect_turn(events())
    assert result.text == "Running"
    assert result.tool_calls == [call]
    assert result.stop_reason == "tool_use"
    assert result.usage.output_tokens == 9
    assert result.to_message() == Message.assistant("Running", [call])


def test_provider_error_carries_partial_usage_and_json_shape():
    err = ProviderError(
        "cut",
        provider="anthropic",
        kind="connection",
        retryable=True,
        partial_usage=Usage(input_tokens=40),
    )
    assert err.partial_usage.input_tokens == 40
    assert err.http_status is None
    body = err.to_json()["error"]
    assert body["code"] == "provider_error"
    assert body["details"]["retryable"] is True
    assert ProviderError.status == 502


def test_input_estimate_grows_with_prompt_history_and_tools():
    tools = [ToolSpec("read_file", "Read a file", {"type": "object"})]
    small = estimate_input_tokens(system="be brief", messages=[Message.user("hi")], tools=[])
    big = estimate_input_tokens(
        system="be brief" * 100, messages=[Message.user("hi" * 500)] * 3, tools=tools
    )
    assert 0 < small < 20
    assert big > 3 * 1000 // 4


def test_input_bound_holds_for_dense_text_where_characters_over_four_does_not():
    # 3,000 CJK characters are about 3,000 tokens for real tokenizers (9,000 UTF-8 bytes).
    text = "".join(chr(0x4E00 + i) for i in range(3000))
    messages = [Message.user(text)]
    assert estimate_input_tokens(system="", messages=messages, tools=[]) < 3000
    assert input_token_bound(system="", messages=messages, tools=[]) >= 9000
