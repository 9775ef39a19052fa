"""The base of every ecode handler: authentication, the one JSON error shape, safe bodies.

Unauthenticated calls get 401, forbidden 403; any manager error (an ``EcodeError``) becomes
``{"error": {"code", "message"}}`` with its status. Unexpected errors are logged with their
traceback on the server and answered with a plain 500 that carries no traceback or secret.

Bodies are streamed in (``stream_request_body``) so that their size is known before they are
held: a ``Content-Length`` over ``max_body_bytes`` is answered 413 before any of the body is
read, and a chunked body is refused as soon as it passes the limit. Tornado would otherwise
buffer up to the server's ``max_body_size`` (512 MB in Jupyter) before a handler runs.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..context import EcodeContext
from ..exceptions import EcodeError, Forbidden, InvalidInput, NotAuthenticated, RateLimited
from ..identity import EcodeUser, resolve_user

log = logging.getLogger(__name__)

AUTH_RESOURCE = "ecode"
MAX_BODY_BYTES = 1024 * 1024
# Past these, a body is refused with a 400 before any manager sees it: deeper nesting made
# json.loads raise RecursionError (a 500), and integers past 64 bits overflow the database's
# columns (credits, budgets). No request of the API needs either.
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63 - 1

HTTP_CODES = {
    400: "invalid_input",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    429: "rate_limited",
}


class PayloadTooLarge(InvalidInput):
    status = 413
    code = "payload_too_large"


def check_json_values(data: Any) -> None:
    """Refuse what JSON can carry but nothing downstream can store: deep nesting, integers
    past 64 bits, and lone surrogates (``"\\ud800"`` decodes to a str that UTF-8 cannot
    encode, so the database, a log line or a file write failed with a 500)."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:  # a loop, not recursion: the depth is what is being checked
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, bool | float) or value is None:
            continue
        elif isinstance(value, int):
            if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
                msg = f"an integer in the request body is out of range (at most {MAX_JSON_INT})"
                raise InvalidInput(msg)
        elif depth > MAX_JSON_DEPTH:
            msg = f"request body is nested more than {MAX_JSON_DEPTH} levels deep"
            raise InvalidInput(msg)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        msg = "request body has a lone surrogate (\\ud800-\\udfff) in a string"
        raise InvalidInput(msg) from None
    if "\x00" in text:
        # PostgreSQL's text columns refuse NUL (a 500 there; SQLite stored it), and no field
        # of the API needs one.
        msg = "request body has a NUL character (\\u0000) in a string"
        raise InvalidInput(msg)


def check_request_text(handler: web.RequestHandler) -> None:
    """Refuse NUL in the URL's path parameters and query: they reach the database too."""
    values = [str(v) for v in handler.path_kwargs.values()]
    values += [str(v) for v in handler.path_args]
    if any("\x00" in v for v in values) or any(
        b"\x00" in name.encode() or any(b"\x00" in item for item in items)
        for name, items in handler.request.query_arguments.items()
    ):
        msg = "the URL has a NUL character (%00)"
        raise InvalidInput(msg)


@web.stream_request_body
class EcodeHandler(APIHandler):
    auth_resource = AUTH_RESOURCE
    # The most one request's body may hold; an endpoint that takes bigger bodies raises it.
    max_body_bytes = MAX_BODY_BYTES
    _body_size = 0
    _body_refused = False
    _body_parts: list[bytes] | None = None

    @property
    def ecode(self) -> EcodeContext:
        return cast(EcodeContext, self.settings["ecode"])

    async def prepare(self) -> None:  # type: ignore[override]
        # Streamed mode leaves request.body empty: data_received collects the parts and they
        # are joined once the body is complete. Tornado resumes the handler (and calls
        # post/put) from this same future, after callbacks added earlier, such as this one.
        self.request.body = b""
        self._body_parts = []
        body_done = getattr(self.request, "_body_future", None)
        if body_done is not None:
            body_done.add_done_callback(lambda _: self._join_body())
        try:
            await super().prepare()
        except web.HTTPError as exc:
            if exc.status_code == 403 and self.current_user is None:
                msg = "authentication required: log in or send 'Authorization: token …'"
                raise NotAuthenticated(msg) from None
            raise
        if self.current_user is None:
            msg = "authentication required: log in or send 'Authorization: token …'"
            raise NotAuthenticated(msg)
        self._check_declared_length()
        check_request_text(self)

    def _check_declared_length(self) -> None:
        """413 from ``Content-Length`` alone, before a byte of the body is read (the answer
        goes out and the connection closes; tornado then drops what the client still sends)."""
        declared = self.request.headers.get("Content-Length")
        if declared is None:
            return
        try:
            length = int(declared)
        except ValueError:
            msg = "Content-Length must be a whole number"
            raise InvalidInput(msg) from None
        if length > self.max_body_bytes:
            raise PayloadTooLarge(self._too_large())

    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes"

    def data_received(self, chunk: bytes) -> None:
        """Collect the body up to ``max_body_bytes``; past it (a chunked body, which declares
        no length), answer 413 at once and keep nothing more."""
        if self._body_refused or self._body_parts is None:
            return
        self._body_size += len(chunk)
        if self._body_size > self.max_body_bytes:
            self._body_refused = True
            self._body_parts = None
            if not self._finished:
                error = PayloadTooLarge(self._too_large())
                self.send_error(error.status, exc_info=(type(error), error, None))
            return
        self._body_parts.append(chunk)

    def _join_body(self) -> None:
        if self._body_parts:
            self.request.body = b"".join(self._body_parts)
        self._body_parts = None

    def get_login_url(self) -> str:
        msg = "authentication required: log in or send 'Authorization: token …'"
        raise NotAuthenticated(msg)

    @property
    def ecode_user(self) -> EcodeUser:
        ctx = self.ecode
        user = resolve_user(
            self.current_user,
            self.identity_provider,
            owner_name=ctx.owner_name,
            admin_users=ctx.admin_users,
            owner_is_admin=ctx.owner_is_admin,
        )
        return EcodeUser(
            user.username, user.display_name, user.is_admin, self.request.remote_ip, user.groups
        )

    def require_admin(self) -> EcodeUser:
        user = self.ecode_user
        if not user.is_admin:
            msg = "only an admin may do this"
            raise Forbidden(msg)
        return user

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object, or a clear 400/413."""
        body = self.request.body or b""
        if len(body) > MAX_BODY_BYTES:  # a subclass may take bigger bodies, JSON never
            msg = f"request body is larger than {MAX_BODY_BYTES} bytes"
            raise PayloadTooLarge(msg)
        if not body.strip():
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"request body is not valid JSON: {exc}"
            raise InvalidInput(msg) from None
        except RecursionError:
            msg = f"request body is nested more than {MAX_JSON_DEPTH} levels deep"
            raise InvalidInput(msg) from None
        if not isinstance(data, dict):
            msg = "request body must be a JSON object"
            raise InvalidInput(msg)
        check_json_values(data)
        return data

    def query_int(self, name: str, default: int, *, lo: int, hi: int) -> int:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            msg = f"{name} must be an integer"
            raise InvalidInput(msg, field=name) from None
        if not lo <= value <= hi:
            msg = f"{name} must be between {lo} and {hi}"
            raise InvalidInput(msg, field=name)
        return value

    def allowed_methods(self) -> list[str]:
        """The HTTP methods this handler implements (tornado's defaults answer 405)."""
        return [
            method.upper()
            for method in ("get", "post", "put", "patch", "delete")
            if getattr(type(self), method) is not getattr(web.RequestHandler, method)
        ]

    def finish_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, EcodeError) and value.status < 500:
            log.info(
                "%s %s -> %s %s", self.request.method, self.request.path, value.status, value.code
            )
            return
        if isinstance(value, web.HTTPError):
            log.info("%s %s -> %s", self.request.method, self.request.path, value.status_code)
            return
        log.error(
            "unexpected error in %s %s",
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, EcodeError):
            body = exc.to_json()
            status = exc.status
            if isinstance(exc, RateLimited):
                # RFC 9110: seconds until a retry can succeed (clients and proxies honour it).
                self.set_header("Retry-After", str(exc.retry_after))
        elif isinstance(exc, web.HTTPError):
            status = exc.status_code
            code = HTTP_CODES.get(status, "error" if status < 500 else "internal")
            message = exc.log_message or exc.reason or self._reason
            if exc.log_message and exc.args:
                try:
                    message = exc.log_message % exc.args
                except (TypeError, ValueError):
                    message = exc.log_message
            if status == 403 and self.current_user is None:
                status, code = 401, "not_authenticated"
                message = "authentication required"
            body = {"error": {"code": code, "message": message}}
        else:
            status = 500
            body = {"error": {"code": "internal", "message": "internal server error"}}
        if status == 405:
            # RFC 9110: a 405 lists the methods the resource has (clients and fuzzers read it).
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        if status == 401:
            # RFC 9110: a 401 says how to authenticate. MCP clients read it to learn that a
            # token (Authorization: Bearer or token) is what this server wants.
            self.set_header("WWW-Authenticate", 'Bearer realm="jupyter"')
        self.clear_header("Content-Type")
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class NotFoundHandler(EcodeHandler):
    """Unknown paths under /api/ecode/ answer with the JSON error shape, not an HTML page."""

    def _not_found(self, path: str) -> None:
        msg = f"no such endpoint: /api/ecode/{path}"
        raise web.HTTPError(404, msg)

    @web.authenticated
    async def get(self, path: str) -> None:
        self._not_found(path)

    @web.authenticated
    async def post(self, path: str) -> None:
        self._not_found(path)

    @web.authenticated
    async def put(self, path: str) -> None:
        self._not_found(path)

    @web.authenticated
    async def patch(self, path: str) -> None:
        self._not_found(path)

    @web.authenticated
    async def delete(self, path: str) -> None:
        self._not_found(path)


# Registered last by the app, after every resource module's handlers.
fallback_handlers = [(r"/api/ecode/(?P<path>.*)", NotFoundHandler)]
