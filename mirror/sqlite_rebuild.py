"""Views and triggers that users made on a SQLite mirror, kept across a migration.

Alembic's batch mode rebuilds a SQLite table (a copy, DROP, then RENAME, the recipe of SQLite's
"other kinds of table schema changes"). The DROP takes the table's triggers with it, and since
SQLite 3.26 the RENAME checks every view and trigger of the database: one that names a table
not there at that moment fails the whole migration ("error in view ...: no such table"). So,
as that recipe asks, every view and trigger is set aside before the migration and made again
from its own SQL after it, in the migration's transaction. SQLite checks neither a view's nor a
trigger's body when it is made, so the only one that cannot come back is a trigger whose table
a downgrade dropped: it goes with its table, as with DROP TABLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class SchemaObject:
    kind: str  # "view" or "trigger"
    name: str
    table: str  # what a trigger is on (a table or a view); a view's own name
    sql: str


@contextmanager
def views_and_triggers_set_aside(connection: Connection) -> Iterator[None]:
    """Drop every view and trigger, and make them again once the body has run."""
    kept = [
        SchemaObject(*row)
        for row in connection.execute(
            text(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE type IN ('view', 'trigger') AND sql IS NOT NULL "
                "ORDER BY type = 'trigger', rowid"  # views first: a trigger may be on one
            )
        )
    ]
    quote = connection.dialect.identifier_preparer.quote
    for item in reversed(kept):  # triggers first: dropping a view drops its triggers
        connection.exec_driver_sql(f"DROP {item.kind.upper()} IF EXISTS {quote(item.name)}")
    yield
    for item in kept:
        if _exists(connection, item.name, item.kind):
            continue  # the migration made one of that name itself
        if item.kind == "trigger" and not _exists(connection, item.table, "table", "view"):
            continue  # its table was dropped
        connection.exec_driver_sql(item.sql)


def _exists(connection: Connection, name: str, *kinds: str) -> bool:
    found = connection.execute(
        text("SELECT type FROM sqlite_master WHERE lower(name) = lower(:name)"), {"name": name}
    )
    return any(kind in kinds for (kind,) in found)
