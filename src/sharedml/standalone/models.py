"""``sharedml run``'s model registry: a models folder shared by the run's parties.

Without a platform, ``sharedml run --models DIR`` (default ``OUT/models``)
keeps, per party, ``DIR/<party>/parts/`` (that party's sealed model parts)
and ``DIR/<party>/keys/`` (its node keys, mode 0600), and for the run as a
whole ``DIR/registry.json``: the registered versions and aliases — metadata
and fingerprints, never parameters — with an append-only, hash-chained log
of every change (``register``, ``tag``, ``delete``), as the platform's
registry keeps in its audit log.

* Every successful ``train`` step registers a version: name (the job's name,
  or ``<job>.<step>`` for a step not called ``train``), version number
  (1, 2, ... per name), uid, job, step, spec hash, parties, each party's part
  fingerprint, public metrics, creator and time. Versions are immutable.
* Aliases (``production``, ``candidate``, ...) point at one version of a
  name and move by :meth:`LocalRegistry.tag`.
* :meth:`LocalRegistry.delete` needs the consent of every party of the
  version and removes its record and each party's part in the folder.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
from pathlib import Path
from typing import Any

from sharedml.components.jobspec import JobSpec
from sharedml.errors import ConfigError, PolicyDenied
from sharedml.modelpart import FileNodeKeys, PartStore, write_private
from sharedml.modelpart.format import canonical
from sharedml.modelpart.refs import (
    MODEL_STEPS,
    ModelRef,
    Resolved,
    check_alias,
    check_name,
    makes_model,
    model_name,
    resolve_spec,
    spec_hash,
)

__all__ = ["LocalRegistry", "model_name", "register_models", "resolve_models"]

_GENESIS = "0" * 64


class LocalRegistry:
    """The registry of one models folder (see the module docstring)."""

    def __init__(self, root: Path, now: Any = None) -> None:
        self.root = Path(root)
        self.path = self.root / "registry.json"
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    # -- the parties' stores ------------------------------------------------------
    def store(self, party: str) -> PartStore:
        """``party``'s part store in this folder (its keys made on first use)."""
        keys = FileNodeKeys.open_or_create(self.root / party / "keys")
        return PartStore(self.root / party / "parts", keys, party=party)

    # -- reading ------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"format": "sharedml.local-registry", "version": 1, "models": {}, "log": []}
        doc: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        write_private(self.path, json.dumps(doc, indent=1).encode("utf-8"))

    def names(self) -> dict[str, Any]:
        """Every name's versions and aliases."""
        models: dict[str, Any] = self._read()["models"]
        return models

    def show(self, ref: str) -> dict[str, Any]:
        """One version's record (by NAME@ALIAS, NAME@VERSION or uid)."""
        got = self.resolve(ModelRef.parse(ref))
        return dict(self._version(self._read(), got.name, got.version))

    def resolve(self, ref: ModelRef) -> Resolved:
        doc = self._read()
        for name, entry in doc["models"].items():
            if ref.name not in (None, name):
                continue
            version = ref.version
            if ref.alias is not None:
                version = entry["aliases"].get(ref.alias)
                if version is None:
                    raise ConfigError(f"model {name} has no alias {ref.alias!r}",
                                      remedy=f"its aliases: {sorted(entry['aliases'])}; "
                                      f"set one with 'sharedml model tag {name}@N {ref.alias}'")
            for v in entry["versions"]:
                if v["version"] == version or v["uid"] == ref.uid:
                    return Resolved(v["uid"], name, v["version"], dict(v["fingerprints"]))
        raise ConfigError(f"no registered model {ref} in {self.path}",
                          remedy="list them with 'sharedml model list --models DIR'")

    def resolve_text(self, ref: str) -> Resolved:
        return self.resolve(ModelRef.parse(ref))

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._read()["log"]
        return entries

    def verify_log(self) -> int:
        """Check the log's hash chain; the number of entries (a ConfigError names a bad one)."""
        prev = _GENESIS
        for i, entry in enumerate(self.log()):
            body = {k: v for k, v in entry.items() if k != "hash"}
            if entry.get("prev") != prev or _hash(prev, body) != entry.get("hash"):
                raise ConfigError(f"registry log entry {i} was altered, removed or reordered")
            prev = entry["hash"]
        return len(self.log())

    # -- changing -----------------------------------------------------------------
    def register(self, *, name: str, uid: str, job: str, step: str, spec_hash: str,
                 fingerprints: dict[str, str], metrics: dict[str, Any],
                 created_by: str | None = None) -> int:
        """Record a new version of ``name``; its version number."""
        doc = self._read()
        entry = doc["models"].setdefault(check_name(name), {"versions": [], "aliases": {}})
        version = 1 + max((v["version"] for v in entry["versions"]), default=0)
        who = created_by or getpass.getuser()
        entry["versions"].append({
            "version": version, "uid": uid, "job": job, "step": step, "spec_hash": spec_hash,
            "parties": sorted(fingerprints), "fingerprints": fingerprints, "metrics": metrics,
            "created_by": who, "created_at": self._stamp(),
        })
        self._append(doc, who, "model.register", f"{name}@{version}", {"uid": uid})
        self._write(doc)
        return version

    def tag(self, ref: str, alias: str, actor: str | None = None) -> Resolved:
        """Point ``alias`` of the referenced version's name at it (audited)."""
        got = self.resolve(ModelRef.parse(ref))
        doc = self._read()
        aliases = doc["models"][got.name]["aliases"]
        before = aliases.get(check_alias(alias))
        aliases[alias] = got.version
        self._append(doc, actor or getpass.getuser(), "model.tag", f"{got.name}@{alias}",
                     {"from": before, "to": got.version})
        self._write(doc)
        return got

    def delete(self, ref: str, consent: list[str], actor: str | None = None) -> Resolved:
        """Delete a version and every party's part here; each party must consent."""
        got = self.resolve(ModelRef.parse(ref))
        missing = sorted(set(got.fingerprints) - set(consent))
        if missing:
            raise PolicyDenied(f"deleting {got.name}@{got.version} needs the consent of every "
                               f"party; missing {missing}",
                               remedy="pass --consent PARTY for each owner of a part")
        doc = self._read()
        entry = doc["models"][got.name]
        entry["versions"] = [v for v in entry["versions"] if v["uid"] != got.uid]
        entry["aliases"] = {a: v for a, v in entry["aliases"].items() if v != got.version}
        for party in got.fingerprints:
            if (self.root / party / "parts").exists():
                self.store(party).delete(got.uid)
        self._append(doc, actor or getpass.getuser(), "model.delete",
                     f"{got.name}@{got.version}", {"uid": got.uid, "consent": sorted(consent)})
        self._write(doc)
        return got

    def _version(self, doc: dict[str, Any], name: str, version: int) -> dict[str, Any]:
        entry = doc["models"][name]
        record: dict[str, Any] = next(v for v in entry["versions"] if v["version"] == version)
        aliases = sorted(a for a, v in entry["aliases"].items() if v == version)
        return {"name": name, **record, "aliases": aliases}

    def _stamp(self) -> str:
        return str(self._now().isoformat(timespec="seconds"))

    def _append(self, doc: dict[str, Any], actor: str, action: str, target: str,
                detail: dict[str, Any]) -> None:
        log = doc["log"]
        prev = log[-1]["hash"] if log else _GENESIS
        body = {"seq": len(log), "ts": self._stamp(), "actor": actor, "action": action,
                "target": target, "detail": detail, "prev": prev}
        log.append({**body, "hash": _hash(prev, body)})


def _hash(prev: str, body: dict[str, Any]) -> str:
    return hashlib.sha256(prev.encode("ascii") + canonical(body)).hexdigest()


def resolve_models(spec: JobSpec, book: LocalRegistry) -> JobSpec:
    """``spec`` with its predict steps' saved models resolved against ``book``."""
    raw = {"parties": spec.parties, "steps": spec.steps}
    resolved = resolve_spec(raw, book.resolve)
    return spec.model_copy(update={"steps": resolved["steps"]})


def register_models(book: LocalRegistry, spec: JobSpec,
                    steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Register the model of every train step (and of every tune step that
    retrained its best configuration) of a finished run; what was registered."""
    made = []
    for step in steps:
        if step["component"] not in MODEL_STEPS:
            continue
        metrics = {p: r["metrics"] for p, r in step["parties"].items()
                   if makes_model(step["component"], r["metrics"])}
        if step["component"] == "tune" and not metrics:
            continue  # tuned without retrain: metrics only, no model

        uids = {m["model_uid"] for m in metrics.values()}
        if len(uids) != 1 or sorted(metrics) != sorted(spec.parties):
            raise ConfigError(f"step {step['id']}: the parties saved parts of {sorted(uids)}; "
                              "nothing was registered", step=step["id"])
        name = model_name(spec.name, step["id"])
        public = {p: {k: v for k, v in m.items() if k not in ("fingerprint", "model_uid")}
                  for p, m in metrics.items()}
        uid = uids.pop()
        version = book.register(
            name=name, uid=uid, job=spec.name, step=step["id"],
            spec_hash=spec_hash(spec.model_dump(mode="json")),
            fingerprints={p: m["fingerprint"] for p, m in metrics.items()}, metrics=public)
        made.append({"name": name, "version": version, "uid": uid})
    return made
