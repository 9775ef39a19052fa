"""Secrets: write-only over REST, encrypted at rest, never in responses, logs or audit."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from ecode_jupyter.db.models import AuditEvent, ProjectSecret

SECRET = "sk-live-THIS-MUST-NEVER-LEAK-1234567890"


async def test_secret_is_write_only_and_encrypted(
    ecode_api: Any, ecode_app: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    pid = (await ecode_api("POST", "projects", body={"name": "s"})).body["id"]
    put = await ecode_api("PUT", f"projects/{pid}/secrets/STRIPE_KEY", body={"value": SECRET})
    assert put.status == 200
    assert put.body["name"] == "STRIPE_KEY"
    listed = await ecode_api("GET", f"projects/{pid}/secrets")
    assert [s["name"] for s in listed.body["secrets"]] == ["STRIPE_KEY"]
    for resp in (put, listed):
        assert SECRET not in str(resp.body)

    ctx = ecode_app.ecode

    def rows(session: Any) -> tuple[list[bytes], list[dict[str, Any]]]:
        cipher = list(session.scalars(select(ProjectSecret.ciphertext)))
        audit = [a.details | {"t": a.target_id} for a in session.scalars(select(AuditEvent))]
        return cipher, audit

    cipher, audit = await ctx.db.run(rows)
    assert SECRET.encode() not in cipher[0]
    assert SECRET not in str(audit)
    assert await ctx.secrets.project_env(pid) == {"STRIPE_KEY": SECRET}
    assert SECRET not in caplog.text

    # Viewers see names, cannot write; strangers see nothing.
    await ecode_api("PUT", f"projects/{pid}/members/bob", body={"role": "viewer"})
    assert (await ecode_api("GET", f"projects/{pid}/secrets", user="bob")).status == 200
    denied = await ecode_api("PUT", f"projects/{pid}/secrets/X", user="bob", body={"value": "v"})
    assert denied.status == 403
    assert (await ecode_api("GET", f"projects/{pid}/secrets", user="carol")).status == 404

    assert (await ecode_api("DELETE", f"projects/{pid}/secrets/STRIPE_KEY")).status == 204
    assert (await ecode_api("GET", f"projects/{pid}/secrets")).body["secrets"] == []
    assert (await ecode_api("DELETE", f"projects/{pid}/secrets/STRIPE_KEY")).status == 404


async def test_secret_names_and_values_are_validated(ecode_api: Any) -> None:
    pid = (await ecode_api("POST", "projects", body={"name": "s"})).body["id"]
    for name, body in [
        ("1BAD", {"value": "v"}),
        ("PATH", {"value": "v"}),
        ("LD_PRELOAD", {"value": "v"}),
        ("JUPYTER_TOKEN", {"value": "v"}),
        ("A" * 65, {"value": "v"}),
        ("OK", {"value": 3}),
        ("OK", {"value": "x" * (64 * 1024 + 1)}),
        ("OK", {"val": "v"}),
    ]:
        resp = await ecode_api("PUT", f"projects/{pid}/secrets/{name}", body=body)
        assert resp.status == 400, (name, resp.body)
    assert (await ecode_api("GET", f"projects/{pid}/secrets")).body["secrets"] == []
