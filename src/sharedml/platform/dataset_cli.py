"""``sharedml dataset list|show|register|grant|revoke``: a data owner's dataset records and
grants on the command line, through the REST API (``sdk.Client``).

The platform holds a dataset's record only (party, name, columns, rows; never rows'
values); its node reports the record, ``register`` makes the logged-in owner its owner
(adopting the node's columns and rows, or declaring none until the node reports it).
Datasets are named ``PARTY/NAME`` or ``NAME`` when one party has it; users and projects
by name. URL, token and CA are found as ``sharedml job`` finds them (``client_cli``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sharedml.errors import ConfigError
from sharedml.platform.client_cli import ca_opt, client, profile_opt, token_opt, url_opt

dataset_app = typer.Typer(help="Dataset records and who may use them (through the REST API).")

LIST_REMEDY = "'sharedml dataset list' shows the datasets you may read"


def find_dataset(c: Any, ref: str) -> dict[str, Any]:
    """The dataset ``PARTY/NAME``, or ``NAME`` if exactly one party has one of that name."""
    party, _, name = ref.rpartition("/")
    found = [d for d in c.datasets()
             if d["name"] == name and (not party or d["owner_party"] == party)]
    if not found:
        raise ConfigError(f"no dataset {ref!r} that you may read",
                          remedy=f"{LIST_REMEDY}; its owner registers it with "
                          "'sharedml dataset register NAME'")
    if len(found) > 1:
        parties = sorted(d["owner_party"] for d in found)
        raise ConfigError(f"{len(found)} parties have a dataset {name!r}: {parties}",
                          remedy=f"name one as PARTY/{name}")
    return dict(found[0])


def find_project(c: Any, name: str) -> int:
    """The id of the project ``name`` among those the caller may see."""
    for p in c.projects():
        if p["name"] == name:
            return int(p["id"])
    raise ConfigError(f"no project {name!r} that you may use",
                      remedy="check the name; an administrator creates projects and grants "
                      "you 'use' on one")


def dataset_lines(ds: dict[str, Any], grants: list[dict[str, Any]]) -> list[str]:
    """``show``'s text: the record, its columns and its grants — each grantee by name when
    the platform gives it (to the dataset's owners, admins and auditors), else by id."""
    rows = "unknown" if ds["row_count"] is None else str(ds["row_count"])
    lines = [f"dataset {ds['owner_party']}/{ds['name']} (id {ds['id']}): {rows} rows, "
             f"{len(ds['columns'])} columns"]
    lines += [f"  column {col.get('name')}: {col.get('type', '?')}" for col in ds["columns"]]
    for g in grants:
        who = g.get("username") or f"user id {g['user_id']}"
        lines.append(f"  grant {g['permission']} to {who}")
    return lines


def _user_id(c: Any, user: str) -> int:
    return int(c.user_named(user)["id"])


@dataset_app.command("list")
def list_datasets(url: str | None = url_opt, token: str | None = token_opt,
                  ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
    """The datasets you may read: PARTY/NAME, rows, columns."""
    with client(url, token, ca, profile) as c:
        for d in c.datasets():
            rows = "?" if d["row_count"] is None else d["row_count"]
            typer.echo(f"{d['owner_party']}/{d['name']}  rows {rows}  "
                       f"columns {len(d['columns'])}")


@dataset_app.command("show")
def show(dataset: str = typer.Argument(..., help="PARTY/NAME or NAME"),
         url: str | None = url_opt, token: str | None = token_opt,
         ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
    """One dataset's record: columns and types, rows, and its grants."""
    with client(url, token, ca, profile) as c:
        ds = find_dataset(c, dataset)
        for line in dataset_lines(ds, c.grants("dataset", ds["id"])):
            typer.echo(line)


@dataset_app.command("register")
def register_dataset(
    name: str = typer.Argument(..., help="the dataset's name in its node's config"),
    party: str | None = typer.Option(None, "--party", help="owning party (default: yours)"),
    project: str | None = typer.Option(None, "--project", help="project to file it under"),
    description: str = typer.Option("", "--description"),
    url: str | None = url_opt, token: str | None = token_opt,
    ca: Path | None = ca_opt, profile: str | None = profile_opt,
) -> None:
    """Own a dataset your party's node reports (its columns and rows are adopted); only
    your party's data owners may (its grants and approvals are then yours)."""
    with client(url, token, ca, profile) as c:
        owner = party or c.me().get("party")
        if not owner:
            raise ConfigError("your account belongs to no party",
                              remedy="pass --party PARTY, or ask the operator to set yours "
                              "('sharedml user set NAME --party PARTY')")
        project_id = find_project(c, project) if project else None
        ds = c.register_dataset(owner, name, [], project_id=project_id, description=description)
        source = "as its node reported it" if ds["columns"] else "no columns yet: its node " \
                 "has not reported it"
        typer.echo(f"registered {ds['owner_party']}/{ds['name']} (id {ds['id']}), {source}")


@dataset_app.command("grant")
def grant(dataset: str = typer.Argument(..., help="PARTY/NAME or NAME"),
          user: str = typer.Argument(..., help="user name"),
          permission: str = typer.Option("use", "--permission", help="use, read or manage"),
          url: str | None = url_opt, token: str | None = token_opt,
          ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
    """Let USER read, use (in jobs, still subject to your approval) or manage a dataset
    of your party; replaces USER's earlier grant on it."""
    with client(url, token, ca, profile) as c:
        ds = find_dataset(c, dataset)
        row = c.grant("dataset", ds["id"], _user_id(c, user), permission)
        typer.echo(f"{user} may {row['permission']} {ds['owner_party']}/{ds['name']}")


@dataset_app.command("revoke")
def revoke(dataset: str = typer.Argument(..., help="PARTY/NAME or NAME"),
           user: str = typer.Argument(..., help="user name"),
           url: str | None = url_opt, token: str | None = token_opt,
           ca: Path | None = ca_opt, profile: str | None = profile_opt) -> None:
    """Take back USER's grant on a dataset of your party."""
    with client(url, token, ca, profile) as c:
        ds = find_dataset(c, dataset)
        c.revoke("dataset", ds["id"], _user_id(c, user))
        typer.echo(f"{user} no longer has a grant on {ds['owner_party']}/{ds['name']}")


def register(app: typer.Typer) -> None:
    app.add_typer(dataset_app, name="dataset")
