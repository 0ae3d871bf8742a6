"""Secure aggregation: the server learns the sum of the clients' updates, and only that.

Written once against :class:`~sharedml.transport.Channel`, so the same code
runs over :class:`~sharedml.transport.local.LocalChannel` (threads) and
:class:`~sharedml.transport.grpc.GrpcChannel` (processes or hosts, mutual
TLS). Clients talk to the server only. The construction is the semi-honest
protocol of Bonawitz et al. (CCS 2017) on the complete graph, with fresh
keys every round.

Protocol (round ``r``; clients ``u`` with index ``i_u`` in the job's roster;
threshold ``k`` = :attr:`SecAggConfig.threshold`; ``U1 ⊇ U2 ⊇ U3`` are the
clients still in the round after each stage; every stage waits at most
``stage_timeout`` and aborts the round if fewer than ``k`` clients remain):

1. *Advertise keys.* Each participant draws two X25519 key pairs,
   ``(c_u, C_u)`` for encrypting shares and ``(s_u, S_u)`` for masks, and
   sends ``C_u, S_u`` to the server, which sends the list of everyone's
   public keys (``U1``) back to each of them.
2. *Share keys.* Each ``u ∈ U1`` draws a 128-bit mask seed ``b_u``, splits
   ``s_u`` and ``b_u`` into Shamir shares of threshold ``k`` (points
   ``i_v + 1``, over the prime field of :mod:`sharedml.crypto.shamir`), and for every other
   ``v ∈ U1`` seals ``v``'s shares with AES-GCM under
   ``HKDF(X25519(c_u, C_v))``, bound to ``(r, u, v)``. The server relays each
   bundle to its addressee; ``U2`` are the clients whose bundles arrived.
3. *Masked input.* Each ``u ∈ U2`` quantises its update ``x_u`` into Z_2^64,
   or Z_2^32 when the job's bound leaves 24 fractional bits there
   (:class:`~sharedml.fl.quantize.Quantizer`, which states the error bound of
   each), and sends
   ``y_u = q(x_u) + PRG(b_u) + Σ_{v ∈ U2, v ≠ u} ±PRG(HKDF(X25519(s_u, S_v)))``
   with ``+`` when ``i_u < i_v`` and ``−`` otherwise (the pair's masks
   cancel). The PRG is AES-128-CTR (:mod:`sharedml.crypto.prg`). ``q(x_u) +
   PRG(b_u)`` needs no peer's key: a client computes it while step 1 waits,
   and the pairwise masks while the server gathers step 2. ``U3`` are
   the clients whose ``y_u`` arrived and passed the checks of
   :mod:`~sharedml.fl.secagg.collect`; the server adds them up as they come.
4. *Unmasking.* The server sends ``U3`` and ``D = U2 \\ U3`` to ``U3``. Each
   survivor checks ``|U3| ≥ k`` and returns, from the bundles it holds, the
   share of ``b_v`` for every ``v ∈ U3`` and the share of ``s_v`` for every
   ``v ∈ D`` — never both for the same client.
5. *Sum.* From any ``k`` answers the server recovers every ``b_u`` of ``U3``
   and every ``s_v`` of ``D`` (checking ``s_v`` against ``S_v``), removes the
   self masks and the masks survivors shared with dropped clients, and decodes
   ``Σ_{u ∈ U3} x_u`` within :meth:`Quantizer.error_bound`.

Reveals:
    server: ``Σ_{u ∈ U3} x_u`` and who is in ``U1, U2, U3``; each ``y_u``
    alone is uniform on the ring (the test suite checks it). It learns the
    mask key ``s_v`` of a client dropped after step 2 (fresh each round, so
    worthless after it) and the seeds ``b_u`` of the survivors.
    client: the other participants' public keys and who survived; nothing of
    another client's update (it holds one share of each secret, fewer than
    ``k`` — unless ``k − 1`` others pool theirs with it).
    either: the number of elements and the round number.

Security model: semi-honest server and clients (each follows the protocol;
the server reports dropouts truthfully). The sum of the honest survivors is
all that the server jointly with up to ``k − 1`` colluding clients learns;
``k`` colluding clients can recover a survivor's seed and mask key and so its
update. Not covered: an active server that lies about who dropped (the
consistency round of Bonawitz et al. §4 is not run), and a client that sends
garbage instead of its masked update — it corrupts the sum undetectably (the
server sees only uniform words); clients check their own updates (NaN,
infinity, range) and abstain with a reason instead (8.3-2). ARCHITECTURE §8
row "secure aggregation".

Dropouts: a round with ``m`` participants survives up to ``m − k`` clients
that drop at any stage (before or after submitting their masked input);
more and it aborts with :class:`RoundAborted` naming who was out and why.

SecAgg+ (Bell et al., CCS 2020): with :attr:`SecAggConfig.neighbours` set,
every step above runs on a sparse graph (:mod:`~sharedml.fl.secagg.graph`, a
circulant graph of that even degree on a public per-round shuffle): a client
receives its neighbours' keys only, shares its secrets among them (threshold
counted within its neighbourhood), masks with them only, and the server
recovers each secret from that client's neighbours. Each client then expands
``degree + 1`` masks instead of ``n``. What changes in ``Reveals``: ``t − 1``
colluding *neighbours* of a client (not any ``k − 1`` clients) are what the
server may add without learning its update; and because only the
survivors' graph hides partial sums, the server checks it is connected
before it asks for a single share and aborts otherwise. That check counts
colluding clients as survivors: the circulant graph's vertex connectivity is
its degree, so if colluders plus dropouts of a round reach ``degree`` and
sit, by the round's public shuffle, on both sides of a stretch of the ring,
the *honest* survivors split and the server learns each part's sum. The
threshold allows up to ``degree − max_dropouts`` colluding neighbours, which
is that many: a job that fears ``c`` colluders sets ``neighbours`` above
``c + max_dropouts`` (the complete graph, the default up to 16 clients, has
no such gap).

References: K. Bonawitz, V. Ivanov, B. Kreuter et al., "Practical Secure
Aggregation for Privacy-Preserving Machine Learning", CCS 2017; J. Bell,
K. Bonawitz, A. Gascón, T. Lepoint, M. Raykova, "Secure Single-Server
Aggregation with (Poly)Logarithmic Overhead", CCS 2020.
"""

from sharedml.fl.secagg.client import SecAggClient, Submission
from sharedml.fl.secagg.config import SecAggConfig
from sharedml.fl.secagg.server import RoundAborted, RoundResult, SecAggServer

__all__ = [
    "RoundAborted",
    "RoundResult",
    "SecAggClient",
    "SecAggConfig",
    "SecAggServer",
    "Submission",
]
