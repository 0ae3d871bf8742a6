"""``sharedml platform|user|audit|job``: run the platform, administer it, drive it.

- ``platform serve|backup|restore`` and ``user ...`` and ``audit ...`` work on
  the platform's database directly (``--data-dir``, ``--db-url``): they are
  the operator's tools, e.g. to create the first admin. Each change is audited
  with the actor ``cli``.
- ``job ...`` talks to a running platform through the SDK (``--url``,
  ``--token`` or ``SHAREDML_URL``/``SHAREDML_TOKEN``).

Heavy imports stay inside the commands so ``sharedml --help`` stays fast.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sharedml.errors import ConfigError

if TYPE_CHECKING:
    from sharedml.platform.service import Platform

DATA_DIR = typer.Option(
    Path(os.environ.get("SHAREDML_PLATFORM_DIR", "platform-data")),
    "--data-dir",
    help="platform data dir: SQLite db, platform key (env SHAREDML_PLATFORM_DIR)",
)
DB_URL = typer.Option(
    os.environ.get("SHAREDML_DB_URL"),
    "--db-url",
    help="database URL (default: SQLite in the data dir; env SHAREDML_DB_URL)",
)
URL = typer.Option(None, "--url", help="platform URL (default: SHAREDML_URL, then 'sharedml login')")
TOKEN = typer.Option(None, "--token", help="session or API token (default: SHAREDML_TOKEN, then "
                     "'sharedml login')")
PASSPHRASE = typer.Option(
    None, "--passphrase-file", help="a file whose first line is the backup passphrase "
    "(or set SHAREDML_BACKUP_PASSPHRASE)",
)
CA = typer.Option(
    os.environ.get("SHAREDML_CA"), "--ca",
    help="the deployment CA certificate (ca.pem) that signed the platform's (env SHAREDML_CA; "
    "default: the one 'sharedml login' stored)",
)

platform_app = typer.Typer(help="Run the model platform; back up and restore its database.")
user_app = typer.Typer(help="Platform users (directly on the database; the operator's tool).")
audit_app = typer.Typer(help="The platform's hash-chained audit log.")
job_app = typer.Typer(help="Jobs on a running platform (through the REST API).")


def register(app: typer.Typer) -> None:
    app.add_typer(platform_app, name="platform")
    app.add_typer(user_app, name="user")
    app.add_typer(audit_app, name="audit")
    app.add_typer(job_app, name="job")


def _open(data_dir: Path, db_url: str | None) -> Platform:
    from sharedml.platform.service import Platform

    return Platform.open(data_dir, db_url)


def _existing(data_dir: Path, db_url: str | None) -> Platform:
    """The platform in ``data_dir`` for a tool that reads it (backup, audit, users): a
    folder without a database is refused, never made into a new, empty platform whose
    audit log would verify with 0 entries."""
    if db_url is None and not (data_dir / "platform.db").is_file():
        raise ConfigError(
            f"no platform database in {data_dir} (no {data_dir / 'platform.db'})",
            remedy="give --data-dir: the folder 'sharedml platform serve' uses (its bundle's "
            "data/; for 'sharedml up CLUSTER', CLUSTER/platform) or --db-url; "
            "'sharedml user add' makes a new platform")
    return _open(data_dir, db_url)


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# --- platform ------------------------------------------------------------------------


@platform_app.command("serve")
def serve(
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8600, "--port", min=0, max=65535),
    certfile: Path | None = typer.Option(None, "--certfile", help="HTTPS certificate (PEM)"),
    keyfile: Path | None = typer.Option(None, "--keyfile", help="HTTPS private key (PEM)"),
    pki_dir: Path | None = typer.Option(
        None, "--pki-dir", help="deployment PKI dir holding platform.pem/.key and ca.pem (and "
        "crl.pem, the revocation list, once the CA has one): serve node agents"
    ),
    node_port: int = typer.Option(8601, "--node-port", min=0, max=65535),
    tick_s: float = typer.Option(0.5, "--tick", min=0.05, help="scheduler period (s)"),
    trusted_proxy: list[str] = typer.Option(
        [], "--trusted-proxy",
        help="a reverse proxy's address or network whose X-Forwarded-For names the client "
        "(repeatable); from any other peer the header is ignored",
    ),
    insecure_http: bool = typer.Option(
        False, "--insecure-http", help="serve the REST API as plain HTTP (logs a warning)"
    ),
    metrics_token_file: Path | None = typer.Option(
        None, "--metrics-token-file", dir_okay=False,
        help="/metrics needs 'Authorization: Bearer TOKEN', TOKEN in this file (0600)",
    ),
    metrics_listen: str | None = typer.Option(
        None, "--metrics-listen", help="serve /metrics, /healthz, /readyz on HOST:PORT (plain "
        "HTTP) instead of beside the API; the API's /metrics then answers 404",
    ),
    config_file: Path | None = typer.Option(
        None, "--config", exists=True, dir_okay=False,
        help="platform config (YAML); its 'tee:' section (enclave endpoints, the trust policy "
        "enclaves must meet) runs scheme 'tee' jobs (platform/tee_config.py)",
    ),
) -> None:
    """Serve the REST API over HTTPS (and, with --pki-dir, node agents over mutual TLS).

    The API's certificate is --certfile/--keyfile, else the deployment CA's
    'platform' certificate in --pki-dir; without either it refuses to start unless
    --insecure-http says plain HTTP is meant."""
    import logging

    import uvicorn

    from sharedml.platform.api import create_app
    from sharedml.platform.config import PlatformConfig, https_files

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tls = https_files(certfile, keyfile, pki_dir, insecure_http)
    certfile, keyfile = tls if tls else (None, None)
    from sharedml.platform.tee_config import PlatformFile

    tee = PlatformFile.load(config_file).tee if config_file is not None else None
    from sharedml.telemetry.access import MetricsAccess

    access = MetricsAccess(listen=metrics_listen, token_file=metrics_token_file)
    config = PlatformConfig(data_dir, db_url, host, port, certfile, keyfile,
                            trusted_proxies=tuple(trusted_proxy), tee=tee, metrics=access,
                            pki_dir=pki_dir)
    app = create_app(config)
    metrics_listener(app, access)
    scheduler = app.state.scheduler
    stop = threading.Event()
    nodes = None
    if pki_dir is not None:
        from sharedml.crypto import crl
        from sharedml.crypto.identity import IdentityFiles
        from sharedml.platform.audit_checkpoints import CheckpointFeed
        from sharedml.platform.nodes import NodeService

        identity = IdentityFiles(pki_dir, "platform")  # a rotated pair serves new connections
        revocation = crl.in_folder(pki_dir, identity.current().ca_pem)
        p = app.state.platform
        nodes = NodeService(
            scheduler, identity, host, node_port, revocation=revocation, metrics=app.state.metrics,
            checkpoints=CheckpointFeed(p.checkpoints, p.audit, p.clock),
        ).start()
        checks = "revocation list checked" if revocation else "no crl.pem: revocation not checked"
        typer.echo(f"node service on {nodes.address} (mutual TLS; {checks})")
    if tee is not None:
        typer.echo(f"TEE jobs on: enclave nodes attested against the 'tee:' policy of {config_file}")
    recovered = scheduler.recover()
    if recovered:
        typer.echo(f"recovered {len(recovered)} running job(s)")
    loop = threading.Thread(target=_tick, args=(scheduler, stop, tick_s, app.state.metrics.ticks),
                            daemon=True)
    loop.start()
    _publish_checkpoints(app.state.platform, stop)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            ssl_certfile=str(certfile) if certfile else None,
            ssl_keyfile=str(keyfile) if keyfile else None,
            log_level="info",
            proxy_headers=False,  # the app reads X-Forwarded-For from --trusted-proxy only
        )
    finally:
        stop.set()
        if nodes is not None:
            nodes.stop()


def metrics_listener(app: Any, access: Any) -> Any:
    """The metrics listener ``--metrics-listen`` asks for (``None`` without it); says who
    may read /metrics."""
    server = None
    if access.listen is not None:
        from sharedml.node.addresses import HostPort
        from sharedml.telemetry.http import HealthServer

        where = HostPort.parse(access.listen, "--metrics-listen")
        metrics = app.state.metrics
        server = HealthServer(where.host, where.port, metrics.registry, alive=lambda: True,
                              ready=lambda: metrics.ready()[0], token=app.state.metrics_token)
        typer.echo(f"metrics, health and readiness on http://{where.host}:{server.port}")
    token = "with the bearer token" if app.state.metrics_token else "WITHOUT a token"
    typer.echo(f"/metrics is served {token}" + (
        "" if access.token_file else " (--metrics-token-file FILE asks for one)"))
    return server


def _publish_checkpoints(platform: Any, stop: threading.Event) -> None:
    """Signed audit checkpoints while serving (issue 14 item 7)."""
    from sharedml.platform.audit_checkpoints import publish_every

    threading.Thread(target=publish_every, daemon=True,
                     args=(platform.checkpoints, platform.audit, platform.clock, stop)).start()


def _tick(scheduler: Any, stop: threading.Event, period: float, ticks: Any) -> None:
    import logging

    log = logging.getLogger("sharedml.platform")
    while not stop.wait(period):
        try:
            scheduler.tick()
            ticks.tick()  # /readyz: the loop is alive
        except Exception:  # keep the loop alive; the next tick retries
            log.exception("scheduler tick failed")


@platform_app.command("audit-key")
def audit_key_cmd(
    data_dir: Path = DATA_DIR,
    out: Path | None = typer.Option(None, "--out", help="write the PEM here (default: print it)"),
) -> None:
    """The public key the platform signs audit checkpoints with, and its fingerprint:
    send it to every node's operator, whose node.yaml pins it (audit_checkpoint_key)."""
    from sharedml.checkpoints import fingerprint
    from sharedml.platform.audit_checkpoints import audit_key

    pem = audit_key(data_dir)
    if out is None:
        typer.echo(pem, nl=False)
    else:
        out.write_text(pem, encoding="utf-8")
        typer.echo(f"wrote the platform's audit key to {out}")
    typer.echo(fingerprint(pem))


@platform_app.command("backup")
def backup_cmd(
    file: Path,
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
    passphrase_file: Path | None = PASSPHRASE,
    no_key: bool = typer.Option(False, "--no-key", help="leave the platform key out (keep "
                                "DATA_DIR/platform.key safe yourself)"),
) -> None:
    """Write every table (jobs, users, audit log, ...) to FILE as JSON lines, with the
    platform key sealed under your passphrase (--passphrase-file or
    SHAREDML_BACKUP_PASSPHRASE)."""
    from sharedml.platform import key_backup
    from sharedml.platform.store import backup

    secret = key_backup.read_secret(passphrase_file)
    if secret is None and not no_key:
        raise ConfigError("a backup holds the platform key sealed under a passphrase",
                          remedy="give --passphrase-file (or SHAREDML_BACKUP_PASSPHRASE), or "
                          "--no-key to leave the key out")
    p = _existing(data_dir, db_url)
    sealed = None if no_key or secret is None else key_backup.seal_key(data_dir, secret)
    p.audit.append("cli", "platform.backup", str(file), detail={"key": sealed is not None})
    rows = backup.backup(p.store, file, sealed)
    typer.echo(f"backed up {rows} rows to {file}"
               + ("" if sealed else " (without the platform key)"))


@platform_app.command("restore")
def restore_cmd(
    file: Path,
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
    wipe: bool = typer.Option(False, "--wipe", help="replace a non-empty database's contents"),
    passphrase_file: Path | None = PASSPHRASE,
    new_key: bool = typer.Option(False, "--new-key", help="the backup has no key and the old "
                                 "one is lost: make a new one (TOTP enrolments are lost)"),
) -> None:
    """Load FILE (from 'platform backup') into an empty database, its platform key first.

    Refuses to make a new platform key silently: the backup's (sealed) key is put
    back, or the one in DATA_DIR is kept, or --new-key says a new one is meant."""
    from sharedml.platform import key_backup
    from sharedml.platform.store import backup

    header = backup.read_header(file)
    typer.echo(key_backup.restore_key(data_dir, header.get("platform_key"),
                                      key_backup.read_secret(passphrase_file), new_key=new_key))
    p = _open(data_dir, db_url)
    rows = backup.restore(p.store, file, wipe_first=wipe)
    v = p.audit.verify()
    if not v.ok and new_key and header.get("platform_key") is None:
        # the old key made the MACs; the chain is checked by hash, the new key vouches
        v = p.audit.rekey("cli", "restored with a new platform key (--new-key)")
    typer.echo(f"restored {rows} rows from {file}; audit chain {'verifies' if v.ok else 'BROKEN'}")
    if not v.ok:
        raise typer.Exit(1)


# --- users ---------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    username: str,
    role: str = typer.Option(..., "--role", help="admin, data_owner, analyst or auditor"),
    totp: bool = typer.Option(True, "--totp/--no-totp", help="enrol a TOTP second factor"),
    party: str | None = typer.Option(
        None, "--party", help="the organisation the user acts for (its datasets)"
    ),
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
) -> None:
    """Create a user; prints the TOTP provisioning URI once.

    The password is asked for twice without echo on a terminal; otherwise it is
    the first line of standard input (``... < secret.txt``), read without a
    prompt. It is never an argument (arguments show in ``ps`` and shell history).
    """
    password = _read_password()
    user, uri = _open(data_dir, db_url).users.create(
        "cli", username, password, role, totp=totp, party=party
    )
    typer.echo(f"created user {user.username} (id {user.id}, role {user.role})")
    if uri:
        typer.echo(f"TOTP: {uri}")


def _read_password() -> str:
    """A new password: typed twice without echo on a terminal, else stdin's first line."""
    import getpass
    import sys

    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ConfigError("no password on standard input",
                              remedy="pipe it in: sharedml user add NAME --role R < file")
        return password
    password = getpass.getpass("Password: ")
    if getpass.getpass("Repeat for confirmation: ") != password:
        raise ConfigError("the two passwords differ", remedy="run the command again")
    return password


@user_app.command("list")
def user_list(data_dir: Path = DATA_DIR, db_url: str | None = DB_URL) -> None:
    for u in _existing(data_dir, db_url).users.list():
        state = "disabled" if u.disabled else ("locked" if u.locked_until else "active")
        typer.echo(f"{u.id}\t{u.username}\t{u.role}\t{u.party or '-'}\t{state}")


@user_app.command("set")
def user_set(
    username: str,
    role: str | None = typer.Option(None, "--role"),
    disable: bool | None = typer.Option(None, "--disable/--enable"),
    unlock: bool = typer.Option(False, "--unlock"),
    party: str | None = typer.Option(None, "--party", help="move the user to this party"),
    password: bool = typer.Option(False, "--password", help="set a new password, read as "
                                  "'user add' reads it (a lost one; ends their sessions)"),
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
) -> None:
    """Change a user's role or party or password, disable/enable them, or lift a lock-out."""
    p = _existing(data_dir, db_url)
    user = p.users.by_name(username)
    p.users.update("cli", user.id, role=role, disabled=disable, unlock=unlock, party=party,
                   password=_read_password() if password else None)
    typer.echo(f"updated {username}")


@user_app.command("token")
def user_token(
    username: str,
    name: str = typer.Option("cli", "--name"),
    days: int | None = typer.Option(None, "--days", min=1, max=365,
                                    help="days until it expires (default 30)"),
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
) -> None:
    """Create an API token for USERNAME (printed once) for scripts and the 'job' commands."""
    from sharedml.platform.auth import Principal

    p = _existing(data_dir, db_url)
    user = p.users.by_name(username)
    _, token = p.auth.create_token(
        Principal(user.id, user.username, user.role, "cli", 0), name, days
    )
    typer.echo(token)


# --- audit ---------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
    file: Path | None = typer.Option(None, "--file", help="verify an exported JSON-lines file"),
    head: str | None = typer.Option(
        None, "--head", help="a head hash noted earlier: the chain must still hold it"
    ),
    checkpoints: Path | None = typer.Option(
        None, "--checkpoints", help="signed checkpoints kept with 'audit checkpoint --save'"
    ),
) -> None:
    """Check the hash chain (and kept checkpoints); names the first bad entry. Exit 1 if
    it does not verify."""
    from sharedml.platform.audit import verify_lines
    from sharedml.platform.audit_checkpoints import load_kept

    pem, kept = load_kept(checkpoints) if checkpoints else ("", [])
    if file is not None:
        with file.open(encoding="utf-8") as fh:
            v = verify_lines(fh, kept, pem, head)
    else:
        v = _existing(data_dir, db_url).audit.verify(kept, pem, head)
    if v.ok:
        against = f"; {len(kept)} checkpoint(s) match" if kept else ""
        typer.echo(f"audit log OK: {v.entries} entries, head {v.head}{against}")
        return
    where = f" at entry {v.first_bad_seq}" if v.first_bad_seq is not None else ""
    typer.echo(f"audit log BROKEN{where}: {v.reason}")
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(
    save: Path = typer.Option(..., "--save", help="file of kept checkpoints (appended to)"),
    url: str = URL,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Fetch the platform's signed checkpoint of its audit log and keep it (the first
    save pins the platform's key); verify later with 'audit verify --checkpoints'."""
    from sharedml.platform.audit_checkpoints import Checkpoint, keep

    with _client(url, token, ca) as client:
        got = client.audit_checkpoint()
    c = Checkpoint.from_dict(got)
    keep(save, got["public_key"], c)
    typer.echo(f"kept checkpoint of entry {c.seq} (head {c.head}) in {save}")


@audit_app.command("export")
def audit_export(
    file: Path | None = typer.Argument(None, help="output file (default: stdout)"),
    data_dir: Path = DATA_DIR,
    db_url: str | None = DB_URL,
) -> None:
    """The chain as JSON lines (verifiable with 'audit verify --file')."""
    p = _existing(data_dir, db_url)
    lines = list(p.audit.export())
    if file is None:
        for line in lines:
            typer.echo(line)
    else:
        file.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        typer.echo(f"exported {len(lines)} entries to {file}")


# --- jobs (through the API) ------------------------------------------------------------


def _client(url: str | None, token: str | None, ca: Path | None) -> Any:
    from sharedml.platform.client_cli import client

    return client(url, token, ca)


@job_app.command("submit")
def job_submit(
    spec: Path,
    project: int | None = typer.Option(None, "--project"),
    wait: bool = typer.Option(False, "--wait", help="wait for the job to finish"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print the job id only"),
    url: str | None = URL,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """Submit the job spec in SPEC (YAML or JSON)."""
    with _client(url, token, ca) as c:
        job = c.submit(spec, project_id=project)
        typer.echo(job["id"] if quiet else f"submitted job {job['id']} ({job['state']})")
        if wait:
            job = c.wait(job["id"])
            _print(job)


@job_app.command("status")
def job_status(
    job_id: str | None = typer.Argument(None, help="a job id (default: list jobs)"),
    url: str | None = URL,
    token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    with _client(url, token, ca) as c:
        if job_id is None:
            for j in c.jobs():
                typer.echo(f"{j['id']}\t{j['state']}\t{j['progress']:.0%}\t{j['name']}")
            return
        _print({"job": c.job(job_id), "tasks": c.tasks(job_id), "result": c.result(job_id)})


@job_app.command("cancel")
def job_cancel(
    job_id: str, url: str | None = URL, token: str | None = TOKEN, ca: Path | None = CA
) -> None:
    with _client(url, token, ca) as c:
        job = c.cancel(job_id)
        typer.echo(f"job {job_id} is {job['state']}")
