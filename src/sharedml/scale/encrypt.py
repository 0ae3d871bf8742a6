"""Paillier randomiser pools as Ray actors: :class:`sharedml.he.Encryptor` on a cluster.

The label holder's cost in SecureBoost ``he`` is the randomisers ``r^n`` of
its encryptions (:mod:`sharedml.he.pool`). :class:`RayEncryptor` has the
same interface as :class:`~sharedml.he.pool.Encryptor` — ``reserve`` to
make encryptions of zero ahead of time, ``encrypt_chunks`` to encrypt — but
its workers are Ray actors of the party's own cluster (``workers`` of them,
with the node's per-worker CPU and memory), each running the same worker code
as the process pool (:func:`sharedml.he.pool._init_worker`, ``_stock``,
``_encrypt``). An encryption of zero never leaves the actor that made it and
is used once, so ciphertexts are distributed exactly as fresh encryptions;
the plaintexts, and so every decrypted histogram, are those of the
single-process run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sharedml.crypto.paillier import PaillierPublicKey
from sharedml.he import pool
from sharedml.scale.meter import usage

if TYPE_CHECKING:
    from sharedml.scale.runtime import RayCompute

STEP = "he/encrypt"


class ZeroStock:
    """One actor: a fixed-base table for ``pk`` and its own stock of encryptions of zero."""

    def __init__(self, pk_bytes: bytes) -> None:
        #: CPU-seconds of the process's start-up (Ray worker, imports), before any work
        self.start_cpu_s = usage()["cpu_s"]
        pool._init_worker(pk_bytes)

    def stock(self, count: int) -> int:
        return pool._stock(count)

    def encrypt(self, plain: list[int]) -> tuple[bytes, int]:
        return pool._encrypt(plain)

    def usage(self) -> dict[str, float]:
        return {**usage(), "start_cpu_s": self.start_cpu_s}


class RayEncryptor:
    """:class:`~sharedml.he.pool.Encryptor` whose workers are Ray actors."""

    def __init__(self, compute: RayCompute, pk: PaillierPublicKey, chunk: int = 1024) -> None:
        self.compute, self.pk, self.chunk = compute, pk, chunk
        self._actors: list[Any] = []
        self._stocked = 0
        self._next = 0

    def __enter__(self) -> RayEncryptor:
        self._actors = self.compute.actors(ZeroStock, self.compute.workers, self.pk.to_bytes())
        return self

    def __exit__(self, *exc: object) -> None:
        actors, self._actors = self._actors, []
        self.compute.stop(actors, step=STEP)
        self._stocked = 0

    @property
    def stocked(self) -> int:
        return self._stocked

    def _actor(self) -> Any:
        actor = self._actors[self._next % len(self._actors)]
        self._next += 1
        return actor

    def reserve(self, count: int) -> None:
        """Have the actors make encryptions of zero in the background until ``count``."""
        while self._actors and self._stocked < count:
            self._actor().stock.remote(self.chunk)
            self._stocked += self.chunk

    def encrypt_chunks(self, chunks: Sequence[Sequence[int]]) -> Iterator[bytes]:
        """Packed ciphertexts of each chunk, in order (pieces spread over the actors)."""
        step = max(1, self.chunk // 2)
        pieces = []
        for chunk in chunks:
            plain = [int(m) for m in chunk]
            pieces.append([self._actor().encrypt.remote(plain[i : i + step])
                           for i in range(0, len(plain), step)])
        for i, refs in enumerate(pieces):
            parts = self.compute.get(refs, step=STEP, what=f"encryption chunk {i}")
            self._stocked -= sum(used for _, used in parts)
            yield b"".join(data for data, _ in parts)
