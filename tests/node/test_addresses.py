"""A node binds one address and advertises another; both are checked at start (issue 13 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sharedml.crypto import pki
from sharedml.errors import ConfigError
from sharedml.node.addresses import AddressPlan, HostPort, is_wildcard
from sharedml.node.agent import Agent, NodeConfig


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "*"])
def test_any_interface_addresses_are_wildcards(host: str) -> None:
    assert is_wildcard(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "::1", "bank.example.com"])
def test_specific_addresses_are_not(host: str) -> None:
    assert not is_wildcard(host)


def test_host_port_parses_ipv4_ipv6_and_names() -> None:
    assert HostPort.parse("10.0.0.5:7000", "listen") == HostPort("10.0.0.5", 7000)
    assert HostPort.parse("[::1]:7000", "listen") == HostPort("::1", 7000)
    assert str(HostPort("::1", 7000)) == "[::1]:7000"
    assert HostPort.parse("localhost", "advertise") == HostPort("localhost", 0)
    for bad in ("10.0.0.5:port", ":7000", "host:99999"):
        with pytest.raises(ConfigError, match="not host:port"):
            HostPort.parse(bad, "listen", party="bank")


@pytest.mark.parametrize("listen", ["0.0.0.0:7000", "[::]:7000"])
def test_listening_everywhere_needs_an_advertised_address(listen: str) -> None:
    with pytest.raises(ConfigError, match="advertise: HOST:PORT") as err:
        AddressPlan.check(listen, None, party="bank")
    assert err.value.party == "bank"


@pytest.mark.parametrize("advertise", ["0.0.0.0:7000", "[::]:7000", "0.0.0.0"])
def test_an_any_interface_address_is_never_advertised(advertise: str) -> None:
    with pytest.raises(ConfigError, match="reaches no one"):
        AddressPlan.check("0.0.0.0:7000", advertise, party="bank")


def test_an_unresolvable_name_is_refused() -> None:
    # .invalid never resolves (RFC 6761)
    with pytest.raises(ConfigError, match="does not resolve on this host"):
        AddressPlan.check("0.0.0.0:7000", "bank.sharedml.invalid:7000", party="bank")


def test_the_bound_port_fills_an_advertised_port_of_zero() -> None:
    plan = AddressPlan.check("0.0.0.0:0", "localhost", party="bank")
    assert plan.advertised(41234) == "localhost:41234"
    assert AddressPlan.check("0.0.0.0:0", "127.0.0.1:9000", party="b").advertised(5) == "127.0.0.1:9000"
    assert AddressPlan.check("127.0.0.1:0", None, party="b").advertised(5) == "127.0.0.1:5"


def _config(tmp_path: Path, **fields: str) -> Path:
    pki_dir = tmp_path / "pki"
    if not (pki_dir / "ca.pem").exists():
        pki.init_ca(pki_dir)
        pki.issue(pki_dir, "bank")
    path = tmp_path / "node.yaml"
    path.write_text(json.dumps({"party": "bank", "platform": "127.0.0.1:1", "pki_dir": "pki",
                                "work_dir": "work", **fields}))
    return path


def test_an_agent_binds_every_interface_and_says_hello_with_the_advertised_address(
    tmp_path: Path,
) -> None:
    agent = Agent(NodeConfig.load(_config(tmp_path, listen="0.0.0.0:0", advertise="127.0.0.1")))
    try:
        bound = int(agent.endpoint.address.rpartition(":")[2])
        assert agent.endpoint.address.startswith("0.0.0.0:")
        assert agent.advertised == f"127.0.0.1:{bound}"
    finally:
        agent.close()


def test_an_agent_refuses_to_start_with_an_unusable_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="advertise"):
        Agent(NodeConfig.load(_config(tmp_path, listen="0.0.0.0:0")))
    with pytest.raises(ConfigError, match="does not resolve"):
        Agent(NodeConfig.load(_config(tmp_path, listen="0.0.0.0:0",
                                      advertise="nowhere.sharedml.invalid:7000")))
