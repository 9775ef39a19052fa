import pytest

from ecode_jupyter.agent.providers import (
    DEFAULT_MODELS,
    Message,
    ProviderError,
    collect_turn,
    configured_provider_names,
    make_provider,
)
from ecode_jupyter.agent.providers.anthropic import AnthropicProvider
from ecode_jupyter.agent.providers.openai import OpenAIProvider
from ecode_jupyter.exceptions import InvalidInput
from ecode_jupyter.testing import text_turn


def test_configured_providers_follow_the_environment():
    assert configured_provider_names({}) == []
    assert configured_provider_names({"ANTHROPIC_API_KEY": "a"}) == ["anthropic"]
    assert configured_provider_names({"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "o"}) == ["openai"]
    env = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "OPENAI_BASE_URL": "http://x/v1"}
    assert configured_provider_names(env) == ["anthropic", "openai", "openai-compatible"]
    # A local compatible server needs no key.
    assert configured_provider_names({"OPENAI_BASE_URL": "http://x/v1"}) == ["openai-compatible"]


def test_missing_configuration_is_invalid_input():
    with pytest.raises(InvalidInput, match="ANTHROPIC_API_KEY"):
        make_provider("anthropic", env={})
    with pytest.raises(InvalidInput, match="OPENAI_API_KEY"):
        make_provider("openai", env={})
    with pytest.raises(InvalidInput, match="base URL"):
        make_provider("openai-compatible", "llama3", env={})
    with pytest.raises(InvalidInput, match="unknown provider"):
        make_provider("gemini", env={})


async def test_keys_and_base_urls_come_from_the_environment(
    ecode_anthropic_loopback, ecode_openai_loopback
):
    anthropic_srv = ecode_anthropic_loopback([text_turn("a")], api_key="sk-ant-env")
    openai_srv = ecode_openai_loopback([text_turn("o")], api_key="sk-openai-env")
    env = {
        "ANTHROPIC_API_KEY": "sk-ant-env",
        "ANTHROPIC_BASE_URL": anthropic_srv.base_url,
        "OPENAI_API_KEY": "sk-openai-env",
        "OPENAI_BASE_URL": openai_srv.base_url,
    }
    for name in configured_provider_names(env)[:2]:
        async with make_provider(name, env=env) as provider:
            assert provider.model == DEFAULT_MODELS[name]
            result = await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("hi")], tools=[], max_tokens=64
                )
            )
        assert result.text == name[0]
    # The servers enforced the keys; the recorded headers never hold them.
    for srv, header in ((anthropic_srv, "authorization"), (openai_srv, "authorization")):
        (request,) = srv.requests
        assert request.headers[header] == "<redacted>"
        assert "sk-" not in repr(request)


async def test_a_wrong_key_is_an_authentication_error_that_is_not_retried(
    ecode_anthropic_loopback,
):
    srv = ecode_anthropic_loopback([text_turn("never")], api_key="right")
    async with make_provider(
        "anthropic", api_key="wrong", base_url=srv.base_url, max_retries=3
    ) as provider:
        with pytest.raises(ProviderError) as info:
            await collect_turn(
                provider.stream_turn(
                    system="", messages=[Message.user("x")], tools=[], max_tokens=8
                )
            )
    assert info.value.kind == "authentication"
    assert info.value.retryable is False
    assert info.value.http_status == 401
    assert len(srv.requests) == 1


async def test_factory_builds_the_right_classes():
    async with make_provider("anthropic", "claude-haiku-4-5", api_key="k", env={}) as anthropic:
        assert isinstance(anthropic, AnthropicProvider) and anthropic.name == "anthropic"
        assert anthropic.model == "claude-haiku-4-5"
    async with make_provider("openai", api_key="k", env={}) as openai:
        assert isinstance(openai, OpenAIProvider)
        assert openai.max_tokens_field == "max_completion_tokens"
    async with make_provider(
        "openai-compatible", "qwen2.5-coder:7b", base_url="http://127.0.0.1:1/v1", env={}
    ) as compatible:
        assert isinstance(compatible, OpenAIProvider)
        assert compatible.name == "openai-compatible"
        assert compatible.model == "qwen2.5-coder:7b"
        assert compatible.max_tokens_field == "max_tokens"
