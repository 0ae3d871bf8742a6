"""Linux network namespaces as separate hosts on one machine, for the multi-host test.

``Lab(hosts)`` makes one namespace per host, each with its own ``eth0`` and
address on a private /24, joined by a bridge in a hub namespace (a switch),
and gives the test process (the root namespace: an operator's laptop) its
own leg on the same switch. Each namespace gets its own ``/etc/hosts``
(``/etc/netns/<ns>/hosts``, which ``ip netns exec`` mounts over
``/etc/hosts``), so hosts reach each other by name. Everything is made by the
test and removed at its end; it needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

NETNS_ETC = Path("/etc/netns")


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces and veth links need root (run the suite as root, as CI does)"
    if shutil.which("ip") is None:
        return "no 'ip' command (iproute2; .ci/services.sh installs it)"
    probe = f"smlprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Lab:
    """Hosts by name -> their namespace and address; ``close()`` removes all of it."""

    hosts: Sequence[str]
    domain: str = "a1.test"
    tag: str = field(default_factory=lambda: f"{random.randrange(16**5):05x}")
    subnet: str = field(default_factory=lambda: f"10.{random.randrange(200, 250)}."
                                                f"{random.randrange(1, 250)}")
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"sml{self.tag}{self.hosts.index(host)}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{self.hosts.index(host) + 1}"

    def name(self, host: str) -> str:
        return f"{host}.{self.domain}"

    @property
    def hub(self) -> str:
        return f"sml{self.tag}h"

    def open(self) -> Lab:
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.address(h)} {self.name(h)}\n" for h in self.hosts)
        for i, host in enumerate(self.hosts):
            ns = self.ns(host)
            _ip("netns", "add", ns)
            (NETNS_ETC / ns).mkdir(parents=True, exist_ok=True)
            (NETNS_ETC / ns / "hosts").write_text(hosts_file)
            self._leg(f"v{self.tag}{i}", ns, f"{self.address(host)}/24")
        # the test process's own leg (root namespace), the operator's machine
        self._leg(f"v{self.tag}r", None, f"{self.subnet}.100/24")
        return self

    def _leg(self, name: str, ns: str | None, cidr: str) -> None:
        """A veth pair: one end (``eth0`` in ``ns``, or ``name`` here) with ``cidr``, the
        other on the hub's bridge."""
        _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        _ip("link", "set", f"{name}p", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", f"{name}p", "master", "br0", "up")
        if ns is None:
            _ip("addr", "add", cidr, "dev", name)
            _ip("link", "set", name, "up")
            return
        _ip("link", "set", name, "netns", ns)
        _ip("-n", ns, "link", "set", name, "name", "eth0")
        _ip("-n", ns, "addr", "add", cidr, "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")

    def spawn(self, host: str, argv: Sequence[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
        """Run ``argv`` on ``host`` (inside its namespace), output appended to ``log``."""
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns(host), *argv], cwd=cwd,
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        subprocess.run(["ip", "link", "del", f"v{self.tag}r"], capture_output=True)
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", self.ns(host)], capture_output=True)
            shutil.rmtree(NETNS_ETC / self.ns(host), ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.hub], capture_output=True)
