"""The cheapest proxy hop this machine allows: a byte relay, for bench_proxy's floor.

Each client connection gets its own connection to the app and bytes are copied both ways as
they come (uvloop when installed): no parsing, no routing, no header rules. Whatever a proxy
adds beyond what this costs is the proxy's own work; what this costs is the price of one more
process between client and app (two more socket reads, writes and wake-ups per request).

    python benchmarks/_relay_floor.py LISTEN_PORT APP_PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import cast


class _Side(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        if self.pending:
            self.transport.write(b"".join(self.pending))
            self.pending = []

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        else:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


class _Client(_Side):
    def __init__(self, app_port: int) -> None:
        super().__init__()
        self.app_port = app_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        app = _Side()
        app.peer, self.peer = self, app
        loop = asyncio.get_running_loop()
        loop.create_task(loop.create_connection(lambda: app, "127.0.0.1", self.app_port))


async def _serve(port: int, app_port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        lambda: _Client(app_port), "127.0.0.1", port
    )
    print("ready", flush=True)
    await server.serve_forever()


def main() -> None:
    port, app_port = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(port, app_port))
    else:
        uvloop.run(_serve(port, app_port))


if __name__ == "__main__":
    main()
