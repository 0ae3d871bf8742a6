"""A trusted cluster of enclaves: mutual attestation and cluster-key sync (8.5-1).

Runs inside each enclave, written once against the Channel seam. Two members
``a`` and ``b``:

1. each sends the other a fresh nonce from its own verifier;
2. each attests with the *peer's* nonce, binding its key bundle, and sends
   ``(evidence, bundle)``;
3. each verifies the peer's evidence against its own reference values
   (:class:`~sharedml.tee.attestation.Policy`, e.g. signer + product + the
   version floor) — one verification path, so a stale nonce, a replay, a
   debug or outdated peer is refused;
4. the key holder HPKE-seals the cluster key to the peer's attested bundle
   (``info`` binds both nonces) only if step 3 accepted the peer; otherwise it
   sends a refusal and the joiner raises.

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


def mutual_attest(session: Session, peer: str, me: ClusterMember) -> tuple[Claims, KeyBundle, bytes, bytes]:
    """Steps 1-3 with ``peer``: (peer's claims, peer's bundle, my nonce, peer's nonce)."""
    ch = session.channel
    mine = me.verifier.challenge()
    ch.send(peer, "cluster/nonce", mine)
    theirs = ch.recv(peer, "cluster/nonce")
    if not isinstance(theirs, bytes) or not 16 <= len(theirs) <= 64:
        raise ProtocolAbort("peer nonce malformed", party=peer, step="cluster")
    evidence = me.attester.attest(theirs, me.keys.bundle.to_bytes())
    ch.send(peer, "cluster/evidence", json.dumps(
        {"evidence": evidence.to_json(), "bundle": me.keys.bundle.to_bytes().decode()}).encode())
    raw = ch.recv(peer, "cluster/evidence")
    try:
        msg = json.loads(bytes(raw))
        peer_evidence, bundle = Evidence.from_json(msg["evidence"]), str(msg["bundle"]).encode()
    except (ValueError, KeyError, TypeError):
        raise ProtocolAbort("peer evidence message malformed", party=peer, step="cluster") from None
    claims = me.verifier.verify(peer_evidence, me.policy, nonce=mine, public_key=bundle)
    me.peers[peer] = claims
    return claims, KeyBundle.from_bytes(bundle), mine, theirs


def sync_key(session: Session, me: ClusterMember, holder: str) -> bytes:
    """Run steps 1-4 between ``holder`` and every other party; return the cluster key."""
    ch = session.channel
    if session.party == holder:
        if me.cluster_key is None:
            raise ProtocolAbort("the key holder has no cluster key", party=holder, step="cluster")
        for peer in session.others:
            try:
                _claims, bundle, mine, theirs = mutual_attest(session, peer, me)
            except AttestationError:
                ch.send(peer, "cluster/key", REFUSED)  # the opaque refusal; detail is in our log
                continue
            ch.send(peer, "cluster/key", bundle.seal(me.cluster_key, _info(mine, theirs)))
        return me.cluster_key
    _claims, _bundle, mine, theirs = mutual_attest(session, holder, me)
    sealed = ch.recv(holder, "cluster/key")
    if sealed == REFUSED:
        raise AttestationError("the cluster refused this enclave's evidence", party=holder, step="cluster")
    me.cluster_key = me.keys.open(bytes(sealed), _info(theirs, mine))
    return me.cluster_key


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
