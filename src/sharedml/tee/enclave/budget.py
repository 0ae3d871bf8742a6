"""The enclave's memory budget for plaintext (6.3 steps 3-6 looping within a fixed enclave size).

An enclave's memory is fixed when it is built (``sgx.enclave_size``, the
Nitro enclave's ``--memory``, the VM's RAM). :class:`MemoryBudget` accounts
for the plaintext the runtime itself holds — decrypted tables, batches, the
joined block — and refuses what would exceed it, naming the remedy (upload in
batches), instead of letting the process be killed mid-job. Library
temporaries are not counted (measured ~1.1x on top in
``tests/tee/test_stream.py``); the budget should sit well below the enclave
size, which also holds Python, numpy and XGBoost themselves (~1 GiB).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sharedml.errors import DataError

#: The default budget: SHAREDML_TEE_MEMORY_BUDGET bytes, or 256 MiB.
DEFAULT_BUDGET = int(os.environ.get("SHAREDML_TEE_MEMORY_BUDGET", 256 << 20))


class MemoryBudget:
    """Bytes of plaintext held at once, with the peak seen."""

    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int, what: str, party: str | None = None) -> None:
        with self._lock:
            if self.held + nbytes > self.limit:
                raise DataError(
                    f"{what} needs {nbytes / 2**20:.1f} MiB of plaintext; the enclave's budget is "
                    f"{self.limit / 2**20:.0f} MiB with {self.held / 2**20:.1f} MiB held",
                    party=party, step="upload",
                    remedy="upload in batches (Provider.upload_batches) and train with a streaming learner",
                )
            self.held += nbytes
            self.peak = max(self.peak, self.held)

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self.held = max(0, self.held - nbytes)

    @contextmanager
    def hold(self, nbytes: int, what: str, party: str | None = None) -> Iterator[None]:
        self.take(nbytes, what, party)
        try:
            yield
        finally:
            self.give_back(nbytes)
