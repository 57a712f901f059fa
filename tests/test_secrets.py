"""The API key and the database password never reach output, tables or files, on any path."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PostgresServer, drop_database
from helpers import new_ids, run_cli
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from mirror.config import parse_database_url
from mirror.db import create_db_engine
from mirror.lock import sync_lock
from mirror.standin import Fault, StandIn

API_KEY = "AEKEY-0c7b9e2f-do-not-leak"
PASSWORD = "PGPW-5d81a3-do-not-leak"


@pytest.fixture
def secret_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """The test database, reached with a password (a role of its own on PostgreSQL)."""
    if not database_url.startswith("postgresql"):
        yield database_url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    role = f"secret_{uuid.uuid4().hex[:8]}"
    database = make_url(database_url).database
    admin = create_engine(parse_database_url(server.admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'"))
    # The test database's owner (the admin role) lets the new role create tables in it.
    owner = create_engine(parse_database_url(database_url), isolation_level="AUTOCOMMIT")
    with owner.connect() as connection:
        connection.execute(text(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}"))
    owner.dispose()
    yield (
        make_url(database_url)
        .set(username=role, password=PASSWORD)
        .render_as_string(hide_password=False)
    )
    drop_database(admin, str(database))
    with admin.connect() as connection:
        connection.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def test_no_path_shows_or_stores_a_secret(
    standin: StandIn, secret_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ids = new_ids(6)
    standin.state.missing.add(ids[1])
    standin.state.script(ids[2], *[Fault(status=500)] * 2)
    standin.state.script(ids[3], Fault(body="not json"), Fault(drop=True))
    unreachable_db = (
        make_url(secret_url).set(host="127.0.0.1", port=1)
        if secret_url.startswith("postgresql")
        else make_url(f"sqlite:///{tmp_path}/no/such/dir/mirror.db")
    )
    base = ["--base-url", standin.url, "--api-key", API_KEY, "--database-url", secret_url]
    no_api = ["--base-url", "http://127.0.0.1:1", *base[2:], "--retries", "0"]
    results = [
        run_cli("sync", *ids[:1], *base),  # success
        run_cli("sync", *ids, *base, "--retries", "1", "--json"),  # partial
        run_cli("sync", *ids, *base, "--dry-run"),
        run_cli("sync", "not-an-id", *base),  # exit 2
        run_cli(
            "sync", *ids, *base[:4], "--database-url", "sqlite://h:PGPW-5d81a3-do-not-leak@x/y"
        ),
        run_cli("sync", *ids, *no_api),  # API unreachable: exit 3
        run_cli(
            "sync",
            *ids,
            "--database-url",
            unreachable_db.render_as_string(hide_password=False),
            "--api-key",
            API_KEY,
        ),  # database unreachable: exit 3
        run_cli("status", "--database-url", secret_url),
        run_cli("status", "--database-url", secret_url, "--json"),
        run_cli("db", "current", "--database-url", secret_url),
        run_cli(
            "sync",
            *ids[:1],
            env={
                "AUTOENHANCE_API_KEY": API_KEY,
                "MIRROR_DATABASE_URL": secret_url,
                "AUTOENHANCE_BASE_URL": standin.url,
            },
        ),
        # A password with reserved characters, not percent-encoded: exit 2.
        run_cli("sync", *ids, "--database-url", f"postgresql://u:{PASSWORD}@x:{PASSWORD}/y@h/db"),
        run_cli(  # a key with a line break: exit 2, as JSON
            "sync",
            *ids,
            "--base-url",
            standin.url,
            "--api-key",
            API_KEY + "\r\nX-Injected: 1",
            "--database-url",
            secret_url,
            "--json",
        ),
        run_cli("sync", *ids, *no_api, "--json"),  # API unreachable, as JSON: exit 3
        # A password in the base URL, which the API does not take: exit 2, named without it.
        run_cli("sync", *ids, "--base-url", f"http://u:{PASSWORD}@127.0.0.1:1", "--json"),
    ]
    engine = create_db_engine(parse_database_url(secret_url))
    with sync_lock(engine):
        results.append(run_cli("sync", *ids, *base))  # lock held: exit 75
    standin.state.require_key = "the-right-key"
    results.append(run_cli("sync", *ids, *base))  # key rejected: exit 3

    assert [r.exit_code for r in results] == [0, 1, 1, 2, 2, 3, 3, 0, 0, 0, 0, 2, 2, 3, 2, 75, 3]
    for result in results:
        for secret in (API_KEY, PASSWORD):
            assert secret not in result.stdout, result.stdout
            assert secret not in result.stderr, result.stderr

    with engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            dump = repr(connection.execute(text(f"SELECT * FROM {table}")).all())
            assert API_KEY not in dump and PASSWORD not in dump, table
    engine.dispose()
    # Any file the runs left behind: the SQLite database, its WAL, the lock file, logs.
    for path in tmp_path.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert API_KEY.encode() not in content and PASSWORD.encode() not in content, path
