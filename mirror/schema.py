"""The schema revisions this code knows, and the refusal of one it does not: readable without
SQLAlchemy, so a sync of a plain SQLite file can refuse a newer schema before its first request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mirror.errors import SchemaMismatch

# The revisions of migrations/versions, oldest first (tests check this against Alembic's own
# reading of the directory, so a new migration cannot be forgotten here).
SCHEMA_REVISIONS = ("0001", "0002", "0003", "0004", "0005")
SCHEMA_HEAD = SCHEMA_REVISIONS[-1]


def unknown_revision(current: str) -> SchemaMismatch:
    return SchemaMismatch(
        f"the database is at schema revision {current!r}, which this version "
        f"of autoenhance-mirror does not know (newest known: {SCHEMA_HEAD!r}); "
        "upgrade autoenhance-mirror, nothing was written"
    )


def refuse_unknown_sqlite_revision(path: Path) -> None:
    """Raise SchemaMismatch when the SQLite file at `path` is stamped with a revision this
    code does not know. Anything else (no file, no stamp, a busy or unreadable file) is left
    to the full check when the database is opened. The connection is closed before any other
    is made: SQLite's POSIX locks must never see a descriptor of the file closed under them."""
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return
    finally:
        connection.close()
    if row is not None and row[0] not in SCHEMA_REVISIONS:
        raise unknown_revision(str(row[0]))
