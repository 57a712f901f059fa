"""The mirror at a glance (counts, last runs, last failures), for `demo` and `status`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from mirror.models import images_table, orders_table, sync_failures_table, sync_runs_table
from mirror.store import process_gone


@dataclass
class Overview:
    by_status: list[tuple[str | None, int]]
    by_scene: list[tuple[str | None, int]]
    deleted: int
    orders_by_status: list[tuple[str | None, int]]
    orders_deleted: int
    last_runs: list[dict[str, Any]]
    last_run_failures: list[dict[str, Any]]  # the first `failures_shown`
    last_run_failures_left_out: int = 0
    # Runs still `running` whose process has ended (killed, crashed): the next sync marks
    # them interrupted; until then the row cannot say so itself.
    gone: set[int] = field(default_factory=set)


def build_overview(engine: Engine, *, runs: int = 5, failures_shown: int = 20) -> Overview:
    images = images_table.c
    with engine.connect() as connection:
        orders = orders_table.c
        run_rows = connection.execute(
            select(sync_runs_table).order_by(sync_runs_table.c.id.desc()).limit(runs)
        ).mappings()
        last_runs = [dict(row) for row in run_rows]
        failures: list[dict[str, Any]] = []
        failure_count = 0
        if last_runs:
            f = sync_failures_table.c
            last = f.run_id == last_runs[0]["id"]
            failures = [
                dict(row)
                for row in connection.execute(
                    select(f.image_id, f.order_id, f.kind, f.http_status, f.message)
                    .where(last)
                    .order_by(f.id)
                    .limit(failures_shown)
                ).mappings()
            ]
            failure_count = connection.execute(select(func.count()).where(last)).scalar_one()
        gone = {
            run["id"]
            for run in last_runs
            if run["status"] == "running"
            and process_gone(run["pid"], run["host"], run["started_at"])
        }
        return Overview(
            by_status=count_by(connection, images.status, images.deleted_at),
            by_scene=count_by(connection, images.scene, images.deleted_at),
            deleted=count_deleted(connection, images.deleted_at),
            orders_by_status=count_by(connection, orders.status, orders.deleted_at),
            orders_deleted=count_deleted(connection, orders.deleted_at),
            last_runs=last_runs,
            last_run_failures=failures,
            last_run_failures_left_out=int(failure_count) - len(failures),
            gone=gone,
        )


def count_by(connection: Connection, column: Any, deleted_at: Any) -> list[tuple[Any, int]]:
    """Rows not deleted upstream (`deleted_at` NULL), by `column`, most first."""
    query = (
        select(column, func.count())
        .where(deleted_at.is_(None))
        .group_by(column)
        .order_by(func.count().desc(), column)
    )
    return [(value, int(n)) for value, n in connection.execute(query)]


def count_deleted(connection: Connection, deleted_at: Any) -> int:
    """Rows deleted upstream (`deleted_at` set)."""
    return int(connection.execute(select(func.count()).where(deleted_at.is_not(None))).scalar_one())


def format_counts(title: str, rows: list[tuple[str | None, int]]) -> str:
    width = max([len(str(value)) for value, _ in rows] + [len(title)])
    lines = [title]
    lines += [f"  {('(none)' if v is None else v):<{width}}  {n:>6}" for v, n in rows]
    return "\n".join(lines)
