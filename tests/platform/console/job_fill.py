"""A store with many jobs, for the console's page-cost test and bench/console_pages.py."""

from __future__ import annotations

import datetime as dt
import json

from sharedml.platform.service import Platform
from sharedml.platform.store.models import STATES, Job

SPEC = {"name": "a1", "parties": {"bank": {"dataset": "credit_bank", "label": "y"},
                                  "partner": {"dataset": "credit_partner"}},
        "steps": [{"psi": {"key": "id"}}, {"split": {"test_size": 0.3}},
                  {"train": {"model": "logistic_regression"}}, {"evaluate": {}}]}


def fill_jobs(platform: Platform, n: int, created_by: int) -> None:
    """``n`` jobs in every state, with a spec and a result each, written in one transaction."""
    now = platform.clock.now()
    result = {"steps": {"evaluate": {"bank": {"metrics": {"auc": 0.8, "ks": 0.4}}}}}
    with platform.store.session() as s:
        for i in range(n):
            when = now - dt.timedelta(minutes=i)
            s.add(Job(id=f"{i:032x}", name=f"job-{i}", spec=json.dumps(SPEC),
                      state=STATES[i % len(STATES)], progress=(i % 10) / 10,
                      created_by=created_by, created_at=when, updated_at=when,
                      result=result))
