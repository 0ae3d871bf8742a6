"""``sharedml serve``: the online scoring processes and their version switch.

* ``sharedml serve gateway`` — the label holder's HTTP/JSON scoring gateway.
* ``sharedml serve node`` — a partner's serving node (gRPC, mutual TLS).
* ``sharedml serve enclave`` — the operator's scoring enclave for TEE-trained
  versions (simulator); the gateway and nodes reach it with ``--enclave
  HOST:PORT --enclave-policy FILE`` (:mod:`sharedml.serving.tee`).
* ``sharedml serve version ACTION [VERSION]`` — serve, canary, promote or
  roll back a version at a running gateway.

Each process serves its own party's sealed parts of registered model
versions: from a ``sharedml run`` models folder (``--models DIR``: versions
by ``NAME@ALIAS``, ``NAME@N`` or id, fingerprints checked against the
registry) or from a node's part store and keys (``--parts DIR --keys DIR``:
versions by id, or by ``NAME@ALIAS`` resolved by the platform's registry over
HTTPS with ``--platform URL --token-file FILE --ca CA.pem``). The node's key (0600) seals the cache and keys the audit's
id hashes. Each process keeps its state (served versions, audit log, sealed
cache) in ``--state``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

STATE_HELP = "folder for routing.json, audit.jsonl and the sealed cache"
MODELS_HELP = "a 'sharedml run' models folder (registry and each party's sealed parts)"
PARTS_HELP = "a node's part store (without --models; versions by id)"
KEYS_HELP = "the node's keys folder (with --parts)"
PLATFORM_HELP = "the platform's URL: versions by NAME@ALIAS from its registry (with --parts)"
TOKEN_HELP = "file holding an API token that may read the platform's registry"
CA_HELP = "the deployment CA (PEM) the platform's certificate is checked against"
ENCLAVE_HELP = "HOST:PORT of the scoring enclave (TEE versions; with --enclave-policy)"
ENCLAVE_POLICY_HELP = "what this party accepts as the enclave: a 'sharedml tee provider' policy file"


def _enclave(address: str | None, policy: Path | None) -> Any:
    from sharedml.errors import ConfigError
    from sharedml.serving.enclave_link import EnclaveOptions

    if address is None and policy is None:
        return None
    if address is None or policy is None:
        raise ConfigError("--enclave and --enclave-policy go together", step="serve: start",
                          remedy="name the scoring enclave and the policy it must satisfy")
    return EnclaveOptions(address, policy)


def _print_ready(what: str) -> None:
    print(what, flush=True)


def register(app: Any) -> None:
    import typer

    group = typer.Typer(help="Online joint scoring: the label holder's gateway and the "
                        "partners' serving nodes.", no_args_is_help=True)
    app.add_typer(group, name="serve")

    @group.command("gateway")
    def gateway_command(
        party: str = typer.Option(..., help="this party (the label holder)"),
        pki: Path = typer.Option(..., help="PKI folder with this party's certificate and key"),
        models: Path = typer.Option(None, help=MODELS_HELP),
        parts: Path = typer.Option(None, help=PARTS_HELP),
        keys: Path = typer.Option(None, help=KEYS_HELP),
        platform: str = typer.Option(None, help=PLATFORM_HELP),
        token_file: Path = typer.Option(None, help=TOKEN_HELP),
        ca: Path = typer.Option(None, help=CA_HELP),
        state: Path = typer.Option(..., help=STATE_HELP),
        partner: list[str] = typer.Option([], help="NAME=HOST:PORT of a partner's node"),
        features: str = typer.Option(None, help="own features: FILE.csv|.parquet, URL#TABLE "
                                     "or entrypoint:NAME (else requests carry them)"),
        id_column: str = typer.Option("id", help="id column of the feature source"),
        exclude: list[str] = typer.Option([], help="columns of the source that are not features"),
        host: str = "127.0.0.1",
        port: int = 8080,
        serve_version: str = typer.Option(None, "--serve", help="version to serve if none is"),
        timeout: float = typer.Option(1.0, help="seconds a partner has to answer"),
        max_batch: int = typer.Option(1024, help="most records per micro-batch"),
        cache_ttl: float = typer.Option(0.0, help="seconds partners' answers are cached (0: off)"),
        cache_size: int = typer.Option(100_000, help="most cached answers"),
        admin_token_file: Path = typer.Option(None, help="file holding the admin token"),
        enclave: str = typer.Option(None, help=ENCLAVE_HELP),
        enclave_policy: Path = typer.Option(None, help=ENCLAVE_POLICY_HELP),
    ) -> None:
        """Run the label holder's scoring gateway (HTTP/JSON)."""
        from sharedml.serving.run import PartSource, run_gateway

        run_gateway(party=party, pki=pki, models=PartSource(models, parts, keys, platform, token_file, ca), state=state, partners=partner,
                    features=features, id_column=id_column, exclude=tuple(exclude), host=host,
                    port=port, initial=serve_version, timeout=timeout, max_batch=max_batch,
                    cache_ttl=cache_ttl, cache_size=cache_size,
                    admin_token_file=admin_token_file, ready=_print_ready,
                    enclave=_enclave(enclave, enclave_policy))

    @group.command("node")
    def node_command(
        party: str = typer.Option(..., help="this party (a partner of the label holder)"),
        pki: Path = typer.Option(..., help="PKI folder with this party's certificate and key"),
        models: Path = typer.Option(None, help=MODELS_HELP),
        parts: Path = typer.Option(None, help=PARTS_HELP),
        keys: Path = typer.Option(None, help=KEYS_HELP),
        platform: str = typer.Option(None, help=PLATFORM_HELP),
        token_file: Path = typer.Option(None, help=TOKEN_HELP),
        ca: Path = typer.Option(None, help=CA_HELP),
        state: Path = typer.Option(..., help=STATE_HELP),
        caller: list[str] = typer.Option(..., help="label holder(s) allowed to ask"),
        features: str = typer.Option(..., help="FILE.csv|.parquet, URL#TABLE or "
                                     "entrypoint:NAME"),
        id_column: str = typer.Option("id", help="id column of the feature source"),
        exclude: list[str] = typer.Option([], help="columns of the source that are not features"),
        allow: str = typer.Option("all", help="ids to score: all, regex:P, prefix:A,B, file:F"),
        host: str = "127.0.0.1",
        port: int = 0,
        enclave: str = typer.Option(None, help=ENCLAVE_HELP),
        enclave_policy: Path = typer.Option(None, help=ENCLAVE_POLICY_HELP),
    ) -> None:
        """Run this party's serving node (gRPC, mutual TLS)."""
        from sharedml.serving.run import PartSource, run_node

        run_node(party=party, pki=pki, models=PartSource(models, parts, keys, platform, token_file, ca), state=state, callers=caller,
                 features=features, id_column=id_column, exclude=tuple(exclude), allow=allow,
                 host=host, port=port, ready=_print_ready, enclave=_enclave(enclave, enclave_policy))

    @group.command("enclave")
    def enclave_command(
        models: Path = typer.Option(..., help="the 'sharedml run' models folder of the TEE versions"),
        home: Path = typer.Option(..., help="operator's folder (processes, audit, enclave-policy.json)"),
        pki: Path = typer.Option(..., help="PKI folder: the deployment CA and the operator's 'platform' "
                                 "certificate"),
    ) -> None:
        """Run a scoring enclave for TEE versions (simulator; operator side)."""
        from sharedml.tee.serving_host import run_scoring_enclave

        run_scoring_enclave(models, home, pki, ready=_print_ready)

    @group.command("version")
    def version_command(
        action: str = typer.Argument(..., help="show, serve, canary, promote or rollback"),
        version: str = typer.Argument(None),
        url: str = typer.Option("http://127.0.0.1:8080", help="the gateway"),
        percent: int = typer.Option(10, help="canary share of requests, 0-100"),
        token_file: Path = typer.Option(None, help="file holding the admin token"),
    ) -> None:
        """Show or change the versions a running gateway serves."""
        import httpx

        headers = {}
        if token_file is not None:
            headers["authorization"] = "Bearer " + token_file.read_text().strip()
        if action == "show":
            reply = httpx.get(f"{url}/v1/versions", timeout=30)
        else:
            reply = httpx.post(f"{url}/v1/versions", headers=headers, timeout=60, json={
                "action": action, "version": version, "percent": percent})
        print(reply.text)
        if reply.status_code >= 400:
            sys.exit(1)
