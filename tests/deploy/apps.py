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
# WebSocket under that base path.
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
    def check_origin(self, origin):
        return True

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
