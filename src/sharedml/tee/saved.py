"""TEE models in ``sharedml run``'s model registry: registered sealed, resolved for a later job.

Outside the enclave, in the orchestrator of a ``scheme: tee`` run
(:func:`sharedml.tee.job.run_tee_job`):

1. :func:`register_sealed` — every ``train`` step's model, as the enclave
   returned it sealed to its own identity (:mod:`sharedml.tee.enclave.saved`),
   is written to ``MODELS/enclave/<uid>.sealed`` and registered as a version
   whose one fingerprint (``enclave``) is the blob's SHA-256, with the step's
   public metrics. The parameters are in no file outside the enclave but the
   label holder's release (when every owner named it).
2. :func:`resolve_sealed` — a later spec's ``predict {model: NAME@ALIAS}`` is
   resolved to the version's uid and fingerprint (into the step's parameters,
   which the enclave checks) and its sealed blob (into the run request). A
   version trained by an MPC job has no ``enclave`` fingerprint and is refused.

Reveals: to whoever reads the models folder, the sealed blobs' sizes and
hashes and the registry's metadata (as for MPC versions).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from sharedml.components.jobspec import JobSpec
from sharedml.errors import ConfigError
from sharedml.modelpart import write_private
from sharedml.modelpart.refs import ModelRef, model_name, spec_hash
from sharedml.standalone.models import LocalRegistry
from sharedml.tee.enclave.saved import FINGERPRINT, fingerprint

__all__ = ["register_sealed", "resolve_sealed"]


def register_sealed(book: LocalRegistry, spec: JobSpec, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """Register each sealed model of a finished TEE run; what was registered."""
    made = []
    metrics = {s["id"]: s["metrics"] for s in answer["steps"]}
    for step_id, text in sorted((answer.get("sealed") or {}).items()):
        blob = base64.b64decode(text)
        uid = uuid.uuid4().hex
        (book.root / FINGERPRINT).mkdir(parents=True, exist_ok=True)
        write_private(book.root / FINGERPRINT / f"{uid}.sealed", blob)
        name = model_name(spec.name, step_id)
        version = book.register(name=name, uid=uid, job=spec.name, step=step_id,
                                spec_hash=spec_hash(spec.model_dump(mode="json")),
                                fingerprints={FINGERPRINT: fingerprint(blob)},
                                metrics={FINGERPRINT: metrics.get(step_id, {})})
        made.append({"name": name, "version": version, "uid": uid})
    return made


def resolve_sealed(spec: JobSpec, book: LocalRegistry) -> tuple[JobSpec, dict[str, str]]:
    """``spec`` with its saved models resolved, and their sealed blobs (uid -> base64)."""
    steps, blobs = [], {}
    for i, raw in enumerate(spec.steps):
        params = raw.get("predict") if isinstance(raw, dict) else None
        if isinstance(params, dict) and isinstance(params.get("model"), str):
            got = book.resolve(ModelRef.parse(params["model"]))
            if FINGERPRINT not in got.fingerprints:
                raise ConfigError(f"steps[{i}].predict: model {params['model']} was trained by an MPC job "
                                  f"(parts of {sorted(got.fingerprints)}); a TEE job scores TEE-trained models",
                                  step=f"steps[{i}]", remedy="score it with a scheme: mpc job")
            path = book.root / FINGERPRINT / f"{got.uid}.sealed"
            if not path.exists():
                raise ConfigError(f"the sealed blob of {params['model']} is missing ({path})",
                                  step=f"steps[{i}]", remedy="run the job with the models folder it was trained "
                                  "with (--models DIR)")
            blobs[got.uid] = base64.b64encode(path.read_bytes()).decode()
            raw = {**raw, "predict": {**params, "model": got.uid, "fingerprints": dict(got.fingerprints)}}
        steps.append(raw)
    return spec.model_copy(update={"steps": steps}), blobs
