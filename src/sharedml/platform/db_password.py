"""The database password apart from the database URL: in ``DATA_DIR/db.password`` (0600).

A URL with its password ends up wherever the URL goes — ``cluster.json``, a
process's command line (``ps`` shows it to every local user), a systemd unit,
a log line. So the URL that is written down carries no password, and the
password lives in one file of the platform's data dir, readable by its owner
only, that :meth:`sharedml.platform.service.Platform.open` reads when the URL
has none (every ``sharedml platform`` command opens the database through it).
``sharedml up`` with PostgreSQL writes it (:func:`keep_apart`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

from sharedml.secret_file import read_secret, write_secret

#: The file in the platform's data dir.
FILE = "db.password"


def keep_apart(url: str, data_dir: Path) -> str:
    """``url`` without its password, the password written to ``data_dir/db.password``
    (0600); ``url`` unchanged when it has none."""
    parsed = make_url(url)
    if parsed.password is None:
        return url
    write_secret(data_dir / FILE, str(parsed.password))
    without = URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port,
                         parsed.database, parsed.query)
    return without.render_as_string(hide_password=False)


def with_password(url: str, data_dir: Path) -> str:
    """``url`` with the password of ``data_dir/db.password`` when it has none and the file
    exists (a file others may read is refused); ``url`` unchanged otherwise."""
    parsed = make_url(url)
    path = data_dir / FILE
    if parsed.password is not None or parsed.get_backend_name() == "sqlite" or not path.exists():
        return url
    password = read_secret(path, "the database password", "the platform",
                           remedy=f"put the database user's password alone in {path} (0600)")
    return parsed.set(password=password).render_as_string(hide_password=False)
