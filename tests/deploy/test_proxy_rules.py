from __future__ import annotations

from tornado.httputil import HTTPHeaders

from ecode_jupyter.deploy.proxy import (
    filter_cookie_header,
    filter_query,
    request_headers,
    response_header_pairs,
    rewrite_location,
    rewrite_set_cookie,
    sandbox_policy,
    tornado_headers,
)

PREFIX = "/user/alice/ecode/apps/@alice/todo/~k"


def test_jupyter_and_hub_cookies_never_reach_the_app() -> None:
    cookie = (
        "username-127-0-0-1-8888=2|secret; _xsrf=2|x; jupyterhub-session-id=s; "
        "jupyterhub-user-alice=t; app_session=abc; theme=dark"
    )
    assert filter_cookie_header(cookie) == "app_session=abc; theme=dark"
    assert filter_cookie_header("my-login=1", protected=["my-login"]) == ""


def test_token_and_xsrf_query_parameters_are_dropped() -> None:
    assert filter_query("a=1&token=abc&_xsrf=x&b=2") == "a=1&b=2"
    assert filter_query("q=%20x&z") == "q=%20x&z"  # untouched when nothing is removed


def test_request_headers_lose_credentials_and_gain_forwarding_info() -> None:
    incoming = HTTPHeaders(
        {
            "Authorization": "token secret",
            "X-XSRFToken": "2|0a0b0c0d|6b62|1700000000",
            "Cookie": "_xsrf=2|00000000|6169|1700000000; a=2",
            "Connection": "keep-alive",
            "Accept": "text/html",
            "X-Forwarded-For": "6.6.6.6",
            "Referer": "http://h:1/lab?token=secret",
        }
    )
    out = request_headers(
        incoming, public_prefix=PREFIX, host="h:1", proto="http", remote_ip="10.0.0.1"
    )
    assert "Authorization" not in out and "X-Xsrftoken" not in out and "Referer" not in out
    assert out["Cookie"] == "a=2" and out["Accept"] == "text/html"
    assert out["X-Forwarded-For"] == "10.0.0.1" and out["X-Forwarded-Prefix"] == PREFIX
    assert "Connection" not in out
    inside = HTTPHeaders({"Referer": f"http://h:1{PREFIX}/page"})
    kept = request_headers(inside, public_prefix=PREFIX, host="h:1", proto="http", remote_ip=None)
    assert kept["Referer"] == f"http://h:1{PREFIX}/page"


def test_an_apps_own_xsrf_token_reaches_it_and_jupyters_does_not() -> None:
    jupyter = "2|00000000|6169|1700000000"  # tornado's form: version|mask|masked token|time

    def sent(header: str, cookie: str) -> str | None:
        incoming = HTTPHeaders({"X-XSRFToken": header, "Cookie": cookie})
        out = request_headers(
            incoming, public_prefix=PREFIX, host="h", proto="http", remote_ip=None
        )
        return out.get("X-Xsrftoken")

    # The lab sends its cookie's value; a page may hold the same token masked differently.
    assert sent(jupyter, f"_xsrf={jupyter}") is None
    assert sent("2|0a0b0c0d|6b62|1700000000", f"_xsrf={jupyter}") is None
    # Streamlit's upload sends the token of its own cookie: the app needs it.
    assert sent("2|11223344|aabb|1", f"_xsrf={jupyter}; _streamlit_xsrf=2|11223344|aabb|1") == (
        "2|11223344|aabb|1"
    )
    assert sent("django-token", "csrftoken=django-token") == "django-token"


def test_a_websocket_from_the_apps_sandboxed_page_gets_the_apps_origin() -> None:
    def origin(value: str) -> str | None:
        incoming = HTTPHeaders({"Origin": value, "Sec-WebSocket-Key": "k"})
        out = request_headers(
            incoming, public_prefix=PREFIX, host="h:1", proto="http", remote_ip=None, websocket=True
        )
        assert "Sec-Websocket-Key" not in out
        return out.get("Origin")

    assert origin("null") == "http://h:1"  # Streamlit refuses "null"
    assert origin("https://evil.example") == "https://evil.example"  # the app judges others


def test_a_sandboxed_fetch_gets_one_allow_origin_header() -> None:
    app = HTTPHeaders({"Access-Control-Allow-Origin": "*", "Content-Type": "text/plain"})
    app.add("Access-Control-Allow-Credentials", "true")

    def outgoing(sandboxed_fetch: bool) -> HTTPHeaders:
        pairs = response_header_pairs(
            app.get_all(),
            public_prefix=PREFIX,
            host="h",
            head=False,
            same_origin=False,
            sandboxed_fetch=sandboxed_fetch,
        )
        return tornado_headers(pairs)

    out = outgoing(sandboxed_fetch=True)
    assert out.get_list("Access-Control-Allow-Origin") == ["null"]
    assert "Access-Control-Allow-Credentials" not in out
    plain = outgoing(sandboxed_fetch=False)
    assert plain.get_list("Access-Control-Allow-Origin") == ["*"]


def test_app_cookies_are_confined_to_the_app_and_cannot_shadow_jupyters() -> None:
    moved = rewrite_set_cookie("sid=1; Path=/; Domain=example.com; HttpOnly", public_prefix=PREFIX)
    assert moved is not None
    assert f"Path={PREFIX}/" in moved and "Domain" not in moved and "HttpOnly" in moved
    sub = rewrite_set_cookie("sid=1; Path=/api", public_prefix=PREFIX)
    assert sub is not None and f"Path={PREFIX}/api" in sub
    assert rewrite_set_cookie("_xsrf=evil; Path=/", public_prefix=PREFIX) is None
    assert rewrite_set_cookie("jupyterhub-session-id=x", public_prefix=PREFIX) is None
    assert rewrite_set_cookie("username-h-1=x", public_prefix=PREFIX) is None


def test_redirects_stay_under_the_app() -> None:
    assert rewrite_location("/login", public_prefix=PREFIX, host="h") == PREFIX + "/login"
    assert rewrite_location(PREFIX + "/x", public_prefix=PREFIX, host="h") == PREFIX + "/x"
    assert rewrite_location("next", public_prefix=PREFIX, host="h") == "next"
    assert (
        rewrite_location("http://127.0.0.1:5000/a?b=1", public_prefix=PREFIX, host="h")
        == PREFIX + "/a?b=1"
    )
    assert rewrite_location("https://example.com/", public_prefix=PREFIX, host="h") == (
        "https://example.com/"
    )


def test_the_sandbox_never_grants_the_jupyter_origin() -> None:
    policy = sandbox_policy(False)
    assert policy.startswith("sandbox ") and "allow-same-origin" not in policy
    assert "allow-scripts" in policy and "allow-forms" in policy
    assert "allow-same-origin" in sandbox_policy(True)
