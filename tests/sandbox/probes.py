"""The escape attempts, as one script a project runs (``python3 probe.py NAME JSON``).

Each attempt prints ``RESULT blocked: why`` when the sandbox stopped it and ``RESULT escaped:
what`` when it got through; the tests demand ``blocked``. The same file runs from
``run_command`` and from a preview app (``PROBE_APP``) that runs it at request time.
"""

from __future__ import annotations

PROBE = r'''
import ctypes, errno, json, os, signal, socket, subprocess, sys, time


def result(ok, detail):
    print("RESULT", "blocked:" if ok else "escaped:", detail, flush=True)


def read_any(paths, may_list=None):
    """escaped when any path can be read (a file) or listed (a folder), except that a
    folder on the way to the workspace shows that one name (``may_list``) and nothing else."""
    for path in paths:
        try:
            if os.path.isdir(path):
                names = sorted(os.listdir(path))
                allowed = (may_list or {}).get(path)
                if allowed is not None and set(names) <= set(allowed):
                    print("only the way to the workspace in", path, names)
                    continue
                got = ",".join(names)
            else:
                with open(path, "rb") as f:
                    got = f.read(200).decode("latin-1")
        except OSError as exc:
            print("cannot read", path, "-", exc.strerror)
            continue
        return result(False, f"read {path}: {got[:80]!r}")
    result(True, "none readable")


def read_files(a):
    read_any(a["paths"], a.get("may_list"))


def symlink_out(a):
    paths = []
    for i, target in enumerate(a["targets"]):
        link = f"link-out-{i}"
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
        paths.append(link)
    read_any(paths)


def write_outside(a):
    wrote = []
    for path in a["paths"]:
        try:
            with open(path, "w") as f:
                f.write("escaped")
            wrote.append(path)
        except OSError as exc:
            print("cannot write", path, "-", exc.strerror)
    # /tmp is private: a write there succeeds inside and never reaches the host (the test
    # checks the host side); any other write outside the workspace is an escape.
    outside = [p for p in wrote if not p.startswith("/tmp/")]
    result(not outside, f"wrote {outside}" if outside else f"private only: {wrote}")


def environ(a):
    marker = a["marker"]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker.encode() in f.read():
                    return result(False, f"marker in /proc/{entry}/environ")
        except OSError:
            pass
    if marker in json.dumps(dict(os.environ)):
        return result(False, "marker in own environment")
    result(True, f"ppid {os.getppid()}: marker nowhere")


def processes(a):
    seen = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    seen.append((int(entry), f.read().replace(b"\0", b" ").decode()[:60]))
            except OSError:
                pass
    print("visible:", seen)
    host = [s for s in seen if a["server_pid"] == s[0] or "pytest" in s[1] or "jupyter" in s[1]]
    result(not host, f"host processes visible: {host}" if host else f"{len(seen)} own only")


def signal_server(a):
    pid = a["server_pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        print("kill:", exc.strerror)
    else:
        return result(False, f"kill -0 {pid} succeeded")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, pid, None, None) == 0:  # PTRACE_ATTACH
        return result(False, f"ptrace attached to {pid}")
    result(True, f"kill and ptrace of {pid}: {errno.errorcode.get(ctypes.get_errno())}")


def fork_bomb(a):
    children = []
    failed = ""
    for _ in range(a["tries"]):
        try:
            pid = os.fork()
        except OSError as exc:
            failed = exc.strerror
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    print("forked", len(children))
    result(bool(failed) and len(children) < a["limit"], f"{len(children)} forks, then {failed!r}")


def memory_bomb(a):
    block = b"x" * (a["bytes"])  # touched pages, not a lazy reservation
    result(False, f"allocated {len(block)} bytes")


def fill_disk(a):
    chunk = b"\0" * (1 << 20)
    written = 0
    try:
        with open("big.bin", "wb") as f:
            for _ in range(a["mib"]):
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as exc:
        os.unlink("big.bin")
        return result(exc.errno == errno.EFBIG, f"stopped at {written} bytes: {exc.strerror}")
    os.unlink("big.bin")
    result(False, f"wrote {written} bytes")


def connect(a):
    reached = []
    for host, port in a["targets"]:
        try:
            with socket.create_connection((host, port), timeout=3):
                reached.append(f"{host}:{port}")
        except OSError as exc:
            print("cannot connect", host, port, "-", exc)
    result(not reached, f"reached {reached}" if reached else "nothing reachable")


def jupyter_api(a):
    import urllib.error, urllib.request
    url = f"http://127.0.0.1:{a['port']}{a['base_url']}api/ecode/projects"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return result(False, f"the API answered {answer.status}: {answer.read(100)!r}")
    except urllib.error.HTTPError as exc:
        result(exc.code in (401, 403), f"the API refused: {exc.code}")
    except OSError as exc:
        result(True, f"not reachable: {exc}")


def setuid(a):
    gained = []
    for argv in a["commands"]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except OSError as exc:
            print(argv, "-", exc)
            continue
        out = (done.stdout + done.stderr).strip()
        print(argv, "->", done.returncode, out[:200])
        if done.returncode == 0 and ("euid=0" in out or out.startswith("0") or "uid=0(" in out):
            gained.append(argv[0])
    result(not gained and os.geteuid() != 0, f"uid {os.geteuid()}, gained: {gained}")


def new_namespace(a):
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "id", "-u"],
                              capture_output=True, text=True, timeout=10)
    except OSError as exc:
        return result(True, str(exc))
    out = (done.stdout + done.stderr).strip()
    result(done.returncode != 0, f"unshare: {out[:120]}")


name, args = sys.argv[1], json.loads(sys.argv[2] if len(sys.argv) > 2 else "{}")
globals()[name](args)
'''

# A preview app that runs a probe at request time: GET .../probe/NAME?arg=JSON.
PROBE_APP = r"""
import os, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Probe(BaseHTTPRequestHandler):
    def do_GET(self):
        parts = urlsplit(self.path)
        body = b"probe app"
        if "/probe/" in parts.path:
            name = parts.path.rsplit("/", 1)[1]
            arg = parse_qs(parts.query).get("arg", ["{}"])[0]
            done = subprocess.run([sys.executable, "probe.py", name, arg],
                                  capture_output=True, text=True, timeout=120)
            body = (done.stdout + done.stderr + f"\nexit={done.returncode}").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Probe).serve_forever()
"""
