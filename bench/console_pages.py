"""What the web console adds to a page's server time, at 1,000 jobs in the store.

Issue 15's goal: the console's job list costs at most 150 ms more than the REST
call it mirrors (``GET /api/v1/jobs``) with 1,000 jobs stored. Both are timed in
the same run, in-process (FastAPI's TestClient, so no network), as the analyst
who wrote the jobs; the table gives the medians and the difference.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from _common import median_seconds, report

TESTS = Path(__file__).resolve().parents[1] / "tests" / "platform"
sys.path[:0] = [str(TESTS), str(TESTS / "console")]

from job_fill import fill_jobs  # noqa: E402
from platform_world import PASSWORD, make_world  # noqa: E402

GOAL_MS = 150.0


def main() -> None:
    w = make_world(Path(tempfile.mkdtemp(prefix="console-bench-")))
    fill_jobs(w.platform, 1000, w.ids["analyst"])
    page = w.client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf
    w.client.post("/console/login", data={"csrf": csrf.group(1), "username": "analyst",
                                          "password": PASSWORD})
    rows = []
    for label, path, headers in (
        ("API GET /api/v1/jobs?limit=1000", "/api/v1/jobs?limit=1000", w.h("analyst")),
        ("console /console/jobs", "/console/jobs", {}),
        ("API GET /api/v1/jobs?state=failed", "/api/v1/jobs?state=failed&limit=1000",
         w.h("analyst")),
        ("console /console/jobs?state=failed", "/console/jobs?state=failed", {}),
    ):
        def get(path: str = path, headers: dict[str, str] = headers) -> None:
            assert w.client.get(path, headers=headers).status_code == 200
        rows.append({"request": label, "median_ms": 1000 * median_seconds(get, repeat=9)})
    added = rows[1]["median_ms"] - rows[0]["median_ms"]
    filtered = rows[3]["median_ms"] - rows[2]["median_ms"]
    report("console_pages", rows, {"added_ms": added, "added_filtered_ms": filtered,
                                   "goal_ms": GOAL_MS, "met": max(added, filtered) <= GOAL_MS})


if __name__ == "__main__":
    main()
