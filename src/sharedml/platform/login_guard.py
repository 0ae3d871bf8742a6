"""Login throttling that nobody can turn against an account holder (9.2, issue 14 item 6).

The probe found that anyone could lock any account (admins' too) with five
wrong passwords, that "account locked" told an attacker the name exists, and
that ``X-Forwarded-For`` gave every attempt a new client. So:

1. **Per client**: at most ``login_rate_per_minute`` attempts a minute from one
   client address (429). The address is the TCP peer, or the forwarded one only
   when the peer is a configured proxy (:func:`client_address`).
2. **Per name and client, back-off instead of lock**: after
   ``lockout_threshold`` consecutive failures for one username *from one
   client*, that client waits 1 s, then 2 s, 4 s, ... (at most
   ``lockout_minutes``) between attempts for that name; an attempt during the
   wait is a 429 without checking the password. The account itself is never
   locked: its owner, from another address, logs in as usual.
3. **Uniform**: names are tracked whether or not such a user exists, and every
   refusal reads the same for known and unknown names.

State is in memory per process (a restart forgets it; so does an admin's
``unlock`` for that name) and bounded in size.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from sharedml.platform.clock import Clock
from sharedml.platform.errors import LoginThrottled

#: Forget clients and names idle this long once more than _MAX_KEYS are tracked.
_MAX_KEYS = 10_000


@dataclass
class _Failures:
    count: int = 0
    until: dt.datetime | None = None


class LoginGuard:
    """Rate limit per client and back-off per (username, client); thread-safe."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._hits: dict[str, deque[dt.datetime]] = defaultdict(deque)
        self._failures: dict[tuple[str, str], _Failures] = {}
        self._lock = threading.Lock()

    def before(self, username: str, client: str, rate_per_minute: int) -> None:
        """Raise :class:`LoginThrottled` if this attempt must wait; else count it."""
        now = self._clock.now()
        with self._lock:
            self._prune(now)
            q = self._hits[client]
            while q and (now - q[0]).total_seconds() >= 60:
                q.popleft()
            waiting = self._failures.get((username, client))
            if len(q) >= rate_per_minute or (waiting and waiting.until and now < waiting.until):
                raise _throttled()
            q.append(now)

    def failed(self, username: str, client: str, threshold: int, longest_minutes: int) -> bool:
        """Count a failure; ``True`` when it starts (or lengthens) a back-off."""
        now = self._clock.now()
        with self._lock:
            f = self._failures.setdefault((username, client), _Failures())
            f.count += 1
            if f.count < threshold:
                return False
            wait = min(2.0 ** (f.count - threshold), longest_minutes * 60.0)
            f.until = now + dt.timedelta(seconds=wait)
            return True

    def succeeded(self, username: str, client: str) -> None:
        with self._lock:
            self._failures.pop((username, client), None)

    def forget(self, username: str) -> None:
        """Lift every back-off on ``username`` (an admin's unlock)."""
        with self._lock:
            for key in [k for k in self._failures if k[0] == username]:
                del self._failures[key]

    def _prune(self, now: dt.datetime) -> None:
        if len(self._hits) > _MAX_KEYS:
            for key in [k for k, v in self._hits.items()
                        if not v or (now - v[-1]).total_seconds() >= 60]:
                del self._hits[key]
        if len(self._failures) > _MAX_KEYS:
            for fkey in [k for k, f in self._failures.items()
                         if f.until is None or f.until < now - dt.timedelta(hours=1)]:
                del self._failures[fkey]


def _throttled() -> LoginThrottled:
    return LoginThrottled("too many login attempts", remedy="wait a little before trying again")


def client_address(peer: str, forwarded_for: str | None, trusted: Iterable[str]) -> str:
    """The client a request comes from: the TCP ``peer``, unless the peer is one of
    the ``trusted`` proxies (addresses or networks), in which case the nearest
    address in ``X-Forwarded-For`` that is not itself a trusted proxy."""
    networks = [_network(t) for t in trusted]
    if not forwarded_for or not _within(peer, networks):
        return peer
    for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
        if hop and not _within(hop, networks):
            return hop[:64]
    return peer


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | str:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text  # a name (e.g. the test client's "testclient") compares as text


def _within(host: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network | str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in networks
    return any(not isinstance(n, str) and address in n for n in networks)
