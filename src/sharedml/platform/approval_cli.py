"""``sharedml approval``: a data owner's side of approving a job's use of their data (8.3-1).

The approval key is made and kept on the owner's side (``keygen``); its public
half goes into the party's node config under ``approvers:``. ``approve`` fetches
the job's spec, shows it, hashes and signs it here and sends only the
signature (:mod:`sharedml.approvals`); the nodes check it before reading data.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sharedml.platform.cli import CA, TOKEN, URL, _client

APPROVAL_ID = typer.Argument(..., help="the approval's number, first column of 'sharedml "
                             "approval list' (not the job's id: 'sharedml job approve JOB')")

approval_app = typer.Typer(help="Approve or reject jobs' use of your datasets (signed).")


def register(app: typer.Typer) -> None:
    app.add_typer(approval_app, name="approval")


@approval_app.command("keygen")
def keygen(
    name: str = typer.Argument(..., help="the key's name (the signer name nodes list)"),
    directory: Path = typer.Option(Path("."), "--dir", help="where to write NAME.key/.pub"),
) -> None:
    """Make an approval key pair: NAME.key (keep it; mode 0600) and NAME.pub (for the node)."""
    from sharedml.approvals import keygen as make

    key, pub = make(directory, name)
    typer.echo(f"wrote {key} (private, keep it on your side) and {pub}")
    typer.echo(f"add to your node's config:  approvers: {{{name}: {pub}}}")


@approval_app.command("list")
def list_approvals(
    job_id: str | None = typer.Option(None, "--job"), url: str = URL,
    token: str | None = TOKEN, ca: Path | None = CA,
) -> None:
    """Approvals you may decide or see (pending first)."""
    with _client(url, token, ca) as c:
        for a in sorted(c.approvals(job_id), key=lambda a: a["state"] != "pending"):
            typer.echo(f"{a['id']}\t{a['state']}\tjob {a['job_id']}\tdataset {a['dataset_id']}")


@approval_app.command("show")
def show(
    approval_id: int = APPROVAL_ID, url: str = URL, token: str | None = TOKEN,
    ca: Path | None = CA,
) -> None:
    """The job spec an approval is about, its SHA-256 as computed here, and the steps
    that run on your dataset with what each reveals to whom (computed here too)."""
    from sharedml.approvals import spec_sha256
    from sharedml.platform.approval_brief import brief

    with _client(url, token, ca) as c:
        about = c.approval_spec(approval_id)
    typer.echo(json.dumps(about["spec"], indent=2))
    typer.echo(f"dataset {about['party']}/{about['dataset']} of job {about['job_id']}; "
               f"spec SHA-256 {spec_sha256(about['spec'])}")
    for step in brief(about["spec"], about["party"]):
        others = ", ".join(step["with_parties"]) or "no other party"
        dealer = f" and dealer {step['dealer']}" if step["dealer"] else ""
        typer.echo(f"step {step['step']} ({step['component']}) with {others}{dealer}; "
                   f"reveals: {step['reveals']}")


@approval_app.command("approve")
def approve(
    approval_id: int = APPROVAL_ID,
    key: Path = typer.Option(..., "--key", help="your approval key (from 'approval keygen')"),
    signer: str | None = typer.Option(None, "--signer", help="key name (default: file stem)"),
    comment: str = typer.Option("", "--comment"),
    url: str = URL, token: str | None = TOKEN, ca: Path | None = CA,
) -> None:
    """Sign this job's spec with KEY and approve; only the signature is sent."""
    with _client(url, token, ca) as c:
        row = c.approve(approval_id, comment, key=key, signer=signer)
    typer.echo(f"approval {approval_id}: {row['state']} (signed by {row['signer']})")


@approval_app.command("reject")
def reject(
    approval_id: int = APPROVAL_ID, comment: str = typer.Option("", "--comment"),
    url: str = URL, token: str | None = TOKEN, ca: Path | None = CA,
) -> None:
    with _client(url, token, ca) as c:
        row = c.reject(approval_id, comment)
    typer.echo(f"approval {approval_id}: {row['state']}")
