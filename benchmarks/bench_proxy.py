"""What the app proxy costs: the same app, asked directly and through the proxy.

Starts a real Jupyter server with the ecode extension (temporary config, data and database)
and its app gateway (``preview_port``). For each template (Flask, then FastAPI) it creates a
project and starts its preview through the REST API, timing the start to the first 200
through the proxy. Then it asks the app's ``/health`` three ways, one request each in turn so
drift hits all alike (persistent client connections; the Flask dev server closes each
connection, uvicorn keeps them):

- direct: the app's own port (the baseline);
- jupyter: the keyed URL on the Jupyter server's origin (the default set-up: the fast lane in
  ``handlers/app_router.py``, inside Jupyter's process and event loop);
- gateway: the keyed URL on the preview origin (``c.EcodeApp.preview_port``:
  ``deploy/gateway_server.py``, a process of its own);
- floor: a bare byte relay to the app (``_relay_floor.py``: no parsing, routing or header
  rules), the price of any extra process between client and app on this machine. What a
  proxy costs beyond the floor is its own work.

It also measures the CPU each proxy's process spends per request through it (Jupyter's, the
gateway's, the floor's: numbers a busy machine skews less than latency), and the throughput
with several concurrent connections each way.

    python benchmarks/bench_proxy.py [--requests 2000] [--concurrency 8] [--seconds 5]

Prints p50/p99 latency, requests per second, and the proxied/direct ratios (goal: p50 ratio
at most 1.2).
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _common import free_port, pct

from ecode_jupyter.testing.server_process import EcodeServerProcess

GOAL_P50_RATIO = 1.2


class Server(EcodeServerProcess):
    """A jupyter server subprocess with the ecode extension on a throwaway database."""

    def __init__(self, root: Path) -> None:
        self.gateway_port = free_port()
        super().__init__(
            root,
            database_url=f"sqlite:///{root / 'ecode.sqlite'}",
            owner="bench",
            args=[f"--EcodeApp.preview_port={self.gateway_port}"],
            start_timeout_s=60.0,
        )


Pair = tuple[list[float], list[float]]


class Client:
    """One persistent HTTP/1.1 connection; ``get`` returns the seconds a request took."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self) -> float:
        started = time.perf_counter()
        try:
            self.conn.request("GET", self.path)
            response = self.conn.getresponse()
            response.read()
        except (http.client.HTTPException, OSError):
            # The server closed the kept-alive connection: reconnect once.
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.conn.request("GET", self.path)
            response = self.conn.getresponse()
            response.read()
        if response.status != 200:
            msg = f"GET {self.path} answered {response.status}"
            raise RuntimeError(msg)
        return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(pid: int, proxied: Client, requests: int) -> float:
    """CPU the process ``pid`` (a proxy) spends per request through it: less skewed by a busy
    machine than latency."""
    before = cpu_seconds(pid)
    for _ in range(requests):
        proxied.get()
    return (cpu_seconds(pid) - before) / requests


def gateway_pid(server: Server) -> int:
    """The app gateway process the Jupyter server started."""
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text()
    for pid in children.split():
        if b"gateway_server" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return int(pid)
    msg = "the Jupyter server runs no app gateway"
    raise RuntimeError(msg)


def latency(clients: dict[str, Client], requests: int, gap_s: float) -> dict[str, Pair]:
    """For each way but direct, a block of requests alternating direct and that way: (direct
    times, its times). Alternating cancels drift; a block per way keeps one proxy's work after
    an answer (Jupyter's request log, say) from landing on another proxy's requests."""
    direct = clients["direct"]
    blocks = {}
    for name, client in clients.items():
        if name == "direct":
            continue
        for _ in range(100):  # warm up
            direct.get()
            client.get()
        pair: Pair = ([], [])
        for _ in range(requests):
            pair[0].append(direct.get())
            time.sleep(gap_s)
            pair[1].append(client.get())
            time.sleep(gap_s)
        blocks[name] = pair
    return blocks


def throughput(port: int, path: str, concurrency: int, seconds: float) -> float:
    done = [0] * concurrency
    stop = time.monotonic() + seconds

    def worker(n: int) -> None:
        client = Client(port, path)
        while time.monotonic() < stop:
            client.get()
            done[n] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - started)


def measure(server: Server, template: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start a preview of ``template`` and measure it directly and through the proxy."""
    status, project = server.api(
        "POST", "projects", {"name": f"Bench {template}", "template": template}
    )
    assert status == 201, project
    started = time.perf_counter()
    status, dep = server.api("POST", f"projects/{project['id']}/deployments", {})
    assert status == 201 and dep["status"] == "running", dep
    keyed = urlsplit(dep["url"]).path + "health"
    Client(server.port, keyed).get()
    to_first_200 = time.perf_counter() - started
    app_port = urlsplit(dep["local_url"]).port
    assert app_port is not None
    assert urlsplit(dep["url"]).port == server.gateway_port, dep["url"]
    floor_port = free_port()
    floor = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_relay_floor.py")), str(floor_port)]
        + [str(app_port)],
        stdout=subprocess.PIPE,
    )
    try:
        assert floor.stdout is not None and floor.stdout.readline().strip() == b"ready"
        ports = {
            "direct": app_port,
            "jupyter": server.port,
            "gateway": server.gateway_port,
            "floor": floor_port,
        }
        paths = {"direct": "/health", "jupyter": keyed, "gateway": keyed, "floor": "/health"}
        pids = {"jupyter": server.proc.pid, "gateway": gateway_pid(server), "floor": floor.pid}
        return _measure_paths(template, to_first_200, ports, paths, pids, args)
    finally:
        floor.terminate()
        floor.wait(10)


def _measure_paths(
    template: str,
    to_first_200: float,
    ports: dict[str, int],
    paths: dict[str, str],
    pids: dict[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    wanted = ["direct", *(name for name in args.paths.split(",") if name != "direct")]
    ports = {name: ports[name] for name in wanted}
    clients = {name: Client(ports[name], paths[name]) for name in ports}
    return {
        "template": template,
        "first_200_s": to_first_200,
        "latency": latency(clients, args.requests, args.gap_ms / 1000),
        "cpu": {
            name: cpu_per_request(pids[name], client, args.requests)
            for name, client in clients.items()
            if name != "direct"
        },
        "rps": {
            name: throughput(ports[name], paths[name], args.concurrency, args.seconds)
            for name in ports
        },
    }


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    ms = 1000.0
    blocks = result["latency"]
    print(f"== {result['template']}")
    print(f"  start to first 200 through the proxy: {result['first_200_s'] * ms:.0f} ms")
    print(f"  latency, {args.requests} requests each way, alternating with direct ones:")
    for name, (direct, values) in blocks.items():
        ratio = pct(values, 0.5) / pct(direct, 0.5)
        line = (
            f"    {name:8} p50 {pct(values, 0.5) * ms:5.2f} ms (direct {pct(direct, 0.5) * ms:.2f})"
            f"   p99 {pct(values, 0.99) * ms:5.2f} ms (direct {pct(direct, 0.99) * ms:.2f})"
            f"   p50 {ratio:.2f}x direct, p99 {pct(values, 0.99) / pct(direct, 0.99):.2f}x"
        )
        if name == "floor":
            line += " (no rules: not a goal)"
        else:
            verdict = "met" if ratio <= GOAL_P50_RATIO else "NOT met"
            line += f" (goal p50 <= {GOAL_P50_RATIO}x: {verdict})"
        print(line)
    if "floor" in blocks:
        floor_direct, floor = blocks["floor"]
        floor_cost = pct(floor, 0.5) - pct(floor_direct, 0.5)
        for name in ("jupyter", "gateway"):
            if name in blocks:
                direct, values = blocks[name]
                own = (pct(values, 0.5) - pct(direct, 0.5) - floor_cost) * 1e6
                print(f"  {name}: {own:.0f} us at p50 beyond the relay floor (its own work)")
    print("  CPU of the proxy's process per request (user + system):")
    for name, seconds in result["cpu"].items():
        print(f"    {name:8} {seconds * 1e6:5.0f} us")
    print(f"  throughput, {args.concurrency} connections, {args.seconds:g} s each way:")
    rps = result["rps"]
    for name, value in rps.items():
        print(f"    {name:8} {value:8.0f} req/s   {value / rps['direct']:.2f}x direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--gap-ms",
        type=float,
        default=0.0,
        help="pause between requests, so each starts with the machine settled (default: 0)",
    )
    parser.add_argument(
        "--paths",
        default="jupyter,gateway,floor",
        help="comma-separated paths to compare with direct (default: %(default)s)",
    )
    parser.add_argument(
        "--templates",
        default="flask-api,fastapi-service",
        help="comma-separated templates to measure (default: %(default)s)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ecode-bench-proxy-") as tmp:
        server = Server(Path(tmp))
        try:
            results = [measure(server, t, args) for t in args.templates.split(",")]
        finally:
            server.stop()
    print(f"machine load average (1 min): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for result in results:
        report(result, args)


if __name__ == "__main__":
    main()
