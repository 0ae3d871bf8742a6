"""A node refuses a task whose owner approval is missing, forged or for another spec (8.3-1).

The node agent is real (its certificate, its config's approver keys, its
dataset registry); the platform is whoever builds the task orders — here the
test, playing a compromised platform. Every refusal happens before the step's
component is built or the dataset is touched: a spy on the node's dataset
source records every lookup.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sharedml import approvals
from sharedml.components import registry
from sharedml.control import TaskOrder
from sharedml.crypto import pki
from sharedml.errors import PolicyDenied
from sharedml.node.agent import Agent, NodeConfig, _Run
from sharedml.node.guard import check_task

PARTIES: dict[str, Any] = {"bank": {"dataset": "customers", "label": "y"},
                           "shop": {"dataset": "baskets"}}
SPEC: dict[str, Any] = {"name": "j", "parties": PARTIES, "steps": [{"describe": {}}]}


class Spy:
    """Wraps the node's dataset source and records every name looked up."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seen = inner, []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("path", "load"):
            def recorded(dataset: str, *a: Any, **kw: Any) -> Any:
                self.seen.append(dataset)
                return attr(dataset, *a, **kw)
            return recorded
        return attr


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {who: approvals.keygen(tmp_path / "keys", who) for who in ("bank-owner", "mallory")}


@pytest.fixture
def agent(tmp_path: Path, shared_data: Path, keys: dict[str, tuple[Path, Path]]) -> Iterator[Agent]:
    pki.init_ca(tmp_path / "pki")
    pki.issue(tmp_path / "pki", "bank")
    config = NodeConfig(
        party="bank", platform="127.0.0.1:1", pki_dir=tmp_path / "pki", work_dir=tmp_path / "w",
        datasets={"customers": shared_data / "breast_hetero_guest.csv"},
        approvers={"bank-owner": keys["bank-owner"][1]},
    )
    node = Agent(config)
    node._datasets = Spy(node._datasets)  # type: ignore[assignment]
    yield node
    node.close()


def order(spec: dict[str, Any], signed: list[approvals.SignedApproval], job_id: str = "job1",
          **changes: Any) -> TaskOrder:
    """The describe step's order as an honest platform makes it, with ``changes`` applied."""
    params = registry.get("describe")().parse({}, "steps.describe").model_dump(mode="json")
    fields: dict[str, Any] = dict(
        task_id="t1", job_id=job_id, step_id="describe", component="describe", params=params,
        attempt=0, ancestors=[], parties=spec["parties"], peers={"bank": "127.0.0.1:2",
        "shop": "127.0.0.1:3"}, channel_timeout_s=1.0, spec=spec, approvals=signed,
    )
    fields.update(changes)
    return TaskOrder(**fields)


def signed_by(key: Path, signer: str, spec: dict[str, Any], job_id: str = "job1",
              dataset: str = "customers") -> approvals.SignedApproval:
    statement = approvals.Statement(job_id=job_id, party="bank", dataset=dataset,
                                    spec_sha256=approvals.spec_sha256(spec))
    return approvals.sign(approvals.load_private(key), statement, signer)


def refused(agent: Agent, task: TaskOrder, match: str) -> None:
    with pytest.raises(PolicyDenied, match=match) as err:
        agent._run_step(_Run(task))
    assert err.value.party == "bank" and err.value.step == "describe"
    assert agent._datasets.seen == []  # type: ignore[attr-defined]


def test_an_owner_signed_approval_of_this_spec_passes(agent: Agent, keys: Any) -> None:
    good = signed_by(keys["bank-owner"][0], "bank-owner", SPEC)
    check_task(order(SPEC, [good]), "bank", agent._approvers)  # no exception


def test_a_missing_approval_is_refused(agent: Agent) -> None:
    refused(agent, order(SPEC, []), "no signed approval by the dataset's owner")


def test_a_forged_signature_is_refused(agent: Agent, keys: Any) -> None:
    # signed by a key the node does not list, under the owner's name
    forged = signed_by(keys["mallory"][0], "bank-owner", SPEC)
    refused(agent, order(SPEC, [forged]), "does not verify under any approver key")
    # the owner's real signature, one bit flipped
    good = signed_by(keys["bank-owner"][0], "bank-owner", SPEC)
    raw = bytearray(base64.b64decode(good.signature))
    raw[0] ^= 1
    flipped = good.model_copy(update={"signature": base64.b64encode(raw).decode()})
    refused(agent, order(SPEC, [flipped]), "does not verify under any approver key")
    # a signer name the node does not know
    unknown = signed_by(keys["mallory"][0], "mallory", SPEC)
    refused(agent, order(SPEC, [unknown]), "does not verify under any approver key")


def test_an_approval_of_another_spec_or_job_is_refused(agent: Agent, keys: Any) -> None:
    other = {**SPEC, "steps": [{"describe": {"sleep_s": 1}}]}
    of_other = signed_by(keys["bank-owner"][0], "bank-owner", other)
    refused(agent, order(SPEC, [of_other]), "for another job or another spec")
    of_other_job = signed_by(keys["bank-owner"][0], "bank-owner", SPEC, job_id="job0")
    refused(agent, order(SPEC, [of_other_job]), "for another job or another spec")
    of_other_dataset = signed_by(keys["bank-owner"][0], "bank-owner", SPEC, dataset="archive")
    refused(agent, order(SPEC, [of_other_dataset]), "no signed approval by the dataset's owner")


def test_an_order_its_spec_does_not_back_is_refused(agent: Agent, keys: Any) -> None:
    good = [signed_by(keys["bank-owner"][0], "bank-owner", SPEC)]
    refused(agent, order(SPEC, good, params={"sleep_s": 5.0}), "parameters of step 'describe'")
    refused(agent, order(SPEC, good, component="psi"), "is 'describe', not 'psi'")
    more = {**PARTIES, "eve": {"dataset": "x"}}
    refused(agent, order(SPEC, good, parties=more), "its parties differ")
    refused(agent, order(SPEC, good, dealer="shop"), "dealer 'shop' is a data party")
    refused(agent, order(SPEC, good, peers={"bank": "a:1", "eve": "b:2"}), r"peers \['eve'\]")
    no_spec = order(SPEC, good).model_copy(update={"spec": None})
    refused(agent, no_spec, "carries no spec")


def test_a_node_without_approver_keys_reads_nothing(
    tmp_path: Path, shared_data: Path, keys: Any
) -> None:
    pki.init_ca(tmp_path / "pki2")
    pki.issue(tmp_path / "pki2", "bank")
    node = Agent(NodeConfig(party="bank", platform="127.0.0.1:1", pki_dir=tmp_path / "pki2",
                            work_dir=tmp_path / "w2",
                            datasets={"customers": shared_data / "breast_hetero_guest.csv"}))
    node._datasets = Spy(node._datasets)  # type: ignore[assignment]
    try:
        good = signed_by(keys["bank-owner"][0], "bank-owner", SPEC)
        refused(node, order(SPEC, [good]), "this node lists no approver keys")
    finally:
        node.close()
