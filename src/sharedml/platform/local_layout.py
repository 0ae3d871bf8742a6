"""What ``sharedml up`` lays out before anything starts: PKI, node configs, accounts.

``sharedml up DIR --party bank=bank.csv --party shop=shop.csv`` (docs/architecture.md
§5, the one-command deployment of 8.6-3) lays out::

    DIR/pki/                 a fresh deployment CA; certificates for
                             "platform", each party and "dealer" (keys 0600);
                             crl.pem, the revocation list every process checks
    DIR/platform/            the platform's data dir (SQLite, secret box)
    DIR/nodes/<party>/       node.yaml and the node's work dir; node.yaml pins
                             the platform's audit-checkpoint key by fingerprint
    DIR/nodes/dealer/        the dealer node's (role: dealer, no datasets)
    DIR/nodes/enclave/, DIR/tee/, DIR/platform.yaml
                             with ``tee=True`` (``sharedml up --tee``): the enclave
                             node's (role: enclave; it runs a simulated service
                             enclave), the simulated vendor and build key, the
                             providers' policy file (tee/policy.json), and the
                             platform's ``tee:`` config (the policy it attests with)
    DIR/owners/<party>-owner.key, .pub
                             each party's data owner's approval key (0600); the
                             public half is the party's node's only approver
    DIR/cluster.json         URLs, ports, the CA certificate, the approval keys,
                             the database URL when not SQLite
    DIR/tokens.json (0600)   API tokens of the accounts made at first start:
                             an admin, an analyst, one data owner per party;
                             they expire after ``token_days`` (7)
    DIR/passwords.json (0600) their passwords, to log in to the web console

:mod:`sharedml.platform.local_deployment` starts the processes on it. At first
start each party's datasets are registered with their owner (a user of that
party) and the analyst may use them; each job still needs every owner's
approval, signed with the owner's key in ``DIR/owners`` (``sharedml approval
approve ID --key ...``), before a node reads its data (8.3-1). On one machine
the keys sit side by side; on a real deployment each owner keeps theirs
(``sharedml approval keygen``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sharedml import approvals
from sharedml.checkpoints import fingerprint
from sharedml.crypto import crl, pki
from sharedml.errors import ConfigError

PLATFORM = "platform"
#: The dealer node's identity (certificate subject); the scheduler's default dealer.
DEALER = "dealer"
#: The enclave node's identity (``sharedml up --tee``).
ENCLAVE = "enclave"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class DeploymentSpec:
    """What to start: parties and their datasets (name -> CSV file), and the timings."""

    parties: dict[str, dict[str, Path]]
    http_port: int = 0
    node_port: int = 0
    heartbeat_s: float = 1.0
    task_timeout_s: float = 30.0
    max_attempts: int = 3
    #: Start a dealer node too (secret-shared steps need one).
    dealer: bool = True
    #: Days until the API tokens in tokens.json expire (issue 14 item 6).
    token_days: int = 7
    #: The platform's database (``None``: SQLite in DIR/platform; e.g. PostgreSQL).
    db_url: str | None = None
    #: Every party node's ``compute:`` section (``None``: in the node's process), e.g.
    #: ``{"ray": {"address": "127.0.0.1:6379"}}`` (:mod:`sharedml.scale.config`).
    compute: dict[str, Any] | None = None
    #: Run ``scheme: tee`` jobs: a simulated TEE host, the platform's ``tee:`` config and
    #: an enclave node (``role: enclave``) that keeps a service enclave running.
    tee: bool = False


def prepare(root: Path, spec: DeploymentSpec) -> dict[str, Any]:
    """Create the CA, certificates, node configs and accounts; idempotent for ``root``.

    Every dataset is checked first; if anything fails, a folder this call created
    is removed again (no half-built deployment is left to trip the next start)."""
    root = Path(root).resolve()
    info_path = root / "cluster.json"
    if info_path.exists():
        info: dict[str, Any] = json.loads(info_path.read_text())
        return info
    reserved = {PLATFORM, DEALER, ENCLAVE} & set(spec.parties)
    if reserved:
        raise ConfigError(f"party name {sorted(reserved)[0]!r} is reserved for the cluster's own "
                          "nodes", remedy="choose another party name")
    for party, datasets in spec.parties.items():
        for name, path in datasets.items():
            _check_dataset(party, name, Path(path))
    created = not root.exists()
    try:
        return _build(root, spec)
    except BaseException:
        if created:
            shutil.rmtree(root, ignore_errors=True)
        raise


def _check_dataset(party: str, name: str, path: Path) -> None:
    """Refuse a dataset the nodes could not read: missing, not UTF-8, empty, malformed."""
    from sharedml.datasets.reader import validate_file
    from sharedml.datasets.schema import Schema

    try:
        with path.open(encoding="utf-8", errors="replace", newline="") as fh:
            header = next(csv.reader(fh), [])
    except OSError as exc:
        header, problems = [], [f"cannot be read ({exc.strerror})"]
    else:
        problems = [] if header and header[0] else ["the file is empty (no header line)"]
    if not problems:  # the id column is the first one, as the nodes' registry reads it
        _, report = validate_file(path, Schema((header[0],), {}, allow_extra_columns=True))
        problems = [str(p) for p in report.problems if p.kind not in ("duplicate id", "empty id")]
        if not problems and report.rows == 0:
            problems = ["the file has a header but no rows"]
    if problems:
        raise ConfigError(
            f"dataset {name!r} of party {party!r} ({path}) cannot be used: {'; '.join(problems)}",
            remedy="give a UTF-8 CSV file with a header line and at least one row",
        )


def _build(root: Path, spec: DeploymentSpec) -> dict[str, Any]:
    """Everything :func:`prepare` makes, in ``root``."""
    info_path = root / "cluster.json"
    root.mkdir(parents=True, exist_ok=True)
    pki_dir = root / "pki"
    pki.init_ca(pki_dir)
    dealers = [DEALER] if spec.dealer else []
    enclaves = [ENCLAVE] if spec.tee else []
    for name in (PLATFORM, *spec.parties, *dealers, *enclaves):
        pki.issue(pki_dir, name)
    crl.refresh(pki_dir)  # an empty list: 'sharedml pki revoke DIR/pki NAME' applies at once
    owners = root / "owners"
    keys = {party: approvals.keygen(owners, f"{party}-owner") for party in spec.parties}
    info = {
        "url": f"https://127.0.0.1:{spec.http_port or free_port()}",
        "ca": str(pki_dir / "ca.pem"),
        "approval_keys": {party: str(key) for party, (key, _) in keys.items()},
        "node_service": f"127.0.0.1:{spec.node_port or free_port()}",
        "parties": sorted(spec.parties),
        "dealer": DEALER if spec.dealer else None,
        "enclave": ENCLAVE if spec.tee else None,
        "heartbeat_s": spec.heartbeat_s,
        "db_url": spec.db_url,
    }
    from sharedml.platform.audit_checkpoints import audit_key

    tokens, passwords = _bootstrap(root / "platform", spec)
    # every node pins the platform's checkpoint key (9.3), not the first one it is sent
    pin = fingerprint(audit_key(root / "platform"))
    for party, datasets in spec.parties.items():
        node_dir = root / "nodes" / party
        node_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "party": party,
            "platform": info["node_service"],
            "pki_dir": str(pki_dir),
            "work_dir": str(node_dir / "work"),
            "heartbeat_s": spec.heartbeat_s,
            "datasets": {name: str(Path(path).resolve()) for name, path in datasets.items()},
            "approvers": {f"{party}-owner": str(keys[party][1])},
            "audit_checkpoint_key": pin,
            **({"compute": spec.compute} if spec.compute else {}),
        }
        (node_dir / "node.yaml").write_text(json.dumps(config, indent=2))
    for dealer in dealers:
        node_dir = root / "nodes" / dealer
        node_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "party": dealer,
            "role": "dealer",
            "platform": info["node_service"],
            "pki_dir": str(pki_dir),
            "work_dir": str(node_dir / "work"),
            "heartbeat_s": spec.heartbeat_s,
            "audit_checkpoint_key": pin,
        }
        (node_dir / "node.yaml").write_text(json.dumps(config, indent=2))
    if spec.tee:
        _simulated_tee(root, info, spec.heartbeat_s, pin)
    for name, secrets_of in (("tokens.json", tokens), ("passwords.json", passwords)):
        fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(secrets_of, fh, indent=2)
    info_path.write_text(json.dumps(info, indent=2))
    return info


def _simulated_tee(root: Path, info: dict[str, Any], heartbeat_s: float, pin: str) -> None:
    """A simulated TEE host: its vendor and build key (``DIR/tee``), the platform's ``tee:``
    config (``DIR/platform.yaml``: builds of that key at svn >= 1), the enclave node's config."""
    from sharedml.tee.attestation.sim import new_signer, simulated_vendor
    from sharedml.tee.manager import ENCLAVE_PRODUCT_ID

    tee = root / "tee"
    tee.mkdir(exist_ok=True)
    simulated_vendor(tee / "vendor")
    signer = new_signer(tee / "signer.pem")
    policy = {"signer": signer, "product_id": ENCLAVE_PRODUCT_ID, "min_svn": 1, "allow_simulation": True}
    (root / "platform.yaml").write_text(json.dumps({"tee": {"policy": policy, "trust": str(tee / "vendor")}},
                                                   indent=2))
    (tee / "policy.json").write_text(json.dumps({**policy, "trust": str(tee / "vendor")}, indent=2))
    node_dir = root / "nodes" / ENCLAVE
    node_dir.mkdir(parents=True, exist_ok=True)
    config = {"party": ENCLAVE, "role": "enclave", "platform": info["node_service"],
              "pki_dir": str(root / "pki"), "work_dir": str(node_dir / "work"), "heartbeat_s": heartbeat_s,
              "audit_checkpoint_key": pin,
              "enclave": {"simulate": {"vendor": str(tee / "vendor"), "signer": str(tee / "signer.pem"),
                                       "svn": 1}}}
    (node_dir / "node.yaml").write_text(json.dumps(config, indent=2))


def _bootstrap(data_dir: Path, spec: DeploymentSpec) -> tuple[dict[str, str], dict[str, str]]:
    """First accounts (admin, analyst, one data owner per party owning its datasets)
    and the scheduler's runtime settings; returns their API tokens and passwords."""
    import secrets

    import pandas as pd

    from sharedml.platform.auth import Principal
    from sharedml.platform.service import Platform

    platform = Platform.open(data_dir, spec.db_url)
    tokens: dict[str, str] = {}
    passwords: dict[str, str] = {}
    try:
        def account(username: str, role: str, party: str | None = None) -> Principal:
            passwords[username] = secrets.token_urlsafe(18)
            user, _ = platform.users.create("sharedml up", username, passwords[username],
                                            role, totp=False, party=party)
            who = Principal(user.id, username, role, "cli", 0, party)
            _, tokens[username] = platform.auth.create_token(
                who, "local cluster", expires_days=spec.token_days)
            return who

        account("admin", "admin")
        analyst = account("analyst", "analyst")
        platform.settings.update(
            {"task_timeout_s": spec.task_timeout_s, "task_max_attempts": spec.max_attempts,
             "heartbeat_timeout_s": min(spec.task_timeout_s, 3600.0)},
            "sharedml up",
        )
        for party, datasets in spec.parties.items():
            owner = account(f"{party}-owner", "data_owner", party)
            for name, path in datasets.items():
                header = pd.read_csv(path, nrows=5)
                ds = platform.datasets.register(
                    owner, owner_party=party, name=name, row_count=None,
                    columns=[{"name": str(c), "type": str(t)} for c, t in header.dtypes.items()],
                )
                platform.grants.set(owner, analyst.user_id, "dataset", ds.id, "use")
    finally:
        platform.store.dispose()
    return tokens, passwords

