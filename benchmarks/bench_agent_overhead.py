"""What the agent adds per model turn over calling the SDK directly.

One agent run in this process (SQLite database, billing on, real tool layer) talks to a
loopback model server through the real SDK; every turn is the same scripted answer (a little
text and one ``list_files`` call). Its model turns are timed: reserve credits, stream the
turn (``message.delta`` events), settle, record usage and the ``usage`` event. Right before
each agent turn the baseline sends *the same request body* (the provider's ``build_request``
for the agent's current history) with the raw SDK to a twin loopback server answering the
same turn, and reads the stream to its end — so load drift hits both sides alike.

    python benchmarks/bench_agent_overhead.py [--turns 60] [--provider anthropic|openai|both]

Prints p50/p99 per turn for both sides, the p50 overhead in ms and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anthropic
import openai
from _common import pct
from cryptography.fernet import Fernet

from ecode_jupyter.agent.loop import AgentLoop, RunLimits
from ecode_jupyter.agent.manager import AgentManager, AgentSettings
from ecode_jupyter.billing import make_billing_manager
from ecode_jupyter.context import build_context
from ecode_jupyter.identity import EcodeUser
from ecode_jupyter.testing import (
    AnthropicLoopback,
    LoopbackRequest,
    LoopbackServer,
    OpenAILoopback,
    ScriptedToolCall,
    ScriptedTurn,
    text_turn,
)
from ecode_jupyter.tools.context import ManagerProjectAccess
from ecode_jupyter.tools.server import ToolLayer

TURN = ScriptedTurn(
    text="Looking at the files again before the next change. ",
    tool_calls=[ScriptedToolCall("list_files", {})],
)
WARMUP = 5
MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-5"}


class Baseline:
    """The raw SDK against a twin loopback server that always answers TURN."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.server: LoopbackServer = (
            AnthropicLoopback(_always) if provider == "anthropic" else OpenAILoopback(_always)
        )
        self.server.start()
        self.client: Any
        if provider == "anthropic":
            self.client = anthropic.AsyncAnthropic(
                api_key="sk-bench", base_url=self.server.base_url
            )
            self.create = self.client.messages.create
        else:
            self.client = openai.AsyncOpenAI(api_key="sk-bench", base_url=self.server.base_url)
            self.create = self.client.chat.completions.create

    async def call(self, body: dict[str, Any]) -> float:
        extra = {"stream": True} if self.provider == "anthropic" else {}
        start = time.perf_counter()
        stream = await self.create(**body, **extra)
        async for _event in stream:
            pass
        return (time.perf_counter() - start) * 1000

    async def close(self) -> None:
        await self.client.close()
        self.server.stop()


def patch_turn_timer(agent_ms: list[float], sdk_ms: list[float], baseline: Baseline) -> Any:
    """Time every AgentLoop model turn, each after one baseline call with the same body
    (benchmark-only instrumentation); returns the original method."""
    original = AgentLoop._model_turn

    async def timed(self: AgentLoop, tools: Any) -> Any:
        body = self.provider.build_request(  # type: ignore[attr-defined]
            system=self.system,
            messages=self.messages,
            tools=tools,
            max_tokens=self.limits.max_output_tokens,
        )
        sdk_ms.append(await baseline.call(body))
        start = time.perf_counter()
        result = await original(self, tools)
        agent_ms.append((time.perf_counter() - start) * 1000)
        return result

    AgentLoop._model_turn = timed  # type: ignore[method-assign]
    return original


async def agent_side(provider: str, turns: int, tmp: Path) -> None:
    """Run the agent for ``turns`` model turns (and a last one that ends the run)."""
    server: LoopbackServer
    script = [TURN] * turns + [text_turn("Done.")]
    server = AnthropicLoopback(script) if provider == "anthropic" else OpenAILoopback(script)
    server.start()
    env_key = "ANTHROPIC" if provider == "anthropic" else "OPENAI"
    os.environ[f"{env_key}_API_KEY"] = "sk-bench"
    os.environ[f"{env_key}_BASE_URL"] = server.base_url
    ctx = build_context(
        database_url=f"sqlite:///{tmp / f'{provider}.sqlite'}",
        workspace_root=str(tmp / "workspaces"),
        secrets_key=Fernet.generate_key().decode(),
        secrets_key_file=str(tmp / "secrets.key"),
        owner_name="bench",
        admin_users=set(),
        owner_is_admin=True,
        trash_retention_days=30,
        max_projects_per_user=500,
        auto_upgrade=True,
    )
    ctx.extras["billing"] = make_billing_manager(
        ctx.db, model_prices={}, free_models=[], monthly_allowance=1000.0, reservation_ttl_s=1800
    )
    layer = ToolLayer(ManagerProjectAccess(ctx.projects, ctx.secrets))
    ctx.extras["tools"] = layer
    limits = RunLimits(max_steps=turns + 10, verify=False)
    agent = AgentManager(ctx, AgentSettings(limits=limits, provider=provider))
    user = EcodeUser("bench", "bench", True)
    try:
        project = await ctx.projects.create_project(user, name=f"bench {provider}")
        run = await agent.start_run(user, project["id"], "list the files, many times")
        await agent.wait(run["id"])
        final = await agent.get_run(user, run["id"])
        if final["status"] != "completed":
            msg = f"the agent run ended {final['status']}: {final['reason']}"
            raise RuntimeError(msg)
    finally:
        await agent.stop()
        await layer.stop()
        ctx.db.dispose()
        server.stop()
        del os.environ[f"{env_key}_API_KEY"], os.environ[f"{env_key}_BASE_URL"]


def _always(_request: LoopbackRequest) -> ScriptedTurn:
    return TURN


async def main(turns: int, providers: list[str]) -> None:
    print(f"agent model turn vs the same request with the raw SDK, {turns} turns each")
    for provider in providers:
        with tempfile.TemporaryDirectory(prefix="ecode-bench-agent-") as raw:
            agent_ms: list[float] = []
            sdk_ms: list[float] = []
            baseline = Baseline(provider)
            original = patch_turn_timer(agent_ms, sdk_ms, baseline)
            try:
                await agent_side(provider, turns, Path(raw))
            finally:
                AgentLoop._model_turn = original  # type: ignore[method-assign]
                await baseline.close()
        agent_ms, sdk_ms = agent_ms[WARMUP:turns], sdk_ms[WARMUP:turns]
        a50, s50 = statistics.median(agent_ms), statistics.median(sdk_ms)
        print(
            f"{provider:>9}: agent p50 {a50:6.2f} ms p99 {pct(agent_ms, 0.99):6.2f} ms | "
            f"SDK p50 {s50:6.2f} ms p99 {pct(sdk_ms, 0.99):6.2f} ms | "
            f"overhead p50 {a50 - s50:+.2f} ms, ratio {a50 / s50:.2f}x "
            f"(n={len(agent_ms)}/{len(sdk_ms)})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--provider", choices=["anthropic", "openai", "both"], default="both")
    args = parser.parse_args()
    chosen = ["anthropic", "openai"] if args.provider == "both" else [args.provider]
    asyncio.run(main(args.turns, chosen))
