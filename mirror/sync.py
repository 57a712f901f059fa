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
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from mirror import db, store
from mirror.api import (
    BACKOFF_BASE,
    ApiSettings,
    Fetched,
    FetchFailed,
    FetchResult,
    ImageFetcher,
    Transport,
    TransportFactory,
)
from mirror.config import Redactor
from mirror.errors import (
    ApiUnreachable,
    DatabaseUnavailable,
    Interrupted,
    InvalidPayload,
    MirrorError,
)
from mirror.ids import RequestedIds
from mirror.lock import sync_lock
from mirror.payload import ImageRow, parse_body, to_row
from mirror.ratelimit import RateLimiter
from mirror.store import Batch, Counts, Failure

BATCH_SIZE = 1000
MAX_FAILURES_KEPT = 100
BATCH_SECONDS = 1.0  # flush at least this often, so a slow run still commits as it goes
# This many refused connections, with no answer from the API at all, means it is not there.
UNREACHABLE_AFTER = 3


@dataclass(frozen=True)
class SyncOptions:
    api: ApiSettings
    max_rate: float | None = 100.0
    dry_run: bool = False
    backoff_base: float = BACKOFF_BASE


@dataclass
class SyncSummary:
    run_id: int | None
    status: str  # succeeded, partial, failed (and, for a dry run, what it would be)
    requested: int
    counts: Counts
    dry_run: bool = False
    failures: list[Failure] = field(default_factory=list)
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


def run_status(requested: int, counts: Counts) -> str:
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

    Migrates the schema first (a dry run only creates it on an empty database). Raises
    FatalError subclasses for key rejection, an unreachable API or database, after committing
    what was fetched and recording the run as failed.
    """
    started = time.monotonic()
    with sync_lock(engine):
        db.ensure_schema(engine, allow_upgrade=not options.dry_run)
        run_id = None
        if not options.dry_run:
            run_id = _db_call(engine, store.start_run, requested=len(image_ids), now=_now())
        run = _Run(
            engine=engine,
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
        seconds=time.monotonic() - started,
    )


class _Run:
    """The state of one run while its fetchers and its writer work."""

    def __init__(
        self,
        *,
        engine: Engine,
        run_id: int | None,
        options: SyncOptions,
        on_progress: ProgressCallback | None,
        on_warning: WarningCallback | None,
    ) -> None:
        self.engine = engine
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
        self._answered = False  # the API answered at least once
        self._refused = 0

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
        queue: asyncio.Queue[ImageRow | str | Failure | None] = asyncio.Queue(
            maxsize=2 * BATCH_SIZE
        )
        settings = self.options.api
        self._requested = len(image_ids)
        pending = iter(image_ids)
        limiter = RateLimiter(self.options.max_rate)
        factory = TransportFactory(settings)
        fetcher = ImageFetcher(
            limiter=limiter,
            retries=settings.retries,
            timeout=settings.timeout,
            backoff_base=self.options.backoff_base,
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
            finally:
                await factory.aclose()
        if self.fatal is not None and not self.interrupted:
            raise self.fatal

    async def _fetch(
        self,
        fetcher: ImageFetcher,
        transport: Transport,
        pending: Iterator[str],
        queue: asyncio.Queue[ImageRow | str | Failure | None],
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

    def _outcome(self, result: Fetched | FetchFailed) -> ImageRow | str | Failure:
        if isinstance(result, FetchFailed):
            if result.refused and not self._answered:
                self._refused += 1
                if self._refused >= min(UNREACHABLE_AFTER, self._requested):
                    self._abort(
                        ApiUnreachable(
                            f"cannot reach the API at {self.options.api.base_url}: every "
                            "connection was refused; check --base-url and the network, "
                            "nothing more was tried"
                        )
                    )
            else:
                self._answered = True
            if result.kind == "not_found":
                return result.image_id
            return Failure(result.image_id, result.kind, result.message, result.http_status)
        self._answered = True
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

    async def _write(self, queue: asyncio.Queue[ImageRow | str | Failure | None]) -> None:
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
        if not batch or isinstance(self.fatal, DatabaseUnavailable):
            return
        for attempt in (1, 2):
            try:
                counts, failures = await asyncio.to_thread(
                    store.store_batch,
                    self.engine,
                    batch=batch,
                    run_id=self.run_id,
                    now=_now(),
                    dry_run=self.options.dry_run,
                )
            except OperationalError as exc:
                # The connection was lost (server restarted, connection killed): the batch's
                # transaction was rolled back, so it is retried once on a new connection.
                if attempt == 1:
                    continue
                self._abort(DatabaseUnavailable(db.describe_db_error(self.engine.url, exc)))
                return
            except SQLAlchemyError as exc:
                self._abort(DatabaseUnavailable(db.describe_db_error(self.engine.url, exc)))
                return
            self.counts.add(counts)
            # All failures are in sync_failures; memory keeps only what a summary shows.
            self.failures.extend(failures[: max(0, MAX_FAILURES_KEPT - len(self.failures))])
            return

    def close(self, status: str, *, error: str | None = None) -> None:
        if self.run_id is None:
            return
        # If the database is gone, the original error is what the user needs to see.
        with contextlib.suppress(SQLAlchemyError):
            store.finish_run(
                self.engine,
                run_id=self.run_id,
                status=status,
                counts=self.counts,
                now=_now(),
                error=error,
            )


_FLUSH: Any = object()


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[], None]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` while the event loop runs (main thread only)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _add(batch: Batch, item: ImageRow | str | Failure) -> None:
    if isinstance(item, ImageRow):
        batch.rows.append(item)
    elif isinstance(item, str):
        batch.missing.append(item)
    else:
        batch.failures.append(item)


def _db_call(engine: Engine, fn: Callable[..., int], **kwargs: Any) -> int:
    try:
        return fn(engine, **kwargs)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(db.describe_db_error(engine.url, exc)) from None


def _now() -> datetime:
    return datetime.now(UTC)
