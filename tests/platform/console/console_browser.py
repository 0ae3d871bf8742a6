"""The console tests' browser and servers: headless Debian chromium driven by Playwright,
and a platform app served by uvicorn on loopback (its clock injected).

Playwright's own browser download does not work on these machines; the tests
drive ``/usr/bin/chromium`` (Debian's package), which ``.ci/services.sh``
installs when missing (``playwright`` is a dev dependency). Without them, and not
root to install them, the browser tests skip saying so.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sharedml.platform.local_deployment import free_port

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "the 'playwright' package is not installed (a dev dependency: make venv)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium; .ci/browser.sh does as root)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless chromium browser, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Served:
    url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def serve(app: Any) -> Served:
    """``app`` under uvicorn in a thread on a free loopback port, once it listens."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return Served(f"http://127.0.0.1:{port}", server, thread)


def log_in(page: Any, url: str, username: str, password: str, totp: str | None = None) -> None:
    page.goto(f"{url}/console/login")
    page.fill("#username", username)
    page.fill("#password", password)
    if totp:
        page.fill("#totp", totp)
    page.click("#login")
    page.wait_for_load_state()


def secret_of(text: str) -> bytes:
    """The raw TOTP secret from its base32 text as the enrolment page shows it."""
    return base64.b32decode(text + "=" * (-len(text) % 8))


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test module: Playwright's sync API keeps its event loop marked
    running in the main thread while it is open, so a session-wide browser made every
    later test's ``asyncio.run`` fail ("cannot be called from a running event loop")."""
    reason = missing()
    if reason and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {reason}")
    if reason:
        pytest.skip(reason)
    with chromium() as b:
        yield b
