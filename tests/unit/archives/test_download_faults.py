"""A flaky dataset server, for real: an HTTPS server on 127.0.0.1 with a self-signed certificate, a
transfer that stalls, mirrors that all fail; and the manual route (a file put in place by hand)."""

from __future__ import annotations

import hashlib
import time

import pytest

from nlflow.archives.download import DownloadError, fetch

from helpers.http_server import payload, self_signed_certificate, serve, tls_context

FAST = dict(retries=2, backoff=0.01, timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def https_server(tmp_path_factory):
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with serve(tls=tls_context(cert, key)) as (base, state):
        yield base, state, cert


def test_an_unverifiable_certificate_is_refused_with_what_to_do(https_server, tmp_path):
    base, state, _ = https_server
    data = payload(50_000)
    state.files["/UCF101.rar"] = data
    manual = tmp_path / "download" / "manual" / "UCF101.rar"
    with pytest.raises(DownloadError) as info:
        fetch([f"{base}/UCF101.rar"], tmp_path / "download" / "UCF101.rar", sha256=_sha(data), manual=manual, **FAST)
    message = str(info.value)
    assert "\n" not in message
    assert "TLS certificate could not be verified" in message and "self-signed" in message
    assert "SSL_CERT_FILE" in message and "ca-certificates" in message
    assert f"put it at {manual}" in message and "checked against the configured sha256" in message
    # refused at the handshake, once: another attempt would meet the same certificate
    assert state.requests == [] and "gave up" not in message
    assert not (tmp_path / "download" / "UCF101.rar").exists()


def test_tls_stays_verified_and_ssl_cert_file_is_the_way_to_trust_a_server(https_server, tmp_path, monkeypatch):
    base, state, cert = https_server
    data = payload(80_000)
    state.files["/UCF101.rar"] = data
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    result = fetch([f"{base}/UCF101.rar"], tmp_path / "UCF101.rar", sha256=_sha(data), **FAST)
    assert result.source == f"{base}/UCF101.rar" and (tmp_path / "UCF101.rar").read_bytes() == data


def test_the_archive_put_in_place_by_hand_is_verified_and_used(https_server, tmp_path):
    base, state, _ = https_server
    data = payload(60_000, seed=3)
    manual = tmp_path / "download" / "manual" / "UCF101.rar"
    dest = tmp_path / "download" / "UCF101.rar"
    lock = tmp_path / "download" / "UCF101.rar.sha256"
    manual.parent.mkdir(parents=True)
    manual.write_bytes(payload(60_000, seed=4))  # the wrong file: kept, and named in the error
    (tmp_path / "download" / "UCF101.rar.sha256").write_text(f"{_sha(data)}  UCF101.rar\n")
    with pytest.raises(DownloadError, match=r"manual/UCF101.rar is not the right UCF101.rar: SHA-256 .* lock file"):
        fetch([f"{base}/UCF101.rar"], dest, lock_file=lock, manual=manual, **FAST)
    assert manual.exists() and not dest.exists()

    manual.write_bytes(data)
    result = fetch([f"{base}/UCF101.rar"], dest, lock_file=lock, manual=manual, **FAST)
    assert dest.read_bytes() == data and not manual.exists() and result.sha256 == _sha(data)
    assert state.requests == []  # no mirror was asked


def test_a_manual_file_without_a_known_checksum_is_recorded(tmp_path):
    data = payload(10_000, seed=5)
    manual = tmp_path / "manual" / "model.pkl"
    manual.parent.mkdir()
    manual.write_bytes(data)
    lock = tmp_path / "model.pkl.sha256"
    result = fetch(["http://127.0.0.1:9/unreachable.pkl"], tmp_path / "model.pkl", lock_file=lock, manual=manual)
    assert result.recorded_in_lock and lock.read_text() == f"{_sha(data)}  model.pkl\n"


def test_a_stalled_transfer_is_resumed_not_left_hanging(tmp_path):
    data = payload(400_000, seed=6)
    with serve() as (base, state):
        state.files["/big.bin"] = data
        state.stall_after["/big.bin"] = 150_000  # then silence, the connection left open
        started = time.monotonic()
        result = fetch([f"{base}/big.bin"], tmp_path / "big.bin", sha256=_sha(data), retries=2, backoff=0.01, timeout=1)
        elapsed = time.monotonic() - started
    assert result.resumed and (tmp_path / "big.bin").read_bytes() == data
    assert state.requests == [("/big.bin", None), ("/big.bin", "bytes=150000-")]
    assert elapsed < 60  # not the server's 120 s of silence: the stall was noticed and resumed


def test_every_mirror_failing_is_one_line_with_each_reason_and_the_manual_route(https_server, tmp_path):
    tls_base, _, _ = https_server
    with serve() as (base, state):
        state.missing.add("/gone.rar")
        urls = [f"{tls_base}/UCF101.rar", f"{base}/gone.rar", "http://127.0.0.1:9/UCF101.rar"]
        manual = tmp_path / "manual" / "UCF101.rar"
        with pytest.raises(DownloadError) as info:
            fetch(urls, tmp_path / "UCF101.rar", manual=manual, retries=1, backoff=0.01, timeout=2)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not download UCF101.rar from any of 3 source(s): ")
    reasons = message.split(": ", 1)[1]
    assert f"{urls[0]}: the server's TLS certificate could not be verified" in reasons
    assert f"{urls[1]}: HTTP 404" in reasons
    assert f"{urls[2]}: cannot connect" in reasons and "gave up after 2 attempts" in reasons
    assert "SSL_CERT_FILE" in message and f"put it at {manual}" in message
    assert "its SHA-256 is recorded on first use" in message
