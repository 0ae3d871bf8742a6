"""A trusted cluster of enclaves: mutual attestation and cluster-key sync (8.5-1).

Runs inside each enclave. A joiner and the key holder:

1. the joiner sends a fresh nonce from its own verifier;
2. the holder attests with that nonce, binding its key bundle, and sends
   ``(evidence, bundle)`` with a fresh nonce of its own;
3. the joiner verifies the holder's evidence against its own reference values
   (:class:`~sharedml.tee.attestation.Policy`, e.g. signer + product + a
   minimum version) and answers with its own evidence for the holder's nonce;
4. the holder verifies it the same way — one verification path, so a stale
   nonce, a replay, a debug or outdated peer is refused — and HPKE-seals the
   cluster key to the joiner's attested bundle (``info`` binds both nonces)
   only if it accepted the joiner; otherwise it sends a refusal.

:class:`Holder` and :class:`Joiner` are the steps without I/O; :func:`sync_key`
runs them over a Channel, and an enclave service runs them as RPCs the
platform relays (:mod:`.cluster_face`): relaying lets the platform see and
drop messages, never read or forge the key.

Reveals: to each peer, the other's evidence (measurement, signer, versions,
platform TCB); the cluster key only to peers whose evidence was acceptable.
Security model: malicious hosts and network; the CPU vendor (or simulator
root) and the measured code are trusted. Reference: the mutual attestation
pattern of Intel's RA-TLS / SGX key-sharing designs (Knauth et al., 2018).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sharedml.errors import AttestationError, ProtocolAbort
from sharedml.session import Session
from sharedml.tee.attestation.base import Attester, Claims, Evidence, Policy, Verifier
from sharedml.tee.enclave.sealing import SealedStore
from sharedml.tee.envelope import EnclaveKeys, KeyBundle

REFUSED = b"refused"


@dataclass
class ClusterMember:
    """One enclave's cluster state: its attester, verifier, policy and keys."""

    attester: Attester
    verifier: Verifier
    policy: Policy
    keys: EnclaveKeys = field(default_factory=EnclaveKeys)
    cluster_key: bytes | None = None
    peers: dict[str, Claims] = field(default_factory=dict)

    @classmethod
    def founder(cls, attester: Attester, verifier: Verifier, policy: Policy) -> ClusterMember:
        return cls(attester, verifier, policy, cluster_key=os.urandom(32))


def _info(nonce_holder: bytes, nonce_joiner: bytes) -> bytes:
    return b"sharedml-tee-cluster-key/1" + nonce_holder + nonce_joiner


def _evidence_message(me: ClusterMember, nonce: bytes, extra: dict[str, str]) -> dict[str, str]:
    evidence = me.attester.attest(nonce, me.keys.bundle.to_bytes())
    return {"evidence": evidence.to_json(), "bundle": me.keys.bundle.to_bytes().decode(), **extra}


def _peer_evidence(msg: object, peer: str) -> tuple[Evidence, bytes, bytes]:
    try:
        assert isinstance(msg, dict)
        return Evidence.from_json(msg["evidence"]), str(msg["bundle"]).encode(), bytes.fromhex(msg["nonce"])
    except (AssertionError, ValueError, KeyError, TypeError, AttestationError):
        raise ProtocolAbort("cluster evidence message malformed", party=peer, step="cluster") from None


class Holder:
    """The key holder's two steps, for any number of joiners (request/response, no I/O)."""

    def __init__(self, me: ClusterMember) -> None:
        if me.cluster_key is None:
            raise ProtocolAbort("the key holder has no cluster key", step="cluster")
        self.me = me
        self._pending: dict[bytes, bytes] = {}  # my nonce -> the joiner's nonce

    def hello(self, nonce_joiner: bytes) -> dict[str, str]:
        """Step 2 for the joiner's nonce, with a fresh nonce of mine for step 3."""
        if not 16 <= len(nonce_joiner) <= 64:
            raise ProtocolAbort("joiner nonce malformed", step="cluster")
        mine = self.me.verifier.challenge()
        self._pending[mine] = nonce_joiner
        return _evidence_message(self.me, nonce_joiner, {"nonce": mine.hex()})

    def key(self, peer: str, msg: object) -> bytes:
        """Steps 3-4: verify the joiner's evidence; the sealed cluster key, or :data:`REFUSED`."""
        evidence, bundle, mine = _peer_evidence(msg, peer)
        theirs = self._pending.pop(mine, None)
        if theirs is None:
            raise ProtocolAbort("answer to a nonce this holder did not issue", party=peer, step="cluster")
        try:
            claims = self.me.verifier.verify(evidence, self.me.policy, nonce=mine, public_key=bundle)
        except AttestationError:
            return REFUSED  # the opaque refusal; the reason is in this enclave's log
        self.me.peers[peer] = claims
        assert self.me.cluster_key is not None
        return KeyBundle.from_bytes(bundle).seal(self.me.cluster_key, _info(mine, theirs))


class Joiner:
    """The joining member's steps: nonce, verify the holder and answer, open the key."""

    def __init__(self, me: ClusterMember) -> None:
        self.me = me
        self.nonce = me.verifier.challenge()
        self._holder_nonce: bytes | None = None

    def answer(self, holder: str, hello: object) -> dict[str, str]:
        """Step 3: verify the holder's evidence (raises if unacceptable), attest to its nonce."""
        evidence, bundle, theirs = _peer_evidence(hello, holder)
        self.me.peers[holder] = self.me.verifier.verify(evidence, self.me.policy, nonce=self.nonce,
                                                        public_key=bundle)
        self._holder_nonce = theirs
        return _evidence_message(self.me, theirs, {"nonce": theirs.hex()})

    def open(self, holder: str, sealed: bytes) -> bytes:
        if sealed == REFUSED or self._holder_nonce is None:
            raise AttestationError("the cluster refused this enclave's evidence", party=holder, step="cluster")
        self.me.cluster_key = self.me.keys.open(sealed, _info(self._holder_nonce, self.nonce))
        return self.me.cluster_key


def sync_key(session: Session, me: ClusterMember, holder: str) -> bytes:
    """Run the protocol between ``holder`` and every other party over the session's channel."""
    ch = session.channel
    if session.party == holder:
        steps = Holder(me)
        for peer in session.others:
            ch.send(peer, "cluster/evidence", json.dumps(steps.hello(bytes(ch.recv(peer, "cluster/nonce")))).encode())
            answer = bytes(ch.recv(peer, "cluster/evidence"))
            ch.send(peer, "cluster/key", REFUSED if answer == REFUSED else steps.key(peer, _loads(answer, peer)))
        assert me.cluster_key is not None
        return me.cluster_key
    joiner = Joiner(me)
    ch.send(holder, "cluster/nonce", joiner.nonce)
    try:
        hello = _loads(bytes(ch.recv(holder, "cluster/evidence")), holder)
        reply = json.dumps(joiner.answer(holder, hello)).encode()
    except AttestationError:
        ch.send(holder, "cluster/evidence", REFUSED)  # so the holder does not wait for us
        raise
    ch.send(holder, "cluster/evidence", reply)
    return joiner.open(holder, bytes(ch.recv(holder, "cluster/key")))


def _loads(raw: bytes, peer: str) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        raise ProtocolAbort("cluster message is not JSON", party=peer, step="cluster") from None


def cluster_store(me: ClusterMember, svn: int) -> SealedStore:
    """Sealed state every attested member can open (8.3-3: sync between trusted environments).

    Keys derive from the cluster key and the svn written in the blob; who may
    hold the cluster key is decided by :func:`sync_key`'s attestation, so the
    version rule is the members' policy floor rather than the platform's.
    """
    if me.cluster_key is None:
        raise ProtocolAbort("not a cluster member yet", step="cluster")
    key = me.cluster_key

    def key_for(s: int) -> bytes:
        return HKDF(hashes.SHA256(), 32, None, b"sharedml-tee-cluster-state/1" + s.to_bytes(4, "big")).derive(key)

    return SealedStore(key_for, svn)
