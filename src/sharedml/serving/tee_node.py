"""A partner's side of TEE online scoring: its own columns go to the enclave, never to the label holder.

Per ``Contribute`` call from a label holder's gateway (the caller is its
certificate's name, admitted by the serving node's ``--caller`` list;
protocol and leakage: :mod:`sharedml.tee.enclave.serve`):

1. the version is resolved in this party's own registry, which gives the
   fingerprint of the sealed model it consents to contribute to (a version
   that is not a TEE version is refused);
2. the ids are checked against the node's allow-list rule and looked up in
   its feature source; refused and unknown ids are sent as zeros;
3. its raw columns for the ids go to the enclave over this party's own
   attested link (:mod:`sharedml.serving.enclave_link`), naming the version,
   its fingerprint, the batch and ``for``: the caller, the one label holder
   the enclave may score them for;
4. one audit line (hashed ids, caller, version, counts) and the reply: each
   id's status only — no feature value and no score.
"""

from __future__ import annotations

import numpy as np

from sharedml.errors import ConfigError, FrameError, ProtocolAbort
from sharedml.serving import wire
from sharedml.serving.adapters import FeatureAdapter
from sharedml.serving.allow import AllowRule
from sharedml.serving.audit import ServingAudit
from sharedml.serving.enclave_link import EnclaveLink
from sharedml.serving.parts import StoreParts, check_version_name
from sharedml.serving.tee import RawFeatures
from sharedml.tee.enclave import wire as tee_wire
from sharedml.tee.enclave.saved import FINGERPRINT
from sharedml.tee.enclave.serve import encode_matrix

STEP = "serve: contribute"


class TeeContributor:
    """The ``Contribute`` handler a partner's :class:`~sharedml.serving.partner.PartnerNode` serves."""

    def __init__(self, parts: StoreParts, features: FeatureAdapter, allow: AllowRule, audit: ServingAudit,
                 link: EnclaveLink) -> None:
        self.parts, self.allow, self.audit, self.link = parts, allow, audit, link
        self.party = features.party
        self.raw = RawFeatures(features, tuple(features.columns), STEP)

    def contribute(self, caller: str, request: bytes) -> bytes:
        version, batch, ids = self._request(request)
        fingerprint = self._fingerprint(version)
        admitted = self.allow.admits(ids)
        X, found = self.raw.fetch(ids)
        status = np.where(~admitted, wire.REFUSED, np.where(~found, wire.UNKNOWN, wire.OK)).astype(np.uint8)
        X[status != wire.OK] = 0.0
        header = {"version": version, "fingerprint": fingerprint, "batch": batch, "for": caller, "ids": ids,
                  "columns": list(self.raw.columns)}
        outcome = "ok"
        try:
            self.link.call("Features", header, encode_matrix(X))
        except Exception as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self.audit.record("contribute", ids, caller=caller, version=version, outcome=outcome,
                              sent=int((status == wire.OK).sum()), refused=int((status == wire.REFUSED).sum()),
                              unknown=int((status == wire.UNKNOWN).sum()))
        return tee_wire.encode({"rows": len(ids)}, status.tobytes())

    def _request(self, request: bytes) -> tuple[str, str, list[str]]:
        try:
            header, _ = tee_wire.decode(request)
            version, batch, ids = str(header["version"]), str(header["batch"]), header["ids"]
        except (ProtocolAbort, KeyError, TypeError):
            raise FrameError("a contribute request needs version, batch and ids", step=STEP) from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not 16 <= len(batch) <= 64:
            raise FrameError("a contribute request's ids must be strings and its batch 16-64 characters",
                             step=STEP)
        wire.check_ids(ids)
        return check_version_name(version), batch, ids

    def _fingerprint(self, version: str) -> str:
        fingerprint = self.parts.fingerprints(self.parts.resolve(version)).get(FINGERPRINT)
        if fingerprint is None:
            raise ConfigError(f"{version!r} is not a TEE model version in {self.party!r}'s registry", party=self.party,
                              step=STEP, remedy="contribute only to versions this party's registry holds as "
                              "TEE-trained")
        return fingerprint
