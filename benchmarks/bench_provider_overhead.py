"""What a provider adds per model turn over calling the SDK directly.

Both sides stream the same scripted turn (text plus a tool call, usage) from the same
loopback server in this process; the baseline reads the raw SDK stream to its end, the
provider side runs ``Provider.stream_turn`` (message conversion, event mapping, tool-call
assembly, usage). The two alternate turn by turn so drift hits both alike.

    python benchmarks/bench_provider_overhead.py [--turns 300]

Prints p50/p99 per turn for each side and the ratio of their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anthropic
import openai
from _common import pct

from ecode_jupyter.agent.providers import (
    DEFAULT_MODELS,
    Message,
    ToolSpec,
    collect_turn,
    make_provider,
)
from ecode_jupyter.agent.providers.anthropic import AnthropicProvider
from ecode_jupyter.agent.providers.openai import OpenAIProvider
from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    LoopbackServer,
    OpenAILoopback,
    ScriptedToolCall,
    ScriptedTurn,
)

SYSTEM = "You are a careful engineer. " * 100
TOOLS = [
    ToolSpec(f"tool_{n}", "A tool", {"type": "object", "properties": {"x": {"type": "string"}}})
    for n in range(14)
]
HISTORY = [Message.user("build a flask app"), Message.assistant("ok")] * 5 + [Message.user("go")]
TURN = ScriptedTurn(
    text="I will write the app now. " * 8,
    tool_calls=[ScriptedToolCall("tool_1", {"x": "print('hello')\n" * 20})],
)


def _responder(request: LoopbackRequest) -> ScriptedTurn:
    return TURN


async def _measure(
    name: str, server: LoopbackServer, turns: int, direct: Callable[[], Awaitable[Any]]
) -> None:
    provider = make_provider(name, api_key="bench", base_url=server.base_url, max_retries=0)
    model = provider.model

    async def via_provider() -> None:
        await collect_turn(
            provider.stream_turn(system=SYSTEM, messages=HISTORY, tools=TOOLS, max_tokens=1024)
        )

    for _ in range(10):  # warm both paths: connections, imports, caches
        await direct()
        await via_provider()
    sdk_times: list[float] = []
    provider_times: list[float] = []
    for _ in range(turns):
        start = time.perf_counter()
        await direct()
        sdk_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        await via_provider()
        provider_times.append(time.perf_counter() - start)
    await provider.aclose()
    sdk50, prov50 = statistics.median(sdk_times), statistics.median(provider_times)
    print(
        f"{name:10s} model={model:18s} turns={turns} "
        f"sdk p50={sdk50 * 1e3:6.2f} ms p99={pct(sdk_times, 0.99) * 1e3:6.2f} ms | "
        f"provider p50={prov50 * 1e3:6.2f} ms p99={pct(provider_times, 0.99) * 1e3:6.2f} ms"
        f" | ratio p50 {prov50 / sdk50:.3f} (+{(prov50 - sdk50) * 1e3:.2f} ms/turn)"
    )


async def main(turns: int) -> None:
    with AnthropicLoopback(_responder) as server:
        client = anthropic.AsyncAnthropic(api_key="bench", base_url=server.base_url)
        async with AnthropicProvider(DEFAULT_MODELS["anthropic"], api_key="bench") as builder:
            request = builder.build_request(
                system=SYSTEM, messages=HISTORY, tools=TOOLS, max_tokens=1024
            )

        async def direct_anthropic() -> None:
            stream = await client.messages.create(**request, stream=True)
            async for _event in stream:
                pass

        await _measure("anthropic", server, turns, direct_anthropic)
        await client.close()

    with OpenAILoopback(_responder) as server:
        oclient = openai.AsyncOpenAI(api_key="bench", base_url=server.base_url)
        async with OpenAIProvider(DEFAULT_MODELS["openai"], api_key="bench") as obuilder:
            body = obuilder.build_request(
                system=SYSTEM, messages=HISTORY, tools=TOOLS, max_tokens=1024
            )

        async def direct_openai() -> None:
            stream = await oclient.chat.completions.create(**body)
            async for _chunk in stream:
                pass

        await _measure("openai", server, turns, direct_openai)
        await oclient.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=300)
    asyncio.run(main(parser.parse_args().turns))
