"""Fixtures of the console tests (the browser is session-wide; see console_browser.py)."""

from console_browser import browser

__all__ = ["browser"]
