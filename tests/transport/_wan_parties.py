"""Party functions for the shaped-network tests (importable by spawned party processes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sharedml.session import Session
from sharedml.transport.traffic import TrafficMeter


def psi_party(protocol: str, session: Session) -> dict[str, Any]:
    """Two parties' 2,000 ids, 1,000 shared; returns the intersection's ids and the meter log."""
    from sharedml.psi import digest_keys, psi_digests

    start = 0 if session.party == "A" else 1000
    ids = pd.Series(np.arange(start, start + 2000)).map("u{}".format)
    result = psi_digests(session, digest_keys(ids), protocol=protocol)
    assert result.rows is not None
    meter = session.channel
    return {
        "ids": sorted(ids.iloc[result.rows]),
        "events": meter.events if isinstance(meter, TrafficMeter) else None,
    }
