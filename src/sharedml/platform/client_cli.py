"""``sharedml login`` and ``sharedml job approve|deny|show|logs|result``: the console's flows
on the command line, through the REST API (``sdk.Client``).

``login`` stores the platform URL and an API token in the per-user config
(``client_config``, 0600): from a password (+ TOTP) it logs in, makes a
30-day API token named ``sharedml login`` and logs the session out; with
``--cluster DIR`` it takes the account's token from a ``sharedml up``
cluster's ``tokens.json``. Every ``job`` command then finds URL and token
there (``--url``/``--token``, ``SHAREDML_URL``/``SHAREDML_TOKEN`` win).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from sharedml import client_config
from sharedml.errors import ConfigError

LOGIN_TOKEN_DAYS = 30

#: The options every command on a running platform takes (``dataset_cli`` shares them).
profile_opt = typer.Option(None, "--profile", help="stored login to use")
url_opt = typer.Option(None, "--url", help="platform URL (default: the stored login)")
token_opt = typer.Option(None, "--token", help="session or API token")
ca_opt = typer.Option(None, "--ca", help="CA certificate of the platform's HTTPS")


def client(url: str | None, token: str | None, ca: Path | None,
           profile: str | None = None) -> Any:
    """An SDK client: explicit options, then the environment, then the stored profile."""
    from sharedml.sdk import Client

    url = url or os.environ.get("SHAREDML_URL")
    token = token or os.environ.get("SHAREDML_TOKEN")
    ca = ca or (Path(os.environ["SHAREDML_CA"]) if os.environ.get("SHAREDML_CA") else None)
    stored = None if (url and token) else client_config.load(profile)
    if stored is not None:
        url, token = url or stored.url, token or stored.token
        ca = ca or (Path(stored.ca) if stored.ca else None)
    if not url or not token:
        raise ConfigError("no platform URL or token",
                          remedy="run 'sharedml login', or pass --url and --token")
    return Client(url, token, verify=str(ca) if ca else True)


def _cluster_login(cluster: Path, user: str) -> client_config.Profile:
    info_file, tokens_file = cluster / "cluster.json", cluster / "tokens.json"
    if not info_file.exists():
        raise ConfigError(f"{cluster} is not a 'sharedml up' cluster (no cluster.json)")
    tokens = json.loads(tokens_file.read_text(encoding="utf-8"))
    if user not in tokens:
        raise ConfigError(f"the cluster has no account {user!r}", remedy=f"use one of {sorted(tokens)}")
    info = json.loads(info_file.read_text(encoding="utf-8"))
    party = user.removesuffix("-owner")
    key = info.get("approval_keys", {}).get(party) if user.endswith("-owner") else None
    return client_config.Profile(url=info["url"], token=tokens[user], user=user,
                                 ca=info.get("ca"), approval_key=key)


def _password_login(url: str, user: str, password: str, totp: str | None,
                    ca: Path | None) -> client_config.Profile:
    from sharedml.sdk import Client

    with Client(url, verify=str(ca) if ca else True) as c:
        c.login(user, password, totp)
        token = c.create_token("sharedml login", expires_days=LOGIN_TOKEN_DAYS)["token"]
        c.logout()
    return client_config.Profile(url=url, token=token, user=user, ca=str(ca) if ca else None)


def register(app: typer.Typer) -> None:
    from sharedml.platform.cli import job_app

    @app.command("login")
    def login(
        url: str | None = typer.Argument(None, help="platform URL, e.g. https://platform:8600"),
        user: str = typer.Option("admin", "--user", "-u", help="account name"),
        cluster: Path | None = typer.Option(
            None, "--cluster", help="a 'sharedml up' folder: take USER's token from it"),
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="read the password from standard input"),
        totp: str | None = typer.Option(None, "--totp", help="TOTP code, if enrolled"),
        ca: Path | None = typer.Option(None, "--ca", help="CA certificate of the platform's HTTPS"),
        profile: str | None = typer.Option(None, "--profile", help="profile name (default: USER)"),
    ) -> None:
        """Store the platform URL and an API token for the 'job' commands (per-user, 0600)."""
        if cluster is not None:
            stored = _cluster_login(cluster, user)
        elif url is None:
            raise ConfigError("give the platform URL or --cluster DIR")
        else:
            password = (sys.stdin.readline().rstrip("\n") if password_stdin
                        else typer.prompt(f"password for {user}", hide_input=True))
            stored = _password_login(url, user, password, totp, ca)
        file = client_config.save(profile or user, stored)
        typer.echo(f"logged in to {stored.url} as {user} (profile {profile or user} in {file})")

    def decide(job_id: str, comment: str, c: Any, key: Path | None) -> None:
        """Approve (signed with ``key``) or, without a key, deny every pending approval of
        ``job_id`` for the logged-in owner's datasets."""
        me = c.me()
        mine = {d["id"]: d for d in c.datasets() if d["owner_user_id"] == me["id"]}
        pending = [a for a in c.approvals(job_id=job_id, state="pending")
                   if a["dataset_id"] in mine]
        if not pending:
            raise ConfigError(f"no pending approval of a dataset of {me['username']!r} "
                              f"in job {job_id}",
                              remedy="check the job id and that you log in as the dataset's owner")
        for a in pending:
            row = (c.approve(a["id"], comment, key=key) if key is not None
                   else c.reject(a["id"], comment))
            ds = mine[a["dataset_id"]]
            typer.echo(f"{row['state']}: job {job_id} may{'' if key else ' not'} use "
                       f"{ds['owner_party']}/{ds['name']}")

    def approval_key(key: Path | None, profile: str | None) -> Path:
        stored = None if key else client_config.load(profile)
        found = key or (Path(stored.approval_key) if stored and stored.approval_key else None)
        if found is None:
            raise ConfigError("no approval key: the nodes read data only for a job its owner "
                              "signed (8.3-1)",
                              remedy="pass --key FILE (made by 'sharedml approval keygen'); on "
                              "an up cluster, 'sharedml login --cluster DIR --user PARTY-owner' "
                              "stores the owner's key")
        return found

    @job_app.command("approve")
    def approve(job_id: str, comment: str = typer.Option("", "--comment"),
                key: Path | None = typer.Option(
                    None, "--key", help="your approval key (default: the stored login's)"),
                url: str | None = url_opt, token: str | None = token_opt,
                ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
        """Approve this job's use of your datasets (as their owner, 8.3-1): the spec is
        hashed and signed here with your approval key; only the signature is sent."""
        signing = approval_key(key, profile)
        with client(url, token, ca, profile) as c:
            decide(job_id, comment, c, signing)

    @job_app.command("deny")
    def deny(job_id: str, reason: str = typer.Option(..., "--reason", help="why (recorded)"),
             url: str | None = url_opt, token: str | None = token_opt,
             ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
        """Refuse this job's use of your datasets; the job fails with your reason."""
        with client(url, token, ca, profile) as c:
            decide(job_id, reason, c, None)

    @job_app.command("show")
    def show(job_id: str, url: str | None = url_opt, token: str | None = token_opt,
             ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
        """The job's state, its approvals and each step's state."""
        from sharedml.platform.job_text import job_summary

        with client(url, token, ca, profile) as c:
            for line in job_summary(c.job(job_id), c.approval_status(job_id), c.tasks(job_id)):
                typer.echo(line)

    @job_app.command("logs")
    def logs(job_id: str, url: str | None = url_opt, token: str | None = token_opt,
             ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
        """The job's task events, oldest first (created, started on a node, finished)."""
        from sharedml.platform.job_text import task_events

        with client(url, token, ca, profile) as c:
            for when, task, event in task_events(c.tasks(job_id)):
                typer.echo(f"{when}  {task}  {event}")

    @job_app.command("result")
    def result(job_id: str, wait: bool = typer.Option(False, "--wait", help="until it ends"),
               timeout: float = typer.Option(900.0, "--timeout", help="seconds to wait"),
               url: str | None = url_opt, token: str | None = token_opt,
               ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
        """Each step's public metrics per party (partial while the job runs)."""
        from sharedml.platform.job_text import metric_lines

        with client(url, token, ca, profile) as c:
            job = c.wait(job_id, timeout=timeout) if wait else c.job(job_id)
            typer.echo(f"job {job_id}: {job['state']}"
                       + (f" ({job['reason']})" if job.get("reason") else ""))
            for line in metric_lines(c.result(job_id)["steps"]):
                typer.echo(line)
            if job["state"] == "failed":
                raise typer.Exit(1)
