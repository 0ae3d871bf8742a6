"""``scheme: tee`` job specs: the same steps as MPC jobs, run inside an enclave.

:func:`run_tee_job` is what ``sharedml run`` calls for a TEE spec. It plays
every role locally, each at its own trust boundary:

1. the *vendor* (simulated root CA, platform, TCB info, revocation list) and
   the *release engineer* (signs the enclave manifest) — in ``OUT/tee/``;
2. the *platform's manager* starts the quoting process and the enclave
   process and attests it;
3. each *provider* attests the enclave against its own policy (signer +
   product + minimum version), signs a data-use grant (every step of the
   spec; model and scores to the label holder; metrics) and uploads its
   dataset encrypted to the enclave's key;
4. the *enclave* runs the spec's steps on the joined plaintext — the same
   components as an MPC job (:mod:`sharedml.tee.enclave.steps`; what runs
   and which parameters apply: :mod:`sharedml.tee.scheme`, checked before
   any enclave starts); the label holder fetches each ``train`` step's model
   and each ``predict``/``evaluate`` step's scores, sealed to its release key;
   each trained model is registered in the models folder sealed to the
   enclave's identity, and ``predict {model: NAME@ALIAS}`` scores with one
   registered so (:mod:`sharedml.tee.saved`);
5. the manager destroys the enclave and logs the signed receipt.

``OUT/result.json`` has the same shape as the MPC runner's: per step, the
metrics and timings of each party (the enclave counts as a party); the label
holder's ``OUT/<holder>/`` holds ``model-<step>.bin`` and
``predictions-<step>.csv``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sharedml.datasets import DatasetFiles
from sharedml.errors import ConfigError
from sharedml.standalone.models import LocalRegistry
from sharedml.tee import scheme
from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, SimVendor, load_key, new_signer, signer_id
from sharedml.tee.manager import EnclaveManager, build_manifest
from sharedml.tee.provider import Provider
from sharedml.tee.saved import register_sealed, resolve_sealed

Record = Any  # (step id, component, party, seconds, metrics, artifacts) -> None


def job_roles(spec: Any) -> tuple[str, str, str]:
    """(label holder, its label as the enclave names it ``holder.label``, id column) of a TEE spec."""
    parties = spec.party_configs()
    holders = [p for p in parties.values() if p.label]
    if len(holders) != 1:
        raise ConfigError("a TEE job needs exactly one party with a label", remedy="set 'label' on one party")
    id_columns = {p.id_columns[0] for p in parties.values()}
    if len(id_columns) != 1:
        raise ConfigError("every party must use the same id column name in a TEE job")
    for name, party in parties.items():
        if party.dataset is None:
            raise ConfigError("every party of a TEE job needs a dataset", party=name)
    return holders[0].name, f"{holders[0].name}.{holders[0].label}", id_columns.pop()


def run_tee_job(spec: Any, out_dir: str | Path, *, base: str | Path | None = None,
                models: str | Path | None = None) -> dict[str, Any]:
    """Run a ``scheme: tee`` :class:`~sharedml.components.jobspec.JobSpec`; write ``result.json``.

    ``models`` (default ``OUT/models``): the registry its trained models are
    registered in, sealed, and its ``predict {model:}`` steps resolved from
    (:mod:`sharedml.tee.saved`); its ``tee-sim/`` keeps the simulated vendor,
    platform and build key, so a later run there is the same sealing identity.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    book = LocalRegistry(Path(models) if models is not None else out / "models")
    spec, sealed_models = resolve_sealed(spec, book)
    parties = spec.party_configs()
    files = DatasetFiles(Path(base) if base is not None else Path.cwd())
    steps = spec.parsed_steps()
    scheme.check_steps(steps)
    holder, label, id_column = job_roles(spec)

    home = out / "tee"
    vendor, platform, build_key = simulated_build(book.root / "tee-sim")
    backend = SimBackend.from_vendor(vendor, vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list())
    manifest = build_manifest(build_key, svn=1)
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
        release = {holder: providers[holder].release_key}
        for name, party in parties.items():
            t = time.perf_counter()
            provider = providers[name]
            provider.attest(policy)
            path = files.path(str(party.dataset), party=name)
            grant = provider.grant(spec.name, _columns(path), model_to=release, scores_to=release,
                                   signers=[policy.signer or ""])
            info = provider.upload(path, grant)
            record("upload", "upload", name, time.perf_counter() - t, {"rows": info["rows"]})
        answer = providers[holder].client.run({"steps": scheme.wire_steps(steps), "label": label, "id": id_column,
                                               "saved": sealed_models})
        collect(answer, providers[holder], spec.name, out / holder, record)
        registered = register_sealed(book, spec, answer)
    finally:
        for provider in providers.values():
            provider.client.close()
        t = time.perf_counter()
        receipt = manager.destroy(handle)
        record("destroy", "destroy", "platform", time.perf_counter() - t,
               {"files_removed": receipt.get("files_removed", 0), "receipt": bool(receipt)})
    result = {"job": spec.name, "scheme": "tee", "seconds": round(time.perf_counter() - start, 3),
              "steps": records, "models": registered}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


def simulated_build(home: Path) -> tuple[SimVendor, Path, ec.EllipticCurvePrivateKey]:
    """The simulated vendor, platform (its seal secret) and build key in ``home``, made on first use."""
    if (home / "build.key").exists():
        return SimVendor(home / "vendor"), home / "vendor" / "platforms" / "platform-1", load_key(home / "build.key")
    vendor = SimVendor.create(home / "vendor")
    platform = vendor.provision("platform-1")
    new_signer(home / "build.key")
    return vendor, platform, load_key(home / "build.key")


def _columns(path: Path) -> list[str]:
    import pandas as pd

    return list(pd.read_csv(path, nrows=0).columns)


def collect(answer: dict[str, Any], holder: Provider, job: str, out: Path, record: Record) -> None:
    """Record the enclave's per-step metrics; fetch the models and scores released to the label holder."""
    out.mkdir(parents=True, exist_ok=True)
    for step in answer["steps"]:
        artifacts: dict[str, str] = {}
        if step["id"] in answer.get("models", []):
            path = out / f"model-{step['id']}.bin"
            path.write_bytes(holder.result(job, step["id"]).to_bytes())
            artifacts["model"] = str(path)
        if step["id"] in answer.get("scores", []):
            path = out / f"predictions-{step['id']}.csv"
            holder.scores(step["id"], job).to_csv(path, index=False, float_format="%.17g")
            artifacts["predictions"] = str(path)
        record(step["id"], step["component"], "enclave", float(step.get("seconds", 0.0)), step["metrics"],
               artifacts)
