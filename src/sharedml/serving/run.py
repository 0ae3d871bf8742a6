"""Assemble and run the serving processes from their settings (the CLI's back end)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sharedml.crypto.pki import load_identity
from sharedml.errors import ConfigError
from sharedml.modelpart import FileNodeKeys, NodeKeys, PartStore
from sharedml.serving.adapters import open_adapter
from sharedml.serving.allow import AllowRule
from sharedml.serving.audit import ServingAudit
from sharedml.serving.enclave_link import EnclaveOptions
from sharedml.serving.features import load_transforms
from sharedml.serving.parts import StoreParts
from sharedml.serving.versions_source import platform_versions

AUDIT_FILE = "audit.jsonl"
log = logging.getLogger("sharedml.serving")


@dataclass(frozen=True)
class PartSource:
    """Where a serving process finds its party's parts and node keys: a
    ``sharedml run`` models folder (``models``: registry, ``<party>/parts``,
    ``<party>/keys``) or a node's part store and keys (``parts`` and ``keys``),
    versions then resolved by the platform's registry when ``platform`` (its URL,
    with ``token_file`` and the deployment CA ``ca``) is given, else by id."""

    models: Path | None = None
    parts: Path | None = None
    keys: Path | None = None
    platform: str | None = None
    token_file: Path | None = None
    ca: Path | None = None

    def tee_blobs(self) -> Path | None:
        """The folder of sealed TEE models (a models folder's ``enclave/``), if any."""
        return None if self.models is None else self.models / "enclave"

    def open(self, party: str) -> tuple[StoreParts, NodeKeys]:
        from sharedml.standalone.models import LocalRegistry

        if self.models is not None:
            if self.platform is not None:
                raise ConfigError("--models and --platform both name a registry", party=party,
                                  step="serve: start", remedy="use one of them")
            registry = LocalRegistry(self.models)
            store = registry.store(party)
            return StoreParts(store, registry), store.keys
        if self.parts is None or self.keys is None:
            raise ConfigError("no model parts to serve", party=party, step="serve: start",
                              remedy="pass --models DIR (a 'sharedml run' models folder) or "
                              "--parts DIR and --keys DIR (a node's part store and keys), "
                              "with --platform URL to name versions by NAME@ALIAS")
        keys = FileNodeKeys(self.keys)
        book = (None if self.platform is None else
                platform_versions(self.platform, self.token_file, self.ca))
        return StoreParts(PartStore(self.parts, keys, party=party), book), keys


def _audit(state: Path, keys: NodeKeys) -> ServingAudit:
    state.mkdir(parents=True, exist_ok=True)
    return ServingAudit(state / AUDIT_FILE, keys)


def parse_partners(specs: list[str]) -> dict[str, str]:
    out = {}
    for spec in specs:
        name, sep, address = spec.partition("=")
        if not sep or ":" not in address:
            raise ConfigError(f"bad partner {spec!r}", step="serve: start",
                              remedy="write --partner NAME=HOST:PORT")
        out[name] = address
    return out


def run_node(*, party: str, pki: Path, models: PartSource, state: Path, callers: list[str],
             features: str, id_column: str, exclude: tuple[str, ...], allow: str, host: str,
             port: int, ready: Callable[[str], None], enclave: EnclaveOptions | None = None) -> None:
    """Run a partner's serving node until SIGTERM or SIGINT (with ``enclave``, it also
    contributes to TEE versions: :mod:`sharedml.serving.tee_node`)."""
    from sharedml.serving.partner import PartnerNode

    load_transforms()
    parts, keys = models.open(party)
    adapter, rule, audit = open_adapter(features, id_column, party, exclude), AllowRule(allow), _audit(state, keys)
    methods = {}
    if enclave is not None:
        from sharedml.serving.tee_node import TeeContributor

        methods["Contribute"] = TeeContributor(parts, adapter, rule, audit, enclave.link(pki, party)).contribute
    node = PartnerNode(load_identity(pki, party), callers, parts, adapter, rule, audit, host, port,
                       methods=methods)
    ready(f"serving node {party} listening on {node.address}")
    stop = lambda *_: node.stop(grace=1.0)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.wait()


def run_gateway(*, party: str, pki: Path, models: PartSource, state: Path, partners: list[str],
                features: str | None, id_column: str, exclude: tuple[str, ...], host: str,
                port: int, initial: str | None, timeout: float, max_batch: int,
                cache_ttl: float, cache_size: int, admin_token_file: Path | None,
                ready: Callable[[str], None], enclave: EnclaveOptions | None = None) -> None:
    """Run the label holder's gateway under uvicorn until SIGTERM or SIGINT (with ``enclave``,
    a :class:`~sharedml.serving.tee.TeeGateway` that serves TEE versions too)."""
    import uvicorn

    from sharedml.serving.app import ScoringFastPath, create_app
    from sharedml.serving.cache import RemoteCache
    from sharedml.serving.gateway import Gateway, GatewaySettings
    from sharedml.serving.remote import PartnerClient
    from sharedml.serving.tee import TeeGateway, TeePartnerClient

    identity = load_identity(pki, party)
    load_transforms()
    parts, key = models.open(party)
    audit = _audit(state, key)
    adapter = None if features is None else open_adapter(features, id_column, party, exclude)
    token = None if admin_token_file is None else admin_token_file.read_text().strip()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    address = f"http://{host}:{sock.getsockname()[1]}"

    async def main() -> None:
        client = PartnerClient if enclave is None else TeePartnerClient
        clients = {p: client(p, a, identity) for p, a in parse_partners(partners).items()}
        args = (party, parts, clients, adapter, state, audit, key,
                GatewaySettings(timeout=timeout, max_batch=max_batch),
                RemoteCache(cache_size, cache_ttl) if cache_ttl > 0 else None)
        gateway = (Gateway(*args) if enclave is None else
                   TeeGateway(*args, link=enclave.link(pki, party), blobs=models.tee_blobs()))
        app = create_app(gateway, token, initial,
                         ready=lambda: ready(f"gateway {party} listening on {address}"))
        config = uvicorn.Config(ScoringFastPath(app, gateway), log_level="warning", access_log=False,
                                http=_http_impl(), lifespan="on")
        await uvicorn.Server(config).serve(sockets=[sock])

    _event_loop_runner()(main())


def _http_impl() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:  # a dependency; absent only in a broken install
        log.warning("httptools is not installed: the gateway falls back to h11, and a lone "
                    "request then takes ~40 ms (pip install httptools)")
        return "h11"
    return "httptools"


def _event_loop_runner() -> Callable[..., object]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run
