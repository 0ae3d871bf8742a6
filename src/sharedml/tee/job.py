"""``scheme: tee`` job specs: the same steps as MPC jobs, run inside an enclave.

:func:`run_tee_job` is what ``sharedml run`` calls for a TEE spec. It plays
every role locally, each at its own trust boundary:

1. the *vendor* (simulated root CA, platform, TCB info, revocation list) and
   the *release engineer* (signs the enclave manifest) — in ``OUT/tee/``;
2. the *platform's manager* starts the quoting process and the enclave
   process and attests it;
3. each *provider* attests the enclave against its own policy (signer +
   product + minimum version), signs a data-use grant and uploads its dataset
   encrypted to the enclave's key;
4. the *enclave* runs the steps: ``psi`` (inner join on the id column),
   ``split`` (stratified hold-out), ``train`` (``logistic_regression``; the
   TEE runs ``secureboost`` as XGBoost, the plaintext model it emulates) and
   ``evaluate`` (hold-out AUC); the model is released only to the label holder;
5. the manager destroys the enclave and logs the signed receipt.

``OUT/result.json`` has the same shape as the MPC runner's: per step, the
metrics and timings of each party (the enclave counts as a party).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.datasets import DatasetFiles
from sharedml.errors import ConfigError
from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor, signer_id
from sharedml.tee.enclave.learners import ALGORITHMS
from sharedml.tee.manager import EnclaveManager, build_manifest
from sharedml.tee.provider import Provider

SUPPORTED = ("psi", "split", "train", "evaluate")
_MODEL = {"logistic_regression": "logistic_regression", "secureboost": "xgboost"}


#: Per step (and model), the parameters the enclave honours; any other one set in the spec is refused.
_HONOURED: dict[str, frozenset[str]] = {
    "psi": frozenset({"key"}),
    "split": frozenset({"test_size", "seed", "stratify"}),
    "train:logistic_regression": frozenset({"model", "l2", "task"}),
    "train:secureboost": frozenset({"model", "task", "n_estimators", "max_depth", "n_bins", "learning_rate",
                                    "reg_lambda", "min_child_weight"}),
    "evaluate": frozenset({"metrics", "on"}),
}


def check_step(step: Any) -> None:
    """Refuse a step, or a parameter of it, that the TEE scheme would otherwise ignore."""
    if step.component not in SUPPORTED:
        raise ConfigError(f"step {step.id!r} ({step.component}) is not available in the TEE scheme",
                          step=step.id, remedy=f"use {', '.join(SUPPORTED)}")
    params = step.params
    key = f"train:{params.model}" if step.component == "train" else step.component
    if key not in _HONOURED:
        raise ConfigError(f"model {params.model!r} is not available in the TEE scheme", step=step.id,
                          remedy=f"use one of {sorted(_MODEL)}")
    ignored = sorted(set(params.model_fields_set) - _HONOURED[key])
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} do(es) not apply to {key} in the TEE scheme", step=step.id,
                          remedy="remove them; the enclave trains the plaintext model on the joined data")
    problems = {
        "split": lambda: params.stratify is False and "the TEE split is always stratified on the label",
        "evaluate": lambda: (params.on != "test" and "evaluate runs on the test rows") or (
            params.metrics not in (None, ["auc"]) and "the TEE scheme reports only 'auc' so far"),
        "train:logistic_regression": lambda: params.task == "regression" and "classification only",
        "train:secureboost": lambda: params.task == "regression" and "classification only",
    }
    problem = problems.get(key, lambda: False)()
    if problem:
        raise ConfigError(f"{key}: {problem}", step=step.id)


def _train_request(params: Any, split: dict[str, Any], label: str, id_column: str) -> dict[str, Any]:
    model = params.model
    if model not in _MODEL:
        raise ConfigError(f"model {model!r} is not available in the TEE scheme",
                          step="train", remedy=f"use one of {sorted(_MODEL)}")
    extra: dict[str, Any] = {}
    if model == "secureboost":
        for ours, theirs in (("n_estimators", "n_estimators"), ("max_depth", "max_depth"),
                             ("n_bins", "max_bin"), ("learning_rate", "learning_rate"),
                             ("reg_lambda", "reg_lambda"), ("min_child_weight", "min_child_weight")):
            if getattr(params, ours) is not None:
                extra[theirs] = getattr(params, ours)
    elif params.l2:
        extra["C"] = 1.0 / params.l2
    return {"algorithm": _MODEL[model], "label": label, "id": id_column, "params": extra, **split}


def run_tee_job(spec: Any, out_dir: str | Path, *, base: str | Path | None = None) -> dict[str, Any]:
    """Run a ``scheme: tee`` :class:`~sharedml.components.jobspec.JobSpec`; write ``result.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    parties = spec.party_configs()
    files = DatasetFiles(Path(base) if base is not None else Path.cwd())
    steps = spec.parsed_steps()
    for s in steps:
        check_step(s)
    holders = [p for p in parties.values() if p.label]
    if len(holders) != 1:
        raise ConfigError("a TEE job needs exactly one party with a label", remedy="set 'label' on one party")
    holder = holders[0]
    id_columns = {p.id_columns[0] for p in parties.values()}
    if len(id_columns) != 1:
        raise ConfigError("every party must use the same id column name in a TEE job")
    id_column = id_columns.pop()

    home = out / "tee"
    vendor = SimVendor.create(home / "vendor")
    platform = vendor.provision("platform-1")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    manifest = build_manifest(ec.generate_private_key(ec.SECP384R1()), svn=1)
    policy = Policy(signer=signer_id(manifest.signer_public_key).hex(), product_id=1, min_svn=1,
                    allow_simulation=True)
    manager = EnclaveManager(home / "platform", platform, verifier=Verifier([backend]))
    records: list[dict[str, Any]] = []

    def record(step_id: str, component: str, party: str, seconds: float, metrics: dict[str, Any],
               artifacts: dict[str, str] | None = None) -> None:
        entry = next((r for r in records if r["id"] == step_id), None)
        if entry is None:
            entry = {"id": step_id, "component": component, "parties": {}}
            records.append(entry)
        entry["parties"][party] = {"seconds": round(seconds, 4), "metrics": metrics, "artifacts": artifacts or {}}

    t = time.perf_counter()
    handle = manager.create(spec.name, manifest)
    providers: dict[str, Provider] = {}
    try:
        claims = manager.verify(handle, policy)
        record("enclave", "enclave", "platform", time.perf_counter() - t,
               {"measurement": claims.measurement, "svn": claims.svn})
        providers = {name: Provider(name, manager.client(handle), Verifier([backend])) for name in parties}
        release_to = {holder.name: providers[holder.name].release_key}
        sid = policy.signer or ""
        for name, party in parties.items():
            if party.dataset is None:
                raise ConfigError("every party of a TEE job needs a dataset", party=name)
            t = time.perf_counter()
            provider = providers[name]
            provider.attest(policy)
            import pandas as pd

            path = files.path(party.dataset, party=name)
            columns = list(pd.read_csv(path, nrows=0).columns)
            grant = provider.grant(spec.name, columns, algorithms=ALGORITHMS, model_to=release_to, signers=[sid])
            info = provider.upload(path, grant)
            record("upload", "upload", name, time.perf_counter() - t, {"rows": info["rows"]})
        _run_steps(steps, providers[holder.name], spec.name, f"{holder.name}.{holder.label}", id_column,
                   out, record)
    finally:
        for provider in providers.values():
            provider.client.close()
        t = time.perf_counter()
        receipt = manager.destroy(handle)
        record("destroy", "destroy", "platform", time.perf_counter() - t,
               {"files_removed": receipt.get("files_removed", 0), "receipt": bool(receipt)})
    result = {"job": spec.name, "scheme": "tee", "seconds": round(time.perf_counter() - start, 3),
              "steps": records}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def _run_steps(steps: list[Any], holder: Provider, job: str, label: str, id_column: str, out: Path,
               record: Any) -> None:
    split: dict[str, Any] = {"test_size": 0.0, "seed": 0}
    last_metrics: dict[str, Any] = {}
    for step in steps:
        t = time.perf_counter()
        if step.component == "psi":
            record(step.id, "psi", "enclave", 0.0, {"method": "inner join on id inside the enclave"})
        elif step.component == "split":
            split = {"test_size": step.params.test_size, "seed": step.params.seed}
            record(step.id, "split", "enclave", 0.0, dict(split))
        elif step.component == "train":
            last_metrics = holder.client.train(_train_request(step.params, split, label, id_column))
            model = holder.result(job)
            path = out / holder.name / f"model-{step.id}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(model.to_bytes())
            record(step.id, "train", "enclave", time.perf_counter() - t,
                   {"model": model.kind, "features": len(model.features), "rows": last_metrics.get("rows")},
                   {"model": str(path)})
        elif step.component == "evaluate":
            on = "test" if "test_auc" in last_metrics else "train"
            record(step.id, "evaluate", "enclave", 0.0, {"auc": last_metrics.get(f"{on}_auc"), "on": on})
