from __future__ import annotations

from tornado.httputil import HTTPHeaders

from ecode_jupyter.deploy.proxy import (
    filter_cookie_header,
    filter_query,
    request_headers,
    rewrite_location,
    rewrite_set_cookie,
    sandbox_policy,
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
            "X-XSRFToken": "x",
            "Cookie": "_xsrf=1; a=2",
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
