"""The platform's side of signed approvals (:mod:`sharedml.approvals`): it checks and
carries the owners' signatures, it cannot make them.

* :func:`check_signed` — when an owner approves: the signed statement names this
  approval's job, party and dataset and the hash of the spec as stored (an early,
  clear error; the signature itself is the nodes' to check against their own
  approver keys — the platform does not know them and must not decide);
* :func:`signed_approvals` — when a task order is made: every signed approval of
  the job, for the nodes to check (step 3 of the protocol).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sharedml.approvals import SignedApproval, spec_sha256
from sharedml.errors import ConfigError
from sharedml.platform.records import get_or_404
from sharedml.platform.store.models import Approval, Dataset, Job


def check_signed(signed: SignedApproval, row: Approval, ds: Dataset, s: Session) -> None:
    """The statement names this approval's job, party and dataset and the stored spec."""
    job = get_or_404(s, Job, row.job_id, "job")
    expected = (row.job_id, ds.owner_party, ds.name, spec_sha256(json.loads(job.spec)))
    got = (signed.job_id, signed.party, signed.dataset, signed.spec_sha256)
    if got != expected:
        raise ConfigError(
            f"the signed approval is for job {got[0]}, dataset {got[1]}/{got[2]} and spec "
            f"{got[3][:12]}…, not job {expected[0]}, dataset {expected[1]}/{expected[2]} and "
            f"spec {expected[3][:12]}…",
            party=ds.owner_party,
            remedy=f"sign this approval's statement (GET /api/v1/approvals/{row.id}/spec)",
        )


def signed_approvals(s: Session, job: Job) -> list[dict[str, Any]]:
    """Inside the scheduler's transaction: every signed approval of ``job``, for its nodes."""
    rows = s.execute(
        select(Approval, Dataset).join(Dataset, Dataset.id == Approval.dataset_id)
        .where(Approval.job_id == job.id, Approval.state == "approved",
               Approval.signature.is_not(None))
    ).all()
    return [{"job_id": a.job_id, "party": d.owner_party, "dataset": d.name,
             "spec_sha256": a.spec_sha256, "signer": a.signer, "signature": a.signature}
            for a, d in rows]
