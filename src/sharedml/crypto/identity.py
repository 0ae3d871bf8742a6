"""A party's identity read from its PKI folder, re-read when an operator rotates it.

:class:`IdentityFiles` stands where an :class:`~sharedml.crypto.pki.Identity`
would: :meth:`IdentityFiles.current` returns the pair on disk now. It looks
at the files' modification times on every call (a ``stat`` each, cheap
enough for every new TLS handshake) and re-reads them when they change. While
an install is half done (``pki install`` replaces the key, then the
certificate) the key and certificate do not belong together; the previous
pair is kept until they do, so a connection never starts with a mismatched
pair.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from sharedml.crypto.pki import Identity, load_identity
from sharedml.errors import ConfigError

log = logging.getLogger("sharedml.crypto.identity")


class IdentityFiles:
    """``DIR/<party>.pem``, ``.key`` and ``DIR/ca.pem``, re-read when they change.

    Raises :class:`ConfigError` at construction if they cannot be read or do
    not belong together.
    """

    def __init__(self, directory: str | Path, party: str) -> None:
        self.directory = Path(directory)
        self.party = party
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._identity = load_identity(self.directory, party)
        #: Bumped each time a new pair is taken up (connections made before are older).
        self.generation = 0

    def _paths(self) -> tuple[Path, ...]:
        d = self.directory
        return d / f"{self.party}.pem", d / f"{self.party}.key", d / "ca.pem"

    def _stat(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in self._paths():
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                out.append((-1, -1))
        return tuple(out)

    def current(self) -> Identity:
        """The pair on disk now (the previous one while a replacement is incomplete)."""
        with self._lock:
            stamp = self._stat()
            if stamp == self._stamp:
                return self._identity
            try:
                fresh = load_identity(self.directory, self.party)
            except ConfigError as exc:
                log.warning("party %s: keeping the previous certificate: %s", self.party, exc)
                return self._identity
            self._stamp = stamp
            if fresh != self._identity:
                self._identity = fresh
                self.generation += 1
                log.info("party %s: took up a new certificate from %s", self.party, self.directory)
            return self._identity
