"""Schemathesis over every operation of the OpenAPI description: no answer is a 5xx.

The fuzzer runs as its own process (its HTTP client is blocking; the server under test runs
on this test's event loop, which must keep serving). Path ids are pinned to a real project,
run, release and deployment half the time, so the bodies reach the managers instead of
stopping at a 404. Runs use a model server that is not there: a run fails at its first model
call instead of building an app on 2 cores.

Figures of a run are in its output (``-s``): operations, test cases, and any 5xx with the
curl command that reproduces it. ``ECODE_FUZZ_EXAMPLES`` (default 25), ``ECODE_FUZZ_SEED``
and ``ECODE_FUZZ_USER`` (default admin; alice is a stranger to the pinned project) change its
size, its cases and who calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.pytest_plugin import ecode_token_for

pytestmark = pytest.mark.fuzz

MODEL_ENV = ("ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL")
FUZZ_TIMEOUT_S = 420


@pytest.fixture(autouse=True)
def unreachable_model(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MODEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "fuzz")
    # Port 9 (discard) refuses at once on loopback.
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")


@pytest.fixture
def ecode_extra_config() -> dict[str, Any]:
    # Fuzzed prompts must not queue behind the rate limit for minutes; 429s are fine.
    return {"EcodeApp": {"agent_max_wall_time_s": 30.0}}


REFS = {"ProjectId": "project_id", "RunId": "run_id", "ReleaseId": "release_id"}
# Deleting and restoring get a project of their own: the others would 404 once it is gone.
OWN_PROJECT = {("delete", "/projects/{project_id}"), ("post", "/projects/{project_id}/restore")}


def _pin(document: dict[str, Any], values: dict[str, str]) -> None:
    """Let each named path parameter be a real id or a missing one (and nothing else)."""
    for path, item in document["paths"].items():
        shared = item.pop("parameters", [])
        for method, operation in item.items():
            params = []
            for param in [*shared, *operation.get("parameters", [])]:
                name = param.get("name") or REFS.get(param["$ref"].rsplit("/", 1)[-1], "")
                value = values.get(name)
                if name == "project_id" and (method, path) in OWN_PROJECT:
                    value = values["doomed_project_id"]
                if value is None:
                    params.append(param)
                    continue
                schema = {"type": "string", "enum": [value, "missing0"]}
                params.append({"name": name, "in": "path", "required": True, "schema": schema})
            operation["parameters"] = params


async def _fixtures(ecode_api: Any) -> dict[str, str]:
    """A project of the fuzzing user with a member, a secret, a run and a release."""
    project = await ecode_api(
        "POST", "projects", user="admin", body={"name": "Fuzzed", "template": "flask-api"}
    )
    assert project.status == 201, project.body
    pid = str(project.body["id"])
    member = await ecode_api(
        "PUT", f"projects/{pid}/members/bob", user="admin", body={"role": "viewer"}
    )
    assert member.status == 200, member.body
    secret = await ecode_api(
        "PUT", f"projects/{pid}/secrets/API_KEY", user="admin", body={"value": "s3cret"}
    )
    assert secret.status == 200, secret.body
    run = await ecode_api("POST", f"projects/{pid}/runs", user="admin", body={"prompt": "hi"})
    assert run.status == 201, run.body
    carol = await ecode_api(
        "PUT", f"projects/{pid}/members/carol", user="admin", body={"role": "editor"}
    )
    assert carol.status == 200, carol.body
    doomed = await ecode_api("POST", "projects", user="admin", body={"name": "Doomed"})
    assert doomed.status == 201, doomed.body
    values = {
        "project_id": pid,
        "run_id": str(run.body["id"]),
        "member": "carol",
        "name": "API_KEY",
        "doomed_project_id": str(doomed.body["id"]),
    }
    release = await ecode_api("POST", f"projects/{pid}/releases", user="admin", body={})
    assert release.status == 201, release.body
    values["release_id"] = str(release.body["release"]["id"])
    values["deployment_id"] = str(release.body["id"])
    return values


async def test_no_operation_answers_a_server_error(
    ecode_api: Any, jp_http_port: int, jp_base_url: str, tmp_path: Path
) -> None:
    served = await ecode_api("GET", "openapi.json", user="admin")
    assert served.status == 200
    document = served.body
    _pin(document, await _fixtures(ecode_api))
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    report = tmp_path / "report"
    examples = os.environ.get("ECODE_FUZZ_EXAMPLES", "25")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(spec),
        "--url",
        f"http://127.0.0.1:{jp_http_port}{jp_base_url}api/ecode",
        "--header",
        f"Authorization: token {ecode_token_for(os.environ.get('ECODE_FUZZ_USER', 'admin'))}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        examples,
        "--seed",
        os.environ.get("ECODE_FUZZ_SEED", "17"),
        "--workers",
        "2",
        "--request-timeout",
        "60",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(report),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), FUZZ_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"the fuzzer ran past {FUZZ_TIMEOUT_S} s")
    text = out.decode(errors="replace")
    print(text)  # the figures: operations, test cases, failures with their curl commands
    assert process.returncode == 0, text[-6000:]
    # It really ran every operation (a schema it could not load would test nothing).
    operations = sum(len(item) for item in document["paths"].values())  # _pin moved params
    assert f"{operations} selected" in text or f"{operations} passed" in text, text[-3000:]
