"""A small synchronous client of the ``/api/ecode/`` REST API, for kernels and shells.

Synchronous on purpose: a magic runs inside the kernel's own event loop, where
``asyncio.run`` is not allowed, and blocking the cell is the magic's intended behaviour.
Server errors arrive as ``{"error": {"code", "message"}}`` and become :class:`ApiError`, which
also knows what the user can do next (:attr:`ApiError.hint`).

    ClientError
     ├── ApiError            the server answered with an error status
     ├── ServerUnreachable   no answer (refused, DNS, timeout)
     └── NotConnected        no server was found or configured
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from .discovery import ServerInfo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0

_HINTS = {
    "not_authenticated": (
        "The server did not accept the token: run `%ecode connect URL TOKEN` "
        "(or set ECODE_TOKEN) with a valid one."
    ),
    "forbidden": "Your role in this project does not allow this; ask the project's owner.",
    "not_found": "Check the name or id with `%ecode projects` / `%ecode runs`.",
    "insufficient_credits": "Out of credits — ask your admin for a grant.",
    "rate_limited": "Too many requests: wait a moment and try again.",
}


class ClientError(Exception):
    """Base of the client's errors; ``str()`` is a message fit for the user."""

    hint: str = ""


class ApiError(ClientError):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def hint(self) -> str:  # type: ignore[override]
        run_id = self.details.get("run_id") if isinstance(self.details, dict) else None
        if self.status == 409 and run_id:
            return (
                f"A run is already going in this project: `%ecode watch {run_id}` follows it, "
                f"`%ecode cancel {run_id}` stops it."
            )
        if self.code in _HINTS:
            return _HINTS[self.code]
        if self.status == 402:
            return _HINTS["insufficient_credits"]
        if self.status >= 500:
            return "The server failed; its log has the details. Try again, or tell your admin."
        return ""


class ServerUnreachable(ClientError):
    hint = "Is the server running? Point the magic at it with `%ecode connect URL [TOKEN]`."


class NotConnected(ClientError):
    hint = (
        "Start the kernel from JupyterLab, set ECODE_SERVER_URL (and ECODE_TOKEN), "
        "or run `%ecode connect URL [TOKEN]`."
    )


def error_from_response(status: int, body: bytes, what: str) -> ApiError:
    """An ApiError from an error response; bodies that are not the JSON shape still read well."""
    import json

    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        err = payload["error"]
        return ApiError(
            status,
            str(err.get("code") or "error"),
            str(err.get("message") or f"HTTP {status}"),
            err.get("details"),
        )
    if isinstance(payload, dict) and payload.get("message"):
        # jupyter_server's own handlers answer {"message": ..., "reason": ...}.
        return ApiError(status, _code_for(status), str(payload["message"]))
    return ApiError(status, _code_for(status), f"{what} answered HTTP {status}")


def _code_for(status: int) -> str:
    return {
        400: "invalid_input",
        401: "not_authenticated",
        402: "insufficient_credits",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        429: "rate_limited",
    }.get(status, "error" if status < 500 else "internal")


class EcodeClient:
    """``client.get("projects")`` → the decoded JSON; errors raise :class:`ClientError`."""

    def __init__(
        self,
        server: ServerInfo,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server
        self._http = httpx.Client(
            base_url=server.api_url,
            headers={**server.auth_headers(), "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            # A token-authenticated API call never needs a redirect; a redirect means a login
            # page, which is an authentication problem to report, not to follow.
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException as exc:
            msg = f"{self.server.url} did not answer {method} {path} in time"
            raise ServerUnreachable(msg) from exc
        except httpx.HTTPError as exc:
            msg = f"cannot reach the Jupyter server at {self.server.url} ({type(exc).__name__})"
            raise ServerUnreachable(msg) from exc
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.is_redirect:
            msg = f"{self.server.url} asked for a login instead of answering {path}"
            raise ApiError(401, "not_authenticated", msg)
        if resp.status_code >= 400:
            raise error_from_response(resp.status_code, resp.content, f"{method} {path}")
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            msg = f"{method} {path} did not answer JSON: is {self.server.url} a Jupyter server?"
            raise ApiError(resp.status_code, "bad_response", msg) from exc

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body={} if body is None else body)

    # -- the endpoints the magics use -------------------------------------------------------

    def list_projects(self, *, deleted: bool = False) -> list[dict[str, Any]]:
        """Every project of mine (the server answers in pages: followed to the end)."""
        found: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 1000}
        if deleted:
            query["deleted"] = "true"
        while True:
            page = self.get("projects", **query)
            found.extend(page["projects"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found
            query["cursor"] = cursor

    def get_project(self, project_id: str) -> dict[str, Any]:
        return dict(self.get(f"projects/{quote(project_id, safe='')}"))

    def project_by_slug(self, owner: str, slug: str) -> dict[str, Any]:
        return dict(self.get(f"by-slug/@{quote(owner, safe='')}/{quote(slug, safe='')}"))

    def create_project(
        self,
        name: str,
        *,
        prompt: str | None = None,
        model: str | None = None,
        template: str | None = None,
        mode: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        pairs = (("prompt", prompt), ("model", model), ("template", template), ("mode", mode))
        for key, value in pairs:
            if value:
                body[key] = value
        return dict(self.post("projects", body))

    def start_run(
        self, project_id: str, prompt: str, model: str | None = None, mode: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt}
        if model:
            body["model"] = model
        if mode:
            body["mode"] = mode
        return dict(self.post(f"projects/{quote(project_id, safe='')}/runs", body))

    def list_runs(self, project_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"projects/{quote(project_id, safe='')}/runs")["runs"])

    def get_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"runs/{quote(run_id, safe='')}"))

    def cancel_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.post(f"runs/{quote(run_id, safe='')}/cancel") or {})

    def billing_account(self) -> dict[str, Any]:
        return dict(self.get("billing/account"))
