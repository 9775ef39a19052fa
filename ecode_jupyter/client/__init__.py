"""A client of the ecode REST and WebSocket API, for kernels (the magics) and shells.

``discovery`` finds the server and its token, ``rest`` calls the REST API, ``feed`` follows a
run's progress feed with lossless reconnects, ``progress`` folds events into a run's state and
``render`` draws that state as HTML or text.
"""

from __future__ import annotations

from .discovery import ServerInfo, find_server
from .feed import FeedLost, follow_events
from .progress import RunProgress
from .rest import ApiError, ClientError, EcodeClient, NotConnected, ServerUnreachable

__all__ = [
    "ApiError",
    "ClientError",
    "EcodeClient",
    "FeedLost",
    "NotConnected",
    "RunProgress",
    "ServerInfo",
    "ServerUnreachable",
    "find_server",
    "follow_events",
]
