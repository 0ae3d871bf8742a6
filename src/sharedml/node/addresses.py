"""Where a node listens and where its peers reach it (issue 13 item 3, 8.4-4).

A node on a real host binds one address and is reached at another: it listens
on every interface (``listen: 0.0.0.0:7000``) or a private one, and its peers
dial the name or address its organisation publishes (``advertise:
bank.example.com:7000``), perhaps through a NAT or a load balancer. The
platform hands peers whatever the node advertises, so a wrong address costs
every job the node is in; it is checked when the node starts, not when the
first peer fails to connect:

* an address that means "any interface" (``0.0.0.0``, ``::``) is never
  advertised — a peer dialling it reaches itself;
* a listen address on every interface needs an ``advertise:``;
* an advertised name must resolve on this host (a name only peers can resolve
  belongs in their ``/etc/hosts`` *and* this one's);
* an advertised port of 0 or none means "the port the node bound".
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from sharedml.errors import ConfigError


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` pair; IPv6 literals are written in brackets (``[::1]:7000``)."""

    host: str
    port: int

    @classmethod
    def parse(cls, raw: str, what: str, *, party: str | None = None) -> HostPort:
        host, sep, port = raw.strip().rpartition(":")
        if not sep:
            host, port = raw.strip(), "0"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{what} {raw!r} is not host:port", party=party,
                              remedy="write e.g. 10.0.0.5:7000, bank.example.com:7000 or [::1]:7000")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_wildcard(host: str) -> bool:
    """Whether ``host`` means "every interface" (0.0.0.0, ::, or empty)."""
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True)
class AddressPlan:
    """A node's bind address and what it tells the platform, checked at start."""

    listen: HostPort
    advertise: HostPort | None

    @classmethod
    def check(cls, listen: str, advertise: str | None, *, party: str) -> AddressPlan:
        """Validate ``listen`` and ``advertise`` (raises :class:`ConfigError` naming the fix)."""
        bind = HostPort.parse(listen, "listen", party=party)
        if advertise is None:
            if is_wildcard(bind.host):
                raise ConfigError(
                    f"node {party!r} listens on every interface ({listen}) but does not say "
                    "where its peers reach it", party=party,
                    remedy="add 'advertise: HOST:PORT' to node.yaml (the name or address other "
                    "organisations' nodes dial)",
                )
            return cls(bind, None)
        public = HostPort.parse(advertise, "advertise", party=party)
        if is_wildcard(public.host):
            raise ConfigError(
                f"node {party!r} would advertise {advertise!r}: an any-interface address "
                "reaches no one", party=party,
                remedy="advertise the host name or address other organisations' nodes dial",
            )
        _resolve(public.host, party)
        return cls(bind, public)

    def advertised(self, bound_port: int) -> str:
        """The ``host:port`` peers dial, once the server has bound ``bound_port``."""
        chosen = self.advertise or self.listen
        return str(HostPort(chosen.host, chosen.port or bound_port))


def _resolve(host: str, party: str) -> None:
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"node {party!r} advertises {host!r}, which does not resolve on this host ({exc})",
            party=party,
            remedy="use an address, or a name this host and its peers resolve (DNS or /etc/hosts)",
        ) from None
