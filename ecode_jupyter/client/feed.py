"""Following a run's progress feed (``WS runs/{id}/events?after=N``) from a blocking caller.

The feed replays every event after ``after`` and then streams live ones. When the socket drops
before the run's last event, :func:`follow_events` reconnects with ``after=<last seq seen>``
(backing off, and giving up after a number of attempts that brought nothing new), so the
caller sees each event once and in order. It returns at the terminal event.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import websocket

from .discovery import ServerInfo
from .rest import ApiError, ClientError, error_from_response

log = logging.getLogger(__name__)

TERMINAL_TYPES = frozenset({"run.completed", "run.failed", "run.cancelled", "run.interrupted"})
#: seconds to wait before reconnect attempt n (the last value repeats)
BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
MAX_ATTEMPTS = 8
# Without any frame for this long the socket is presumed dead (a proxy dropped it silently)
# and is replaced; replay from the last seq makes that lossless.
IDLE_RECONNECT_S = 60.0
#: how often ``tick`` runs while the feed is quiet
TICK_S = 0.25
# Close codes a server uses for "this will not get better by retrying" (4000-4999 are the
# application's own; 1008 is policy violation, e.g. not allowed).
PERMANENT_CLOSE_CODES = frozenset({1008}) | frozenset(range(4000, 5000))

Event = dict[str, Any]


class FeedLost(ClientError):
    """The feed could not be (re)opened; the run itself may still be going."""

    hint = (
        "The run goes on on the server: `%ecode watch` follows it again, `%ecode status` shows it."
    )


def events_url(server: ServerInfo, run_id: str, after: int) -> str:
    return f"{server.ws_url}runs/{run_id}/events?after={after}"


def _open(server: ServerInfo, run_id: str, after: int, timeout: float) -> websocket.WebSocket:
    url = events_url(server, run_id, after)
    try:
        ws = websocket.create_connection(url, timeout=timeout, header=server.auth_headers())
    except websocket.WebSocketBadStatusException as exc:
        body = exc.resp_body if isinstance(exc.resp_body, bytes) else b""
        raise error_from_response(exc.status_code, body, "the progress feed") from exc
    return ws


def _close_info(data: Any) -> tuple[int | None, str]:
    """The status code and reason of a close frame's payload."""
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, bytes) and len(data) >= 2:
        (code,) = struct.unpack("!H", data[:2])
        return int(code), data[2:].decode("utf-8", "replace")
    return None, ""


def follow_events(
    server: ServerInfo,
    run_id: str,
    on_event: Callable[[Event], None],
    *,
    after: int = 0,
    deadline: float | None = None,
    idle_timeout: float = IDLE_RECONNECT_S,
    max_attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    tick: Callable[[], None] | None = None,
    tick_interval: float = TICK_S,
) -> int:
    """Call ``on_event`` for every event after ``after`` until the run's terminal event.

    Returns the last seq seen. With ``deadline`` (a ``time.monotonic()`` value) it also
    returns when that time passes, terminal event or not. Raises :class:`FeedLost` when
    ``max_attempts`` connections in a row brought no event, and :class:`ApiError` at once for
    a refusal that retrying cannot fix (401, 403, 404). ``tick`` is called about every
    ``tick_interval`` seconds while no event arrives (a display flushes what it held back).
    """
    last = after
    failures = 0
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return last
        ws: websocket.WebSocket | None = None
        got_event = False
        reason = ""
        try:
            ws = _open(server, run_id, last, timeout=min(idle_timeout, 30.0))
            heard = time.monotonic()
            while True:
                wait = _slice(idle_timeout - (time.monotonic() - heard), deadline)
                ws.settimeout(min(wait, tick_interval) if tick is not None else wait)
                try:
                    opcode, data = ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    # The frame reader keeps partial frames, so waiting on is safe.
                    quiet = time.monotonic() - heard
                    if deadline is not None and time.monotonic() >= deadline:
                        return last
                    if quiet >= idle_timeout:
                        raise
                    if tick is not None:
                        tick()
                    continue
                heard = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, text = _close_info(data)
                    if code in PERMANENT_CLOSE_CODES:
                        msg = text or f"the progress feed was closed (code {code})"
                        raise ApiError(403 if code == 1008 else 400, "feed_closed", msg)
                    reason = f"closed by the server (code {code})"
                    break
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    continue
                event = _parse(data)
                if event is None:
                    continue
                seq = int(event["seq"])
                if seq <= last:
                    continue  # already seen before a reconnect
                last = seq
                got_event = True
                failures = 0
                on_event(event)
                if event.get("type") in TERMINAL_TYPES:
                    return last
                if deadline is not None and time.monotonic() >= deadline:
                    return last
        except ApiError as exc:
            if exc.status < 500 and exc.status != 429:
                raise
            reason = f"HTTP {exc.status}"
        except websocket.WebSocketTimeoutException:
            reason = "no frame within the idle timeout"
        except (websocket.WebSocketException, OSError) as exc:
            reason = type(exc).__name__
        finally:
            if ws is not None:
                _quiet_close(ws)
        if deadline is not None and time.monotonic() >= deadline:
            return last
        if not got_event:
            failures += 1
        if failures >= max_attempts:
            msg = f"lost the progress feed of run {run_id} after event {last} ({reason})"
            raise FeedLost(msg)
        delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)] if failures else 0.0
        log.info("feed of run %s dropped after seq %s (%s); reconnecting", run_id, last, reason)
        if delay:
            sleep(delay)


def _slice(wait: float, deadline: float | None) -> float:
    """``wait`` seconds, or less to wake at the deadline; never zero (that means no wait)."""
    if deadline is not None:
        wait = min(wait, deadline - time.monotonic())
    return max(0.01, wait)


def _parse(data: Any) -> Event | None:
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        log.debug("ignoring a frame that is not JSON")
        return None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        code = str(err.get("code") or "error")
        status = {"not_authenticated": 401, "forbidden": 403, "not_found": 404}.get(code, 400)
        raise ApiError(status, code, str(err.get("message") or code))
    if not isinstance(payload, dict) or not isinstance(payload.get("seq"), int):
        return None  # a keep-alive or a message type this client does not know
    return payload


def _quiet_close(ws: websocket.WebSocket) -> None:
    with contextlib.suppress(websocket.WebSocketException, OSError):
        ws.close(timeout=1)
