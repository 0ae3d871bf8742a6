"""The nodes page: health, last heartbeat, the agent's version, CPU and memory as its
heartbeat reported them (``control.NodeStats``, sampled by ``node/stats.py``)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from platform_world import make_world
from test_console_pages import console_login

from sharedml import __version__
from sharedml.control import Beat, decode
from sharedml.node.stats import ProcessStats
from sharedml.platform.console.web import PREFIX
from sharedml.platform.node_dispatch import _FLUSH_S


def test_a_sample_reports_the_version_cpu_and_memory_of_this_process() -> None:
    begun = time.monotonic()
    stats = ProcessStats()
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # spend CPU, so the sample has some to show
        pass
    got = stats.sample()
    wall = time.monotonic() - begun
    assert got.version == __version__
    # at least 0.2 s of CPU within at most `wall` seconds, however loaded the host
    assert got.cpu_percent >= 0.95 * 100 * 0.2 / wall
    assert got.rss_mb > 10.0
    # on the wire, inside a heartbeat
    assert decode(Beat, Beat(stats=got).encode()).stats == got


def test_the_nodes_page_shows_what_the_heartbeat_reported(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    scheduler = w.app.state.scheduler
    scheduler.node_hello("bank", "127.0.0.1:7001")
    # heartbeats are written to the store at most every _FLUSH_S; the figures with them
    w.clock.advance(_FLUSH_S + 1)
    scheduler.node_beat("bank", {}, {"version": "9.8.7", "cpu_percent": 42.5, "rss_mb": 321.0,
                                     "load1": 1.5})
    console_login(w, "admin")
    page = w.client.get(f"{PREFIX}/nodes")
    assert page.status_code == 200
    row = re.search(r"<tr><td>bank</td>.*?</tr>", page.text, re.S)
    assert row, page.text[-2000:]
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    assert cells[4:8] == ["9.8.7", "42.5", "321.0", "1.5"]
    assert 'class="state online"' in row.group(0)
    # the API endpoint the page mirrors returns the same figures
    (api,) = w.call("admin", "GET", "/api/v1/nodes").json()
    assert api["stats"]["rss_mb"] == 321.0
    # a node halted by a refused audit checkpoint says so on the page (Beat.halted)
    w.clock.advance(_FLUSH_S + 1)
    why = "node bank refused the platform's audit checkpoint: the log went backwards"
    scheduler.node_beat("bank", {}, {"version": "9.8.7", "halted": why})
    page = w.client.get(f"{PREFIX}/nodes")
    assert 'class="halted" role="alert"' in page.text and "went backwards" in page.text
