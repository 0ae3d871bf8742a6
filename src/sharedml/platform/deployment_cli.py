"""``sharedml up`` (a deployment on one machine in one command, 8.6-3) and ``sharedml node``
(one node agent)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import typer

from sharedml.errors import ConfigError


def _parse_party(raw: str) -> tuple[str, str, Path]:
    """``PARTY=DATASET:FILE`` (or ``PARTY=FILE``: the dataset is named after the file)."""
    party, sep, rest = raw.partition("=")
    if not sep or not party or not rest:
        raise ConfigError(f"--party {raw!r}: expected PARTY=DATASET:FILE or PARTY=FILE")
    name, colon, file = rest.partition(":")
    if not colon:
        name, file = Path(rest).stem, rest
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"--party {raw!r}: no file {path}", party=party)
    return party, name, path


def _announce(directory: Path, info: dict[str, str], nodes: list[str]) -> None:
    """Where the console is, how to log in, and the admin's stored CLI login."""
    from sharedml import client_config

    root = directory.resolve()
    tokens = json.loads((root / "tokens.json").read_text(encoding="utf-8"))
    profile = f"{root.name}-admin"
    file = client_config.save(profile, client_config.Profile(info["url"], tokens["admin"], "admin",
                                                             info["ca"]))
    typer.echo(f"console: {info['url']}/console/  (log in as admin, analyst or <party>-owner; "
               f"passwords in {directory / 'passwords.json'}; HTTPS under the CA {info['ca']})")
    typer.echo(f"API docs: {info['url']}/api/v1/docs  (API tokens in {directory / 'tokens.json'})")
    typer.echo(f"owners' approval keys: {directory / 'owners'}")
    typer.echo(f"CLI: logged in as admin (profile {profile} in {file}); as another account: "
               f"sharedml login --cluster {directory} --user analyst")
    typer.echo(f"nodes: {', '.join(nodes)}  (logs in {directory / 'logs'})")


def register(app: typer.Typer) -> None:
    @app.command("up")
    def up(
        directory: Path = typer.Argument(..., help="cluster folder (made on first use)"),
        party: list[str] = typer.Option(
            [], "--party", help="PARTY=DATASET:FILE (repeat; at least two parties)"
        ),
        port: int = typer.Option(0, "--port", min=0, max=65535, help="REST API port (0: free)"),
        heartbeat: float = typer.Option(1.0, "--heartbeat", min=0.05, help="node heartbeat (s)"),
        task_timeout: float = typer.Option(30.0, "--task-timeout", min=0.5),
        max_attempts: int = typer.Option(3, "--max-attempts", min=1, max=20),
        dealer: bool = typer.Option(
            True, "--dealer/--no-dealer", help="start a dealer node (secret-shared steps need one)"
        ),
        tee: bool = typer.Option(
            False, "--tee", help="run scheme 'tee' jobs too: an enclave node with a simulated "
            "service enclave, and the platform's 'tee:' config (DIRECTORY/platform.yaml)"
        ),
    ) -> None:
        """Start the platform and one node per party on loopback (mutual TLS, new CA).

        On first use it creates DIRECTORY with the CA, certificates, node configs and
        accounts (API tokens in DIRECTORY/tokens.json); later runs start the same cluster.
        A process that crashes is started again (its jobs' steps are retried; nodes
        resume from their saved state). Ctrl-C stops every process.
        """
        from sharedml.platform.local_deployment import DeploymentSpec, LocalDeployment, prepare
        from sharedml.platform.supervisor import Supervisor

        parties: dict[str, dict[str, Path]] = {}
        for raw in party:
            name, dataset, path = _parse_party(raw)
            parties.setdefault(name, {})[dataset] = path
        if not (directory / "cluster.json").exists() and len(parties) < 2:
            raise ConfigError("a new cluster needs at least two --party options")
        info = prepare(directory, DeploymentSpec(parties, http_port=port, heartbeat_s=heartbeat,
                                              task_timeout_s=task_timeout,
                                              max_attempts=max_attempts, dealer=dealer, tee=tee))
        def interrupt(*_: object) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)  # stop the children on SIGTERM too
        with LocalDeployment(directory.resolve()) as cluster:
            cluster.start()
            _announce(directory, info, cluster.nodes)
            supervisor = Supervisor(cluster)
            try:
                while True:
                    time.sleep(0.5)
                    for name in supervisor.check():  # a crashed process comes back (8.3-5)
                        typer.echo(f"{name} exited; started it again (log {directory / 'logs'})")
            except KeyboardInterrupt:
                typer.echo("stopping")

    @app.command("node")
    def node(
        config: str = typer.Argument(..., metavar="CONFIG | init CONFIG",
                                     help="node config (YAML); 'init CONFIG' makes its keys"),
        init_config: Path | None = typer.Argument(None, hidden=True),
        dealer: bool = typer.Option(
            False, "--dealer", help="run as the dealer node (no datasets; same as 'role: dealer')"
        ),
    ) -> None:
        """Run this party's node agent: connect to the platform, run its tasks.

        With --dealer (or 'role: dealer' in the config) the node deals the correlated
        randomness of secret-shared steps: it holds no data and sees only its own
        randomness; it must run where no data party can read it.

        'sharedml node init CONFIG' creates the node's at-rest key and signing key
        (mode 0600, in the config's keys_dir) before its first start, and prints the
        public key to give the other parties. (One command with an optional 'init'
        word rather than a group: 'sharedml node CONFIG' stays as deployments use it.)"""
        if config == "init":
            _node_init(init_config)
            return
        if init_config is not None:
            raise ConfigError(f"unexpected argument {str(init_config)!r}",
                              remedy="sharedml node CONFIG, or sharedml node init CONFIG")
        _serve_node(Path(config), dealer)

    def _serve_node(config: Path, dealer: bool) -> None:
        import logging

        from sharedml.node.agent import serve

        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        serve(config, dealer=dealer)

    @app.command("node-audit")
    def node_audit(
        config: Path = typer.Argument(..., help="the node's config (YAML)"),
        resolve: str | None = typer.Option(
            None, "--resolve", help="record what you found and let the node take tasks again"),
    ) -> None:
        """What this node holds of the platform's audit log: the pinned key, the signed
        checkpoints it was sent, and any it refused (a head that went backwards or
        forked). A refusal halts the node (no new task) until resolved; exit 1 while it
        is halted. Verify the platform's log against the kept file with 'sharedml audit
        verify --checkpoints FILE' before --resolve (sharedml.node.checkpoints, steps a-d)."""
        from sharedml.node.agent import NodeConfig
        from sharedml.node.checkpoints import NodeCheckpoints

        node = NodeConfig.load(config)
        book = NodeCheckpoints(node.work_dir, node.party, node.checkpoint_pin())
        if resolve is not None:
            if not book.halted():
                raise ConfigError(f"node {node.party} has no unresolved audit alarm",
                                  remedy="run 'sharedml node-audit CONFIG' to see its state")
            book.resolve(resolve.strip() or "resolved")
        for line in book.describe():
            typer.echo(line)
        if book.halted():
            raise typer.Exit(1)

    @app.command("node-backup")
    def node_backup(
        config: Path = typer.Argument(..., help="the node's config (YAML)"),
        file: Path = typer.Argument(..., help="the sealed backup to write"),
        passphrase_file: Path | None = typer.Option(
            None, "--passphrase-file", help="first line: the passphrase (or set "
            "SHAREDML_BACKUP_PASSPHRASE)"),
    ) -> None:
        """Seal this node's model parts (and the at-rest keys that open them) under a
        passphrase."""
        from sharedml.node.agent import NodeConfig
        from sharedml.node.backup import backup_models

        node = NodeConfig.load(config)
        n = backup_models(node.party, node.work_dir, file, _secret(passphrase_file),
                          node.models_dir, node.keys_dir)
        typer.echo(f"sealed {n} model part(s) of node {node.party} into {file}")

    @app.command("node-restore")
    def node_restore(
        config: Path = typer.Argument(..., help="the node's config (YAML)"),
        file: Path = typer.Argument(..., help="a backup from 'sharedml node-backup'"),
        passphrase_file: Path | None = typer.Option(None, "--passphrase-file"),
    ) -> None:
        """Put a node's sealed model parts back into its work dir (never over a file)."""
        from sharedml.node.agent import NodeConfig
        from sharedml.node.backup import restore_models

        node = NodeConfig.load(config)
        paths = restore_models(node.party, node.work_dir, file, _secret(passphrase_file),
                               node.models_dir, node.keys_dir)
        typer.echo(f"restored {len(paths)} model part(s) into {node.work_dir}")


def _node_init(config: Path | None) -> None:
    """Create the node's keys (see :mod:`sharedml.node.keys`) and print where they are."""
    from sharedml.node.agent import NodeConfig
    from sharedml.node.keys import init_node_keys

    if config is None:
        raise ConfigError("sharedml node init needs the node's config",
                          remedy="sharedml node init node.yaml")
    node = NodeConfig.load(config)
    made = init_node_keys(node.keys_dir or node.work_dir / "keys")
    typer.echo(f"node {node.party}: {made.summary()}")


def _secret(passphrase_file: Path | None) -> str:
    from sharedml.platform.key_backup import read_secret

    secret = read_secret(passphrase_file)
    if not secret:
        raise ConfigError("no passphrase", remedy="give --passphrase-file or set "
                          "SHAREDML_BACKUP_PASSPHRASE")
    return secret
