"""The mirror at a glance (counts, last runs, last failures), for `demo` and `status`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from mirror.models import images_table, orders_table, sync_failures_table, sync_runs_table
from mirror.outcomes import failure_line
from mirror.shown import printable
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

    def as_json(self, database: str) -> dict[str, Any]:
        """`status --json` (`database` as it may be shown: password masked)."""
        return {
            "database": database,
            "images_by_status": {str(k): n for k, n in self.by_status},
            "deleted": self.deleted,
            "orders_by_status": {str(k): n for k, n in self.orders_by_status},
            "orders_deleted": self.orders_deleted,
            "runs": [{**run, "process_gone": run["id"] in self.gone} for run in self.last_runs],
            "last_run_failures": self.last_run_failures,
            "last_run_failures_left_out": self.last_run_failures_left_out,
        }

    def text(self, database: str) -> Iterator[str]:
        """`status`, line by line."""
        yield f"mirror at {database}"
        yield format_counts("images by status", self.by_status)
        yield f"deleted upstream: {self.deleted}"
        orders = sum(n for _, n in self.orders_by_status)
        yield f"orders {orders} ({self.orders_deleted} deleted upstream)"
        if self.orders_by_status:
            yield format_counts("orders by status", self.orders_by_status)
        yield "last runs"
        for run in self.last_runs:
            yield _run_line(run, gone=run["id"] in self.gone)
        if self.last_run_failures:
            yield "failures of the last run"
            for f in self.last_run_failures:
                subject = f["image_id"] or (
                    f"order {f['order_id']}" if f["order_id"] else "order listing"
                )
                # printable: a message stored before 3111e01 may quote a server unescaped
                yield failure_line(f["kind"], subject, printable(f["message"]), f["http_status"])
            if self.last_run_failures_left_out:
                more = self.last_run_failures_left_out
                yield f"  … and {more} more (see the sync_failures table)"


def _run_line(run: dict[str, Any], *, gone: bool) -> str:
    line = (
        f"  run {run['id']}  {run['started_at']:%Y-%m-%d %H:%M:%S}  {run['status']:<11} "
        f"requested {run['requested']}, new {run['inserted']}, changed {run['updated']}, "
        f"unchanged {run['unchanged']}, deleted {run['deleted']}, "
        f"not found {run['not_found']}, failed {run['failed']}"
    )
    if run["orders_requested"]:
        line += (
            f"; orders {run['orders_requested']}: new {run['orders_inserted']}, "
            f"changed {run['orders_updated']}, unchanged {run['orders_unchanged']}, "
            f"deleted {run['orders_deleted']}, not found {run['orders_not_found']}, "
            f"failed {run['orders_failed']}; API requests {run['api_requests']}"
        )
    if gone:
        line += " (its process is gone: killed or crashed; the next sync marks it interrupted)"
    return line


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
    shown = [("(none)" if v is None else printable(v), n) for v, n in rows]  # the API's words
    width = max([len(value) for value, _ in shown] + [len(title)])
    lines = [title]
    lines += [f"  {value:<{width}}  {n:>6}" for value, n in shown]
    return "\n".join(lines)
