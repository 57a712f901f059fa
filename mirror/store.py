"""Writes: batched image (and, through `order_store`, order) upserts with change detection,
run rows and failure rows.

Each batch is one transaction, so a killed process leaves every row as it was or fully updated.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DataError, IntegrityError

from mirror.batch import Batch, SoFar, Stored
from mirror.clock import RunClock
from mirror.db import lock_timeout as default_lock_timeout
from mirror.db import lock_timeout_statement
from mirror.models import images_table, sync_failures_table, sync_runs_table
from mirror.order_store import apply_orders, mark_orders_deleted
from mirror.outcomes import Change, Counts, Failure, OrderCounts, RunStatus
from mirror.payload import CONTENT_COLUMNS, ImageRow, json_text


def start_run(engine: Engine, *, requested: int, clock: RunClock) -> int:
    """Record a new run as `running`; runs left `running` by a dead process become interrupted.

    Only called with the sync lock held, so another `running` row is a run that ended without
    recording it (killed, or its database failed), or one on this host whose process is still
    alive but lost its lock (it stops before its next commit): that one is left alone.
    `clock` is set never to read a time before those the mirror holds (see `mirror.clock`).
    """
    with engine.begin() as connection:
        runs = sync_runs_table.c
        stamps = (runs.started_at, runs.finished_at, runs.last_written_at)
        clock.not_before(*connection.execute(select(*map(func.max, stamps))).one())
        stale = connection.execute(
            select(runs.id, runs.pid, runs.host, runs.started_at).where(runs.status == "running")
        ).all()
        host = socket.gethostname()
        abandoned = [
            r.id for r in stale if not (r.host == host and _alive(r.pid, since=r.started_at))
        ]
        if abandoned:
            connection.execute(
                update(sync_runs_table)
                .where(runs.id.in_(abandoned))
                .values(
                    status="interrupted",
                    finished_at=clock.now(),
                    error="abandoned: it ended without recording how (killed, crashed, "
                    "or its database failed)",
                )
            )
        result = connection.execute(
            insert(sync_runs_table)
            .values(
                started_at=clock.now(),
                status="running",
                requested=requested,
                pid=os.getpid(),
                host=host,
            )
            .returning(sync_runs_table.c.id)
        )
        return int(result.scalar_one())


def process_gone(pid: int | None, host: str | None, started_at: datetime) -> bool:
    """Whether the process of a `running` run is known to have ended without recording it:
    the run was started on this host and its process no longer runs. (On another host
    nobody here can tell.)"""
    return host == socket.gethostname() and not _alive(pid, since=started_at)


def _alive(pid: int | None, *, since: datetime) -> bool:
    """Whether the process that started a run `since` then is still running: its pid exists
    and (where /proc tells) that process started no later than the run. A pid reused by a
    later process is not the run's."""
    if pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _process_start(pid)
    if started is None:
        return True  # no /proc: the pid's existence is all there is to go by
    return started <= since.astimezone(UTC) + PROCESS_START_SLACK


# A process's start time from /proc is in clock ticks and the boot time in whole seconds.
PROCESS_START_SLACK = timedelta(seconds=2)


def _process_start(pid: int) -> datetime | None:
    """When process `pid` started (Linux /proc), or None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        # Field 22 (starttime); the command name in parentheses may hold spaces.
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def finish_run(
    engine: Engine,
    *,
    run_id: int,
    status: RunStatus,
    counts: Counts,
    now: datetime,
    requested: int | None = None,
    order_counts: OrderCounts | None = None,
    orders_requested: int | None = None,
    api_requests: int | None = None,
    error: str | None = None,
    lock_timeout: float | None = None,
) -> None:
    """Record the end of a run. `lock_timeout`: wait at most this many seconds for another's
    lock (after a failed run, not the usual 30)."""
    dialect = engine.dialect.name
    with engine.begin() as connection:
        if lock_timeout is not None:
            connection.exec_driver_sql(lock_timeout_statement(dialect, lock_timeout))
        connection.execute(
            update(sync_runs_table)
            .where(sync_runs_table.c.id == run_id)
            .values(
                status=status,
                finished_at=now,
                error=error,
                **counts.as_dict(),
                **({} if order_counts is None else order_counts.as_dict()),
                **({} if requested is None else {"requested": requested}),
                **({} if orders_requested is None else {"orders_requested": orders_requested}),
                **({} if api_requests is None else {"api_requests": api_requests}),
            )
        )
        if lock_timeout is not None and dialect == "sqlite":  # a connection's setting: put back
            connection.exec_driver_sql(lock_timeout_statement(dialect, default_lock_timeout()))


def store_batch(
    engine: Engine,
    *,
    batch: Batch,
    run_id: int | None,
    now: datetime,
    dry_run: bool = False,
    so_far: SoFar | None = None,
) -> Stored:
    """`apply_batch`, isolating rows the database refuses (say a NUL character, which
    PostgreSQL's text and JSONB cannot hold): the batch is then written image by image and
    each refused image becomes an `invalid_payload` failure instead of ending the run.
    """
    write = functools.partial(
        apply_batch, engine, run_id=run_id, now=now, dry_run=dry_run, so_far=so_far
    )
    try:
        return write(batch=batch)
    except (DataError, IntegrityError):
        pass
    stored = Stored()
    singles = [Batch([row], [], []) for row in batch.rows]
    singles += [Batch([], [missing], []) for missing in batch.missing]
    singles += [Batch([], [], list(batch.failures))] if batch.failures else []
    singles += [Batch([], [], [], [order]) for order in batch.orders]
    singles += [Batch([], [], [], [], list(batch.missing_orders))] if batch.missing_orders else []
    for single in singles:
        try:
            one = write(batch=single)
        except (DataError, IntegrityError) as exc:
            if not single.rows and not single.orders:
                raise  # only an API's own values can be refused; anything else is ours
            reason = " ".join(str(exc.orig).split())[:200]
            message = f"the database refused it: {reason}"
            if single.rows:
                refused = Failure(single.rows[0].image_id, "invalid_payload", message)
            else:
                order_id = single.orders[0].order_id
                refused = Failure(None, "invalid_payload", message, order_id=order_id, of="order")
            one = write(batch=Batch([], [], [refused]))
        stored.add(one)
    return stored


def compare_with_nothing(batch: Batch) -> Stored:
    """What a dry run reports where there is no mirror yet: every image is new, every 404 a
    not_found failure. Touches no database (a dry run creates nothing)."""
    failures = list(batch.failures) + [missing.not_found() for missing in batch.missing]
    failures += [missing.not_found() for missing in batch.missing_orders]
    counts = Counts(
        inserted=len(batch.rows), not_found=len(batch.missing), failed=_failed(batch, "image")
    )
    order_counts = OrderCounts(
        inserted=len(batch.orders),
        not_found=len(batch.missing_orders),
        failed=_failed(batch, "order"),
    )
    changes = [Change("order", order.order_id, "new") for order in batch.orders]
    changes += [Change("image", row.image_id, "new") for row in batch.rows]
    return Stored(counts, order_counts, failures, changes=changes)


def _failed(batch: Batch, of: str) -> int:
    return sum(1 for failure in batch.failures if failure.of == of)


def apply_batch(
    engine: Engine,
    *,
    batch: Batch,
    run_id: int | None,
    now: datetime,
    dry_run: bool = False,
    so_far: SoFar | None = None,
) -> Stored:
    """Upsert a batch in one transaction and add its counts to the run's row (with how far
    the run had got: `so_far`).

    404s of images never mirrored become failures; 404s of mirrored images are returned in
    `to_delete`, unwritten. Orders first, the same way (`order_store`). With `dry_run` only
    reads: the result says what would happen.
    """
    with engine.begin() as connection:
        sql = _statements(connection.dialect)
        stamp = sql.timestamp(now)
        orders = apply_orders(
            connection,
            orders=batch.orders,
            missing=batch.missing_orders,
            now=now,
            dry_run=dry_run,
        )
        orders.counts.failed = _failed(batch, "order")
        counts = Counts()
        # On PostgreSQL unchanged images (the usual case for a cron job) are found and
        # touched by one UPDATE ... RETURNING, and only the rest are looked up: a third
        # faster there. On SQLite a lookup first is cheaper (measured: bench/storage.py).
        # A dry run only reads.
        unchanged: set[str] = set()
        if batch.rows and sql.touch_first and not dry_run:
            unchanged = _touch_unchanged(connection, sql, batch.rows, stamp)
        rest = [row for row in batch.rows if row.image_id not in unchanged]
        missing_ids = [missing.image_id for missing in batch.missing]
        known = _known_images(connection, sql, [r.image_id for r in rest] + missing_ids)
        to_upsert: list[ImageRow] = []
        still_unchanged: list[ImageRow] = []
        for row in rest:
            previous = known.get(row.image_id)
            if previous is None:
                counts.inserted += 1
            elif previous == (row.columns["content_hash"], False):
                still_unchanged.append(row)
                continue
            else:
                counts.updated += 1
            to_upsert.append(row)
        counts.unchanged = len(unchanged) + len(still_unchanged)
        # A 404 of an image already marked deleted changes nothing: it counts as deleted.
        to_delete = [i for i in missing_ids if i in known and not known[i][1]]
        counts.deleted = sum(1 for i in missing_ids if i in known and known[i][1])
        failures = list(batch.failures) + orders.failures
        failures += [
            missing.not_found() for missing in batch.missing if missing.image_id not in known
        ]
        counts.not_found = len(batch.missing) - len(to_delete) - counts.deleted
        counts.failed = _failed(batch, "image")
        stored = Stored(
            counts,
            orders.counts,
            failures,
            to_delete,
            orders_to_delete=orders.to_delete,
            recheck=orders.recheck,
        )
        if dry_run:  # what a real run would write, order by order and image by image
            stored.changes = [Change("order", key, what) for key, what in orders.changes]
            stored.changes += [
                Change("image", row.image_id, "new" if row.image_id not in known else "changed")
                for row in to_upsert
            ]
            return stored

        if to_upsert:
            connection.exec_driver_sql(
                sql.upsert, [sql.upsert_params(row, stamp) for row in to_upsert]
            )
            written = [row.image_id for row in to_upsert]
            replaced = [image_id for image_id in written if image_id in known]
            _open_versions(connection, sql, written, replaced, stamp, run_id)
        if still_unchanged:
            ids = [row.image_id for row in still_unchanged]
            connection.exec_driver_sql(sql.touch, sql.ids_params(ids, now=stamp))
        if failures and run_id is not None:
            _record_failures(connection, run_id, failures, now)
        if run_id is not None:
            _add_to_run(connection, run_id, now, counts, orders.counts, so_far)
        return stored


def mark_deleted(
    engine: Engine,
    *,
    image_ids: Sequence[str],
    order_ids: Sequence[str] = (),
    run_id: int | None,
    now: datetime,
) -> Stored:
    """Set `deleted_at` of mirrored images and orders that answered 404, in one transaction
    with the run's counts: what `apply_batch` held back once the deletion guard agreed."""
    stored = Stored(Counts(deleted=len(image_ids)), OrderCounts(deleted=len(order_ids)))
    if not image_ids and not order_ids:
        return stored
    with engine.begin() as connection:
        sql = _statements(connection.dialect)
        if image_ids:
            stamp = sql.timestamp(now)
            deleted = sql.ids_params(image_ids, now=stamp)
            connection.exec_driver_sql(sql.mark_deleted, deleted)
            connection.exec_driver_sql(sql.close_versions, deleted)
        if order_ids:
            mark_orders_deleted(connection, order_ids, now)
        if run_id is not None:
            _add_to_run(connection, run_id, now, stored.counts, stored.order_counts)
    return stored


def _open_versions(
    connection: Connection,
    sql: _Statements,
    written: Sequence[str],
    replaced: Sequence[str],
    stamp: Any,
    run_id: int | None,
) -> None:
    """History (spec §8): close the open versions of the `replaced` images (changed, or back
    after a deletion), then open one version per `written` image, copied from its `images`
    row (one statement: binding every column again per row cost 15 % of a sync's CPU)."""
    if replaced:
        connection.exec_driver_sql(sql.close_versions, sql.ids_params(replaced, now=stamp))
    connection.exec_driver_sql(sql.open_versions, sql.ids_params(written, run_id=run_id))


def _record_failures(
    connection: Connection, run_id: int, failures: Sequence[Failure], now: datetime
) -> None:
    connection.execute(
        insert(sync_failures_table),
        [
            {
                "run_id": run_id,
                "image_id": f.image_id,
                "order_id": f.order_id,
                "kind": f.kind,
                "http_status": f.http_status,
                "message": _storable(f.message),
                "occurred_at": now,
            }
            for f in failures
        ],
    )


@dataclass(frozen=True)
class _Statements:
    """The hot statements of one dialect, run at the driver level.

    SQLAlchemy builds the upsert (`insert(...).on_conflict_do_update(...)`) once; per row the
    values are converted here, straight to what the driver takes, rather than through the
    type machinery for every parameter: that was most of the storage cost.
    """

    dialect: str
    touch_first: bool  # try the unchanged-touching UPDATE before looking rows up
    upsert: str
    # Positional drivers (sqlite3): the parameters in statement order, picked in C.
    upsert_order: Callable[[dict[str, Any]], tuple[Any, ...]] | None
    select_known: str
    touch: str  # moves last_synced_at of the given images
    touch_unchanged: str  # the same, only where the content_hash is equal; RETURNING them
    mark_deleted: str
    open_versions: str  # copies the given images rows into image_versions, open
    close_versions: str  # closes the open versions of the given images

    def timestamp(self, value: datetime) -> Any:
        # What SQLAlchemy's DateTime stores on SQLite (naive UTC text); aware on Postgres.
        if self.dialect == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def upsert_params(self, row: ImageRow, stamp: Any) -> Any:
        values = dict(row.columns)
        for name in JSON_COLUMNS:
            value = values[name]
            values[name] = None if value is None else json_text(value)
        if values["date_added_at"] is not None:
            values["date_added_at"] = self.timestamp(values["date_added_at"])
        values.update(
            image_id=row.image_id,
            first_synced_at=stamp,
            last_synced_at=stamp,
            last_changed_at=stamp,
            deleted_at=None,
        )
        if self.upsert_order is None:
            return values
        return self.upsert_order(values)

    def touch_params(self, rows: Sequence[ImageRow], stamp: Any) -> Any:
        ids = [row.image_id for row in rows]
        hashes = [row.columns["content_hash"] for row in rows]
        if self.dialect == "postgresql":
            return {"now": stamp, "ids": ids, "hashes": hashes}
        return (stamp, json.dumps(list(zip(ids, hashes, strict=True))))

    def ids_params(self, image_ids: Sequence[str], **before: Any) -> Any:
        """Parameters of a statement on a list of IDs that first takes the values `before`
        (`now`, `run_id`), in the order they appear in it."""
        if self.dialect == "postgresql":
            return {"ids": list(image_ids), **before}
        return (*before.values(), json.dumps(list(image_ids)))


JSON_COLUMNS = ("finetune_settings", "restage", "extra")


@functools.cache
def _statements(dialect: Dialect) -> _Statements:
    if dialect.name == "postgresql":
        ids, now, run = "= ANY(%(ids)s)", "%(now)s", "%(run_id)s"
        pairs = "unnest(%(ids)s::text[], %(hashes)s::text[]) AS v(id, h)"
        stmt: Any = postgresql.insert(images_table)
    else:
        ids, now, run = "IN (SELECT value FROM json_each(?))", "?", "?"
        pairs = (
            "(SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS h "
            "FROM json_each(?)) AS v"
        )
        stmt = sqlite.insert(images_table)
    replaced = [*CONTENT_COLUMNS, "last_synced_at", "last_changed_at", "deleted_at"]
    stmt = stmt.on_conflict_do_update(
        index_elements=[images_table.c.image_id],
        set_={name: stmt.excluded[name] for name in replaced},
    )
    compiled = stmt.compile(dialect=dialect)
    order = operator.itemgetter(*compiled.positiontup) if compiled.positiontup else None
    content = ", ".join(CONTENT_COLUMNS)
    return _Statements(
        dialect=dialect.name,
        touch_first=dialect.name == "postgresql",
        upsert=str(compiled),
        upsert_order=order,
        select_known=(
            "SELECT image_id, content_hash, deleted_at IS NOT NULL FROM images "
            f"WHERE image_id {ids}"
        ),
        touch=f"UPDATE images SET last_synced_at = {now} WHERE image_id {ids}",
        touch_unchanged=(
            f"UPDATE images SET last_synced_at = {now} FROM {pairs} "
            "WHERE images.image_id = v.id AND images.content_hash = v.h "
            "AND images.deleted_at IS NULL RETURNING images.image_id"
        ),
        mark_deleted=(
            f"UPDATE images SET deleted_at = COALESCE(deleted_at, {now}) WHERE image_id {ids}"
        ),
        open_versions=(
            f"INSERT INTO image_versions (image_id, run_id, valid_from, {content}) "
            f"SELECT image_id, {run}, last_changed_at, {content} FROM images "
            f"WHERE image_id {ids}"
        ),
        close_versions=(
            f"UPDATE image_versions SET valid_to = {now} WHERE image_id {ids} AND valid_to IS NULL"
        ),
    )


def _touch_unchanged(
    connection: Connection, sql: _Statements, rows: Sequence[ImageRow], stamp: Any
) -> set[str]:
    """Move last_synced_at of the rows whose content is unchanged; returns their IDs."""
    result = connection.exec_driver_sql(sql.touch_unchanged, sql.touch_params(rows, stamp))
    return {image_id for (image_id,) in result}


def _known_images(
    connection: Connection, sql: _Statements, image_ids: Sequence[str]
) -> dict[str, tuple[str, bool]]:
    """image_id → (content_hash, is_deleted) for those of `image_ids` already mirrored."""
    if not image_ids:
        return {}
    rows = connection.exec_driver_sql(sql.select_known, sql.ids_params(image_ids))
    return {image_id: (digest, bool(deleted)) for image_id, digest, deleted in rows}


def _storable(message: str) -> str:
    """Messages quote servers and bodies: no NUL (PostgreSQL's text cannot hold it) and no
    lone surrogate (not encodable), both shown escaped."""
    escaped = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return escaped.replace("\x00", "\\x00")


def _add_to_run(
    connection: Connection,
    run_id: int,
    now: datetime,
    counts: Counts,
    order_counts: OrderCounts,
    so_far: SoFar | None = None,
) -> None:
    """Keep the run's row current batch by batch, so an aborted run still tells what it did
    and when it last wrote (`now`, the time stamped on the batch's rows)."""
    c = sync_runs_table.c
    tallies = counts.as_dict() | order_counts.as_dict()
    values: dict[str, Any] = {name: c[name] + value for name, value in tallies.items() if value}
    if so_far is not None:
        values.update(so_far._asdict())
    values["last_written_at"] = now
    connection.execute(update(sync_runs_table).where(c.id == run_id).values(values))
