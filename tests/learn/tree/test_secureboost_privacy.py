"""Wire audit (9.4-3, 9.4-8): what SecureBoost puts on the wire, per protocol.

Every message each party sends is recorded. No raw feature value, label or
plaintext gradient of one party reaches another; the feature holder's
thresholds never leave it; what does travel has the documented form
(ciphertexts, ring shares, node-slot vectors, branch bits, counts).
"""

from __future__ import annotations

import numpy as np
import pytest
from secureboost_harness import GUEST, HOST, run_rows

from sharedml.learn.tree import SecureBoostClassifier
from sharedml.learn.tree.core import sigmoid
from sharedml.transport import RecordingChannel, WireRecord


def _hits(buf: bytes, values: np.ndarray) -> int:
    """How many 8-byte windows of ``buf`` (at any offset) equal one of ``values``."""
    want = np.unique(np.asarray(values, dtype=np.float64).view(np.uint64))
    raw = np.frombuffer(buf, dtype=np.uint8)
    hits = 0
    for off in range(8):
        usable = (len(raw) - off) // 8 * 8
        if usable <= 0:
            continue
        words = raw[off : off + usable].view(np.uint64)
        hits += int(np.isin(words, want).sum())
    return hits


def _distinct(values: np.ndarray) -> np.ndarray:
    """Values specific enough to identify data (not 0 or ±1, which also occur in headers)."""
    v = np.unique(np.asarray(values, dtype=np.float64).ravel())
    return v[~np.isin(v, [0.0, 1.0, -1.0])]


@pytest.mark.parametrize("protocol", ["he", "ss"])
def test_wire_carries_no_raw_values_labels_gradients_or_thresholds(credit, protocol):
    small = credit.head(1500, 300)
    tr, te = small.train, small.test
    log: list[WireRecord] = []
    out = run_rows(
        SecureBoostClassifier,
        small,
        tr,
        te,
        wrap=lambda ch: RecordingChannel(ch, log),
        protocol=protocol,
        key_bits=1024,
        n_jobs=1,
        n_estimators=4,
        max_depth=3,
    )
    guest, host = out[GUEST][0], out[HOST][0]
    y = small.y[tr]
    assert len(host.table_) > 0, "the audit needs the host to own splits"

    from_guest = [r for r in log if r.frm == GUEST]
    from_host = [r for r in log if r.frm == HOST]
    assert from_guest and from_host
    tags = {r.tag.split("#")[0] for r in log}
    assert any("he/ct" in t for t in tags) if protocol == "he" else any("mpc/" in t for t in tags)

    # the guest's features, labels and first-tree gradients never leave it
    g0 = sigmoid(np.full(len(y), guest.base_score_)) - y
    guest_secrets = np.concatenate(
        [_distinct(small.Xg[tr]), _distinct(small.Xg[te]), _distinct(g0)]
    )
    label_forms = [
        y.astype(dt).tobytes() for dt in (np.float64, np.float32, np.int64, np.int32, np.uint8)
    ] + [np.packbits(y.astype(bool)).tobytes()]
    for rec in from_guest:
        buf = rec.as_bytes()
        assert _hits(buf, guest_secrets) == 0, rec.tag
        assert not any(form in buf for form in label_forms), rec.tag
        if isinstance(rec.value, np.ndarray):
            assert rec.value.dtype.kind != "f", f"float array from the guest under {rec.tag}"

    # the host's features and its thresholds never leave it
    host_secrets = np.concatenate(
        [_distinct(small.Xh[tr]), _distinct(small.Xh[te]), _distinct(host.table_.thresholds)]
    )
    for rec in from_host:
        assert _hits(rec.as_bytes(), host_secrets) == 0, rec.tag
        if isinstance(rec.value, np.ndarray):
            assert rec.value.dtype.kind != "f", f"float array from the host under {rec.tag}"

    # the dealer (ss) receives only material requests
    assert all(r.tag.startswith("dealer/") for r in log if r.to == "dealer")

    # the label holder's model names host splits only by (party, record id)
    guest_doc = repr(guest.trees_) + repr(guest.table_)
    for t in host.table_.thresholds:
        assert repr(t) not in guest_doc


def test_the_audit_would_see_a_leak(credit):
    """The detector finds raw values at any byte offset (so a pass means something)."""
    values = credit.Xh[:20]
    buf = b"\x01\x02\x03" + values[3:5].tobytes() + b"\x00"
    assert _hits(buf, _distinct(values)) >= values.shape[1]
