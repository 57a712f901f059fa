"""Storage of history: bytes per `image_versions` row, indexes included, on both databases.

    python bench/history_size.py --images 10000 [--postgres-url postgresql://...]

Syncs N new images from the stand-in (one version each), then changes every image's status
and syncs again (a second version each, the first closed), and prints the table's size per
version: SQLite from its `dbstat` table, PostgreSQL from pg_total_relation_size after VACUUM.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from run import drop_database  # bench/ is on sys.path when run as a script
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mirror.standin import StandIn, StandInState, record_for


def sync(url: str, base_url: str, ids_file: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mirror", "sync", "--from-file", str(ids_file), "-q",
         "--database-url", url, "--base-url", base_url, "--max-rate", "0",
         "--concurrency", "32"],
        check=True,
    )  # fmt: skip


def measure(url: str, n: int, state: StandInState, base_url: str, tmp: Path) -> dict[str, float]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    ids_file = tmp / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    for image_id in ids:
        state.records[image_id] = record_for(image_id) | {"status": "processing"}
    sync(url, base_url, ids_file)
    for image_id in ids:
        state.records[image_id]["status"] = "processed"
    sync(url, base_url, ids_file)
    engine = create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT count(*) FROM image_versions")).scalar_one()
        if engine.dialect.name == "sqlite":
            table, total = connection.execute(
                text(
                    "SELECT sum(CASE WHEN name = 'image_versions' THEN pgsize END), sum(pgsize) "
                    "FROM dbstat WHERE name = 'image_versions' OR name IN (SELECT name "
                    "FROM sqlite_master WHERE tbl_name = 'image_versions' AND type = 'index')"
                )
            ).one()
        else:
            connection.execute(text("VACUUM ANALYZE image_versions"))
            table, total = connection.execute(
                text(
                    "SELECT pg_table_size('image_versions'), "
                    "pg_total_relation_size('image_versions')"
                )
            ).one()
    engine.dispose()
    return {"versions": versions, "table": table / versions, "total": total / versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    state = StandInState()
    results = {}
    with (
        StandIn(host="127.0.0.1", port=0, state=state) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        results["SQLite"] = measure(
            f"sqlite:///{Path(tmp) / 'size.db'}", args.images, state, server.url, Path(tmp)
        )
        if args.postgres_url:
            admin = make_url(args.postgres_url)
            name = f"bench_size_{uuid.uuid4().hex[:8]}"
            admin_engine = create_engine(
                admin.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
            )
            with admin_engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            url = admin.set(database=name).render_as_string(hide_password=False)
            try:
                results["PostgreSQL"] = measure(url, args.images, state, server.url, Path(tmp))
            finally:
                drop_database(admin_engine, name)
                admin_engine.dispose()
    print(f"{args.images} images, two versions each\n")
    print("| database | versions | bytes per version (table) | bytes per version (with indexes) |")
    print("| --- | --- | --- | --- |")
    for db, r in results.items():
        print(f"| {db} | {r['versions']:,} | {r['table']:.0f} | {r['total']:.0f} |")


if __name__ == "__main__":
    main()
