"""A real HTTP server on 127.0.0.1 for download tests: Range support and failure switches."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # answer 404
    drop_after: dict[str, int] = field(default_factory=dict)  # first GET sends N bytes, then hangs up
    ignore_range: set[str] = field(default_factory=set)  # answer 200 + whole body to Range requests
    fail_once: set[str] = field(default_factory=set)  # first GET answers 500
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on a subclass per server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        state = self.state
        path = self.path
        range_header = self.headers.get("Range")
        with state.lock:
            state.requests.append((path, range_header))
            if path in state.fail_once:
                state.fail_once.discard(path)
                self.send_error(500, "simulated failure")
                return
            drop_at = state.drop_after.pop(path, None)
        if path in state.missing or path not in state.files:
            self.send_error(404, "not here")
            return
        body = state.files[path]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and path not in state.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if drop_at is not None:
            payload = payload[:drop_at]
            self.close_connection = True
        self.wfile.write(payload)
        self.wfile.flush()
        with state.lock:
            state.bytes_sent[path] = state.bytes_sent.get(path, 0) + len(payload)


@pytest.fixture()
def server():
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
