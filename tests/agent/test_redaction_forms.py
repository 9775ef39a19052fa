"""A secret is hidden in every form a command can print it in, and is not kept in a prompt.

Regression tests for issue 17 (5): redaction matched only the exact value, so base64, hex,
URL-encoded, reversed, split or case-changed forms reached the feed (which viewers read) and the
model, and a secret pasted into a prompt was stored and returned raw in ``runs.prompt``.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest

from ecode_jupyter.agent.redaction import Redactor, StreamRedactor

from .feed import events, wait_final

SECRET = "sk-Live_9f8e7d/6c5b+4a3"
NAME = "STRIPE_KEY"
HIDDEN = f"[secret {NAME}]"

FORMS = {
    "value": SECRET,
    "upper case": SECRET.upper(),
    "lower case": SECRET.lower(),
    "reversed": SECRET[::-1],
    "hex": SECRET.encode().hex(),
    "HEX": SECRET.encode().hex().upper(),
    "url-encoded": urllib.parse.quote(SECRET, safe=""),
    "url-encoded, lower-case escapes": urllib.parse.quote(SECRET, safe="").lower(),
    "form-encoded": urllib.parse.quote_plus(SECRET),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    # `echo $KEY | base64`, and the value inside a longer encoded text at each byte alignment
    "base64 with a newline": base64.b64encode(SECRET.encode() + b"\n").decode(),
    "base64 after 1 byte": base64.b64encode(b"=" + SECRET.encode()).decode(),
    "base64 after 2 bytes": base64.b64encode(b"k=" + SECRET.encode()).decode(),
    "url-safe base64": base64.urlsafe_b64encode(b"x" + SECRET.encode()).decode(),
}


@pytest.mark.parametrize("form", FORMS)
def test_every_form_of_a_secret_is_hidden(form: str) -> None:
    shown = FORMS[form]
    out = Redactor({NAME: SECRET}).text(f"output: {shown} (end)")
    assert HIDDEN in out
    # What is left around the name is at most the few base64 characters that mix in bits of
    # the text around the secret: nothing of the secret can be read back from it.
    assert len(out) <= len(f"output: {HIDDEN} (end)") + 6


def test_a_secret_inside_a_longer_base64_text_is_hidden() -> None:
    env = base64.b64encode(f"HOME=/root\n{NAME}={SECRET}\nPATH=/bin\n".encode()).decode()
    out = Redactor({NAME: SECRET}).text(env)
    assert HIDDEN in out
    # The text around it still decodes to what it was (the other variables).
    assert base64.b64decode(out.split("[")[0][:12]).startswith(b"HOME=/ro")


@pytest.mark.parametrize("form", ["value", "hex", "url-encoded", "base64 after 2 bytes"])
def test_a_form_split_across_stream_chunks_is_hidden(form: str) -> None:
    text = f"before {FORMS[form]} after"
    for cut in range(1, len(text)):
        stream = StreamRedactor(Redactor({NAME: SECRET}))
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush()
        assert HIDDEN in out, cut


def test_ordinary_text_is_left_alone() -> None:
    text = "hex 0123456789abcdef, base64 c2stTGl2ZQ, a URL /a%2Fb?x=1"
    assert Redactor({NAME: SECRET}).text(text) == text


async def test_a_secret_in_a_prompt_is_not_kept(ecode_api: Any) -> None:
    created = await ecode_api("POST", "projects", body={"name": "Shop"})
    pid = created.body["id"]
    put = await ecode_api("PUT", f"projects/{pid}/secrets/{NAME}", body={"value": SECRET})
    assert put.status in (200, 201, 204), put.body
    prompt = f"a shop; use the key {SECRET} (or {SECRET.upper()})"
    started = await ecode_api("POST", f"projects/{pid}/runs", body={"prompt": prompt})
    assert started.status == 201, started.body
    run = await wait_final(ecode_api, started.body["id"])
    assert run["prompt"] == f"a shop; use the key {HIDDEN} (or {HIDDEN})"
    listed = await ecode_api("GET", f"projects/{pid}/runs")
    feed = await events(ecode_api, run["id"])
    for shown in (str(listed.body), str(feed)):
        assert SECRET not in shown and SECRET.upper() not in shown
