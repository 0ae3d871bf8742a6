"""Paillier encryption of many plaintexts, on every core.

Encryption dominates the HE protocols' cost (one fixed-base exponentiation per
value); it is embarrassingly parallel, so :class:`Encryptor` spreads chunks over
a pool of worker processes (spawned, so it is safe in a threaded party). Each
worker rebuilds the public key — and its fixed-base table — once. Randomness
still comes from :mod:`secrets` inside each worker. Values cross only between
this party's own processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from sharedml.crypto.paillier import PaillierPublicKey

log = logging.getLogger(__name__)

_WORKER_KEY: PaillierPublicKey | None = None


def _init_worker(pk_bytes: bytes) -> None:
    global _WORKER_KEY
    _WORKER_KEY = PaillierPublicKey.from_bytes(pk_bytes)


def _encrypt_chunk(plaintexts: Sequence[int]) -> bytes:
    pk = _WORKER_KEY
    if pk is None:
        raise RuntimeError("encryption worker used before its initializer ran")
    return pk.pack([pk.encrypt(m) for m in plaintexts]).tobytes()


class Encryptor:
    """Encrypts chunks of plaintexts with ``n_jobs`` processes (1: in this thread).

    Use as a context manager so the pool is shut down; results come back as
    packed ciphertext bytes (:meth:`PaillierPublicKey.pack`), in order. Like
    any spawned pool, a script using ``n_jobs != 1`` needs the
    ``if __name__ == "__main__":`` guard; without it encryption falls back to
    one process with a warning.
    """

    def __init__(self, pk: PaillierPublicKey, n_jobs: int = 1) -> None:
        self.pk = pk
        self.n_jobs = max(1, (os.cpu_count() or 1) if n_jobs < 0 else n_jobs)
        self._pool: Executor | None = None

    def __enter__(self) -> Encryptor:
        if self.n_jobs > 1:
            self._pool = ProcessPoolExecutor(
                self.n_jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.pk.to_bytes(),),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def encrypt_chunks(self, chunks: Sequence[Sequence[int]]) -> Iterator[bytes]:
        """Packed ciphertexts of each chunk, yielded in order as they are ready."""
        done = 0
        if self._pool is not None:
            try:
                for data in self._pool.map(_encrypt_chunk, chunks):
                    done += 1
                    yield data
                return
            except BrokenProcessPool:
                # e.g. a script without the ``if __name__ == "__main__":`` guard
                # that spawned workers need: carry on in this process.
                log.warning("encryption workers failed to start; encrypting in one process")
                self._pool = None
        for chunk in chunks[done:]:
            yield self.pk.pack([self.pk.encrypt(m) for m in chunk]).tobytes()
