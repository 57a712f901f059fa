"""The schema revisions this code knows, and the refusal of one it does not: readable without
SQLAlchemy, so a sync of a plain SQLite file can refuse a newer schema before its first request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mirror.errors import SchemaMismatch

# The revisions of migrations/versions, oldest first (tests check this against Alembic's own
# reading of the directory, so a new migration cannot be forgotten here).
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]


def unknown_revision(current: str) -> SchemaMismatch:
    return SchemaMismatch(
        f"the database is at schema revision {current!r}, which this version "
        f"of autoenhance-mirror does not know (newest known: {SCHEMA_HEAD!r}); "
        "upgrade autoenhance-mirror, nothing was written"
    )


def someone_elses_tables() -> SchemaMismatch:
    """What a sync, or a dry run, says of a database holding an `images` table it did not make
    (no migration stamp): it will neither write into it nor compare with it."""
    return SchemaMismatch(
        "the database has an `images` table but no migration stamp: autoenhance-mirror did "
        "not make it; point --database-url at an empty database or one made by "
        "autoenhance-mirror, nothing was written"
    )


def outdated_revision(current: str) -> SchemaMismatch:
    """What a command that only reads (a dry run, `status`, `report`) says of a mirror it
    may not migrate."""
    return SchemaMismatch(
        f"the database schema is at {current!r}, older than {SCHEMA_HEAD!r}, and this command "
        "only reads: run `autoenhance-mirror db upgrade` first, or a sync, which migrates it "
        "by itself"
    )


_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"


def refuse_unusable_sqlite_revision(path: Path, *, upgrade_allowed: bool = True) -> None:
    """Raise SchemaMismatch when the SQLite file at `path` is stamped with a revision this
    code does not know, or (`upgrade_allowed` false: a dry run) with an older one, or holds an
    `images` table without a stamp (`someone_elses_tables`). Anything else (no file, no
    tables, a busy or unreadable file) is left to the full check when the database is
    opened. The connection is closed before any other is made: SQLite's POSIX locks must
    never see a descriptor of the file closed under them."""
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return
    try:
        tables = {name for (name,) in connection.execute(_TABLES)}
        row = None
        if "alembic_version" in tables:
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return
    finally:
        connection.close()
    if row is None:
        if "images" in tables:
            raise someone_elses_tables()
        return
    revision = str(row[0])
    if revision not in SCHEMA_REVISIONS:
        raise unknown_revision(revision)
    if not upgrade_allowed and revision != SCHEMA_HEAD:
        raise outdated_revision(revision)
