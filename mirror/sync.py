"""Orchestration of one run: IDs → fetch (concurrent, paced) → normalise → store in batches.

No click and no printing here: progress, warnings and the summary go to callbacks and return
values, and errors are the exceptions of `mirror.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mirror import db, store
from mirror.api import (
    BACKOFF_BASE,
    ApiSettings,
    FetchResult,
    ImageFetcher,
    Reachability,
    Transport,
    TransportFactory,
)
from mirror.config import Redactor
from mirror.errors import (
    DatabaseBusy,
    DatabaseUnavailable,
    Interrupted,
    InvalidPayload,
    MirrorError,
    TooManyDeletions,
)
from mirror.ids import RequestedIds
from mirror.lock import HeldLock, sync_lock
from mirror.outcomes import Failure, Missing, Outcome, RunStatus
from mirror.payload import ImageRow, parse_body, to_row
from mirror.ratelimit import RateLimiter
from mirror.store import Batch, Counts, Stored

_T = TypeVar("_T")

BATCH_SIZE = 1000
# Recording the end of a run after a database failure: a few tries, not minutes of them.
CLOSE_ATTEMPTS = 3
CLOSE_RETRY_SECONDS = 1.0
CLOSE_BUSY_TIMEOUT = 3.0  # seconds a SQLite writer may hold us up here
MAX_FAILURES_KEPT = 100
MAX_CHANGES_KEPT = 10_000  # what a dry run lists, image by image
BATCH_SECONDS = 1.0  # flush at least this often, so a slow run still commits as it goes
# This many failed connection attempts, with no answer from the API at all, means it is not
# there (see api.Reachability).
UNREACHABLE_AFTER = 3
# The deletion guard's default: a run may mark at most this share of its requested images
# deleted, and never fewer than DELETES_ALWAYS_ALLOWED. A wrong base URL 404s everything.
DELETES_SHARE = 0.10
DELETES_ALWAYS_ALLOWED = 10


def deletion_limit(requested: int, max_deletes: int | None) -> int:
    """How many mirrored images a run may mark deleted: `max_deletes` when given, else
    10 % of the requested images, at least 10."""
    if max_deletes is not None:
        return max_deletes
    return max(DELETES_ALWAYS_ALLOWED, int(requested * DELETES_SHARE))


@dataclass(frozen=True)
class SyncOptions:
    api: ApiSettings
    max_rate: float | None = 100.0
    dry_run: bool = False
    backoff_base: float = BACKOFF_BASE
    max_deletes: int | None = None  # None: `deletion_limit`'s default rule


@dataclass
class SyncSummary:
    run_id: int | None
    status: RunStatus  # succeeded, partial, failed (for a dry run: what it would be)
    requested: int
    counts: Counts
    dry_run: bool = False
    failures: list[Failure] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)  # dry runs: (id, what)
    changes_left_out: int = 0  # beyond MAX_CHANGES_KEPT
    seconds: float = 0.0  # from taking the lock to the last commit (start-up not included)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "requested": self.requested,
            **self.counts.as_dict(),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        c = self.counts
        verb = "dry run: would sync" if self.dry_run else "synced"
        noun = "image" if self.requested == 1 else "images"
        tail = "" if self.run_id is None else f" (run {self.run_id})"
        return (
            f"{verb} {self.requested} {noun}: {c.inserted} new, {c.updated} changed, "
            f"{c.unchanged} unchanged, {c.deleted} deleted, {c.not_found} not found, "
            f"{c.failed} failed{tail}"
        )


ProgressCallback = Callable[[int], None]
WarningCallback = Callable[[str], None]


def run_status(requested: int, counts: Counts) -> RunStatus:
    """succeeded: nothing failed; failed: nothing could be mirrored; partial: in between."""
    problems = counts.not_found + counts.failed
    if problems == 0:
        return "succeeded"
    mirrored = counts.inserted + counts.updated + counts.unchanged + counts.deleted
    return "failed" if requested and mirrored == 0 else "partial"


def sync_images(
    *,
    engine: Engine,
    image_ids: Collection[str] | RequestedIds,
    options: SyncOptions,
    redact: Redactor,
    on_progress: ProgressCallback | None = None,
    on_warning: WarningCallback | None = None,
) -> SyncSummary:
    """Mirror `image_ids` (canonical, unique; iterated once) into the database behind `engine`.

    Migrates the schema first. A dry run takes no lock and creates nothing: against a missing
    or empty database everything is new. Raises FatalError subclasses for key rejection, an
    unreachable API or database, the deletion guard, after committing what was fetched and
    recording the run as failed.
    """
    started = time.monotonic()
    if options.dry_run:
        lock: contextlib.AbstractContextManager[HeldLock] = contextlib.nullcontext(HeldLock())
    else:
        lock = sync_lock(engine)
    with lock as held:
        mirror_exists = True
        if options.dry_run:
            mirror_exists = db.mirror_exists(engine)
            if mirror_exists:
                db.ensure_schema(engine, allow_upgrade=False)
        else:
            db.ensure_schema(engine)
        run_id = None
        if not options.dry_run:
            run_id = _db_call(engine, store.start_run, requested=len(image_ids), now=_now())
        run = _Run(
            engine=engine if mirror_exists else None,
            lock=held,
            run_id=run_id,
            options=options,
            on_progress=on_progress,
            on_warning=on_warning,
        )
        try:
            asyncio.run(run.execute(image_ids))
        except MirrorError as exc:
            run.close("failed", error=redact(str(exc)))
            raise
        except BaseException as exc:
            run.close("failed", error=redact(f"{type(exc).__name__}: {exc}"))
            raise
        if run.interrupted:
            run.close("interrupted", error="interrupted by a signal")
            raise Interrupted(
                f"interrupted by a signal; {run.counts.total()} of {len(image_ids)} images "
                "were committed, the rest were never tried"
            )
        status = run_status(len(image_ids), run.counts)
        run.close(status)
    return SyncSummary(
        run_id=run_id,
        status=status,
        requested=len(image_ids),
        counts=run.counts,
        dry_run=options.dry_run,
        failures=run.failures,
        changes=run.changes,
        changes_left_out=run.changes_left_out,
        seconds=time.monotonic() - started,
    )


class _Run:
    """The state of one run while its fetchers and its writer work."""

    def __init__(
        self,
        *,
        engine: Engine | None,  # None: a dry run with no mirror to compare with
        lock: HeldLock,
        run_id: int | None,
        options: SyncOptions,
        on_progress: ProgressCallback | None,
        on_warning: WarningCallback | None,
    ) -> None:
        self.engine = engine
        self.lock = lock
        self.run_id = run_id
        self.options = options
        self.on_progress = on_progress
        self.on_warning = on_warning
        self.counts = Counts()
        self.failures: list[Failure] = []
        self.fatal: MirrorError | None = None
        self.interrupted = False
        self._in_flight: set[asyncio.Future[FetchResult]] = set()
        self._requested = 0
        self._to_delete: list[str] = []  # held back until the deletion guard has decided
        self._deletion_limit = 0
        self.changes: list[tuple[str, str]] = []  # dry runs: what would be written
        self.changes_left_out = 0

    @property
    def stopping(self) -> bool:
        return self.fatal is not None or self.interrupted

    def _abort(self, error: MirrorError) -> None:
        """Stop issuing requests, and drop those in flight: the run cannot go on."""
        if self.fatal is None:
            self.fatal = error
        self._cancel_in_flight()

    def _interrupt(self) -> None:
        """SIGINT/SIGTERM: no new requests, none waited for; what was fetched is committed."""
        self.interrupted = True
        self._cancel_in_flight()

    def _cancel_in_flight(self) -> None:
        for request in self._in_flight:
            request.cancel()

    async def execute(self, image_ids: Collection[str] | RequestedIds) -> None:
        queue: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=2 * BATCH_SIZE)
        settings = self.options.api
        self._requested = len(image_ids)
        self._deletion_limit = deletion_limit(self._requested, self.options.max_deletes)
        pending = iter(image_ids)
        limiter = RateLimiter(self.options.max_rate)
        factory = TransportFactory(settings)
        fetcher = ImageFetcher(
            limiter=limiter,
            retries=settings.retries,
            timeout=settings.timeout,
            backoff_base=self.options.backoff_base,
            # Never more attempts than the run could make at all (one image, no retries: one).
            reachability=Reachability(
                settings.base_url,
                give_up_after=min(
                    UNREACHABLE_AFTER, max(1, len(image_ids)) * (settings.retries + 1)
                ),
            ),
        )
        with _signals_handled_by(self._interrupt):
            try:
                writer = asyncio.create_task(self._write(queue))
                workers = max(1, min(settings.concurrency, len(image_ids)))
                async with asyncio.TaskGroup() as group:
                    for _ in range(workers):
                        group.create_task(self._fetch(fetcher, factory(), pending, queue))
                await queue.put(None)
                await writer
                await self._commit_deletions()
            finally:
                await factory.aclose()
        if self.fatal is not None and not self.interrupted:
            raise self.fatal

    async def _fetch(
        self,
        fetcher: ImageFetcher,
        transport: Transport,
        pending: Iterator[str],
        queue: asyncio.Queue[Outcome | None],
    ) -> None:
        for image_id in pending:
            if self.stopping:
                return
            # The request runs as its own task, so a signal can cancel it without losing
            # what this worker already handed to the writer.
            request = asyncio.ensure_future(fetcher.fetch(transport, image_id))
            self._in_flight.add(request)
            try:
                await asyncio.wait({request})
            finally:
                self._in_flight.discard(request)
            if request.cancelled():
                return
            error = request.exception()
            if isinstance(error, MirrorError):  # the key was rejected: stop everything
                self._abort(error)
                return
            if error is not None:
                raise error
            await queue.put(self._outcome(request.result()))
            if self.on_progress is not None:
                self.on_progress(1)

    def _outcome(self, result: FetchResult) -> Outcome:
        if isinstance(result, Failure):
            return Missing(result.image_id) if result.kind == "not_found" else result
        try:
            row = to_row(parse_body(result.body), requested_id=result.image_id)
        except InvalidPayload as exc:
            return Failure(result.image_id, "invalid_payload", str(exc), 200)
        except Exception as exc:  # a body nobody foresaw must fail its image, not the run
            message = f"body cannot be mapped: {type(exc).__name__}: {exc}"[:300]
            return Failure(result.image_id, "invalid_payload", message, 200)
        if self.on_warning is not None:
            for warning in row.warnings:
                self.on_warning(f"image {row.image_id}: {warning}")
        return row

    async def _write(self, queue: asyncio.Queue[Outcome | None]) -> None:
        """Collect outcomes into batches and commit each in a worker thread."""
        batch = Batch([], [], [])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BATCH_SECONDS
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                item = _FLUSH
            if item is not None and item is not _FLUSH:
                _add(batch, item)
            if item is None or item is _FLUSH or len(batch) >= BATCH_SIZE:
                await self._commit(batch)
                batch = Batch([], [], [])
                deadline = loop.time() + BATCH_SECONDS
                if item is None:
                    return

    async def _commit(self, batch: Batch) -> None:
        if not batch or isinstance(self.fatal, _DATABASE_GONE):
            return
        if self.engine is None:
            stored: Stored | None = store.compare_with_nothing(batch)
        else:
            stored = await self._in_database(
                store.store_batch,
                batch=batch,
                run_id=self.run_id,
                now=_now(),
                dry_run=self.options.dry_run,
            )
        if stored is None:
            return
        self.counts.add(stored.counts)
        # All failures are in sync_failures; memory keeps only what a summary shows.
        self.failures.extend(stored.failures[: max(0, MAX_FAILURES_KEPT - len(self.failures))])
        self._keep_changes(stored.changes)
        self._to_delete.extend(stored.to_delete)
        if len(self._to_delete) > self._deletion_limit:
            self._abort(self._too_many_deletions())

    def _keep_changes(self, changes: list[tuple[str, str]]) -> None:
        room = max(0, MAX_CHANGES_KEPT - len(self.changes))
        self.changes.extend(changes[:room])
        self.changes_left_out += len(changes) - min(room, len(changes))

    def _too_many_deletions(self) -> TooManyDeletions:
        limit = self._deletion_limit
        rule = (
            f"--max-deletes {limit}"
            if self.options.max_deletes is not None
            else f"the default, 10 % of the {self._requested} requested and at least "
            f"{DELETES_ALWAYS_ALLOWED}"
        )
        return TooManyDeletions(
            f"the API at {self.options.api.base_url} answered 404 for "
            f"{len(self._to_delete)} images that are in the mirror, more than this run may "
            f"mark deleted ({limit}: {rule}); nothing was marked deleted and the run stopped. "
            "Check --base-url; if the images really were deleted upstream, run again with "
            f"--max-deletes {self._requested} (or MIRROR_MAX_DELETES)"
        )

    async def _commit_deletions(self) -> None:
        """Mark the held-back deletions, unless the guard refused them (or the database is
        gone): all in one transaction, so none is committed before the guard decided."""
        if isinstance(self.fatal, (TooManyDeletions, *_DATABASE_GONE)) or not self._to_delete:
            return
        if self.options.dry_run:
            self.counts.deleted += len(self._to_delete)
            self._keep_changes([(image_id, "deleted") for image_id in self._to_delete])
            return
        counts = await self._in_database(
            store.mark_deleted, image_ids=self._to_delete, run_id=self.run_id, now=_now()
        )
        if counts is not None:
            self.counts.add(counts)

    async def _in_database(self, fn: Callable[..., _T], **kwargs: Any) -> _T | None:
        """Run a store function in a worker thread, the sync lock checked first. A lost
        connection (server restarted, session killed) rolled the transaction back, so it is
        retried once on a new one; any other database error aborts the run (None)."""
        engine = self.engine
        assert engine is not None
        for attempt in (1, 2):
            try:
                warning = await asyncio.to_thread(self.lock.ensure_held)
                if warning is not None and self.on_warning is not None:
                    self.on_warning(warning)
                return await asyncio.to_thread(fn, engine, **kwargs)
            except MirrorError as exc:
                self._abort(exc)
                return None
            except OperationalError as exc:
                if attempt == 1 and not db.is_sqlite_busy(engine.url, exc):
                    continue
                self._abort(db.database_error(engine.url, exc))
            except SQLAlchemyError as exc:
                self._abort(db.database_error(engine.url, exc))
                return None
        return None

    def close(self, status: RunStatus, *, error: str | None = None) -> None:
        """Record the run's end. After a database failure the connection may be back (a
        restarted server): tried on fresh connections a few times, then given up quietly
        (the original error is what the user needs to see)."""
        if self.run_id is None or self.engine is None:
            return
        # Another process's SQLite write lock will not be gone in a second: one try then.
        attempts = 1 if isinstance(self.fatal, DatabaseBusy) else CLOSE_ATTEMPTS
        for attempt in range(attempts):
            try:
                store.finish_run(
                    self.engine,
                    run_id=self.run_id,
                    status=status,
                    counts=self.counts,
                    now=_now(),
                    error=error,
                    busy_timeout=CLOSE_BUSY_TIMEOUT,
                )
                return
            except SQLAlchemyError:
                if self.fatal is None or attempt == attempts - 1:
                    return
                self.engine.dispose()
                time.sleep(CLOSE_RETRY_SECONDS)


_FLUSH: Any = object()
_DATABASE_GONE = (DatabaseUnavailable, DatabaseBusy)


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` while the event loop runs (main thread only).

    The handlers from before are put back afterwards: asyncio would leave SIGTERM at its
    default, and a SIGTERM just after the run would then kill the process (exit 143).
    """
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            installed.append((sig, signal.getsignal(sig)))
            loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)


def _add(batch: Batch, item: Outcome) -> None:
    if isinstance(item, ImageRow):
        batch.rows.append(item)
    elif isinstance(item, Missing):
        batch.missing.append(item)
    else:
        batch.failures.append(item)


def _db_call(engine: Engine, fn: Callable[..., int], **kwargs: Any) -> int:
    try:
        return fn(engine, **kwargs)
    except SQLAlchemyError as exc:
        raise db.database_error(engine.url, exc) from None


def _now() -> datetime:
    return datetime.now(UTC)
