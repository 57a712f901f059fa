"""The write stage: outcomes collected into batches, each committed in a worker thread.

It checks the sync lock before every commit, retries a batch once on a new connection after
a lost one, holds back deletions until the deletion guard has decided (`DeletionGuard`), and
keeps what a summary shows (counts, the first failures, a dry run's changes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from mirror.batch import Batch, SoFar, Stored
from mirror.clock import RunClock
from mirror.control import RunControl
from mirror.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    MirrorError,
    TooManyDeletions,
    TransientDatabaseError,
)
from mirror.order_payload import OrderRow
from mirror.outcomes import Change, Counts, Failure, Missing, MissingOrder, OrderCounts, Outcome
from mirror.payload import ImageRow

if TYPE_CHECKING:  # the store and SQLAlchemy are imported when the first batch is written
    from sqlalchemy import Engine

    from mirror.lock import HeldLock

BATCH_SIZE = 1000
BATCH_SECONDS = 1.0  # flush at least this often, so a slow run still commits as it goes
# While a late database opens (SQLAlchemy and SQLModel imported beside the first requests),
# outcomes are collected up to this many, so the queue does not fill and hold up the fetching.
OPENING_BATCH = 5 * BATCH_SIZE
MAX_FAILURES_KEPT = 100
MAX_CHANGES_KEPT = 10_000  # what a dry run lists, image by image
# The deletion guard's default: a run may mark at most this share of its requested images
# deleted, and never fewer than DELETES_ALWAYS_ALLOWED. A wrong base URL 404s everything.
DELETES_SHARE = 0.10
DELETES_ALWAYS_ALLOWED = 10

_DATABASE_GONE = (DatabaseUnavailable, DatabaseBusy)
_T = TypeVar("_T")


@dataclass
class DeletionGuard:
    """How many mirrored images (or orders) a run may mark deleted (`--max-deletes`, or the
    default rule: 10 % of the requested ones, at least 10). `requested_now` reads the run's
    plan, which grows while a listing finds more."""

    requested_now: Callable[[], int]
    base_url: str
    max_deletes: int | None = None
    noun: str = "images"

    @property
    def requested(self) -> int:
        return self.requested_now()

    @property
    def limit(self) -> int:
        if self.max_deletes is not None:
            return self.max_deletes
        return max(DELETES_ALWAYS_ALLOWED, int(self.requested * DELETES_SHARE))

    def refusal(self, count: int) -> TooManyDeletions:
        rule = (
            f"--max-deletes {self.limit}"
            if self.max_deletes is not None
            else f"the default, 10 % of the {self.requested} requested and at least "
            f"{DELETES_ALWAYS_ALLOWED}"
        )
        return TooManyDeletions(
            f"the API at {self.base_url} answered 404 for {count} {self.noun} that are in the "
            f"mirror, more than this run may mark deleted ({self.limit}: {rule}); nothing was "
            "marked deleted and the run stopped. Check --base-url; if the images really were "
            f"deleted upstream, run again with --max-deletes {self.requested} "
            "(or MIRROR_MAX_DELETES)"
        )


class Writer:
    """Batches and commits one run's outcomes (`engine` None: a dry run with no mirror)."""

    def __init__(
        self,
        *,
        engine: Engine | None,
        lock: HeldLock,
        run_id: int | None,
        clock: RunClock,
        dry_run: bool,
        guard: DeletionGuard,
        order_guard: DeletionGuard,
        control: RunControl,
        so_far: Callable[[], SoFar],
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self._engine = engine
        self._so_far = so_far
        self._lock = lock
        self._run_id = run_id
        self._clock = clock
        self._dry_run = dry_run
        self.guard = guard
        self.order_guard = order_guard
        self._control = control
        self._on_warning = on_warning
        # Held back until the deletion guards have decided.
        self._to_delete: list[str] = []
        self._orders_to_delete: list[str] = []
        self.counts = Counts()
        self.order_counts = OrderCounts()
        self.listing_failures = 0  # listing pages that failed: the listing stopped there
        self.failures: list[Failure] = []  # the first MAX_FAILURES_KEPT, for the summary
        self.changes: list[Change] = []  # dry runs: what would happen
        self.changes_left_out = 0
        # Mirrored images to fetch by ID after the orders: their order no longer embeds
        # them, or answered 404. Taken by the run with `take_recheck`.
        self._recheck: list[str] = []
        # Set when the run started fetching before its database was open (`opened_by`).
        self._opening: asyncio.Task[tuple[Engine | None, int | None] | None] | None = None

    def opened_by(self, opening: asyncio.Task[tuple[Engine | None, int | None] | None]) -> None:
        """The database is being opened meanwhile (engine and run ID; for a dry run, the
        mirror to compare with or None, and no run; None if that failed and stopped the
        run): nothing is committed before it is."""
        self._opening = opening

    async def _database_ready(self) -> bool:
        if self._opening is not None:
            opened = await self._opening
            if opened is None:
                return False
            self._engine, self._run_id = opened
        return True

    async def run(self, queue: asyncio.Queue[Outcome | None]) -> None:
        """Take outcomes until None; commit every BATCH_SIZE of them or BATCH_SECONDS. While
        a late database opens, collect up to OPENING_BATCH and commit them once it is open."""
        batch = Batch([], [], [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BATCH_SECONDS
        size = 0  # len(batch), kept here: this loop runs once per outcome
        while True:
            opening = self._opening is not None and not self._opening.done()
            limit = OPENING_BATCH if opening else BATCH_SIZE
            if opening:  # nothing can be committed yet: no timed flush
                item = await self._next_while_opening(queue)
                if item is _OPENED:
                    continue
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    item = _FLUSH
            # Then whatever is already waiting, without a timed wait for each (a third of
            # this loop's cost per outcome).
            while item is not None and item is not _FLUSH:
                _add(batch, item)
                size += 1
                if size >= limit:
                    break
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            if item is None or item is _FLUSH or size >= limit:
                await self._commit(batch)
                batch = Batch([], [], [])
                size = 0
                deadline = loop.time() + BATCH_SECONDS
                if item is None:
                    return

    async def _next_while_opening(self, queue: asyncio.Queue[Outcome | None]) -> Any:
        """The next outcome, or _OPENED as soon as the database is open (or failed to)."""
        assert self._opening is not None
        get = asyncio.ensure_future(queue.get())
        try:
            await asyncio.wait({get, self._opening}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not get.done():
                get.cancel()  # a cancelled get takes nothing from the queue
        if get.cancelled() or not get.done():
            return _OPENED
        return get.result()

    async def commit_deletions(self) -> None:
        """Mark the held-back deletions, unless the guard refused them (or the database is
        gone): all in one transaction, so none is committed before the guard decided."""
        fatal = self._control.fatal
        if isinstance(fatal, (TooManyDeletions, *_DATABASE_GONE)):
            return
        if not self._to_delete and not self._orders_to_delete:
            return
        if not await self._database_ready():
            return
        if self._dry_run:
            self.counts.deleted += len(self._to_delete)
            self.order_counts.deleted += len(self._orders_to_delete)
            self._keep_changes(
                [Change("order", key, "deleted") for key in self._orders_to_delete]
                + [Change("image", key, "deleted") for key in self._to_delete]
            )
            return
        from mirror import store

        stored = await self._in_database(
            store.mark_deleted,
            image_ids=self._to_delete,
            order_ids=self._orders_to_delete,
            run_id=self._run_id,
            now=self._clock.now(),
        )
        if stored is not None:
            self.counts.add(stored.counts)
            self.order_counts.add(stored.order_counts)

    def take_recheck(self) -> list[str]:
        """The images to fetch by ID that the orders written so far named (each once)."""
        recheck, self._recheck = list(dict.fromkeys(self._recheck)), []
        return recheck

    async def _commit(self, batch: Batch) -> None:
        if not batch or isinstance(self._control.fatal, _DATABASE_GONE):
            return
        if not await self._database_ready():
            return
        from mirror import store

        if self._engine is None:
            stored: Stored | None = store.compare_with_nothing(batch)
        else:
            stored = await self._in_database(
                store.store_batch,
                batch=batch,
                run_id=self._run_id,
                now=self._clock.now(),
                dry_run=self._dry_run,
                so_far=self._so_far(),
            )
        if stored is None:
            return
        self.counts.add(stored.counts)
        self.order_counts.add(stored.order_counts)
        self.listing_failures += sum(1 for f in batch.failures if f.of == "listing")
        # All failures are in sync_failures; memory keeps only what a summary shows.
        self.failures.extend(stored.failures[: max(0, MAX_FAILURES_KEPT - len(self.failures))])
        self._keep_changes(stored.changes)
        self._recheck.extend(stored.recheck)
        self._to_delete.extend(stored.to_delete)
        self._orders_to_delete.extend(stored.orders_to_delete)
        if len(self._to_delete) > self.guard.limit:
            self._control.abort(self.guard.refusal(len(self._to_delete)))
        elif len(self._orders_to_delete) > self.order_guard.limit:
            self._control.abort(self.order_guard.refusal(len(self._orders_to_delete)))

    def _keep_changes(self, changes: list[Change]) -> None:
        room = max(0, MAX_CHANGES_KEPT - len(self.changes))
        self.changes.extend(changes[:room])
        self.changes_left_out += len(changes) - min(room, len(changes))

    async def _in_database(self, fn: Callable[..., _T], **kwargs: Any) -> _T | None:
        """Run a store function in a worker thread, the sync lock checked first. An error that
        may pass (a lost session, ...: TransientDatabaseError) rolled the transaction back, so
        it is done once more; any other database error stops the run (None)."""
        from sqlalchemy.exc import SQLAlchemyError

        from mirror import db

        engine = self._engine
        assert engine is not None
        for attempt in (1, 2):
            try:
                warning = await asyncio.to_thread(self._lock.ensure_held)
                if warning is not None and self._on_warning is not None:
                    self._on_warning(warning)
                return await asyncio.to_thread(fn, engine, **kwargs)
            except MirrorError as exc:
                self._control.abort(exc)
                return None
            except SQLAlchemyError as exc:
                error = db.database_error(engine, exc)
                if attempt == 1 and isinstance(error, TransientDatabaseError):
                    continue
                self._control.abort(error)
                return None
        return None


_FLUSH: Any = object()
_OPENED: Any = object()


def _add(batch: Batch, item: Outcome) -> None:
    if isinstance(item, ImageRow):
        batch.rows.append(item)
    elif isinstance(item, Missing):
        batch.missing.append(item)
    elif isinstance(item, OrderRow):
        batch.orders.append(item)
    elif isinstance(item, MissingOrder):
        batch.missing_orders.append(item)
    else:
        batch.failures.append(item)
