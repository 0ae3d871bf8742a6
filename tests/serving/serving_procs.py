"""Serving processes for the integration tests: a partner's node and the
label holder's gateway, each a real ``sharedml serve`` process, over gRPC with
mutual TLS and HTTP on loopback."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from sharedml.crypto import pki
from sharedml.serving.audit import verify_chain

READY_TIMEOUT = 120.0


class Proc:
    """One ``sharedml serve ...`` process; ``address`` is what it printed when ready."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.log = log
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "sharedml.cli", "serve", *args],
            stdout=subprocess.PIPE, stderr=log.open("ab"), text=True, env=env,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(lines,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"not ready: {args[0]}; log:\n{log.read_text()}") from None
            if " listening on " in line:
                self.address = line.rsplit(" ", 1)[1].strip()
                return

    def _pump(self, lines: queue.Queue[str]) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            lines.put(line)
        lines.put("")

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def make_pki(folder: Path, *parties: str) -> Path:
    pki.init_ca(folder)
    for p in parties:
        pki.issue(folder, p)
    return folder


def start_node(pki_dir: Path, party: str, caller: str, models: Path, state: Path,
               features: Path, port: int = 0, allow: str = "all",
               exclude: tuple[str, ...] = ()) -> Proc:
    args = ["node", "--party", party, "--pki", str(pki_dir), "--models", str(models),
            "--state", str(state), "--caller", caller, "--features", str(features),
            "--port", str(port), "--allow", allow]
    for c in exclude:
        args += ["--exclude", c]
    return Proc(args, state.parent / f"{party}.log")


def start_gateway(pki_dir: Path, party: str, partners: dict[str, str], models: Path,
                  state: Path, features: Path | None, serve: str | None = None,
                  timeout: float = 1.0, extra: tuple[str, ...] = ()) -> Proc:
    args = ["gateway", "--party", party, "--pki", str(pki_dir), "--models", str(models),
            "--state", str(state), "--port", "0", "--timeout", str(timeout), *extra]
    for name, address in partners.items():
        args += ["--partner", f"{name}={address}"]
    if features is not None:
        args += ["--features", str(features), "--exclude", "y"]
    if serve is not None:
        args += ["--serve", serve]
    return Proc(args, state.parent / f"{party}.log")


def client(gateway: Proc) -> httpx.Client:
    return httpx.Client(base_url=gateway.address, timeout=60)


def audit_entries(path: Path, enough: Callable[[list[dict[str, Any]]], bool],
                  within: float = 30.0) -> list[dict[str, Any]]:
    """A serving process's chained audit entries once ``enough`` holds of them (or
    ``within`` seconds passed): its writer commits each 10 ms window's batch
    (serving/audit.py), so a request's line can land just after its reply."""
    deadline = time.monotonic() + within
    while True:
        entries = verify_chain(path) if path.exists() else []
        if enough(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.01)
