"""The app-building eval: each spec's prompt becomes a project on a real server, and the app is
checked the way a user would check it.

    jupyter ecode eval                         # every spec, the offline provider
    jupyter ecode eval --specs flask-todo-api express-todo-api
    jupyter ecode eval --provider anthropic --model claude-sonnet-4-5

(``python benchmarks/eval/run.py`` takes the same options.)

A spec (``specs.json``, written before any run) is a prompt and checks: HTTP requests through
the preview proxy with the answers expected, browser workflows run by the ``check_app`` tool,
files in the workspace. A spec passes when its run ends ``completed`` and every check holds.
For each spec: wall time to the first running preview (from the project's creation to the
first successful ``start_preview`` in its feed), the model turns, and the credits charged.
The table goes to stdout, the report (with every check's outcome) to ``--report``.

``--provider offline`` (the default) starts the server without model keys: no AI, so it passes
the specs its templates fit and fails the rest, which is the point of running it.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ecode_jupyter.testing.server_process import EcodeServerProcess

SPECS_PATH = Path(__file__).with_name("specs.json")
DEFAULT_REPORT = Path("test-output/eval/report.json")
FINAL = {"completed", "failed", "cancelled", "interrupted"}
MODEL_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")


def load_specs(selected: list[str] | None = None) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = json.loads(SPECS_PATH.read_text())["specs"]
    if not selected:
        return specs
    by_id = {spec["id"]: spec for spec in specs}
    unknown = [name for name in selected if name not in by_id]
    if unknown:
        msg = f"unknown specs: {', '.join(unknown)}; known: {', '.join(by_id)}"
        raise SystemExit(msg)
    return [by_id[name] for name in selected]


def _subset(expected: Any, got: Any) -> bool:
    """Whether ``got`` holds everything ``expected`` says (dict keys recursively)."""
    if isinstance(expected, dict):
        return isinstance(got, dict) and all(
            k in got and _subset(v, got[k]) for k, v in expected.items()
        )
    return bool(expected == got)


class EvalRunner:
    """Runs specs one after another against one server."""

    def __init__(self, server: EcodeServerProcess, *, model: str | None, timeout_s: float):
        self.server = server
        self.model = model
        self.timeout_s = timeout_s

    # -- the run --------------------------------------------------------------------------

    def run_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {"id": spec["id"], "stack": spec["stack"], "passed": False}
        started = time.time()
        body = {"name": spec["id"], "prompt": spec["prompt"]}
        if self.model:
            body["model"] = self.model
        status, project = self.server.api("POST", "projects", body)
        if status != 201:
            result.update(status="not_started", reason=str(project)[:300])
            return result
        run = self._wait(project["run"]["id"])
        feed = self._events(run["id"])
        first_preview = next(
            (
                e
                for e in feed
                if e["type"] == "tool.result"
                and e["data"].get("name") == "start_preview"
                and e["data"].get("ok")
            ),
            None,
        )
        result.update(
            project_id=project["id"],
            status=run["status"],
            reason=run.get("reason"),
            wall_s=round(time.time() - started, 2),
            first_preview_s=(
                round(datetime.fromisoformat(first_preview["ts"]).timestamp() - started, 2)
                if first_preview is not None
                else None
            ),
            turns=sum(
                1 for e in feed if e["type"] == "step.started" and e["data"].get("kind") == "model"
            ),
            credits=run.get("cost_micros", 0) / 1_000_000,
        )
        tests = (run.get("summary") or {}).get("tests") or {}
        if run["status"] != "completed" and tests:
            # What the suite's own check saw, for the report's reader.
            result["tests"] = {
                "command": tests.get("command"),
                "exit_code": tests.get("exit_code"),
                "output_tail": str(tests.get("output_tail", ""))[-600:],
            }
        checks = [self._check(project["id"], check) for check in spec["checks"]]
        result["checks"] = checks
        result["passed"] = run["status"] == "completed" and all(c["ok"] for c in checks)
        self.server.request("DELETE", f"/api/ecode/projects/{project['id']}/deployments")
        return result

    def _wait(self, run_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout_s
        while True:
            _, run = self.server.api("GET", f"runs/{run_id}")
            if run["status"] in FINAL:
                return dict(run)
            if time.monotonic() > deadline:
                self.server.api("POST", f"runs/{run_id}/cancel")
                deadline = time.monotonic() + 60
            time.sleep(0.5)

    def _events(self, run_id: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while True:
            after = events[-1]["seq"] if events else 0
            _, page = self.server.api("GET", f"runs/{run_id}/events?after={after}")
            if not page["events"]:
                return events
            events.extend(page["events"])

    # -- checks ---------------------------------------------------------------------------

    def _preview_url(self, project_id: str) -> str | None:
        _, listing = self.server.api("GET", f"projects/{project_id}/deployments")
        for dep in (listing or {}).get("deployments", []):
            if dep.get("kind") == "preview" and dep.get("status") == "running" and dep.get("url"):
                return str(dep["url"])
        return None

    def _check(self, project_id: str, check: dict[str, Any]) -> dict[str, Any]:
        kind = check["kind"]
        outcome: dict[str, Any] = {"kind": kind, "ok": False}
        try:
            if kind == "http":
                outcome.update(self._http(project_id, check))
            elif kind == "browser":
                outcome.update(self._tool(project_id, "check_app", {"steps": check["steps"]}))
            elif kind == "file":
                outcome.update(self._file(project_id, check))
            else:
                outcome["error"] = f"unknown check kind {kind!r}"
        except Exception as exc:  # one broken check must not end the eval
            outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return outcome

    def _http(self, project_id: str, check: dict[str, Any]) -> dict[str, Any]:
        label = f"{check['method']} {check['path']}"
        url = self._preview_url(project_id)
        if url is None:
            return {"check": label, "error": "no running preview"}
        path = url.split(f"127.0.0.1:{self.server.port}", 1)[-1] + check["path"].lstrip("/")
        status, text = self._fetch(check["method"], path, check.get("body"))
        problems = []
        if status != check.get("status", 200):
            problems.append(f"status {status}, not {check.get('status', 200)}")
        if "json" in check:
            try:
                got = json.loads(text)
            except ValueError:
                got = None
            if not _subset(check["json"], got):
                problems.append(f"answer {text[:200]!r} lacks {check['json']}")
        if "contains" in check and check["contains"] not in text:
            problems.append(f"answer {text[:200]!r} lacks {check['contains']!r}")
        return {"check": label, "ok": not problems, "error": "; ".join(problems) or None}

    def _fetch(self, method: str, path: str, body: Any) -> tuple[int, str]:
        """A request to the app through the proxy, as an API client sends it (no login)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            data = json.dumps(body).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            conn.close()

    def _file(self, project_id: str, check: dict[str, Any]) -> dict[str, Any]:
        read = self._tool(project_id, "read_file", {"path": check["path"]})
        if not read["ok"]:
            return {"check": check["path"], "error": read.get("error")}
        wanted = check.get("contains")
        ok = wanted is None or wanted in read.get("text", "")
        return {"check": check["path"], "ok": ok, "error": None if ok else f"lacks {wanted!r}"}

    def _tool(self, project_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return asyncio.run(self._call_tool(project_id, name, arguments))

    async def _call_tool(
        self, project_id: str, name: str, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp_types import TextContent

        url = f"http://127.0.0.1:{self.server.port}/api/ecode/mcp"
        headers = {"Authorization": f"token {self.server.token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=180) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            result = await client.call_tool(name, {"project": project_id, **arguments})
        text = "".join(b.text for b in result.content if isinstance(b, TextContent))
        if result.is_error:
            return {"check": name, "ok": False, "error": text[:500]}
        if name != "check_app":
            return {"check": name, "ok": True, "text": text}
        report = json.loads(text)
        failed = [s for s in report["steps"] if not s["ok"]]
        problems = [f"{s['action']}: {s.get('error')}" for s in failed] + [
            f"page error: {e}" for e in report["page_errors"]
        ]
        return {
            "check": "browser",
            "ok": bool(report["passed"]),
            "error": "; ".join(problems)[:500] or None,
            "screenshot": report.get("screenshot"),
        }


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    passed = [r for r in results if r["passed"]]
    previews = [r["first_preview_s"] for r in results if r.get("first_preview_s") is not None]
    credits = [r.get("credits", 0.0) for r in results]
    turns = [r.get("turns", 0) for r in results]
    by_stack: dict[str, list[int]] = {}
    for r in results:
        tally = by_stack.setdefault(r["stack"], [0, 0])
        tally[0] += int(r["passed"])
        tally[1] += 1
    return {
        "specs": len(results),
        "passed": len(passed),
        "pass_rate": round(len(passed) / len(results), 3) if results else 0.0,
        "median_first_preview_s": round(statistics.median(previews), 2) if previews else None,
        "previews": len(previews),
        "credits_per_app": round(statistics.mean(credits), 6) if credits else 0.0,
        "median_turns": statistics.median(turns) if turns else 0,
        "by_stack": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_stack.items())},
    }


def print_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    header = f"{'spec':28} {'stack':9} {'result':6} {'run':10} {'preview s':>9} {'turns':>5} "
    header += f"{'credits':>8}  first problem"
    print(header)
    print("-" * len(header))
    for r in results:
        problem = ""
        if r.get("status") != "completed":
            problem = f"run {r.get('status')}: {r.get('reason')}"
        for check in r.get("checks", []) if not problem else []:
            if not check["ok"]:
                problem = f"{check.get('check', check['kind'])}: {check.get('error')}"
                break
        problem = " ".join(problem.split())
        preview = f"{r['first_preview_s']:.1f}" if r.get("first_preview_s") is not None else "-"
        print(
            f"{r['id']:28} {r['stack']:9} {'PASS' if r['passed'] else 'fail':6} "
            f"{r.get('status', ''):10} {preview:>9} {r.get('turns', 0):>5} "
            f"{r.get('credits', 0.0):>8.4f}  {problem[:70]}"
        )
    print()
    median = summary["median_first_preview_s"]
    print(
        f"passed {summary['passed']}/{summary['specs']} ({summary['pass_rate']:.0%}); "
        f"median time to first preview {median if median is not None else '-'} s "
        f"over {summary['previews']} previews; {summary['credits_per_app']:.4f} credits per app; "
        f"median {summary['median_turns']} turns; by stack {summary['by_stack']}"
    )


def add_options(parser: argparse.ArgumentParser) -> None:
    """The eval's options, for ``jupyter ecode eval`` and ``benchmarks/eval/run.py`` alike."""
    parser.add_argument(
        "--provider",
        default="offline",
        help="offline (default), or a provider "
        "whose key is in the environment (anthropic, openai, openai-compatible)",
    )
    parser.add_argument("--model", help="the model to ask for (the server's default otherwise)")
    parser.add_argument("--specs", nargs="*", help="spec ids (default: all)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report path")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--root", type=Path, help="server folder (default: a temporary one)")


def run_eval(args: argparse.Namespace) -> int:
    """Run the selected specs on a server of its own; print the table, write the report."""
    specs = load_specs(args.specs)
    if args.provider == "offline":
        # No key, no AI: the server's offline provider builds what its templates fit.
        for name in MODEL_KEYS:
            os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="ecode-eval-") as tmp:
        root = args.root or Path(tmp)
        server = EcodeServerProcess(
            root,
            database_url=f"sqlite:///{root / 'ecode.sqlite'}",
            args=[f"--EcodeApp.agent_max_wall_time_s={args.timeout:g}"],
        )
        runner = EvalRunner(server, model=args.model, timeout_s=args.timeout)
        results: list[dict[str, Any]] = []
        try:
            for spec in specs:
                print(f"… {spec['id']}", file=sys.stderr, flush=True)
                results.append(runner.run_spec(spec))
        finally:
            server.stop()
    summary = summarize(results)
    print_table(results, summary)
    report = {
        "provider": args.provider,
        "model": args.model,
        "summary": summary,
        "results": results,
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1) + "\n")
    print(f"report: {args.report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_options(parser)
    return run_eval(parser.parse_args(argv))
