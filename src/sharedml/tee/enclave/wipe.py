"""Wiping plaintext and proving destruction (9.4-7): zero buffers in place, sign and check receipts."""

from __future__ import annotations

import ctypes
import json
from typing import Any

import numpy as np
import pandas as pd

from sharedml.errors import ProtocolAbort
from sharedml.tee.envelope import KeyBundle


def zeroise(buf: bytearray) -> None:
    """Overwrite a plaintext buffer in place (copies made by libraries are out of reach)."""
    if buf:
        ctypes.memset((ctypes.c_char * len(buf)).from_buffer(buf), 0, len(buf))


def wipe_frame(frame: pd.DataFrame) -> None:
    """Zero a table's numeric blocks in place (best effort: pandas internals).

    Copies that pandas or scikit-learn made while training are freed, not wiped;
    Python gives no handle on them. The process ending is the final wipe.
    """
    for block in getattr(getattr(frame, "_mgr", None), "blocks", ()):
        values = getattr(block, "values", None)
        if isinstance(values, np.ndarray) and values.flags.writeable and values.dtype.kind in "fiub":
            values.fill(0)


def verify_receipt(receipt: dict[str, Any], bundle: KeyBundle) -> dict[str, Any]:
    """Check a destruction receipt against the attested key bundle; return its body."""
    from cryptography.exceptions import InvalidSignature

    payload = str(receipt["receipt"]).encode()
    try:
        bundle.verify(bytes.fromhex(str(receipt["signature"])), payload)
    except (InvalidSignature, ValueError):
        raise ProtocolAbort("destruction receipt signature is invalid", step="destroy") from None
    body: dict[str, Any] = json.loads(payload)
    return body
