"""The database password apart from the URL (``sharedml up`` with PostgreSQL): the URL
in cluster.json and on the platform's command line carries none; the password is in
``platform/db.password`` (0600) only, and the platform reads it at start."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from platform_world import fresh_postgres
from sqlalchemy.engine import make_url

from sharedml.errors import ConfigError
from sharedml.platform.db_password import FILE, keep_apart, with_password
from sharedml.platform.local_deployment import DeploymentSpec, prepare

URL = "postgresql+psycopg://risk:s3cr%40t:pw@db.bank.example:5432/sharedml"


def test_the_password_leaves_the_url_for_a_0600_file_and_comes_back(tmp_path: Path) -> None:
    public = keep_apart(URL, tmp_path)
    assert public == "postgresql+psycopg://risk@db.bank.example:5432/sharedml"
    path = tmp_path / FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "s3cr@t:pw\n"
    assert make_url(with_password(public, tmp_path)) == make_url(URL)
    # a URL that has its own password, SQLite, and a data dir without the file: unchanged
    assert with_password(URL, tmp_path) == URL
    assert with_password("sqlite:///x.db", tmp_path) == "sqlite:///x.db"
    assert with_password(public, tmp_path / "elsewhere") == public
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others") as err:
        with_password(public, tmp_path)
    assert "chmod 600" in (err.value.remedy or "")


@pytest.mark.postgres
def test_sharedml_up_keeps_the_postgres_password_out_of_everything_but_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_data: Path
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "db_password")  # a database of this test's own
    store = fresh_postgres()
    url = store.engine.url.render_as_string(hide_password=False)
    store.engine.dispose()
    password = make_url(url).password
    assert password
    root = tmp_path / "cluster"
    data = {"bank": {"b": shared_data / "breast_hetero_host.csv"}}
    info = prepare(root, DeploymentSpec(data, dealer=False, db_url=url))
    assert make_url(info["db_url"]).password is None
    assert make_url(info["db_url"]).set(password=password) == make_url(url)
    secret = root / "platform" / FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text().strip() == password
    parsed = make_url(url)
    files = [p for p in root.rglob("*") if p.is_file()]
    # as a URL's password, nowhere; as a string at all, only in its file (the test
    # database's user and database are named like its password: those names are left out)
    assert not [p for p in files if f":{password}@".encode() in p.read_bytes()]

    def holds(path: Path) -> bool:
        text = path.read_bytes()
        for name in (parsed.username, parsed.database):
            text = text.replace(str(name).encode(), b"")
        return password.encode() in text

    assert [p for p in files if holds(p)] in ([secret], [])
    assert stat.S_IMODE((root / "metrics.token").stat().st_mode) == 0o600
