"""Owners' signed approvals: what a node checks before a task touches its dataset (8.3-1).

The platform keeps the approval book, but it is not trusted to keep it
honestly: a node reads its party's dataset for a job only when the task order
carries an approval of *this* job's spec, signed by a key the node's own
operator listed as one of the party's approvers. The platform never holds such
a key, so a compromised platform can delay or refuse jobs, but cannot make a
node read data for a job its owner did not approve.

Protocol (one dataset of one party, one job):

1. **Spec hash.** The job's spec as the platform stores it is put in canonical
   form — JSON with sorted keys, no whitespace, UTF-8 (:func:`canonical`) —
   and hashed with SHA-256 (:func:`spec_sha256`).
2. **Sign.** The dataset's owner fetches the spec, reads it, computes the hash
   *itself* and signs the :class:`Statement` ``{v, job_id, party, dataset,
   spec_sha256}`` with its approval key (Ed25519, RFC 8032), prefixed by the
   domain tag :data:`DOMAIN` (:func:`sign`). The private key stays on the
   owner's side (a file made by ``sharedml approval keygen``); only the
   signature, the signer's name and its public key go to the platform.
3. **Carry.** The platform stores the signed approval and hands every signed
   approval of the job to the job's nodes with each task order, together with
   the spec itself (:class:`sharedml.control.TaskOrder`).
4. **Verify** (the node, :func:`check_order`; before a step's component is
   built or a dataset opened): the order's spec hashes to the approval's
   ``spec_sha256``; the order's step, its parameters and the job's parties are
   the spec's; the dealer is not a data party; the approval names this job,
   this party and the dataset the spec gives it; the signature verifies under
   the approver key of that name in the node's config. Any failure refuses the
   task with a :class:`~sharedml.errors.PolicyDenied` naming the party, the
   step and the remedy.

Reveals: to the platform (and anyone reading its database), the signer's name,
its public key and the signature — no secret. To the other nodes of the job,
the same (they receive every approval of the job).

Security model: the platform may be malicious (forge, replay, reorder or drop
messages, rewrite the spec it shows nodes or owners). The node trusts its own
config file — written by the party's operator on the party's host — and
Ed25519. A compromised *owner key* approves anything: keep it off the
platform's host, one per owner, revoked by removing it from the node's config.
Replaying an old approval for a new job fails on the job id; showing the owner
one spec and the nodes another fails on the hash.

References: RFC 8032 (Ed25519); RFC 8785's idea of a canonical JSON form
(this module's is Python's ``json.dumps(sort_keys=True)``, which both sides run).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from sharedml.errors import ConfigError, PolicyDenied

#: Prefixed to every signed statement, so a signature means nothing elsewhere.
DOMAIN = b"sharedml/approval/v1\n"
SIGNER = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


def canonical(spec: Mapping[str, Any]) -> bytes:
    """The one byte string a spec hashes as: JSON, sorted keys, no whitespace, UTF-8."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def spec_sha256(spec: Mapping[str, Any]) -> str:
    """SHA-256 of :func:`canonical` ``spec``, hex."""
    return hashlib.sha256(canonical(spec)).hexdigest()


class Statement(BaseModel):
    """What an owner signs: this job may use this party's dataset, as this spec says."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    v: int = 1
    job_id: str = Field(min_length=1, max_length=64)
    party: str = Field(min_length=1, max_length=64)
    dataset: str = Field(min_length=1, max_length=255)
    spec_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    def message(self) -> bytes:
        return DOMAIN + json.dumps(self.model_dump(), sort_keys=True).encode()


class SignedApproval(Statement):
    """A statement with its signature (base64) and the signer's name (an approver key's)."""

    signer: str = Field(pattern=SIGNER)
    signature: str = Field(min_length=1, max_length=200)

    @property
    def statement(self) -> Statement:
        return Statement(**self.model_dump(exclude={"signer", "signature"}))


# --- keys ------------------------------------------------------------------------------


def keygen(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (Ed25519, PKCS#8 PEM, mode 0600) and ``name.pub`` in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if key_path.exists():
        raise ConfigError(f"{key_path} exists", remedy="choose another name or folder")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    pub_path.write_bytes(public_pem(key.public_key()))
    return key_path, pub_path


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private(path: str | Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read approval key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", remedy="make one: sharedml approval keygen")
    return key


def load_public(pem: bytes, where: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where} is not an Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, statement: Statement, signer: str) -> SignedApproval:
    """Step 2: the owner's signature over ``statement``."""
    signature = base64.b64encode(key.sign(statement.message())).decode("ascii")
    return SignedApproval(**statement.model_dump(), signer=signer, signature=signature)


def signature_ok(key: Ed25519PublicKey, approval: SignedApproval) -> bool:
    try:
        key.verify(base64.b64decode(approval.signature, validate=True),
                   approval.statement.message())
    except (InvalidSignature, ValueError):
        return False
    return True


# --- the node's check (step 4) ------------------------------------------------------------


class ApproverKeys:
    """The public keys a node's operator listed as its party's approvers (name -> key)."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self.keys = dict(keys)

    @classmethod
    def from_files(cls, files: Mapping[str, Path]) -> ApproverKeys:
        keys = {}
        for name, path in files.items():
            try:
                pem = Path(path).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read approver key {name!r} at {path}: {exc}") from None
            keys[name] = load_public(pem, f"approver key {name!r} ({path})")
        return cls(keys)

    def verify(self, approval: SignedApproval) -> bool:
        key = self.keys.get(approval.signer)
        return key is not None and signature_ok(key, approval)


def check_order(
    *, party: str, dataset: str, job_id: str, step_id: str, spec: Mapping[str, Any] | None,
    approvals: Sequence[SignedApproval], keys: ApproverKeys,
) -> None:
    """Step 4's signature part: a valid approval of ``spec`` for this job, party and dataset.

    The caller has checked that the order's step and parties are the spec's.
    """
    def refuse(what: str, remedy: str) -> PolicyDenied:
        return PolicyDenied(f"refused to read dataset {dataset!r} for job {job_id}: {what}",
                            party=party, step=step_id, remedy=remedy)

    if spec is None:
        raise refuse("the task order carries no job spec to check an approval against",
                     "the platform must send the spec with the order (upgrade it)")
    if not keys.keys:
        raise refuse("this node lists no approver keys",
                     "add the party's owners' public keys under 'approvers:' in the node config")
    digest = spec_sha256(spec)
    mine = [a for a in approvals if a.party == party and a.dataset == dataset]
    if not mine:
        raise refuse("no signed approval by the dataset's owner",
                     "the owner approves the job with their approval key "
                     "(sharedml approval approve ... --key)")
    for approval in mine:
        if approval.job_id == job_id and approval.spec_sha256 == digest and keys.verify(approval):
            return
    if all(a.spec_sha256 != digest or a.job_id != job_id for a in mine):
        raise refuse("the owner's approval is for another job or another spec "
                     f"(this spec's SHA-256 is {digest})",
                     "the owner approves this job's spec as the node received it")
    raise refuse("the approval's signature does not verify under any approver key of this node",
                 "the owner signs with a key listed under 'approvers:' in the node config")
