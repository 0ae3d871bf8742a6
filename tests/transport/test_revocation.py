"""Revocation and rotation at the gRPC transport, over real mutual TLS on loopback.

A revoked certificate is refused both ways (must show, issue 13): a server
with the list refuses the revoked party's stream before reading it, and a
client with the list refuses to send a byte to a revoked server. A list
that changes on disk takes effect for the next job, without a restart; a
party that rotates its certificate keeps its running job and runs the next
one on the new pair.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sharedml.crypto import crl, enrol, pki
from sharedml.crypto.identity import IdentityFiles
from sharedml.errors import PeerTimeout, PeerUnreachable
from sharedml.transport.grpc import GrpcEndpoint

PARTIES = ("a", "b", "c")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Path]]]:
    """A CA folder and one folder per party's host, each with its own key and the CA's list."""
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    crl.refresh(ca)
    homes = {}
    for party in PARTIES:
        home = tmp_path / party
        csr = enrol.request(home, party)
        enrol.install(home, pki.sign(ca, csr.read_bytes()), (ca / "ca.pem").read_bytes())
        shutil.copy(ca / "crl.pem", home / "crl.pem")
        homes[party] = home
    yield ca, homes


def _publish(ca: Path, homes: dict[str, Path]) -> None:
    """The operator copies the CA's current list to every host."""
    for home in homes.values():
        tmp = home / "crl.pem.new"
        shutil.copy(ca / "crl.pem", tmp)
        tmp.replace(home / "crl.pem")


def _endpoint(home: Path, party: str, *, checks: bool = True) -> GrpcEndpoint:
    identity = IdentityFiles(home, party)
    revocation = crl.RevocationFile(home / "crl.pem", identity.current().ca_pem) if checks else None
    return GrpcEndpoint(identity, connect_timeout=3.0, admit_wait=3.0, revocation=revocation)


@pytest.fixture
def endpoints(
    deployment: tuple[Path, dict[str, Path]],
) -> Iterator[dict[str, GrpcEndpoint]]:
    _, homes = deployment
    eps = {p: _endpoint(homes[p], p) for p in PARTIES}
    yield eps
    for ep in eps.values():
        ep.close(grace=0.2)


def _job() -> str:
    return f"rev-{uuid.uuid4().hex[:8]}"


def _exchange(eps: dict[str, GrpcEndpoint], frm: str, to: str) -> None:
    """``frm`` sends ``to`` a value in a fresh job; it arrives intact."""
    job, addresses = _job(), {p: ep.address for p, ep in eps.items()}
    ch = {p: eps[p].channel(job, (frm, to), addresses, timeout=10) for p in (frm, to)}
    try:
        ch[frm].send(to, "v", np.arange(5))
        assert np.array_equal(ch[to].recv(frm, "v"), np.arange(5))
    finally:
        for c in ch.values():
            c.close()


def test_server_refuses_a_revoked_sender(
    deployment: tuple[Path, dict[str, Path]], endpoints: dict[str, GrpcEndpoint]
) -> None:
    ca, homes = deployment
    _exchange(endpoints, "b", "a")
    crl.revoke(ca, party="b", reason="key-compromise")
    _publish(ca, homes)
    # b does not check lists itself (or runs an old one): a's server must still refuse it
    rogue = _endpoint(homes["b"], "b", checks=False)
    job, addresses = _job(), {p: ep.address for p, ep in endpoints.items()}
    a = endpoints["a"].channel(job, ("a", "b"), addresses, timeout=3)
    try:
        ch = rogue.channel(job, ("a", "b"), addresses, timeout=3)
        with pytest.raises(PeerUnreachable, match=r"refused the stream.*'b'.*is revoked"):
            ch.send("a", "secret", np.arange(3))
            ch.close()
        with pytest.raises(PeerTimeout):
            a.recv("b", "secret", timeout=0.5)
        assert a.pending() == 0
    finally:
        a.close()
        rogue.close(grace=0.2)
    _exchange(endpoints, "c", "a")  # a goes on serving everyone else


def test_client_refuses_a_revoked_server_before_sending(
    deployment: tuple[Path, dict[str, Path]], endpoints: dict[str, GrpcEndpoint]
) -> None:
    ca, homes = deployment
    crl.revoke(ca, party="c")
    _publish(ca, homes)
    rogue_c = _endpoint(homes["c"], "c", checks=False)  # c's server, not checking anything
    job = _job()
    addresses = {"a": endpoints["a"].address, "c": rogue_c.address}
    c = rogue_c.channel(job, ("a", "c"), addresses, timeout=3)
    a = endpoints["a"].channel(job, ("a", "c"), addresses, timeout=3)
    try:
        with pytest.raises(PeerUnreachable, match=r"refused to connect to party 'c'.*is revoked"):
            a.send("c", "secret", b"for c only")
        with pytest.raises(PeerTimeout):
            c.recv("a", "secret", timeout=0.5)
        assert rogue_c.server._streams.total() == 0  # no stream from a ever reached c
    finally:
        a.close()
        c.close()
        rogue_c.close(grace=0.2)


def test_a_new_list_applies_to_the_next_job_without_a_restart(
    deployment: tuple[Path, dict[str, Path]], endpoints: dict[str, GrpcEndpoint]
) -> None:
    ca, homes = deployment
    _exchange(endpoints, "a", "b")  # a's connection to b is pooled (pinned to b's certificate)
    crl.revoke(ca, party="b")
    _publish(ca, homes)
    with pytest.raises(PeerUnreachable, match="is revoked"):
        _exchange(endpoints, "a", "b")
    _exchange(endpoints, "a", "c")


def test_rotation_keeps_the_running_job_and_serves_the_next_on_the_new_pair(
    deployment: tuple[Path, dict[str, Path]], endpoints: dict[str, GrpcEndpoint]
) -> None:
    ca, homes = deployment
    first_pem = endpoints["b"].identity.cert_pem
    running, addresses = _job(), {p: ep.address for p, ep in endpoints.items()}
    ch = {p: endpoints[p].channel(running, ("a", "b"), addresses, timeout=10) for p in ("a", "b")}
    ch["a"].send("b", "before", np.arange(3))
    ch["b"].send("a", "before", np.arange(3))
    assert np.array_equal(ch["b"].recv("a", "before"), np.arange(3))

    # b's operator rotates: new key on b's host, signed at the CA, installed; old one revoked
    csr = enrol.request(homes["b"], "b", rotate=True)
    enrol.install(homes["b"], pki.sign(ca, csr.read_bytes(), party="b"))
    (old,) = [s for s in crl.issued_serials(ca, "b") if s != _serial(homes["b"])]
    crl.revoke(ca, serial=old, reason="superseded")
    _publish(ca, homes)
    assert endpoints["b"].identity.cert_pem != first_pem

    # the running job goes on over the streams it has
    ch["a"].send("b", "after", np.arange(4))
    ch["b"].send("a", "after", np.arange(4))
    assert np.array_equal(ch["b"].recv("a", "after"), np.arange(4))
    assert np.array_equal(ch["a"].recv("b", "after"), np.arange(4))
    for c in ch.values():
        c.close()
    # the next job runs on b's new pair, both ways, while its old certificate is refused
    _exchange(endpoints, "a", "b")
    _exchange(endpoints, "b", "a")


def _serial(home: Path, party: str = "b") -> int:
    from cryptography import x509

    return x509.load_pem_x509_certificate((home / f"{party}.pem").read_bytes()).serial_number


def test_a_server_swapped_in_after_the_check_is_refused_by_the_pin(
    deployment: tuple[Path, dict[str, Path]],
    endpoints: dict[str, GrpcEndpoint],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attacker answers the certificate check with c's valid server, then swaps in
    its own (c's revoked pair) before gRPC connects: the pin makes gRPC refuse it."""
    from sharedml.transport import tls
    from sharedml.transport.shaping import LinkProfile
    from sharedml.transport.wan import ShapedNetwork

    ca, homes = deployment
    stolen = homes["c"].parent / "stolen"
    shutil.copytree(homes["c"], stolen)  # the attacker copied c's old pair
    csr = enrol.request(homes["c"], "c", rotate=True)  # c rotates, the old one is revoked
    enrol.install(homes["c"], pki.sign(ca, csr.read_bytes()))
    (old,) = [s for s in crl.issued_serials(ca, "c") if s != _serial(homes["c"], "c")]
    crl.revoke(ca, serial=old)
    _publish(ca, homes)
    rogue = _endpoint(stolen, "c", checks=False)
    with ShapedNetwork(LinkProfile()) as net:
        net.register("c", endpoints["c"].address)
        real_probe = tls.probe

        def probe_then_swap(*args: object, **kw: object) -> object:
            cert = real_probe(*args, **kw)  # type: ignore[arg-type]
            net.register("c", rogue.address)  # new connections now reach the rogue
            return cert

        monkeypatch.setattr(tls, "probe", probe_then_swap)
        endpoints["a"].connect_timeout = 2.0
        job = _job()
        addresses = {"a": endpoints["a"].address, "c": net.route("a", "c")}
        r = rogue.channel(job, ("a", "c"), {"a": endpoints["a"].address}, timeout=3)
        a = endpoints["a"].channel(job, ("a", "c"), addresses, timeout=3)
        try:
            refused = r"(could not reach|refused to connect to) party 'c'"
            with pytest.raises(PeerUnreachable, match=refused):
                a.send("c", "secret", b"for c only")
            with pytest.raises(PeerTimeout):
                r.recv("a", "secret", timeout=0.5)
            assert rogue.server._streams.total() == 0
        finally:
            a.close()
            r.close()
            rogue.close(grace=0.2)


def test_a_server_from_another_ca_fails_the_check(
    tmp_path: Path, endpoints: dict[str, GrpcEndpoint]
) -> None:
    evil = tmp_path / "evil"
    pki.init_ca(evil)
    impostor = GrpcEndpoint(pki.issue(evil, "b"))
    endpoints["a"].connect_timeout = 1.5
    job = _job()
    a = endpoints["a"].channel(job, ("a", "b"), {"b": impostor.address}, timeout=3)
    try:
        with pytest.raises(PeerUnreachable, match="could not check the certificate of party 'b'"):
            a.send("b", "secret", b"for b only")
        assert impostor.server._streams.total() == 0
    finally:
        a.close()
        impostor.close(grace=0.2)
