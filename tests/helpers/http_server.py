"""A real HTTP(S) server on 127.0.0.1 for download tests: Range support and switches for the ways a
dataset server fails (404, 500, a dropped or stalled transfer, a slow link, a bad certificate)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)  # answer 404
    drop_after: dict[str, int] = field(default_factory=dict)  # first GET sends N bytes, then hangs up
    stall_after: dict[str, int] = field(default_factory=dict)  # first GET sends N bytes, then sends nothing
    ignore_range: set[str] = field(default_factory=set)  # answer 200 + whole body to Range requests
    fail_once: set[str] = field(default_factory=set)  # first GET answers 500
    bytes_per_s: float | None = None  # a slow link (every file)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    bytes_sent: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # ends stalled transfers at shutdown


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
            stall_at = state.stall_after.pop(path, None)
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
        self._send(payload if stall_at is None else payload[:stall_at])
        if stall_at is not None:
            state.stop.wait(120)  # the connection stays open, silent: a stalled transfer
            self.close_connection = True

    def _send(self, payload: bytes) -> None:
        state = self.state
        step = len(payload) if state.bytes_per_s is None else max(1, int(state.bytes_per_s / 20))
        try:
            for offset in range(0, len(payload), step):
                chunk = payload[offset:offset + step]
                self.wfile.write(chunk)
                self.wfile.flush()
                with state.lock:
                    state.bytes_sent[self.path] = state.bytes_sent.get(self.path, 0) + len(chunk)
                if state.bytes_per_s is not None:
                    time.sleep(len(chunk) / state.bytes_per_s)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client went away (killed, or it gave up on a stalled transfer)


@contextlib.contextmanager
def serve(state: ServerState | None = None, tls: ssl.SSLContext | None = None) -> Iterator[tuple[str, ServerState]]:
    """Serve ``state.files`` on 127.0.0.1; yields (base URL, state). ``tls``: HTTPS with that context."""
    state = state or ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def self_signed_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (made here with `cryptography`): (cert.pem, key.pem).
    No system trusts it, so a verifying client refuses it unless told to trust this file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nlflow test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic bytes that do not compress."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


@pytest.fixture()
def server():
    """A fresh server for one test: (base URL, state)."""
    with serve() as (base, state):
        yield base, state
