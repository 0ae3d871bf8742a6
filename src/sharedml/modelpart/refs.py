"""References to a model version in a job spec, and their resolution.

A batch-scoring job names the model in its ``predict`` step as ``NAME@ALIAS``
(``credit-lr@production``), ``NAME@VERSION`` (``credit-lr@3``) or a model
version's uid (32 hex digits). Before any party starts, whoever holds the
registry — the platform at submission, ``sharedml run`` from its models
folder — replaces it by the uid and every party's recorded fingerprint
(:func:`resolve_spec`), so a tag moved later does not change a submitted
job and each party can refuse a part that is not the registered one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sharedml.errors import ConfigError

__all__ = ["ENCLAVE", "ModelRef", "Resolved", "makes_model", "model_name", "resolve_spec", "spec_hash"]

#: The one fingerprint key of a version a ``scheme: tee`` job trained: its sealed blob's
#: SHA-256 (:mod:`sharedml.tee.enclave.saved`); an MPC version has one key per party.
ENCLAVE = "enclave"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_UID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ModelRef:
    """``uid``, or ``name`` with a ``version`` number or an ``alias``."""

    name: str | None = None
    version: int | None = None
    alias: str | None = None
    uid: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        text = text.strip()
        if _UID.match(text):
            return cls(uid=text)
        name, at, rest = text.partition("@")
        if not _NAME.match(name) or not at or not rest:
            raise ConfigError(f"{text!r} is not a model reference",
                              remedy="write NAME@ALIAS (credit-lr@production), NAME@VERSION "
                                     "(credit-lr@3) or a model version id")
        if rest.isdigit():
            return cls(name=name, version=int(rest))
        if not _ALIAS.match(rest):
            raise ConfigError(f"{rest!r} is not an alias (a letter, then letters, digits, - or _)")
        return cls(name=name, alias=rest)

    def __str__(self) -> str:
        if self.uid:
            return self.uid
        return f"{self.name}@{self.version if self.version is not None else self.alias}"


#: the steps whose model parts become a registered version: ``train``, and
#: ``tune`` when it retrains its best configuration (then it reports a part)
MODEL_STEPS = ("train", "tune")


def makes_model(component: str, metrics: dict[str, Any] | None) -> bool:
    """Whether a party's result of a ``component`` step reports a model part
    to register (its ``model_uid`` and ``fingerprint``)."""
    return component in MODEL_STEPS and bool(metrics) and "fingerprint" in (metrics or {})


def model_name(job: str, step: str) -> str:
    """The registered name of the model a job's train (or tune) step makes: the job's name
    (for a step called ``train``), else ``<job>.<step>``."""
    return check_name(job if step == "train" else f"{job}.{step}")


def spec_hash(spec: dict[str, Any]) -> str:
    """``sha256:<hex>`` of a job spec's canonical JSON."""
    from sharedml.modelpart.format import canonical

    return "sha256:" + hashlib.sha256(canonical(spec)).hexdigest()


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError(f"{name!r} is not a model name (letters, digits, '.', '-', '_')")
    return name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias.isdigit():
        raise ConfigError(f"{alias!r} is not an alias (a letter, then letters, digits, - or _)")
    return alias


@dataclass(frozen=True)
class Resolved:
    """A registered model version: what a predict step needs to load its parts."""

    uid: str
    name: str
    version: int
    fingerprints: dict[str, str]


def resolve_spec(spec: dict[str, Any], resolve: Callable[[ModelRef], Resolved]) -> dict[str, Any]:
    """``spec`` (raw) with every ``predict`` step's ``model`` resolved to a uid and the
    parties' fingerprints (``fingerprints``), refusing a model of other parties."""
    steps = []
    for i, raw in enumerate(spec.get("steps", [])):
        body = {k: v for k, v in raw.items() if k not in ("id", "needs")}
        params = body.get("predict")
        if len(body) == 1 and isinstance(params, dict) and isinstance(params.get("model"), str):
            got = resolve(ModelRef.parse(params["model"]))
            parties = sorted(spec.get("parties", {}))
            _same_scheme(i, params["model"], got, spec.get("scheme", "mpc"))
            if ENCLAVE not in got.fingerprints and sorted(got.fingerprints) != parties:
                raise ConfigError(
                    f"steps[{i}].predict: model {params['model']} ({got.name} version "
                    f"{got.version}) has parties {sorted(got.fingerprints)}, the job {parties}",
                    step=f"steps[{i}]", remedy="name the same parties as the training job")
            raw = {**raw, "predict": {**params, "model": got.uid,
                                      "fingerprints": dict(got.fingerprints)}}
        steps.append(raw)
    return {**spec, "steps": steps}


def _same_scheme(i: int, ref: str, got: Resolved, scheme: str) -> None:
    """A TEE job scores TEE-trained versions (a sealed blob), an MPC job MPC-trained ones (parts)."""
    trained = "tee" if ENCLAVE in got.fingerprints else "mpc"
    if (scheme == "tee") != (trained == "tee"):
        raise ConfigError(
            f"steps[{i}].predict: model {ref} ({got.name} version {got.version}) was trained by a "
            f"scheme: {trained} job; a scheme: {scheme} job cannot score it",
            step=f"steps[{i}]", remedy=f"score it with a scheme: {trained} job, or train the model "
                                       f"again with scheme: {scheme}")
