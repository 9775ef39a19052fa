"""The loopback model servers themselves, through the real SDKs (sync and async)."""

import asyncio
import json

import anthropic
import httpx
import openai
import pytest

from ecode_jupyter.agent.providers import (
    Message,
    ProviderError,
    ToolSpec,
    Usage,
    collect_turn,
    make_provider,
)
from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    OpenAILoopback,
    ScriptedTurn,
    text_turn,
    tool_turn,
)

TOOLS = [ToolSpec("run_command", "Run", {"type": "object", "properties": {"cmd": {}}})]


def test_non_streaming_messages_from_a_sync_client():
    turn = tool_turn("run_command", {"cmd": "pytest"}, text="Testing.", usage=Usage(11, 22, 33, 44))
    with AnthropicLoopback([turn]) as srv:
        client = anthropic.Anthropic(api_key="k", base_url=srv.base_url, max_retries=0)
        with client:
            message = client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=50,
                messages=[{"role": "user", "content": "hi"}],
            )
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "text" and message.content[0].text == "Testing."
    assert message.content[1].type == "tool_use" and message.content[1].input == {"cmd": "pytest"}
    assert message.usage.input_tokens == 11
    assert message.usage.cache_read_input_tokens == 33
    assert message.usage.cache_creation_input_tokens == 44
    assert not srv.requests[0].stream


def test_non_streaming_chat_completion_from_a_sync_client():
    turn = tool_turn("run_command", {"cmd": "ls"}, usage=Usage(5, 6, cache_read_tokens=7))
    with (
        OpenAILoopback([turn]) as srv,
        openai.OpenAI(api_key="k", base_url=srv.base_url, max_retries=0) as client,
    ):
        completion = client.chat.completions.create(
            model="gpt-5.4-mini", messages=[{"role": "user", "content": "hi"}]
        )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"cmd": "ls"}
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.prompt_tokens_details.cached_tokens == 7


def test_sync_stream_has_the_real_event_sequence():
    with (
        AnthropicLoopback([tool_turn("run_command", {"cmd": "ls"}, text="hi")]) as srv,
        anthropic.Anthropic(api_key="k", base_url=srv.base_url) as client,
    ):
        stream = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2


async def test_responder_answers_the_tool_result_it_receives(ecode_anthropic_loopback):
    def responder(request: LoopbackRequest) -> ScriptedTurn:
        results = request.tool_results()
        if not results:
            return tool_turn("run_command", {"cmd": "pytest -q"})
        if "failed" in results[0].content:
            return tool_turn("run_command", {"cmd": "pytest -q --lf"})
        return text_turn(f"green after {request.index} requests")

    srv = ecode_anthropic_loopback(responder)
    outputs = iter(["1 failed", "3 passed"])
    history = [Message.user("make the tests pass")]
    async with make_provider("anthropic", api_key="k", base_url=srv.base_url) as provider:
        while True:
            result = await collect_turn(
                provider.stream_turn(system="", messages=history, tools=TOOLS, max_tokens=99)
            )
            history.append(result.to_message())
            if not result.tool_calls:
                break
            history.append(Message.tool_result(result.tool_calls[0].id, next(outputs)))
    assert result.text == "green after 2 requests"
    assert [r.json["messages"][-1]["role"] for r in srv.requests] == ["user"] * 3
    assert srv.turns_left is None and srv.turns_served == 3


async def test_exhausted_script_answers_400_and_records_the_request(ecode_openai_loopback):
    srv = ecode_openai_loopback([text_turn("only one")])
    srv.add_turns(text_turn("two"))
    async with make_provider("openai", "gpt-5.4", api_key="k", base_url=srv.base_url) as provider:
        for expected in ("only one", "two"):
            result = await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("x")], tools=[], max_tokens=5
                )
            )
            assert result.text == expected
        with pytest.raises(ProviderError, match="no scripted turn left"):
            await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("x")], tools=[], max_tokens=5
                )
            )
    assert len(srv.requests) == 3 and srv.turns_left == 0


async def test_concurrent_requests_each_get_a_turn(ecode_openai_loopback):
    srv = ecode_openai_loopback([text_turn(f"answer {n}", event_delay=0.001) for n in range(8)])
    async with make_provider("openai", "gpt-5.4", api_key="k", base_url=srv.base_url) as provider:

        async def one() -> str:
            result = await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("x")], tools=[], max_tokens=5
                )
            )
            return result.text

        texts = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(texts) == sorted(f"answer {n}" for n in range(8))
    assert sorted(r.index for r in srv.requests) == list(range(8))


def test_models_endpoint_and_unknown_routes():
    with OpenAILoopback(models=["llama3.1:8b"]) as srv:
        models = httpx.get(srv.base_url + "/models").json()
        missing = httpx.post(srv.url + "/v1/embeddings", json={})
    assert [m["id"] for m in models["data"]] == ["llama3.1:8b"]
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no route /v1/embeddings"


def test_anthropic_error_body_has_the_api_shape():
    from ecode_jupyter.testing import HTTPFault

    with AnthropicLoopback([text_turn("x", faults=[HTTPFault(529)])]) as srv:
        response = httpx.post(
            srv.base_url + "/v1/messages", json={"model": "m", "messages": [], "max_tokens": 1}
        )
    assert response.status_code == 529
    assert response.headers["retry-after-ms"] == "1"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "overloaded_error"


def test_stop_drops_idle_keep_alive_connections():
    srv = AnthropicLoopback([text_turn("a")])
    srv.start()
    with httpx.Client() as client:
        response = client.post(
            srv.base_url + "/v1/messages", json={"model": "m", "messages": [], "max_tokens": 1}
        )
        assert response.json()["content"][0]["text"] == "a"
        # The connection stays open in the client's pool; stop() must not wait for it.
        srv.stop()
        srv.stop()
        with pytest.raises(httpx.TransportError):
            client.post(srv.url + "/v1/messages", json={})


async def test_a_failing_responder_is_reported_not_retried(ecode_anthropic_loopback):
    def responder(request: LoopbackRequest) -> ScriptedTurn:
        msg = "missing tool result"
        raise KeyError(msg)

    srv = ecode_anthropic_loopback(responder)
    async with make_provider(
        "anthropic", api_key="k", base_url=srv.base_url, max_retries=2
    ) as provider:
        with pytest.raises(ProviderError, match="missing tool result"):
            await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("x")], tools=[], max_tokens=5
                )
            )
    # Recorded once (a 400 is not retried), before any turn was assigned.
    assert [r.turn for r in srv.requests] == [-1]
    assert [type(e) for e in srv.responder_errors] == [KeyError]
