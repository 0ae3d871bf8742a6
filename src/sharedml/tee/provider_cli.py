"""``sharedml tee provider``: a data owner's commands for a TEE job on the platform (8.6-2).

Runs on the owner's own host, with its own keys (``--keys DIR``, files 0600):

* ``keygen`` — the owner's policy-signing key (Ed25519) and release key
  (X25519); prints the release key to give the other owners, who name it in
  their policies (``--model-to``/``--scores-to``) — out of band, so a platform
  cannot slip in a key of its own;
* ``upload`` — asks the platform where the job's enclave is, pins the
  certificate it presents, attests it against the owner's policy file
  (measurement or signer, product, minimum SVN, debug off; the evidence must
  bind the pinned key), signs the data-use policy and uploads the table
  encrypted to the attested key; keeps the attested key bundle for ``receipt``;
* ``status`` — attests again and shows what the enclave holds of this owner's
  (whether its upload is complete) and the job's stage;
* ``receipt`` — fetches the destruction receipt the platform stored and
  verifies its signature against the key bundle attested at upload;
* ``result`` — fetches a model or scores the platform relays sealed to this
  party and opens it with the release key.

The policy file (JSON)::

    {"signer": "<hex>", "product_id": 1, "min_svn": 1,     # or "measurements": ["<hex>", ...]
     "allow_simulation": false, "trust": null}              # trust: a simulated vendor's folder
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from sharedml.errors import ConfigError, PeerUnreachable

KEYS = typer.Option(..., "--keys", help="folder with this owner's keys (tee provider keygen)")
PLATFORM = typer.Option(..., "--platform", help="the platform's URL")
TOKEN = typer.Option(None, "--token", envvar="SHAREDML_TOKEN", help="API token (or SHAREDML_TOKEN)")
CA = typer.Option(None, "--ca", help="the platform's CA certificate (HTTPS)")
PKI = typer.Option(None, "--pki-dir", help="the party's deployment PKI folder (ca.pem, PARTY.pem, PARTY.key): "
                   "the certificate an enclave node requires of every caller (mutual TLS)")


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class OwnerKeys:
    """An owner's keys in ``--keys DIR``: ``<party>.owner.pem`` and ``<party>.release``."""

    def __init__(self, folder: Path, party: str) -> None:
        self.folder, self.party = folder, party

    def create(self) -> str:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from sharedml.tee.envelope import EnclaveKeys

        self.folder.mkdir(parents=True, exist_ok=True)
        owner = ed25519.Ed25519PrivateKey.generate()
        pem = owner.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        _write_secret(self.folder / f"{self.party}.owner.pem", pem)
        release = EnclaveKeys("X25519", signing=False)
        _write_secret(self.folder / f"{self.party}.release", release.export_release())
        return release.bundle.to_bytes().hex()

    def provider(self, client: Any, verifier: Any) -> Any:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        from sharedml.tee.envelope import EnclaveKeys
        from sharedml.tee.provider import Provider

        try:
            owner = serialization.load_pem_private_key((self.folder / f"{self.party}.owner.pem").read_bytes(), None)
            release = EnclaveKeys.release_from((self.folder / f"{self.party}.release").read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the keys of {self.party!r} in {self.folder}: {exc}",
                              party=self.party, remedy="run 'sharedml tee provider keygen' first") from None
        if not isinstance(owner, ed25519.Ed25519PrivateKey):
            raise ConfigError("the owner key is not Ed25519", party=self.party)
        return Provider(self.party, client, verifier, owner_key=owner, release_keys=release)

    def bundle_path(self, job: str) -> Path:
        return self.folder / f"{job}.{self.party}.bundle"


def read_policy(path: Path) -> tuple[Any, Any]:
    """(Policy, Verifier) from the owner's policy file."""
    from sharedml.tee.attestation.base import Policy
    from sharedml.tee.enclave.service import peer_verifier

    try:
        raw = json.loads(path.read_text())
        trust = raw.pop("trust", None)
        policy = Policy(**{**raw, "measurements": tuple(raw.get("measurements", ()))})
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot read the policy file {path}: {exc}", remedy="see 'sharedml tee provider --help'") from None
    return policy, peer_verifier(trust)


def _connect(platform: str, token: str | None, ca: str | None, job: str, party: str, keys: Path,
             policy_file: Path, pki_dir: Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """Where the job's enclave is (from the platform), a provider attested to it, and the platform client."""
    from sharedml.sdk import Client
    from sharedml.tee.enclave.client import EnclaveClient

    api = Client(platform, token, verify=ca or True)
    where = api.tee_enclave(job)
    if not where.get("address"):
        api.close()
        raise ConfigError(f"job {job} is not on an enclave yet (stage {where.get('stage')!r})", party=party,
                          step="upload", remedy="the platform places it once an attested enclave node is "
                          "online; run the command again")
    policy, verifier = read_policy(policy_file)
    client = EnclaveClient(where["address"], server_certificate=where["certificate"].encode(), tls_dir=pki_dir,
                           tls_name=party if pki_dir is not None else None).for_job(job)
    provider = OwnerKeys(keys, party).provider(client, verifier)
    try:
        provider.attest(policy)
    except PeerUnreachable as exc:
        client.close()
        api.close()
        hint = "" if pki_dir is not None else "; an enclave node requires the party's deployment certificate: pass --pki-dir"
        raise PeerUnreachable(f"{exc.args[0] if exc.args else exc}{hint}", party=party, step="attest",
                              remedy="check the enclave's address and the party's certificate") from None
    return api, provider, where


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{item!r} is not PARTY=RELEASE_KEY", remedy="e.g. --model-to bank=<hex>")
        out[name] = value
    return out


def register_provider(tee: typer.Typer) -> None:
    app = typer.Typer(help="A data owner's commands for TEE jobs: keys, upload, status, receipt, result.",
                      no_args_is_help=True)
    tee.add_typer(app, name="provider")

    @app.command("keygen")
    def keygen(party: str = typer.Option(..., "--party"), keys: Path = KEYS) -> None:
        """Make this owner's signing and release keys; print the release key to share."""
        typer.echo(OwnerKeys(keys, party).create())

    @app.command("upload")
    def upload(job: str = typer.Option(..., "--job"), party: str = typer.Option(..., "--party"),
               data: Path = typer.Option(..., "--data", exists=True, dir_okay=False),
               policy: Path = typer.Option(..., "--policy", exists=True, dir_okay=False),
               keys: Path = KEYS, platform: str = PLATFORM, token: str | None = TOKEN, ca: str | None = CA,
               pki_dir: Path | None = PKI,
               seal: str = typer.Option("signer", "--seal", help="seal a model trained on DATA to the build's "
                                        "'signer' (survives upgrades) or its 'measurement' (this build only)"),
               model_to: list[str] = typer.Option([], "--model-to", help="PARTY=RELEASE_KEY; repeatable"),
               scores_to: list[str] = typer.Option([], "--scores-to", help="PARTY=RELEASE_KEY; repeatable"),
               metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="let metrics leave")) -> None:
        """Attest the job's enclave with POLICY and upload DATA encrypted to it."""
        import pandas as pd

        api, provider, _ = _connect(platform, token, ca, job, party, keys, policy, pki_dir)
        try:
            claims = provider.claims
            grant = provider.grant(job, list(pd.read_csv(data, nrows=0).columns), model_to=_pairs(model_to),
                                   scores_to=_pairs(scores_to), metrics=metrics, measurements=[claims.measurement],
                                   seal=seal)
            info = provider.upload(data, grant)
            OwnerKeys(keys, party).bundle_path(job).write_bytes(provider.bundle.to_bytes())
        finally:
            provider.client.close()
            api.close()
        typer.echo(json.dumps({"job": job, "party": party, "rows": info["rows"], "measurement": claims.measurement}))

    @app.command("status")
    def status(job: str = typer.Option(..., "--job"), party: str = typer.Option(..., "--party"),
               policy: Path = typer.Option(..., "--policy", exists=True, dir_okay=False),
               keys: Path = KEYS, platform: str = PLATFORM, token: str | None = TOKEN, ca: str | None = CA,
               pki_dir: Path | None = PKI) -> None:
        """What the (attested) enclave holds of this owner's, and the job's stage."""
        api, provider, where = _connect(platform, token, ca, job, party, keys, policy, pki_dir)
        try:
            held = provider.client.status()
        finally:
            provider.client.close()
            api.close()
        typer.echo(json.dumps({"job": job, "stage": where["stage"], "state": held.get("state"),
                               "uploaded": party in held.get("uploads", []), "uploads": held.get("uploads", [])}))

    @app.command("receipt")
    def receipt(job: str = typer.Option(..., "--job"), party: str = typer.Option(..., "--party"),
                keys: Path = KEYS, platform: str = PLATFORM, token: str | None = TOKEN, ca: str | None = CA) -> None:
        """Fetch the job's destruction receipt and verify it against the key attested at upload."""
        from sharedml.sdk import Client
        from sharedml.tee.enclave.wipe import verify_receipt
        from sharedml.tee.envelope import KeyBundle

        with Client(platform, token, verify=ca or True) as api:
            stored = api.tee_receipt(job)
        bundle = KeyBundle.from_bytes(OwnerKeys(keys, party).bundle_path(job).read_bytes())
        body = verify_receipt(stored, bundle)
        mine = [u for u in body.get("uploads", []) if u.get("owner") == party]
        typer.echo(json.dumps({"job": body["job"], "verified": True, "destroyed_at": body["destroyed_at"],
                               "keys": body["keys"], "files_removed": body["files_removed"], "my_uploads": mine}))

    @app.command("result")
    def result(job: str = typer.Option(..., "--job"), party: str = typer.Option(..., "--party"),
               step: str = typer.Option(..., "--step"), what: str = typer.Option("model", "--what"),
               out: Path = typer.Option(..., "--out"), keys: Path = KEYS, platform: str = PLATFORM,
               token: str | None = TOKEN, ca: str | None = CA) -> None:
        """Fetch a model or scores released to this party and open it."""
        from sharedml.sdk import Client

        with Client(platform, token, verify=ca or True) as api:
            sealed = api.tee_released(job, what, step)
        provider = OwnerKeys(keys, party).provider(None, None)
        out.write_bytes(provider.open_release(sealed, job, what))
        typer.echo(json.dumps({"job": job, "step": step, "what": what, "out": str(out)}))
