"""Storage alone: the upsert path (`store.apply_batch`) without HTTP, on fresh databases.

    python bench/storage.py                         # SQLite, and PostgreSQL if configured
    python bench/storage.py --rows 100000 --repeat 3 --postgres-url postgresql://...

Rows are built beforehand (the stand-in's records through `payload.to_row`), then written in
batches of the size a sync uses: once as new rows, then re-upserted unchanged three times
(the first re-upsert meets freshly written pages; later ones are a cron job's steady state).
Prints rows/s, medians over --repeat fresh databases, as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from run import drop_database  # bench/ is on sys.path when run as a script
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from mirror.config import parse_database_url
from mirror.db import create_db_engine, ensure_schema
from mirror.payload import ImageRow, to_row
from mirror.standin import record_for
from mirror.store import Batch, apply_batch
from mirror.writer import BATCH_SIZE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()

    rng = random.Random(args.rows)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(args.rows)]
    rows = [to_row(record_for(i), requested_id=i) for i in ids]

    print(f"{args.rows:,} rows, batches of {BATCH_SIZE}, medians of {args.repeat} fresh databases")
    print()
    print("| db | new rows/s | 1st unchanged re-upsert rows/s | later re-upserts rows/s |")
    print("| --- | --- | --- | --- |")
    databases = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    for database in databases:
        new, first, later = [], [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as scratch:
                engine, drop = fresh(database, scratch, args.postgres_url)
                try:
                    new.append(write_all(engine, rows))
                    first.append(write_all(engine, rows))
                    later.append(statistics.median(write_all(engine, rows) for _ in range(2)))
                finally:
                    engine.dispose()
                    drop()
        print(
            f"| {database} | {statistics.median(new):,.0f} | {statistics.median(first):,.0f} | "
            f"{statistics.median(later):,.0f} |",
            flush=True,
        )


def write_all(engine: Engine, rows: list[ImageRow]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH_SIZE):
        batch = Batch(rows[start : start + BATCH_SIZE], [], [])
        apply_batch(engine, batch=batch, run_id=None, now=datetime.now(UTC))
    return len(rows) / (time.perf_counter() - started)


def fresh(database: str, scratch: str, postgres_url: str | None) -> tuple[Engine, object]:
    if database == "sqlite":
        url = f"sqlite:///{Path(scratch) / 'storage.db'}"
        engine = create_db_engine(parse_database_url(url))
        ensure_schema(engine)
        return engine, lambda: None
    assert postgres_url is not None
    name = f"mirror_storage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(parse_database_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    engine = create_db_engine(parse_database_url(url))
    ensure_schema(engine)

    def drop() -> None:
        drop_database(admin, name)
        admin.dispose()

    return engine, drop


if __name__ == "__main__":
    main()
