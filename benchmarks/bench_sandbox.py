"""What the sandbox adds to a command: ``run_command`` with and without it.

    python benchmarks/bench_sandbox.py [--runs 60]

Runs ``true`` and ``python3 -c pass`` through ``workspace.commands.run_command`` in a scratch
workspace, alternating the plain launcher (the baseline: own session, rlimits, clean env) with
the sandbox launcher (bubblewrap namespaces, a per-launch cgroup with memory and pids limits,
rlimits), so both see the same machine state. Prints p50/p90 of each, the p50 the sandbox
adds (goal: at most +20 ms), and the ratio to the baseline; and the sandbox's report, so a
host that could not apply part of it says so next to its numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from _common import pct

from ecode_jupyter.sandbox import SandboxLauncher, SandboxPolicy
from ecode_jupyter.workspace.commands import Launcher, LocalLauncher, base_environment, run_command

COMMANDS = {"true": ["true"], "python3 -c pass": ["python3", "-c", "pass"]}
GOAL_MS = 20.0


async def _time(launcher: Launcher, argv: list[str], workspace: Path) -> float:
    started = time.perf_counter()
    result = await run_command(argv, cwd=workspace, env=base_environment(), launcher=launcher)
    elapsed = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    return elapsed * 1000


async def main(runs: int) -> None:
    sandbox = SandboxLauncher(SandboxPolicy(memory_bytes=1024**3, pids=256))
    plain = LocalLauncher()
    print(f"sandbox: {sandbox.host_report().summary()}")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp) / "workspace"
        workspace.mkdir()
        for label, argv in COMMANDS.items():
            base: list[float] = []
            boxed: list[float] = []
            for _ in range(3):  # warm the page cache and the probe
                await _time(plain, argv, workspace)
                await _time(sandbox, argv, workspace)
            for _ in range(runs):
                base.append(await _time(plain, argv, workspace))
                boxed.append(await _time(sandbox, argv, workspace))
            b50, s50 = pct(base, 0.5), pct(boxed, 0.5)
            added = s50 - b50
            verdict = "ok" if added <= GOAL_MS else "OVER GOAL"
            print(
                f"{label:>16}: plain p50 {b50:6.1f} ms p90 {pct(base, 0.9):6.1f} | "
                f"sandbox p50 {s50:6.1f} ms p90 {pct(boxed, 0.9):6.1f} | "
                f"adds {added:+6.1f} ms (x{s50 / b50:.2f}; goal <= +{GOAL_MS:g} ms: {verdict})"
            )
        # Let the last launches' cgroups be removed before the loop closes.
        await asyncio.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    asyncio.run(main(parser.parse_args().runs))
