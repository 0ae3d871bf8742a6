"""Self-service TOTP enrolment (9.1-3): a logged-in user binds an authenticator app.

1. :meth:`TotpEnrolment.begin` draws a fresh 160-bit secret and returns its
   provisioning URI (for the QR code) and a *ticket*: the secret and the time,
   sealed with the platform key (AES-GCM, bound to the username). The platform
   stores nothing yet, so an abandoned enrolment leaves no trace but the audit
   entry.
2. :meth:`TotpEnrolment.confirm` opens the ticket (refused if it belongs to
   another user or is older than :data:`TICKET_MINUTES`), checks the code the
   app shows against the secret (one step of clock skew either way), and only
   then stores the secret sealed, as ``Authenticator.create_user`` does. The
   accepted step is remembered, so the same code cannot then log in (replay).

Reveals: the secret to the user's own browser, once (QR code and text); the
platform's audit log records the enrolment, never the secret or a code.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from typing import TYPE_CHECKING

from sharedml.errors import AuthError, ConfigError
from sharedml.platform.auth import Principal, Totp

if TYPE_CHECKING:
    from sharedml.platform.service import Platform

TICKET_MINUTES = 10


class TotpEnrolment:
    def __init__(self, platform: Platform) -> None:
        self._p = platform

    @staticmethod
    def _aad(username: str) -> bytes:
        return f"sharedml/totp-enrol/{username}".encode()

    def begin(self, who: Principal) -> tuple[str, str, str]:
        """``(provisioning URI, base32 secret, ticket)`` for a new secret; nothing stored."""
        secret = Totp.new_secret()
        stamp = struct.pack(">q", int(self._p.clock.now().timestamp()))
        sealed = self._p.box.seal(stamp + secret, self._aad(who.username))
        ticket = base64.urlsafe_b64encode(sealed).decode("ascii")
        self._p.audit.append(who.username, "auth.totp.begin", who.username)
        text = base64.b32encode(secret).decode("ascii").rstrip("=")
        return Totp.uri(secret, who.username), text, ticket

    def confirm(self, who: Principal, ticket: str, code: str) -> None:
        """Store the ticket's secret as the user's second factor if ``code`` matches it."""
        try:
            sealed = base64.urlsafe_b64decode(ticket.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ConfigError("the enrolment ticket is not valid", remedy="start again") from None
        try:
            raw = self._p.box.open(sealed, self._aad(who.username))
        except AuthError:
            raise ConfigError("the enrolment ticket is not valid", remedy="start again") from None
        (issued,), secret = struct.unpack(">q", raw[:8]), raw[8:]
        now = self._p.clock.now()
        if now - dt.datetime.fromtimestamp(issued, dt.UTC) > dt.timedelta(minutes=TICKET_MINUTES):
            raise ConfigError("the enrolment ticket expired", remedy="start again")
        step = Totp.match(secret, code.strip(), now, 0)
        if step is None:
            self._p.audit.append(who.username, "auth.totp.enrol", who.username, outcome="denied")
            raise ConfigError(
                "the code does not match the new secret",
                remedy="check the authenticator app's clock and enter the current code",
            )
        with self._p.store.session() as s:
            self._p.auth.store_totp(s, who.user_id, secret, step)
            self._p.audit.append_in(s, who.username, "auth.totp.enrol", who.username)
