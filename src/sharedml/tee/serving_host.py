"""The scoring enclave's operator side: start it, publish what to pin, stop it (``sharedml serve enclave``).

Under the simulator, the operator of a ``sharedml run`` models folder starts
the quoting process and a scoring enclave (:mod:`sharedml.tee.enclave.serve_rpc`)
of the same build identity the TEE jobs there used (``MODELS/tee-sim``: the
simulated vendor, platform and build key), so the enclave can unseal the
folder's registered TEE models; attests it once itself; and writes
``HOME/enclave-policy.json`` — the reference values (signer, product, minimum
svn) and the simulated vendor's trust folder in the format of
``sharedml tee provider``'s policy files. Each serving party checks those
values against what its release engineer published before it pins them
(``--enclave-policy``); the file is a convenience, not a trust anchor. On
hardware the enclave image runs ``python -m sharedml.tee.enclave.serve_rpc``
itself (``deploy/tee/``) and the parties pin the image's measurement.

Reveals: to the operator, what the TEE scheme's host sees (:mod:`sharedml.tee.enclave.serve`).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from sharedml.tee.attestation.base import Policy, Verifier
from sharedml.tee.attestation.sim import SimBackend, signer_id
from sharedml.tee.job import simulated_build
from sharedml.tee.manager import EnclaveHandle, EnclaveManager, build_manifest

ENTRY = "sharedml.tee.enclave.serve_rpc"
POLICY_FILE = "enclave-policy.json"


def start_scoring_enclave(models: Path, home: Path, pki: Path) -> tuple[EnclaveManager, EnclaveHandle]:
    """A running, self-attested scoring enclave for ``models``; its policy file in ``home``.

    ``pki``: the deployment CA (callers' certificates are checked against it)
    and the operator's ``platform`` certificate.
    """
    vendor, platform, build_key = simulated_build(Path(models) / "tee-sim")
    tcb_info, crl = vendor.tcb_info({3: "UpToDate"}), vendor.revocation_list()
    (vendor.dir / "tcb_info.cbor").write_bytes(tcb_info)
    (vendor.dir / "crl.der").write_bytes(crl)
    manifest = build_manifest(build_key, svn=1)
    policy = Policy(signer=signer_id(manifest.signer_public_key).hex(), product_id=1, min_svn=1,
                    allow_simulation=True)
    manager = EnclaveManager(Path(home) / "operator", platform, tls_dir=pki,
                             verifier=Verifier([SimBackend.from_vendor(vendor, tcb_info, crl)]))
    handle = manager.create(None, manifest, entry=ENTRY)
    try:
        manager.verify(handle, policy)
    except BaseException:
        manager.stop_all()
        raise
    doc = {"signer": policy.signer, "product_id": 1, "min_svn": 1, "allow_simulation": True,
           "trust": str(vendor.dir)}
    (Path(home) / POLICY_FILE).write_text(json.dumps(doc, indent=1))
    return manager, handle


def run_scoring_enclave(models: Path, home: Path, pki: Path, ready: Callable[[str], None]) -> None:
    """Start the scoring enclave, say where it listens, stop it on SIGTERM or SIGINT."""
    manager, handle = start_scoring_enclave(models, home, pki)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ready(f"policy for the serving parties to check and pin: {Path(home) / POLICY_FILE}")
    ready(f"scoring enclave listening on {handle.address}")
    while not stop.wait(1.0):
        if handle.process.poll() is not None:
            break
    manager.stop_all()
