"""Feed paint latency and frame time: from a run event on the server to it on screen.

Starts a real ``jupyter lab`` with the ecode extension in a throwaway folder, pointed at an
Anthropic loopback model server in this process whose scripted run makes many cheap tool
calls (``write_file`` with a diff, ``run_command`` with streamed output, ``list_files``), so
the feed gets every kind of event. Debian's headless Chromium opens the project in the lab
and starts the run from the sidebar, so the page follows it live.

The page is instrumented (an init script, no change to the extension):

- **receive**: when the extension's run-feed WebSocket delivered each event to the page
  (``WebSocket`` wrapped to add a listener; the baseline: what the network and server cost);
- **paint**: the feed list's ``data-last-seq`` attribute changes when React commits a batch;
  every animation frame posts a task, which runs once that frame is rendered: its time is
  the paint time of every event committed before it;
- **frames**: every ``requestAnimationFrame`` interval, and long tasks (> 50 ms).

Latency is page time minus the event's ``ts`` (stamped by the server when it writes the
event); both clocks are this machine's. Phase 1 measures the live run (~``--events``
events); phase 2 reloads the page, which replays the whole finished run at once — the
heaviest load the feed sees.

    python benchmarks/bench_feed_paint.py [--events 5000]

Prints p50/p99 of server->receive and server->paint, the paint/receive ratio, and frame
times while the events render against the idle page's frame times measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from playwright.async_api import Page, async_playwright

from ecode_jupyter.testing import AnthropicLoopback, ScriptedToolCall, ScriptedTurn, text_turn
from ecode_jupyter.testing.browser import CHROMIUM, CHROMIUM_ARGS

TOKEN = "bench-token"
# Events one scripted turn makes: step.started, message.delta, usage, 8 tool calls with
# their results, one file.changed and a few command.output chunks.
EVENTS_PER_TURN = 21
LIST_CALLS_PER_TURN = 6
IDLE_S = 2.0

# Installed before the lab's own scripts run.
INSTRUMENT = """
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bench = (window.__ecodeBench = {
    frames: [], longTasks: [], receive: {}, paint: {}, lastSeq: 0
  });
  // Seqs committed to the DOM and not yet on screen.
  let pending = [];
  // Every frame posts a task; it runs once that frame's rendering is done, so whatever the
  // DOM held before then (a commit in a task, or in this frame's callbacks) is painted.
  const afterPaint = new MessageChannel();
  afterPaint.port1.onmessage = () => {
    if (pending.length) {
      const at = now();
      for (const seq of pending) { bench.paint[seq] = at; }
      pending = [];
    }
  };
  let previous = null;
  const frame = t => {
    if (previous !== null) { bench.frames.push([performance.timeOrigin + t, t - previous]); }
    previous = t;
    afterPaint.port2.postMessage(0);
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  try {
    new PerformanceObserver(list => {
      for (const e of list.getEntries()) {
        bench.longTasks.push([performance.timeOrigin + e.startTime, e.duration]);
      }
    }).observe({ type: 'longtask', buffered: true });
  } catch (e) { /* no long-task timing in this browser */ }
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(url, protocols) {
      super(url, protocols);
      if (String(url).includes('/api/ecode/runs/')) {
        this.addEventListener('message', ev => {
          const at = now();
          try {
            const seq = JSON.parse(ev.data).seq;
            if (!(seq in bench.receive)) { bench.receive[seq] = at; }
          } catch (e) { /* not an event */ }
        });
      }
    }
  };
  new MutationObserver(records => {
    for (const r of records) {
      const seq = Number(r.target.getAttribute && r.target.getAttribute('data-last-seq'));
      if (!(seq > bench.lastSeq)) { continue; }
      for (let s = bench.lastSeq + 1; s <= seq; s++) { pending.push(s); }
      bench.lastSeq = seq;
    }
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-last-seq'] });
})();
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def script(events: int) -> list[ScriptedTurn]:
    turns = []
    for i in range(math.ceil(events / EVENTS_PER_TURN)):
        lines = "".join(f"line {n} of file {i}\n" for n in range(20))
        calls = [
            ScriptedToolCall("write_file", {"path": f"src/f{i}.txt", "content": lines}),
            ScriptedToolCall("run_command", {"command": f"seq 1 {40 + i % 10}"}),
            *(ScriptedToolCall("list_files", {}) for _ in range(LIST_CALLS_PER_TURN)),
        ]
        turns.append(ScriptedTurn(text=f"Turn {i}: writing and checking. ", tool_calls=calls))
    turns.append(text_turn("Done."))
    return turns


def start_lab(tmp: Path, port: int, model_url: str) -> subprocess.Popen[bytes]:
    for name in ("config", "data", "runtime", "root"):
        (tmp / name).mkdir()
    settings = tmp / "config/lab/user-settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "ECODE_DATABASE_URL": f"sqlite:///{tmp / 'ecode.sqlite'}",
        "ANTHROPIC_API_KEY": "sk-bench",
        "ANTHROPIC_BASE_URL": model_url,
    }
    env.pop("OPENAI_API_KEY", None)
    env.pop("ECODE_WORKSPACE_ROOT", None)
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--port={port}",
        "--ip=127.0.0.1",
        "--no-browser",
        "--allow-root",
        f"--IdentityProvider.token={TOKEN}",
        f"--ServerApp.root_dir={tmp / 'root'}",
        "--ServerApp.jpserver_extensions={'ecode_jupyter': True}",
        "--ServerApp.log_level=WARN",
        "--LabApp.news_url=None",
        "--EcodeApp.owner_name=bench",
        "--EcodeApp.agent_max_steps=100000",
        "--EcodeApp.agent_max_tokens=1000000000",
        "--EcodeApp.monthly_allowance=100000",
        # No test run at the end: the feed is what is measured.
        "--EcodeApp.agent_max_verify_attempts=1",
    ]
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def wait_ready(http: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            msg = f"jupyter lab exited early:\n{err[-3000:]}"
            raise RuntimeError(msg)
        try:
            if (await http.get("api/status")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    msg = "jupyter lab did not become ready"
    raise RuntimeError(msg)


async def server_times(http: httpx.AsyncClient, run_id: str) -> dict[int, float]:
    """Each event's server write time (ms since the epoch), by seq."""
    times: dict[int, float] = {}
    after = 0
    while True:
        reply = await http.get(f"api/ecode/runs/{run_id}/events", params={"after": after})
        reply.raise_for_status()
        batch = reply.json()["events"]
        for event in batch:
            times[event["seq"]] = datetime.fromisoformat(event["ts"]).timestamp() * 1000
        if len(batch) < 500:
            return times
        after = batch[-1]["seq"]


async def wait_painted(page: Page, seq: int, timeout_s: float) -> None:
    await page.wait_for_function(
        f"() => window.__ecodeBench && window.__ecodeBench.paint[{seq}] !== undefined",
        timeout=timeout_s * 1000,
        polling=250,
    )


def frame_stats(frames: list[list[float]], start: float, end: float) -> list[float]:
    return [delta for at, delta in frames if start <= at <= end]


def describe(label: str, samples: list[float]) -> str:
    return (
        f"{label:<34} p50 {pct(samples, 0.5):7.1f} ms  p99 {pct(samples, 0.99):7.1f} ms  "
        f"max {max(samples):7.1f} ms  (n={len(samples)})"
    )


async def open_project(page: Page, base: str) -> None:
    await page.goto(f"{base}lab?token={TOKEN}&ecode=@bench/bench")
    await page.wait_for_selector(".jp-EcodeFeed", timeout=120_000)
    await page.wait_for_load_state("networkidle")


async def main(events: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="ecode-bench-paint-") as raw,
        AnthropicLoopback(script(events)) as model,
    ):
        tmp = Path(raw)
        port = free_port()
        base = f"http://127.0.0.1:{port}/"
        proc = start_lab(tmp, port, model.base_url)
        headers = {"Authorization": f"token {TOKEN}"}
        try:
            async with (
                httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http,
                async_playwright() as playwright,
            ):
                await wait_ready(http, proc)
                created = await http.post("api/ecode/projects", json={"name": "bench"})
                created.raise_for_status()
                pid = created.json()["id"]
                browser = await playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
                )
                page = await browser.new_page(viewport={"width": 1400, "height": 900})
                await page.add_init_script(INSTRUMENT)
                await open_project(page, base)

                # Idle baseline: the same page, nothing arriving.
                idle_from = await page.evaluate("performance.timeOrigin + performance.now()")
                await asyncio.sleep(IDLE_S)
                idle_to = await page.evaluate("performance.timeOrigin + performance.now()")

                # Phase 1: the run, live. Started from the feed's box, as a user would.
                await page.fill("textarea[id$='-ask']", "make many small changes")
                started = time.monotonic()
                await page.click(".jp-EcodeFeed-ask button[type=submit]")
                # A paid model asks first what a run costs: go ahead, as a user would.
                await page.get_by_role("button", name="Go ahead").click(timeout=30_000)
                runs: list[dict[str, object]] = []
                deadline = time.monotonic() + 30
                while not runs:
                    if time.monotonic() > deadline:
                        shot = tmp.parent / "ecode-bench-paint-no-run.png"
                        await page.screenshot(path=str(shot))
                        msg = f"the run did not start from the feed's box (page: {shot})"
                        raise RuntimeError(msg)
                    runs = (await http.get(f"api/ecode/projects/{pid}/runs")).json()["runs"]
                    if not runs:
                        await asyncio.sleep(0.2)
                run_id = runs[0]["id"]
                while (await http.get(f"api/ecode/runs/{run_id}")).json()["status"] not in (
                    "completed",
                    "failed",
                ):
                    await asyncio.sleep(0.5)
                run = (await http.get(f"api/ecode/runs/{run_id}")).json()
                last = run["last_seq"]
                await wait_painted(page, last, 120)
                run_s = time.monotonic() - started
                live = await page.evaluate("window.__ecodeBench")
                ts = await server_times(http, run_id)

                # Phase 2: reload; the finished run replays all at once.
                reload_from = time.time() * 1000
                await open_project(page, base)
                await wait_painted(page, last, 120)
                replay = await page.evaluate("window.__ecodeBench")
                await browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    if run["status"] != "completed":
        msg = f"the scripted run did not complete: {run['status']} {run.get('reason')}"
        raise RuntimeError(msg)
    receive = [live["receive"][str(s)] - ts[s] for s in ts if str(s) in live["receive"]]
    paint = [live["paint"][str(s)] - ts[s] for s in ts if str(s) in live["paint"]]
    front = [
        live["paint"][str(s)] - live["receive"][str(s)]
        for s in ts
        if str(s) in live["paint"] and str(s) in live["receive"]
    ]
    first = min(live["receive"].values())
    done = max(live["paint"].values())
    idle_frames = frame_stats(live["frames"], idle_from, idle_to)
    live_frames = frame_stats(live["frames"], first, done)
    live_long = [d for at, d in live["longTasks"] if first <= at <= done]
    # From the replay's first event (the lab's own start-up before it is not the feed's).
    replay_first = min(replay["receive"].values())
    replay_paint = max(replay["paint"].values())
    replay_frames = frame_stats(replay["frames"], replay_first, replay_paint)
    replay_long = [d for at, d in replay["longTasks"] if at >= replay_first]

    print(f"feed paint benchmark: {len(ts)} events in {run_s:.1f} s of run, {len(paint)} painted")
    print(describe("server -> page receive (baseline)", receive))
    print(describe("server -> painted", paint))
    print(describe("page receive -> painted", front))
    print(f"paint/receive ratio of medians: {pct(paint, 0.5) / max(pct(receive, 0.5), 0.001):.2f}")
    print(describe("frame time, idle page (baseline)", idle_frames))
    print(describe(f"frame time, {len(ts)} events live", live_frames))
    print(
        f"{'':<34} p99 ratio to idle {pct(live_frames, 0.99) / pct(idle_frames, 0.99):.2f}; "
        f"long tasks {len(live_long)} (total {sum(live_long):.0f} ms)"
    )
    print(describe(f"frame time, replay of {len(ts)} on reload", replay_frames))
    print(
        f"{'':<34} all painted {replay_paint - replay_first:.0f} ms after the first arrived "
        f"({replay_paint - reload_from:.0f} ms after reload, lab start-up included); "
        f"long tasks {len(replay_long)} (max {max(replay_long, default=0):.0f} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    asyncio.run(main(parser.parse_args().events))
