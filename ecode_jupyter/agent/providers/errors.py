"""Turning SDK and transport failures into :class:`ProviderError`.

Both SDKs raise an ``APIError`` family with the same shape (``status_code`` on HTTP errors,
``type`` / ``code`` from the error body, ``APIConnectionError`` for the network); an error
event inside an already-started stream arrives with the stream's 200 status, so the body's
error type decides then.
"""

from __future__ import annotations

import email.utils
import logging
import time

import anthropic
import httpx2
import openai

from .base import ProviderError, Usage

log = logging.getLogger(__name__)

_MAX_DETAIL = 300


# The SDKs' own default (600 s) for what is not set: a whole turn may stream that long.
_DEFAULT_TIMEOUT_S = 600.0


def client_timeout(read_s: float | None, connect_s: float | None) -> httpx2.Timeout:
    """The SDK client's timeout: ``read_s`` bounds each wait for bytes (a model that goes
    silent mid-stream is noticed after it, not after a whole turn's time), ``connect_s`` the
    TCP and TLS set-up."""
    read = _DEFAULT_TIMEOUT_S if read_s is None else read_s
    return httpx2.Timeout(read, connect=read if connect_s is None else connect_s)


def classify(status: int | None, error_type: str | None) -> tuple[str, bool]:
    """(kind, retryable) for an upstream HTTP status and/or body error type."""
    etype = (error_type or "").lower()
    if status in (503, 529) or "overloaded" in etype:
        return "overloaded", True
    if status == 429 or "rate_limit" in etype:
        return "rate_limited", True
    if status in (401, 403) or etype in ("authentication_error", "permission_error"):
        return "authentication", False
    if status == 402 or etype == "billing_error":
        return "billing", False
    if status in (408, 409) or etype == "timeout_error":
        return "timeout", True
    if (status is not None and status >= 500) or etype in ("api_error", "server_error"):
        return "server_error", True
    if status is not None and 400 <= status < 500:
        return "bad_request", False
    if etype in ("invalid_request_error", "not_found_error", "request_too_large"):
        return "bad_request", False
    return "unknown", False


_TIMEOUTS = (anthropic.APITimeoutError, openai.APITimeoutError)
_CONNECTION = (anthropic.APIConnectionError, openai.APIConnectionError)


def retry_after(headers: object) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms``, else ``retry-after`` as seconds or
    an HTTP date), as the SDKs read it; None when it did not say."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    try:
        return max(0.0, float(get("retry-after-ms")) / 1000)
    except (TypeError, ValueError):
        pass
    raw = get("retry-after")
    if not isinstance(raw, str):
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    date = email.utils.parsedate_tz(raw)
    return None if date is None else max(0.0, email.utils.mktime_tz(date) - time.time())


def error_from_sdk(
    provider: str, exc: anthropic.APIError | openai.APIError, usage: Usage
) -> ProviderError:
    """A ProviderError for an ``anthropic.APIError`` or ``openai.APIError``."""
    if isinstance(exc, _TIMEOUTS):
        kind, retryable, status = "timeout", True, None
    elif isinstance(exc, _CONNECTION):
        kind, retryable, status = "connection", True, None
    else:
        raw_status = getattr(exc, "status_code", None)
        # A stream that started with 200 and then sent an error event is not a 200 error.
        status = raw_status if isinstance(raw_status, int) and raw_status >= 400 else None
        error_type = getattr(exc, "type", None)
        kind, retryable = classify(status, error_type if isinstance(error_type, str) else None)
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) if status is not None else None
    wait = retry_after(headers)
    # The server's own word on retrying wins over the status, as the SDKs do it.
    should_retry = headers.get("x-should-retry") if headers is not None else None
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    detail = getattr(exc, "api_message", None) or getattr(exc, "message", None) or str(exc)
    where = f" (HTTP {status})" if status is not None else ""
    message = f"{provider} request failed: {kind}{where}: {str(detail)[:_MAX_DETAIL]}"
    log.info("%s call failed: %s%s, retryable=%s", provider, kind, where, retryable)
    return ProviderError(
        message,
        provider=provider,
        kind=kind,
        retryable=retryable,
        http_status=status,
        partial_usage=usage,
        retry_after_s=wait,
    )


def transport_error(provider: str, exc: httpx2.TransportError, usage: Usage) -> ProviderError:
    """A dropped connection or broken body while streaming."""
    kind = "timeout" if isinstance(exc, httpx2.TimeoutException) else "connection"
    message = f"{provider} stream broke off: {kind}: {type(exc).__name__}"
    log.info("%s stream broke off (%s) after usage %s", provider, type(exc).__name__, usage)
    return ProviderError(message, provider=provider, kind=kind, retryable=True, partial_usage=usage)


def stream_incomplete(provider: str, expected: str, usage: Usage) -> ProviderError:
    """The body ended cleanly but before the turn's final event."""
    message = f"{provider} stream ended before {expected}"
    log.info("%s stream ended before %s after usage %s", provider, expected, usage)
    return ProviderError(
        message, provider=provider, kind="stream_incomplete", retryable=True, partial_usage=usage
    )


def bad_response(provider: str, exc: ValueError, usage: Usage) -> ProviderError:
    """A body the SDK could not parse (malformed JSON, an unexpected shape).

    Seen with compatible servers that bend the format; asking again rarely helps.
    """
    message = f"{provider} sent a response that could not be read: {type(exc).__name__}"
    log.warning("%s sent an unreadable response: %s", provider, type(exc).__name__)
    return ProviderError(
        message, provider=provider, kind="bad_response", retryable=False, partial_usage=usage
    )
