"""What crosses the proxy between a browser and a project's app, and what never does.

``public_prefix`` below is the path the app is served under, without a trailing slash.

Requests to the app lose everything that could let it act as the user in Jupyter: the
``Authorization`` header, Jupyter's and JupyterHub's cookies, the ``_xsrf`` cookie, an XSRF
header carrying Jupyter's token (an app's own token passes: Streamlit's uploads need it), and
the ``token`` / ``_xsrf`` query parameters. The ``Referer`` survives only when it points
inside the app itself (the lab's URL may carry a token). A WebSocket from the app's own
sandboxed page (``Origin: null``) reaches the app with the app's origin.

Responses from the app get a ``Content-Security-Policy: sandbox`` without ``allow-same-origin``
(on the Jupyter origin), so its pages run in an opaque origin and cannot script Jupyter or read
its cookies; headers that act on the whole origin (HSTS, Clear-Site-Data, Service-Worker-
Allowed) are dropped; cookies the app sets are confined to its own path and may not shadow
Jupyter's; redirects to ``/x`` are put back under the app's prefix.

Cookies share one jar per host name: Chromium keeps about 180 per host and, past that, evicts
the least recently used, so an app that set 200 cookies on Jupyter's host logged its user out
of Jupyter (the login and ``_xsrf`` cookies were evicted). Hence an answer passes at most
``MAX_SET_COOKIES`` cookies of at most ``MAX_SET_COOKIE_BYTES`` each, and every app cookie is
marked ``Priority=Low``: Chromium evicts low-priority cookies first, so even an app that piles
cookies up over many answers loses its own before Jupyter's (Medium, the default). The sure
way is a preview origin on a host name of its own (``c.EcodeApp.preview_origin``): a separate
cookie jar.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from tornado.httputil import HTTPHeaders

# Headers that describe one connection, never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
# Credentials of the user in Jupyter, never shown to an app.
STRIPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "referer",
        "content-length",
        "host",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-prefix",
        "x-real-ip",
        "forwarded",
    }
)
# Headers an app must not set for the whole origin it is served from.
STRIPPED_RESPONSE_HEADERS = (
    frozenset(
        {
            "strict-transport-security",
            "clear-site-data",
            "service-worker-allowed",
            "content-length",
            "set-cookie",
            "public-key-pins",
            "alt-svc",
        }
    )
    | HOP_BY_HOP
)
STRIPPED_QUERY_PARAMS = frozenset({"token", "_xsrf"})
# Headers that carry an XSRF token: Jupyter's is dropped, an app's own passes.
XSRF_HEADERS = frozenset({"x-xsrftoken", "x-csrftoken"})
# What the proxy says itself to a sandboxed page's fetches (never the app's own as well:
# browsers refuse an answer with two).
_CORS_ORIGIN_HEADERS = frozenset(
    {"access-control-allow-origin", "access-control-allow-credentials"}
)
# Every header a rule looks at, in requests (but for WebSockets) and in answers; the rest
# pass as they are: one set lookup for the common case, on every request's path.
_REQUEST_SPECIAL = (
    frozenset({"cookie", "referer"}) | XSRF_HEADERS | HOP_BY_HOP | STRIPPED_REQUEST_HEADERS
)
_RESPONSE_SPECIAL = (
    frozenset({"set-cookie", "content-length", "location"})
    | STRIPPED_RESPONSE_HEADERS
    | _CORS_ORIGIN_HEADERS
)
PROTECTED_COOKIE_PREFIXES = ("jupyterhub-", "username-", "_xsrf")
# Per app answer (see the module docstring). 4096 bytes is what RFC 6265 (6.1) asks browsers
# to hold per cookie; browsers drop bigger ones anyway. 20 leaves room for real apps (a
# session, a CSRF token, preferences) and is far below Chromium's per-host eviction point.
MAX_SET_COOKIES = 20
MAX_SET_COOKIE_BYTES = 4096

SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


def sandbox_policy(allow_same_origin: bool) -> str:
    """The CSP every proxied response carries.

    Without ``allow-same-origin`` the page runs in an opaque origin: no access to Jupyter's
    DOM, storage or cookies. On a separate preview origin the app may keep its own origin.
    """
    return SANDBOX + (" allow-same-origin" if allow_same_origin else "")


def is_protected_cookie(name: str, extra: Iterable[str] = ()) -> bool:
    return name.startswith(PROTECTED_COOKIE_PREFIXES) or name in set(extra)


def filter_cookie_header(value: str, protected: Iterable[str] = ()) -> str:
    """The ``Cookie`` header without Jupyter's and JupyterHub's cookies."""
    names = set(protected)
    kept = []
    for part in value.split(";"):
        name, _, _rest = part.strip().partition("=")
        if name and not is_protected_cookie(name, names):
            kept.append(part.strip())
    return "; ".join(kept)


def filter_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(key in STRIPPED_QUERY_PARAMS for key, _ in pairs):
        return query  # untouched: keeps the app's own encoding and order
    return urlencode([(k, v) for k, v in pairs if k not in STRIPPED_QUERY_PARAMS])


Pairs = list[tuple[str, str]]

# What the proxy passes to an app, and the URLs that carry an app's key:
# ``{base_url}ecode/apps|live/@owner/slug/~key/rest``.
PROXIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
KEYED_PATH = re.compile(
    r"(?P<segment>apps|live)/@(?P<owner>[^/]+)/(?P<slug>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
    r"/~(?P<key>[A-Za-z0-9_-]+)(?P<rest>/[^?]*)$"
)
# The URL segment of each kind of running app, and back.
URL_SEGMENT = {"preview": "apps", "release": "live"}
SEGMENT_KIND = {segment: kind for kind, segment in URL_SEGMENT.items()}


def keyed_request(
    method: str, path: str, *, upgrade: bool, preflight: bool
) -> re.Match[str] | None:
    """The parts of a keyed request a fast lane may answer (``segment``, ``owner``, ``slug``,
    ``key``, ``rest``); ``None`` when ``AppProxyHandler`` must decide: other methods,
    WebSockets, CORS preflights, unkeyed paths (``path`` starts after ``{base_url}ecode/``)."""
    if method not in PROXIED_METHODS or upgrade:
        return None  # WebSockets: the handler speaks them
    if preflight and method == "OPTIONS":
        return None  # a CORS preflight: the handler answers it
    return KEYED_PATH.match(path)


def is_app_path(path: str, prefix: str) -> bool:
    """Whether ``path`` is under the app URLs (``prefix`` is ``{base_url}ecode/``)."""
    return path.startswith(prefix) and path.startswith(("apps/@", "live/@"), len(prefix))


def app_target(base_path: str, keep_base: bool, rest: str, query: str) -> str:
    """The request target an app gets for ``rest`` (the path after the key): under its base
    path if it keeps one (told it on the command line), else as if it were at "/"; the query
    without Jupyter's token."""
    query = filter_query(query)
    path = base_path + rest if keep_base else rest
    return path + ("?" + query if query else "")


def request_header_pairs(
    incoming: Iterable[tuple[str, str]],
    *,
    public_prefix: str,
    host: str,
    proto: str,
    remote_ip: str | None,
    protected_cookies: Iterable[str] = (),
    websocket: bool = False,
) -> Pairs:
    """Headers for the request to the app, from the browser's (name, value) pairs."""
    out: Pairs = []
    cookies: list[str] = []
    referer = ""
    xsrf_headers: Pairs = []
    for name, value in incoming:
        lower = name.lower()
        if lower not in _REQUEST_SPECIAL and not websocket:
            out.append((name, value))  # most headers: passed as they are
        elif lower == "cookie":
            cookies.append(value)
        elif lower == "referer":
            referer = value
        elif lower in XSRF_HEADERS:
            xsrf_headers.append((name, value))
        elif lower in HOP_BY_HOP or lower in STRIPPED_REQUEST_HEADERS:
            continue
        elif websocket and lower.startswith("sec-websocket-"):
            continue  # the proxy's own client handshake sets these
        elif websocket and lower == "origin" and value == "null":
            # The app's own sandboxed page (an opaque origin); the key in the URL is what
            # authorizes it. Apps refuse "null" (Streamlit does): say it is their own origin.
            out.append((name, f"{proto}://{host}"))
        else:
            out.append((name, value))
    jupyter_xsrf = ""
    if cookies:
        joined = "; ".join(cookies)
        jupyter_xsrf = _cookie_value(joined, "_xsrf")
        kept = filter_cookie_header(joined, protected_cookies)
        if kept:
            out.append(("Cookie", kept))
    for name, value in xsrf_headers:
        # Jupyter's XSRF token is (a masked form of) its _xsrf cookie; the app's own
        # (Streamlit's uploads, Django's X-CSRFToken) is something else and must reach it.
        if value and not (jupyter_xsrf and _same_xsrf(value, jupyter_xsrf)):
            out.append((name, value))
    if referer:
        parts = urlsplit(referer)
        if parts.netloc == host and _under(parts.path, public_prefix):
            out.append(("Referer", referer))
    out.append(("Host", host))
    out.append(("X-Forwarded-Host", host))
    out.append(("X-Forwarded-Proto", proto))
    out.append(("X-Forwarded-Prefix", public_prefix))
    if remote_ip:
        out.append(("X-Forwarded-For", remote_ip))
    return out


def _same_xsrf(header: str, cookie: str) -> bool:
    """Whether two XSRF tokens are one, masked or not (tornado's "2|mask|token|time")."""
    return header == cookie or (_unmasked(header) or header) == (_unmasked(cookie) or cookie)


def _unmasked(token: str) -> str | None:
    parts = token.split("|")
    if len(parts) != 4 or parts[0] != "2":
        return None
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return None
    if len(mask) != 4:
        return None
    return bytes(b ^ mask[i % 4] for i, b in enumerate(masked)).hex()


def _cookie_value(header: str, name: str) -> str:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return ""


def request_headers(
    incoming: HTTPHeaders,
    *,
    public_prefix: str,
    host: str,
    proto: str,
    remote_ip: str | None,
    protected_cookies: Iterable[str] = (),
    websocket: bool = False,
) -> HTTPHeaders:
    """``request_header_pairs`` for tornado's headers."""
    return tornado_headers(
        request_header_pairs(
            incoming.get_all(),
            public_prefix=public_prefix,
            host=host,
            proto=proto,
            remote_ip=remote_ip,
            protected_cookies=protected_cookies,
            websocket=websocket,
        )
    )


def tornado_headers(pairs: Iterable[tuple[str, str]]) -> HTTPHeaders:
    """(name, value) pairs as tornado's headers, for a handler or a connection to write."""
    headers = HTTPHeaders()
    for name, value in pairs:
        headers.add(name, value)
    return headers


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def rewrite_set_cookie(
    value: str, *, public_prefix: str, protected: Iterable[str] = ()
) -> str | None:
    """The app's cookie, confined to its prefix and host; None when it may not be set."""
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(value)
    except CookieError:
        return None
    if len(cookie) != 1:
        return None
    ((name, morsel),) = cookie.items()
    if is_protected_cookie(name, protected):
        return None
    path = morsel["path"] or "/"
    # An app told its base path names paths inside it; one that thinks it is at "/" gets its
    # paths moved under the prefix. Either way the cookie never reaches Jupyter's paths.
    if not _under(path, public_prefix):
        morsel["path"] = public_prefix + (path if path.startswith("/") else "/" + path)
    morsel["domain"] = ""
    # Evicted before Jupyter's own cookies when the host's jar is full (Chromium).
    return morsel.OutputString() + "; Priority=Low"


def rewrite_location(location: str, *, public_prefix: str, host: str) -> str:
    """Redirects to ``/x`` on the app's own host go to ``<prefix>/x``."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        if parts.netloc.split(":")[0] in {"127.0.0.1", "localhost"} or parts.netloc == host:
            rest = parts._replace(scheme="", netloc="").geturl()
            return rewrite_location(rest, public_prefix=public_prefix, host=host)
        return location
    if not location.startswith("/") or _under(parts.path, public_prefix):
        return location
    return public_prefix + location


def security_header_pairs(*, same_origin: bool, sandboxed_fetch: bool) -> Pairs:
    """What every answer from an app's URL carries, the proxy's own errors included."""
    pairs = [
        ("Content-Security-Policy", sandbox_policy(same_origin)),
        # Keyed URLs must not travel to other sites in a Referer.
        ("Referrer-Policy", "no-referrer"),
    ]
    if sandboxed_fetch:
        # A sandboxed page's own fetches come from the opaque origin "null".
        pairs.append(("Access-Control-Allow-Origin", "null"))
        pairs.append(("Vary", "Origin"))
    return pairs


def add_security_headers(headers: HTTPHeaders, *, same_origin: bool, sandboxed_fetch: bool) -> None:
    for name, value in security_header_pairs(
        same_origin=same_origin, sandboxed_fetch=sandboxed_fetch
    ):
        headers.add(name, value)


def error_headers(body: bytes, *, same_origin: bool, sandboxed_fetch: bool) -> Pairs:
    """Headers of the proxy's own error page (``error_page``)."""
    return [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        *security_header_pairs(same_origin=same_origin, sandboxed_fetch=sandboxed_fetch),
    ]


def response_header_pairs(
    app_headers: Iterable[tuple[str, str]],
    *,
    public_prefix: str,
    host: str,
    head: bool,
    same_origin: bool,
    sandboxed_fetch: bool,
) -> Pairs:
    """The app's answer headers as the browser gets them (without a length, which the proxy
    sets for what it sends, except for HEAD, where the app's own is the answer)."""
    out: Pairs = []
    length = ""
    cookies_left = MAX_SET_COOKIES
    for name, value in app_headers:
        lower = name.lower()
        if lower not in _RESPONSE_SPECIAL:
            out.append((name, value))  # most headers: passed as they are
        elif lower == "set-cookie":
            # Over the caps: dropped, like a browser drops a cookie it will not store.
            if cookies_left and len(value) <= MAX_SET_COOKIE_BYTES:
                cookie = rewrite_set_cookie(value, public_prefix=public_prefix)
                if cookie:
                    out.append(("Set-Cookie", cookie))
                    cookies_left -= 1
        elif lower == "content-length":
            length = value
        elif lower in STRIPPED_RESPONSE_HEADERS or (
            sandboxed_fetch and lower in _CORS_ORIGIN_HEADERS
        ):
            continue
        elif lower == "location":
            out.append((name, rewrite_location(value, public_prefix=public_prefix, host=host)))
        else:
            out.append((name, value))
    if head and length:
        out.append(("Content-Length", length))
    out.extend(security_header_pairs(same_origin=same_origin, sandboxed_fetch=sandboxed_fetch))
    return out


def not_here_answer() -> tuple[bytes, Pairs]:
    """The 404 page and headers for a path the preview origin does not serve."""
    body = error_page("nothing here: this origin serves project apps only").encode()
    return body, error_headers(body, same_origin=False, sandboxed_fetch=False)


def error_page(message: str) -> str:
    """The proxy's own answer when it cannot serve the app (502, 503, 404)."""
    return (
        f"<!doctype html><meta charset=utf-8><title>E-Code app</title><p>{html.escape(message)}</p>"
    )


_TOKEN_IN_TEXT = re.compile(r"([?&]token=)[^&#\s]+")


def redact_tokens(text: str) -> str:
    """For log lines: URLs with a token lose it."""
    return _TOKEN_IN_TEXT.sub(r"\1[redacted]", text)
