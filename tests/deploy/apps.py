"""Small apps the deploy tests run as projects: each is a file written into a workspace."""

from __future__ import annotations

# Answers every path with the request it got (headers, path, query) as JSON: shows exactly
# what the proxy let through.
HEADER_ECHO = """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        data = {"path": self.path, "method": self.command, "body": body,
                "headers": {k.lower(): v for k, v in self.headers.items()}}
        payload = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Set-Cookie", "app_session=abc; Path=/")
        self.send_header("Set-Cookie", "_xsrf=evil; Path=/")
        self.send_header("Strict-Transport-Security", "max-age=31536000")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Echo).serve_forever()
"""

# A tornado app in the shape of Streamlit: told its port and base path on the command line
# (--server.port, --server.baseUrlPath), it serves a page, a health path and an echoing
# WebSocket under that base path, which (like Streamlit's) accepts only its own origin: a
# handshake with "Origin: null" (a sandboxed page) or another site's origin gets a 403.
WS_ECHO = """
import argparse, asyncio
import tornado.web, tornado.websocket

parser = argparse.ArgumentParser()
parser.add_argument("--server.port", dest="port", type=int)
parser.add_argument("--server.baseUrlPath", dest="base", default="")
args = parser.parse_args()
BASE = args.base.rstrip("/")


class Page(tornado.web.RequestHandler):
    def get(self):
        self.write("<html><body><h1>ws app</h1><script src='app.js'></script></body></html>")


class Echo(tornado.websocket.WebSocketHandler):
    # tornado's own check_origin: the Origin's host must be the Host header's.

    def select_subprotocol(self, subprotocols):
        return subprotocols[0] if subprotocols else None

    def open(self):
        seen = sorted(k.lower() for k in self.request.headers
                      if k.lower() in ("cookie", "authorization"))
        self.write_message("hello " + ",".join(seen) + " " + self.request.path)

    def on_message(self, message):
        self.write_message(message, binary=isinstance(message, bytes))


async def main():
    app = tornado.web.Application([(BASE + "/", Page), (BASE + "/ws", Echo)])
    app.listen(args.port, "127.0.0.1")
    await asyncio.Event().wait()


asyncio.run(main())
"""

# Serves its version and crashes on /crash: for restart and release tests.
VERSIONED = """
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "{version}"


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/crash":
            os._exit(3)
        body = VERSION.encode()
        self.send_response(200 if VERSION != "broken" else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("request", self.path, flush=True)


print("version", VERSION, "starting", flush=True)
if VERSION == "crash-on-start":
    sys.exit("this version cannot start")
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
"""

# Edge cases of HTTP/1.1 for the proxy's fast lane, one path each; every answer names the
# app-side connection it came on (X-Peer: the client port), so tests can see connection reuse.
EDGE = r"""
import os, random, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BIG = random.Random(7).randbytes(700 * 1024)
RELEASE = threading.Event()
LEFT = threading.Event()
COUNT = [0]


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def head(self, code, *headers):
        self.send_response(code)
        self.send_header("X-Peer", str(self.client_address[1]))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        mode = parse_qs(url.query).get("mode", ["length"])[0]
        path = url.path
        if path == "/hello":
            self.head(200, ("Content-Type", "text/plain"), ("Content-Length", "11"))
            if self.command != "HEAD":
                self.wfile.write(b"hello world")
        elif path == "/sloppy":
            # Sends its body even to HEAD (as apps that ignore the method do).
            self.head(200, ("Content-Length", "11"))
            self.wfile.write(b"hello world")
        elif path == "/release":
            RELEASE.set()
            self.head(200, ("Content-Length", "2"))
            self.wfile.write(b"ok")
        elif path == "/sse":
            RELEASE.clear()
            kind = ("Content-Type", "text/event-stream")
            if mode == "chunked":
                self.head(200, kind, ("Transfer-Encoding", "chunked"))
                send = self.chunk
            else:
                self.close_connection = True
                self.head(200, kind, ("Connection", "close"))
                send = self.wfile.write
            send(b"data: one\n\n")
            time.sleep(0.05)
            send(b"data: two\n\n")
            # The test asks for the third event once it has seen the first two.
            released = RELEASE.wait(2)
            send(b"data: three " + (b"released" if released else b"timeout") + b"\n\n")
            if mode == "chunked":
                self.end_chunks()
        elif path == "/big":
            if mode == "chunked":
                self.head(200, ("Transfer-Encoding", "chunked"))
                view, step = memoryview(BIG), 1
                while view:
                    size = min(len(view), 1000 * step + 17)
                    self.chunk(bytes(view[:size]))
                    view, step = view[size:], step + 1
                self.end_chunks()
            else:
                self.head(200, ("Content-Length", str(len(BIG))))
                self.wfile.write(BIG)
        elif path == "/chunked":
            self.head(200, ("Content-Type", "text/plain"), ("Transfer-Encoding", "chunked"))
            for part in (b"part1", b"part2", b"part3"):
                self.chunk(part)
            self.end_chunks()
        elif path == "/short":
            self.close_connection = True
            self.head(200, ("Content-Length", "100"))
            self.wfile.write(b"0123456789")
        elif path == "/cut":
            self.close_connection = True
            if mode == "chunked":
                self.head(200, ("Transfer-Encoding", "chunked"))
                for _ in range(8):
                    self.chunk(BIG[:50 * 1024])
            else:
                self.head(200, ("Content-Length", str(len(BIG))))
                self.wfile.write(BIG[:400 * 1024])
        elif path == "/nocontent":
            self.head(204)
        elif path == "/notmodified":
            self.head(304, ("ETag", '"v1"'), ("Content-Length", "11"))
        elif path == "/redirect":
            self.head(302, ("Location", "/login"), ("Content-Length", "0"))
        elif path == "/redirect-absolute":
            target = "http://" + self.headers["Host"] + "/login?next=/x"
            self.head(302, ("Location", target), ("Content-Length", "0"))
        elif path == "/forever":
            # Ticks until its reader leaves, then says so at /left.
            self.close_connection = True
            self.head(200, ("Content-Type", "text/event-stream"), ("Connection", "close"))
            try:
                while True:
                    self.wfile.write(b"data: tick\n\n")
                    time.sleep(0.05)
            except OSError:
                LEFT.set()
        elif path == "/left":
            body = b"yes" if LEFT.wait(float(parse_qs(url.query)["wait"][0])) else b"no"
            self.head(200, ("Content-Length", str(len(body))))
            self.wfile.write(body)
        elif path == "/count":
            body = str(COUNT[0]).encode()
            self.head(200, ("Content-Length", str(len(body))))
            self.wfile.write(body)
        else:
            self.head(404, ("Content-Length", "0"))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/drop":
            # Counts the request, then drops the connection without an answer (a crash, a
            # worker killed by its timeout).
            COUNT[0] += 1
            self.close_connection = True
            return
        self.head(200, ("Content-Length", "4"))
        self.wfile.write(b"done")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
"""

# Closes every connection after one answer. By default a single-threaded HTTP/1.0 server
# (http.server's defaults); with the argument "threaded", the Werkzeug dev server's shape: a
# thread per connection, HTTP/1.1 answers with "Connection: close". GET answers the path,
# POST echoes the body it read.
CLOSE_EVERY_CONNECTION = """
import os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

THREADED = "threaded" in sys.argv


class App(BaseHTTPRequestHandler):
    if THREADED:
        protocol_version = "HTTP/1.1"

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if THREADED:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.answer(self.path.encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.answer(self.rfile.read(length))

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer if THREADED else HTTPServer
server(("127.0.0.1", int(os.environ["PORT"])), App).serve_forever()
"""

# Every answer sets 200 cookies with names new on each request (as a buggy or hostile app
# would), one cookie over 4 KB, and cookies named like Jupyter's: a cookie jar filler.
COOKIE_FLOOD = """
import itertools, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counter = itertools.count()


class Flood(BaseHTTPRequestHandler):
    def do_GET(self):
        n = next(counter)
        payload = b"<p>cookies</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Set-Cookie", "big=" + "x" * 5000 + "; Path=/")
        self.send_header("Set-Cookie", "_xsrf=evil; Path=/")
        self.send_header("Set-Cookie", "username-127-0-0-1=evil; Path=/")
        for i in range(200):
            self.send_header("Set-Cookie", f"c{n}_{i}={'v' * 40}; Path=/; Max-Age=3600")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Flood).serve_forever()
"""
