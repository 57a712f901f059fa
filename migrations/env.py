"""Alembic environment: uses the connection handed in by `mirror.db`, else builds one.

From a checkout, `alembic upgrade head` migrates MIRROR_DATABASE_URL (or the default SQLite file).
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import mirror.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from mirror.config import DEFAULT_DATABASE_URL, parse_database_url
from mirror.db import atomic_ddl, create_db_engine

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    url = parse_database_url(os.environ.get("MIRROR_DATABASE_URL") or DEFAULT_DATABASE_URL)
    engine = create_db_engine(url)  # as a sync makes it: `?pgbouncer=true` understood
    with engine.connect() as connection, atomic_ddl(connection):
        run_migrations(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; connect to a database")
run_migrations_online()
