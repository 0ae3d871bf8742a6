"""The REST API serves HTTPS by default; plain HTTP only with --insecure-http (9.4-1).

Real ``sharedml platform serve`` processes on loopback: with the deployment CA's
"platform" certificate the API answers HTTPS clients that verify it against the
CA and nothing else (a plain-HTTP request gets no answer, a client trusting only
the system's CAs refuses the certificate); without a certificate the server
refuses to start unless told --insecure-http, which it then logs as a warning.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sharedml.crypto import pki
from sharedml.errors import ConfigError
from sharedml.platform.config import https_files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sharedml.cli", "platform", "serve", "--data-dir", str(data),
         "--port", str(port), "--node-port", str(free_port()), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    return proc, port


def wait_listening(proc: subprocess.Popen[str], port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError("the platform did not start listening")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    out, _ = proc.communicate(timeout=20)
    return out


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.init_ca(d)
    pki.issue(d, "platform")
    return d


def test_the_certificate_choice(pki_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cert, key = pki_dir / "platform.pem", pki_dir / "platform.key"
    assert https_files(cert, key, None, False) == (cert, key)  # an operator's own
    assert https_files(None, None, pki_dir, False) == (cert, key)  # the deployment CA's
    assert https_files(cert, key, pki_dir, False) == (cert, key)  # own wins
    with pytest.raises(ConfigError, match="serves HTTPS only"):
        https_files(None, None, None, False)
    with pytest.raises(ConfigError, match="both --certfile and --keyfile"):
        https_files(cert, None, None, False)
    with pytest.raises(ConfigError, match=r"no platform\.pem"):
        https_files(None, None, tmp_path, False)
    with pytest.raises(ConfigError, match="contradicts"):
        https_files(cert, key, None, True)
    with caplog.at_level(logging.WARNING, logger="sharedml.platform"):
        assert https_files(None, None, None, True) is None
    assert "plain HTTP" in caplog.text and "--insecure-http" in caplog.text


@pytest.fixture(scope="module")
def https_server(pki_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = serve(tmp_path_factory.mktemp("data"), "--pki-dir", str(pki_dir))
    try:
        wait_listening(proc, port)
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def test_https_by_default_verified_against_the_deployment_ca(https_server: str, pki_dir: Path) -> None:
    tls = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    deadline = time.monotonic() + 30
    while True:
        try:
            r = httpx.get(f"https://{https_server}/api/v1/auth/me", verify=tls, timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    assert r.status_code == 401  # the API answered, over TLS, and wants a token
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{https_server}/api/v1/auth/me", verify=True, timeout=5)


def test_plain_http_to_the_https_api_gets_no_answer(https_server: str) -> None:
    with pytest.raises(httpx.HTTPError):
        r = httpx.get(f"http://{https_server}/api/v1/auth/me", timeout=5)
        # a TLS server may answer garbage rather than close: never a page of the API
        assert r.status_code not in (200, 401), r.text


def test_no_certificate_refuses_to_start_and_insecure_http_warns(tmp_path: Path) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "sharedml.cli", "platform", "serve", "--data-dir",
         str(tmp_path / "a"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "serves HTTPS only" in refused.stdout + refused.stderr
    assert "--insecure-http" in refused.stdout + refused.stderr
    proc, port = serve(tmp_path / "b", "--insecure-http")
    try:
        wait_listening(proc, port)
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/auth/me", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.3)
        assert r.status_code == 401
    finally:
        out = stop(proc)
    assert "WARNING" in out and "plain HTTP (--insecure-http)" in out
