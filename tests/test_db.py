"""`mirror.db` on its own: what it reads from a database URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import StaticPool, create_engine

from mirror.config import parse_database_url
from mirror.db import (
    DEFAULT_LOCK_TIMEOUT,
    behind_transaction_pooler,
    lock_timeout,
    pg_lock_timeout_statement,
    search_path_asked,
    use_wal,
)
from mirror.errors import InputError


@pytest.mark.parametrize(
    ("query", "asked"),
    [
        ("?options=-csearch_path%3Daccount_a", "account_a"),
        ("?options=-c%20search_path%3Daccount_a,public", "account_a,public"),
        ("?options=--search-path%3Daccount_a", "account_a"),
        ("?options=-cstatement_timeout%3D0%20-csearch_path%3Db", "b"),
        ("?options=-cstatement_timeout%3D0", None),
        ("?sslmode=require", None),
        ("", None),
    ],
)
def test_the_search_path_a_url_asks_for(query: str, asked: str | None) -> None:
    assert search_path_asked(parse_database_url(f"postgresql://u@h/db{query}")) == asked


def test_only_pgbouncer_true_says_a_transaction_pooler_is_between() -> None:
    assert behind_transaction_pooler(parse_database_url("postgresql://u@h/db?pgbouncer=true"))
    assert not behind_transaction_pooler(parse_database_url("postgresql://u@h/db?pgbouncer=false"))
    assert not behind_transaction_pooler(parse_database_url("postgresql://u@h/db"))


def test_a_database_that_cannot_use_wal_keeps_its_safe_synchronous_setting(
    tmp_path: Path,
) -> None:
    """Where WAL cannot work (a VFS without shared memory: `unix-none` stands in for such a
    file system), SQLite keeps the rollback journal and says nothing; the sync's connection
    must then keep synchronous=FULL, the only setting that journal is safe with."""
    path = tmp_path / "m.db"
    engine = create_engine(
        "sqlite://",
        creator=lambda: sqlite3.connect(f"file:{path}?vfs=unix-none", uri=True),
        poolclass=StaticPool,  # one connection: the one use_wal set up is the one read back
    )
    use_wal(engine)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


@pytest.mark.parametrize(
    ("environment", "seconds"),
    [
        ({}, DEFAULT_LOCK_TIMEOUT),
        ({"MIRROR_LOCK_TIMEOUT": "2.5"}, 2.5),
        ({"MIRROR_SQLITE_BUSY_TIMEOUT": "4"}, 4.0),  # its first name, still read
        ({"MIRROR_LOCK_TIMEOUT": "1", "MIRROR_SQLITE_BUSY_TIMEOUT": "4"}, 1.0),
        ({"MIRROR_LOCK_TIMEOUT": " "}, DEFAULT_LOCK_TIMEOUT),
    ],
)
def test_the_lock_timeout_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], seconds: float
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert lock_timeout() == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "86401", "nan"])
def test_a_lock_timeout_that_is_not_seconds_is_an_input_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MIRROR_LOCK_TIMEOUT", value)
    with pytest.raises(InputError, match=f"MIRROR_LOCK_TIMEOUT must be .*{value!r}"):
        lock_timeout()


def test_no_wait_on_postgresql_is_one_millisecond_as_0_there_means_no_limit() -> None:
    assert pg_lock_timeout_statement(0) == "SET LOCAL lock_timeout = 1"
    assert pg_lock_timeout_statement(2.5) == "SET LOCAL lock_timeout = 2500"
