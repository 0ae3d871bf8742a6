"""Owner-signed data-use policies (9.2-4): who may use a dataset, how, and for what.

A :class:`DataPolicy` names the grantee job, the allowed algorithms and
columns, the release rules (which parties get the model and which the
scores, by their release keys; whether metrics may be released), an expiry, and the enclave
measurements or signers allowed to receive the data key. The owner signs it
with Ed25519 (:class:`SignedPolicy`).

Two places enforce it:

1. *Key release* — the provider SDK seals the data key only to an enclave
   whose verified claims :meth:`DataPolicy.admits`.
2. *Use* — the enclave checks the signature, the job, the expiry, the
   algorithm and the columns before training, and releases the model only to
   parties every contributing owner named.

The platform relays signed policies and ciphertext; it can read neither the
data nor the data keys. An owner also says what a model trained on its data
is sealed to for later scoring (``seal``: ``signer`` by default, or one
``measurement``; :func:`seal_binding`, :mod:`sharedml.tee.enclave.sealing`).

Reveals: a policy is signed, not encrypted — whoever relays it (the platform)
learns the job, columns, algorithms, recipients and expiry it names.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sharedml.errors import PolicyDenied
from sharedml.tee.attestation.base import Claims


@dataclass(frozen=True)
class DataPolicy:
    owner: str
    job: str
    algorithms: tuple[str, ...]
    columns: tuple[str, ...]
    expires_at: int  # unix seconds
    model_to: dict[str, str] = field(default_factory=dict)  # party -> release KeyBundle hex
    metrics: bool = True
    measurements: tuple[str, ...] = ()
    signers: tuple[str, ...] = ()
    scores_to: dict[str, str] = field(default_factory=dict)  # party -> release KeyBundle hex
    #: What a model trained on the data is sealed to for the registry (:mod:`sharedml.tee.enclave.sealing`):
    #: ``signer`` (default: every later build of the release key scores it, across upgrades) or
    #: ``measurement`` (only this exact build: it must be trained again after an upgrade).
    seal: str = "signer"

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> DataPolicy:
        raw = json.loads(data)
        return cls(
            owner=str(raw["owner"]),
            job=str(raw["job"]),
            algorithms=tuple(raw["algorithms"]),
            columns=tuple(raw["columns"]),
            expires_at=int(raw["expires_at"]),
            model_to={str(k): str(v) for k, v in raw["model_to"].items()},
            metrics=bool(raw["metrics"]),
            measurements=tuple(raw["measurements"]),
            signers=tuple(raw["signers"]),
            scores_to={str(k): str(v) for k, v in raw.get("scores_to", {}).items()},
            seal=str(raw.get("seal", "signer")),
        )

    def admits(self, claims: Claims) -> bool:
        """May an enclave with these verified claims receive the data key?"""
        if claims.measurement.lower() in {m.lower() for m in self.measurements}:
            return True
        return claims.signer is not None and claims.signer.lower() in {s.lower() for s in self.signers}

    def sign(self, owner_key: ed25519.Ed25519PrivateKey) -> SignedPolicy:
        body = self.to_bytes()
        pub = owner_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return SignedPolicy(body, owner_key.sign(body), pub)


@dataclass(frozen=True)
class SignedPolicy:
    body: bytes
    signature: bytes
    owner_public_key: bytes

    def to_bytes(self) -> bytes:
        return json.dumps(
            {"body": self.body.decode(), "signature": self.signature.hex(), "owner": self.owner_public_key.hex()}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPolicy:
        raw = json.loads(data)
        return cls(raw["body"].encode(), bytes.fromhex(raw["signature"]), bytes.fromhex(raw["owner"]))

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    def verify(
        self,
        *,
        job: str,
        now: dt.datetime | None = None,
        owners: dict[str, bytes] | None = None,
    ) -> DataPolicy:
        """The policy, if its signature is good, it grants ``job`` and has not expired.

        ``owners`` (party → Ed25519 public key), when given, pins who may sign.
        """
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.owner_public_key).verify(self.signature, self.body)
            policy = DataPolicy.from_bytes(self.body)
        except (InvalidSignature, ValueError, KeyError, TypeError):
            raise PolicyDenied("data policy signature or body is invalid", step="upload") from None
        if owners is not None and owners.get(policy.owner) != self.owner_public_key:
            raise PolicyDenied(f"policy not signed by the registered key of {policy.owner!r}", step="upload")
        if policy.job != job:
            raise PolicyDenied(f"policy grants job {policy.job!r}, not {job!r}", party=policy.owner, step="upload")
        if policy.seal not in ("signer", "measurement"):
            raise PolicyDenied(f"policy seals models to {policy.seal!r}", party=policy.owner, step="upload",
                               remedy="sign a policy with seal 'signer' or 'measurement'")
        when = now if now is not None else dt.datetime.now(dt.UTC)
        if when.timestamp() > policy.expires_at:
            raise PolicyDenied("data policy has expired", party=policy.owner, step="upload",
                               remedy="the owner must sign a new policy")
        return policy


def seal_binding(policies: Sequence[DataPolicy]) -> str:
    """What the job's trained models are sealed to: ``measurement`` if any owner asks for it (the
    stricter binding wins), else ``signer``."""
    return "measurement" if any(p.seal == "measurement" for p in policies) else "signer"


def release_parties(policies: Sequence[DataPolicy], what: str = "model") -> dict[str, str]:
    """Parties (and release keys) that *every* contributing owner named for ``what``
    (``model``: :attr:`DataPolicy.model_to`; ``scores``: :attr:`DataPolicy.scores_to`)."""
    if not policies:
        return {}
    rules = [p.model_to if what == "model" else p.scores_to for p in policies]
    common = dict(rules[0])
    for rule in rules[1:]:
        common = {k: v for k, v in common.items() if rule.get(k) == v}
    return common
