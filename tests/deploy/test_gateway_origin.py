"""Which pages keep an origin of their own on the preview origin.

Browsers scope cookies to a host name, not to a port: an app page with ``allow-same-origin``
on ``http://127.0.0.1:{preview_port}`` could read and set the cookies of a Jupyter at
``http://127.0.0.1:8888``. Pages keep their origin only on a preview origin with a host name
of its own (here ``127.0.0.2``, a loopback address by another name than Jupyter's)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecode_jupyter.deploy.gateway import AppGateway
from ecode_jupyter.deploy.manager import preview_isolation

from .apps import VERSIONED
from .conftest import running_gateway
from .test_preview_api import SANDBOX

OWN_ORIGIN = SANDBOX + " allow-same-origin"


@pytest.fixture
def ecode_extra_config(gateway_port: int) -> dict[str, Any]:
    return {
        "EcodeApp": {
            "preview_port": gateway_port,
            "preview_ip": "127.0.0.2",
            "app_start_timeout_s": 30.0,
        }
    }


@pytest.fixture
def gateway(ecode_app: Any, jp_asyncio_loop: asyncio.AbstractEventLoop) -> Iterator[AppGateway]:
    with running_gateway(ecode_app, jp_asyncio_loop) as started:
        yield started


@pytest.mark.parametrize(
    ("origin", "jupyter_ip", "own"),
    [
        # Jupyter on loopback prints localhost and 127.0.0.1 URLs: either may be its name.
        ("http://127.0.0.1:9999", "127.0.0.1", False),
        ("http://localhost:9999", "127.0.0.1", False),
        ("http://LOCALHOST:9999", "localhost", False),
        ("http://[::1]:9999", "localhost", False),
        ("http://127.0.0.1:9999", "", False),  # all addresses: loopback too
        ("http://127.0.0.1:9999", "0.0.0.0", False),
        ("http://10.0.0.5:9999", "10.0.0.5", False),  # its own address
        ("http://[fd00::5]:9999", "[fd00::5]", False),
        ("http://127.0.0.2:9999", "localhost", True),  # another host name
        ("https://apps.example.com", "0.0.0.0", True),
        ("https://apps.example.com", "10.0.0.5", True),
        ("http://localhost:9999", "10.0.0.5", True),
    ],
)
def test_pages_keep_their_origin_only_on_a_host_of_its_own(
    origin: str, jupyter_ip: str, own: bool
) -> None:
    assert preview_isolation(origin, jupyter_ip=jupyter_ip) is own


async def test_a_preview_origin_with_a_host_of_its_own_lets_pages_keep_it(
    ecode_api: Any,
    app_fetch: Any,
    gateway: AppGateway,
    jp_http_port: int,
    write_files: Callable[[Path, dict[str, str]], None],
    ecode_workspace_root: Path,
) -> None:
    r = await ecode_api("POST", "projects", body={"name": "Own origin"})
    pid = r.body["id"]
    write_files(ecode_workspace_root / pid, {"app.py": VERSIONED.replace("{version}", "v1")})
    dep = await ecode_api("POST", f"projects/{pid}/deployments", body={"command": "python app.py"})
    assert dep.status == 201, dep.body
    origin = f"http://127.0.0.2:{gateway.port}"
    assert dep.body["url"].startswith(origin + "/")
    assert dep.body["own_origin"] is True  # the Preview tab may frame it with its origin
    keyed_path = dep.body["url"].removeprefix(origin)

    there = await app_fetch(f"{origin}{keyed_path}")
    assert there.code == 200 and there.text == "v1"
    assert there.headers["Content-Security-Policy"] == OWN_ORIGIN
    # The gateway's own pages (a path it does not serve) stay opaque all the same.
    nothing = await app_fetch(f"{origin}/api/contents")
    assert nothing.code == 404
    assert nothing.headers["Content-Security-Policy"] == SANDBOX
    # On Jupyter's origin the same app stays in the sandbox.
    here = await app_fetch(f"http://127.0.0.1:{jp_http_port}{keyed_path}")
    assert here.code == 200
    assert here.headers["Content-Security-Policy"] == SANDBOX
