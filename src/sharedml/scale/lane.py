"""A PSI lane: one Ray actor of a party that runs KKRT on buckets against the peer's lane.

Each lane holds its own :class:`~sharedml.transport.grpc.GrpcEndpoint`
under the party's certificate, so its traffic is the party-to-party
transport itself: mutual TLS with the deployment's CA, the peer named by its
certificate, a stream admitted only for the bucket's job id and only from the
job's peers (the endpoint's allow-list). The node hands each lane the job id,
the party order and the peer lane's address it learnt over the node's own
channel; a lane never learns of any other party.

A lane runs in a process of this party's Ray cluster: it holds the party's
private key and the bucket's digests, nothing of the peer's but what KKRT
sends (:mod:`sharedml.psi.kkrt`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from sharedml.crypto.pki import Identity
from sharedml.psi.kkrt import kkrt_psi
from sharedml.scale.meter import usage
from sharedml.session import Session
from sharedml.transport.base import Channel
from sharedml.transport.grpc import GrpcEndpoint
from sharedml.transport.recording import RecordingChannel, WireRecord


class PsiLane:
    """One lane (see the module docstring); built by :meth:`RayCompute.actors`."""

    def __init__(self, identity: Identity, host: str, record: bool = False) -> None:
        self.party = identity.party
        self.endpoint = GrpcEndpoint(identity, host, 0)
        self.busy_s = 0.0
        self.work_cpu_s = 0.0
        #: what this lane sent, when asked (wire audits in tests)
        self.records: list[WireRecord] | None = [] if record else None
        #: CPU-seconds of this process up to here: its start-up (Ray worker, imports,
        #: the gRPC server), which benchmarks count apart from the work
        self.start_cpu_s = usage()["cpu_s"]

    def address(self) -> str:
        return self.endpoint.address

    def run(
        self,
        job: str,
        peers: Sequence[str],
        peer_address: dict[str, str],
        digests: np.ndarray,
        sizes: dict[str, int],
        receivers: Sequence[str],
        timeout: float,
    ) -> np.ndarray | None:
        """KKRT on one bucket's padded digests; indices into ``digests`` or ``None``.
        ``timeout`` bounds each receive (the node's channel's)."""
        start, cpu = time.perf_counter(), time.process_time()
        channel = self.endpoint.channel(job, tuple(peers), peer_address, timeout)
        wire: Channel = channel if self.records is None else RecordingChannel(channel, self.records)
        try:
            session = Session(self.party, tuple(peers), wire)
            return kkrt_psi(session, digests, sizes, tuple(receivers))
        finally:
            channel.close()
            self.busy_s += time.perf_counter() - start
            self.work_cpu_s += time.process_time() - cpu

    def wire(self) -> list[WireRecord]:
        """What this lane sent since the last call (a kept lane's next run starts empty)."""
        out = list(self.records or [])
        if self.records is not None:
            self.records.clear()
        return out

    def usage(self) -> dict[str, float]:
        return {**usage(), "busy_s": self.busy_s, "work_cpu_s": self.work_cpu_s,
                "start_cpu_s": self.start_cpu_s}

    def close(self) -> None:
        self.endpoint.close()
