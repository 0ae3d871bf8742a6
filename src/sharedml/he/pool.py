"""Paillier encryption of many plaintexts, on every core, ahead of time.

Encryption dominates the HE protocols' cost (one fixed-base exponentiation per
value). Its costly part does not depend on the plaintext, so
:class:`Encryptor` has a pool of worker processes (spawned, so it is safe in a
threaded party) make it in the background; each worker rebuilds the public
key — and its fixed-base table — once. Randomness still comes from
:mod:`secrets` inside each worker. Values cross only between this party's own
processes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from gmpy2 import mpz

from sharedml.crypto.paillier import SECURITY_BITS, PaillierPublicKey

log = logging.getLogger(__name__)

#: Window of the workers' fixed-base table: ceil(2*SECURITY_BITS/14) = 19
#: products per randomiser (the key's own table uses 8 bits: 32), for
#: 19 x 16384 entries (~170 MB) built once per worker in about 1.5 s. Measured
#: per core, 2048-bit key: window 12 (22 products) 121-125 µs per randomiser,
#: 14 about 100 µs, 16 (a 560 MB table) no faster than 14.
ZERO_WINDOW = 14


class ZeroMaker:
    """Fresh encryptions of zero, ``h_s^x mod n^2`` for a secret 256-bit ``x``.

    The same distribution as ``pk.encrypt(0)`` (:mod:`sharedml.crypto.paillier`
    draws ``x`` the same way from :mod:`secrets`), with a wider fixed-base
    window: fewer multiplications per value for a larger table, worth it in a
    worker that makes tens of thousands of them.
    """

    def __init__(self, pk: PaillierPublicKey, window: int = ZERO_WINDOW) -> None:
        self.pk, self.window = pk, window
        n_sq, base = pk.n_sq, pk.h_s
        self.table: list[list[mpz]] = []
        for _ in range(-(-2 * SECURITY_BITS // window)):
            row = [mpz(1), base]
            for _ in range(2, 1 << window):
                row.append(row[-1] * base % n_sq)
            self.table.append(row)
            base = row[-1] * base % n_sq

    def zero(self) -> mpz:
        x = secrets.randbits(2 * SECURITY_BITS)
        n_sq, mask, window = self.pk.n_sq, (1 << self.window) - 1, self.window
        acc: mpz | None = None
        for row in self.table:
            digit = x & mask
            if digit:
                acc = row[digit] if acc is None else acc * row[digit] % n_sq
            x >>= window
        return mpz(1) if acc is None else acc


_WORKER: ZeroMaker | None = None
#: this worker's encryptions of zero made ahead of time (never leave it)
_STOCK: deque[mpz] = deque()


def _init_worker(pk_bytes: bytes) -> None:
    global _WORKER
    _WORKER = ZeroMaker(PaillierPublicKey.from_bytes(pk_bytes))


def _maker() -> ZeroMaker:
    if _WORKER is None:
        raise RuntimeError("encryption worker used before its initializer ran")
    return _WORKER


def _stock(count: int) -> int:
    """Make ``count`` encryptions of zero and keep them here (runs in a worker)."""
    maker = _maker()
    _STOCK.extend(maker.zero() for _ in range(count))
    return count


def _encrypt(plain: list[int]) -> tuple[bytes, int]:
    """Packed encryptions of ``plain`` and how many stocked zeros they used (in
    a worker; zeros are made on the spot when this worker's stock runs out)."""
    maker = _maker()
    pk, used, cts = maker.pk, 0, []
    for m in plain:
        if _STOCK:
            z = _STOCK.popleft()
            used += 1
        else:
            z = maker.zero()
        cts.append(pk.add_plain(z, m))
    return pk.pack(cts).tobytes(), used


class Encryptor:
    """Paillier encryption with the randomness precomputed on every core.

    An encryption is ``(1 + m n) * r^n mod n^2``; the costly factor ``r^n``
    (an encryption of zero) does not depend on ``m``. :meth:`reserve` has
    ``n_jobs`` worker processes make encryptions of zero in the background —
    while this party waits for its peers — and keep them; :meth:`encrypt_chunks`
    then sends the plaintexts to the workers, which spend one multiplication
    per value (:meth:`PaillierPublicKey.add_plain`) and return the packed
    ciphertexts, so neither the zeros nor the ciphertexts are converted in
    this process. Each encryption of zero is used once and never leaves the
    worker that made it, so the ciphertexts are distributed exactly as fresh
    encryptions.

    Use as a context manager so the pool is shut down; results come back as
    packed ciphertext bytes (:meth:`PaillierPublicKey.pack`), in order. Like
    any spawned pool, a script using ``n_jobs != 1`` needs the
    ``if __name__ == "__main__":`` guard; without it the values are encrypted
    in this process, with a warning.
    """

    def __init__(self, pk: PaillierPublicKey, n_jobs: int = 1, chunk: int = 1024) -> None:
        self.pk = pk
        self.n_jobs = max(1, (os.cpu_count() or 1) if n_jobs < 0 else n_jobs)
        self.chunk = chunk
        self._pool: Executor | None = None
        self._making: deque[Future[int]] = deque()
        self._stocked = 0  # zeros made or under way in the workers, not yet used

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
        self._making.clear()
        self._stocked = 0

    @property
    def stocked(self) -> int:
        """Encryptions of zero made or under way."""
        return self._stocked

    def reserve(self, count: int) -> None:
        """Start making encryptions of zero in the background until ``count`` are stocked."""
        if self._pool is None:
            return
        try:
            while self._stocked < count:
                self._making.append(self._pool.submit(_stock, self.chunk))
                self._stocked += self.chunk
        except BrokenProcessPool:
            self._broken()

    def _broken(self) -> None:
        # e.g. a script without the ``if __name__ == "__main__":`` guard that
        # spawned workers need: carry on in this process.
        log.warning("encryption workers failed to start; encrypting in one process")
        self._pool = None
        self._making.clear()
        self._stocked = 0

    def encrypt_chunks(self, chunks: Sequence[Sequence[int]]) -> Iterator[bytes]:
        """Packed ciphertexts of each chunk, yielded in order as they are ready."""
        pieces: list[list[Future[tuple[bytes, int]]]] = []
        if self._pool is not None:
            try:
                # pieces of a chunk go to every worker
                step = max(1, self.chunk // 2)
                for chunk in chunks:
                    plain = [int(m) for m in chunk]
                    pieces.append(
                        [
                            self._pool.submit(_encrypt, plain[i : i + step])
                            for i in range(0, len(plain), step)
                        ]
                    )
            except BrokenProcessPool:
                self._broken()
                pieces = []
        for i, chunk in enumerate(chunks):
            if self._pool is not None and i < len(pieces):
                try:
                    parts = [f.result() for f in pieces[i]]
                    self._stocked -= sum(used for _, used in parts)
                    yield b"".join(data for data, _ in parts)
                    continue
                except BrokenProcessPool:
                    self._broken()
            yield self.pk.pack([self.pk.encrypt(int(m)) for m in chunk]).tobytes()
        while self._making and self._making[0].done():
            self._making.popleft()
