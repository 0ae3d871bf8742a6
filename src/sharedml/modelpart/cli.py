"""``sharedml model``: the model registry, a party's parts and sealed outputs.

Two registries, one command set: with ``--models DIR`` the models folder of
``sharedml run`` (:mod:`sharedml.standalone.models`); otherwise a running
platform through the SDK (``--url``, ``--token``).

* ``list``, ``show REF``, ``tag REF ALIAS`` — versions, metadata, aliases.
* ``delete REF`` — the platform: the caller consents for the parties whose
  training datasets they own; the models folder: ``--consent PARTY`` for
  every party.
* ``export REF --party P --out FILE`` / ``import REF FILE --party P`` — a
  party's part as a signed file (:mod:`sharedml.modelpart.store`); on a node,
  ``--parts`` and ``--keys`` name its part store and keys.
* ``keys DIR`` — make a node's keys (0600); ``open FILE --keys DIR`` — read a
  sealed prediction output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from sharedml.errors import ConfigError

model_app = typer.Typer(help="Registered model versions, a party's parts, sealed outputs.")

MODELS = typer.Option(None, "--models", help="a 'sharedml run' models folder (else: the platform)")
PARTS = typer.Option(None, "--parts", help="the party's part store (a node's models_dir)")
KEYS = typer.Option(None, "--keys", help="the party's node keys (a node's keys_dir)")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _platform_options() -> tuple[Any, Any, Any]:
    from sharedml.platform.cli import CA, TOKEN, URL

    return URL, TOKEN, CA


URL, TOKEN, CA = _platform_options()


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _client(url: str, token: str | None, ca: Path | None) -> Any:
    from sharedml.platform.cli import _client as client

    return client(url, token, ca)


def _local(models: Path) -> Any:
    from sharedml.standalone.models import LocalRegistry

    if not (models / "registry.json").exists():
        raise ConfigError(f"{models} holds no registry.json", remedy="pass the --models folder "
                          "of a 'sharedml run' (default OUT/models)")
    return LocalRegistry(models)


def _version(ref: str, models: Path | None, url: str, token: str | None,
             ca: Path | None) -> dict[str, Any]:
    if models is not None:
        return dict(_local(models).show(ref))
    with _client(url, token, ca) as c:
        return dict(c.model_version(ref))


@model_app.command("list")
def list_versions(name: str | None = typer.Option(None, "--name"), models: Path | None = MODELS,
                  url: str = URL, token: str | None = TOKEN, ca: Path | None = CA) -> None:
    """Registered versions (metadata and fingerprints, never parameters)."""
    if models is not None:
        book = _local(models)
        _print([book.show(f"{n}@{v['version']}") for n, entry in book.names().items()
                if name in (None, n) for v in entry["versions"]])
        return
    with _client(url, token, ca) as c:
        _print(c.model_versions(name))


@model_app.command("show")
def show(ref: str, models: Path | None = MODELS, url: str = URL, token: str | None = TOKEN,
         ca: Path | None = CA) -> None:
    """One version: NAME@ALIAS, NAME@VERSION or its uid."""
    _print(_version(ref, models, url, token, ca))


@model_app.command("tag")
def tag(ref: str, alias: str, models: Path | None = MODELS, url: str = URL,
        token: str | None = TOKEN, ca: Path | None = CA) -> None:
    """Point ALIAS (production, candidate, ...) at the version REF (audited)."""
    if models is not None:
        got = _local(models).tag(ref, alias)
        typer.echo(f"{got.name}@{alias} -> version {got.version} ({got.uid})")
        return
    with _client(url, token, ca) as c:
        row = c.tag_model(ref, alias)
        typer.echo(f"{row['name']}@{alias} -> version {row['version']} ({row['uid']})")


@model_app.command("delete")
def delete(ref: str, consent: list[str] = typer.Option([], "--consent",
                                                       help="models folder: a consenting party"),
           models: Path | None = MODELS, url: str = URL, token: str | None = TOKEN,
           ca: Path | None = CA) -> None:
    """Delete a version once every party's owner consented."""
    if models is not None:
        got = _local(models).delete(ref, consent)
        typer.echo(f"deleted {got.name}@{got.version} ({got.uid}) and its parts in {models}")
        return
    with _client(url, token, ca) as c:
        _print(c.consent_to_delete_model(ref))


def _store(party: str, models: Path | None, parts: Path | None, keys: Path | None) -> Any:
    from sharedml.modelpart import FileNodeKeys, PartStore

    if parts is not None and keys is not None:
        return PartStore(parts, FileNodeKeys(keys), party=party)
    if models is None:
        raise ConfigError("no part store", remedy="pass --models DIR, or --parts and --keys")
    return _local(models).store(party)


@model_app.command("export")
def export(ref: str, party: str = typer.Option(..., "--party"),
           out: Path = typer.Option(..., "--out"), models: Path | None = MODELS,
           parts: Path | None = PARTS, keys: Path | None = KEYS, url: str = URL,
           token: str | None = TOKEN, ca: Path | None = CA) -> None:
    """Write PARTY's part of REF as a signed export file (mode 0600)."""
    version = _version(ref, models, url, token, ca)
    path = _store(party, models, parts, keys).export(version["uid"], out)
    typer.echo(f"exported {party}'s part of {version['name']}@{version['version']} to {path}")


@model_app.command("import")
def import_(ref: str, source: Path, party: str = typer.Option(..., "--party"),
            trust: list[Path] = typer.Option([], "--trust",
                                             help="signing.pub.pem of a node to trust"),
            models: Path | None = MODELS, parts: Path | None = PARTS, keys: Path | None = KEYS,
            url: str = URL, token: str | None = TOKEN, ca: Path | None = CA) -> None:
    """Verify an export of PARTY's part of REF and seal it into this node's store."""
    version = _version(ref, models, url, token, ca)
    part = _store(party, models, parts, keys).import_(
        source, uid=version["uid"], fingerprint=version["fingerprints"].get(party),
        trusted=[p.read_bytes() for p in trust])
    typer.echo(f"imported {party}'s part of {version['name']}@{version['version']} "
               f"({part.fingerprint})")


@model_app.command("keys")
def keys_init(directory: Path) -> None:
    """Make a node's keys in DIRECTORY: at-rest AES key and Ed25519 signing key (0600)."""
    from sharedml.modelpart import FileNodeKeys

    made = FileNodeKeys.create(directory)
    typer.echo(f"created node keys {made.key_id.hex()} in {directory}")


@model_app.command("open")
def open_output(path: Path, keys: Path = typer.Option(..., "--keys"),
                out: Path | None = typer.Option(None, "--out", help="default: stdout")) -> None:
    """Decrypt a sealed prediction output (predictions-*.csv.sealed) with the node's keys."""
    from sharedml.components.saved_models import SCORES_AAD
    from sharedml.modelpart import FileNodeKeys, write_private

    data = FileNodeKeys(keys).open(path.read_bytes(), aad=SCORES_AAD)
    if out is None:
        sys.stdout.write(data.decode("utf-8"))
    else:
        write_private(out, data)
