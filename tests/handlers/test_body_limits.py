"""Oversized bodies are refused before they are read (issue 17, 8).

The server used to buffer a whole body (up to Jupyter's 512 MB ``max_body_size``) before the
handler could answer 413. These tests send only the headers, or part of a chunked body, and
expect the 413 while the rest is still unsent: a server that waited for the body would never
answer, and the read times out.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ecode_jupyter.handlers.base import MAX_BODY_BYTES
from ecode_jupyter.pytest_plugin import ecode_token_for


async def _answer_to(port: int, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send ``head`` (and ``body``) on a raw connection; the status and JSON of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(65536), timeout=10)
        while b"\r\n\r\n" not in raw:
            raw += await asyncio.wait_for(reader.read(65536), timeout=10)
        header, _, rest = raw.partition(b"\r\n\r\n")
        status = int(header.split()[1])
        length = next(
            int(line.split(b":", 1)[1])
            for line in header.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(rest) < length:
            rest += await asyncio.wait_for(reader.read(65536), timeout=10)
        return status, json.loads(rest[:length])
    finally:
        writer.close()


def _head(base_url: str, path: str, *extra: str) -> bytes:
    lines = [
        f"POST {base_url}api/ecode/{path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: token {ecode_token_for('alice')}",
        "Content-Type: application/json",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_a_declared_length_over_the_limit_is_413_before_the_body(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    # 200 MB declared, not one byte of it sent: the answer must not wait for it.
    head = _head(jp_base_url, "projects", "Content-Length: 200000000")
    status, body = await _answer_to(jp_http_port, head)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert str(MAX_BODY_BYTES) in body["error"]["message"]


async def test_a_chunked_body_is_refused_once_past_the_limit(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    # Twice the limit in 64 KiB chunks and no final chunk: the body never ends, so only a
    # server that counts as it reads can answer.
    chunk = b"x" * 65536
    body = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (2 * MAX_BODY_BYTES // len(chunk))
    head = _head(jp_base_url, "projects", "Transfer-Encoding: chunked")
    status, answer = await _answer_to(jp_http_port, head, body)
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


async def test_bodies_within_the_limit_still_arrive_whole(ecode_api: Any) -> None:
    # Just under the limit, so it arrives in many reads (JSON allows the padding): it parses
    # only if the streamed parts were joined, in order, before post() ran.
    padding = " " * (MAX_BODY_BYTES - 4096)
    raw = ('{"name": "Padded",' + padding + '"description": "kept whole"}').encode()
    created = await ecode_api("POST", "projects", raw=raw)
    assert created.status == 201, created.body
    assert created.body["description"] == "kept whole"


async def test_an_unauthenticated_big_body_is_401_before_the_body(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    head = _head(jp_base_url, "projects", "Content-Length: 200000000").replace(
        f"Authorization: token {ecode_token_for('alice')}\r\n".encode(), b""
    )
    status, body = await _answer_to(jp_http_port, head)
    assert status == 401 and body["error"]["code"] == "not_authenticated"


async def test_the_mcp_endpoint_takes_bigger_bodies_up_to_its_own_limit(
    http_server_client: Any, jp_http_port: int, jp_base_url: str
) -> None:
    # write_file over MCP carries up to 10 MB of text: 2 MiB passes the size check (the MCP
    # SDK then answers the body itself), 40 MiB is refused before it is read.
    accept = "Accept: application/json, text/event-stream"
    body = b'{"jsonrpc": "2.0", "method": "ping", "padding": "' + b"x" * (2 << 20) + b'"}'
    head = _head(jp_base_url, "mcp", accept, f"Content-Length: {len(body)}")
    status, _ = await _answer_to(jp_http_port, head, body)
    assert status != 413 and status < 500
    head = _head(jp_base_url, "mcp", accept, "Content-Length: 41943040")
    status, answer = await _answer_to(jp_http_port, head)
    assert status == 413 and answer["error"]["code"] == "payload_too_large"
