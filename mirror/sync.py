"""Orchestration of one run: lock, schema, run row, then the pipeline of stages

    image IDs → fetch workers (`fetching.py`) → classification (`classify.py`) → writer
    (`writer.py`, batched commits)

stopped together by one `RunControl` (a fatal error or a signal), and the run's end recorded.
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
from sqlalchemy.exc import SQLAlchemyError

from mirror import db, store
from mirror.api import (
    BACKOFF_BASE,
    ApiSettings,
    FetchResult,
    ImageFetcher,
    Reachability,
    TransportFactory,
)
from mirror.classify import classify
from mirror.config import Redactor
from mirror.control import RunControl
from mirror.errors import DatabaseBusy, Interrupted, MirrorError
from mirror.fetching import fetch_worker
from mirror.ids import RequestedIds
from mirror.lock import HeldLock, sync_lock
from mirror.outcomes import Failure, Outcome, RunStatus
from mirror.payload import ImageRow
from mirror.ratelimit import RateLimiter
from mirror.selections import Selection, missing_parent_ids, selected_ids
from mirror.store import Counts
from mirror.writer import BATCH_SIZE, DeletionGuard, Writer

# Recording the end of a run after a database failure: a few tries, not minutes of them.
CLOSE_ATTEMPTS = 3
CLOSE_RETRY_SECONDS = 1.0
CLOSE_BUSY_TIMEOUT = 3.0  # seconds a SQLite writer may hold us up here
# This many failed connection attempts, with no answer from the API at all, means it is not
# there (see api.Reachability).
UNREACHABLE_AFTER = 3
# --with-parents follows parent_image_id this many generations at most (restaged from restaged).
MAX_PARENT_GENERATIONS = 10


@dataclass(frozen=True)
class SyncOptions:
    api: ApiSettings
    max_rate: float | None = 100.0
    dry_run: bool = False
    backoff_base: float = BACKOFF_BASE
    max_deletes: int | None = None  # None: the deletion guard's default rule
    selection: Selection = field(default_factory=Selection)  # images to refresh
    with_parents: bool = False  # then fetch the parents missing from the mirror too


@dataclass
class SyncSummary:
    run_id: int | None
    status: RunStatus  # succeeded, partial, failed (for a dry run: what it would be)
    requested: int
    counts: Counts
    dry_run: bool = False
    failures: list[Failure] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)  # dry runs: (id, what)
    changes_left_out: int = 0  # beyond what the writer keeps
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
    on_start: ProgressCallback | None = None,
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
        if options.selection and mirror_exists:
            _add_selection(engine, image_ids, options.selection)
        if on_start is not None:
            on_start(len(image_ids))  # the number of images the run will try
        run_id = None
        if not options.dry_run:
            run_id = _db_call(engine, store.start_run, requested=len(image_ids), now=_now())
        run = _Run(
            engine=engine if mirror_exists else None,
            lock=held,
            run_id=run_id,
            options=options,
            requested=len(image_ids),
            on_start=on_start,
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
        if run.control.interrupted:
            run.close("interrupted", error="interrupted by a signal")
            raise Interrupted(
                f"interrupted by a signal; {run.counts.total()} of {run.requested} images "
                "were committed, the rest were never tried"
            )
        status = run_status(run.requested, run.counts)
        run.close(status)
    return SyncSummary(
        run_id=run_id,
        status=status,
        requested=run.requested,
        counts=run.counts,
        dry_run=options.dry_run,
        failures=run.writer.failures,
        changes=run.writer.changes,
        changes_left_out=run.writer.changes_left_out,
        seconds=time.monotonic() - started,
    )


class _Run:
    """One run's pipeline: the image IDs → fetch workers → classification → the writer."""

    def __init__(
        self,
        *,
        engine: Engine | None,  # None: a dry run with no mirror to compare with
        lock: HeldLock,
        run_id: int | None,
        options: SyncOptions,
        requested: int,
        on_start: ProgressCallback | None,
        on_progress: ProgressCallback | None,
        on_warning: WarningCallback | None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.options = options
        self.requested = requested  # the images this run tries: the IDs, then any parents
        self.on_start = on_start
        self.on_progress = on_progress
        self.on_warning = on_warning
        self.control = RunControl()
        self.writer = Writer(
            engine=engine,
            lock=lock,
            run_id=run_id,
            dry_run=options.dry_run,
            guard=DeletionGuard(requested, options.api.base_url, options.max_deletes),
            control=self.control,
            on_warning=on_warning,
        )

    @property
    def counts(self) -> Counts:
        return self.writer.counts

    async def execute(self, image_ids: Collection[str] | RequestedIds) -> None:
        settings = self.options.api
        control = self.control
        writer = self.writer
        queue: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=2 * BATCH_SIZE)
        factory = TransportFactory(settings)
        fetcher = ImageFetcher(
            limiter=RateLimiter(self.options.max_rate),
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

        async def deliver(result: FetchResult) -> None:
            outcome = classify(result)
            if isinstance(outcome, ImageRow) and self.on_warning is not None:
                for warning in outcome.warnings:
                    self.on_warning(f"image {outcome.image_id}: {warning}")
            await queue.put(outcome)
            if self.on_progress is not None:
                self.on_progress(1)

        async def fetch_all(ids: Collection[str] | RequestedIds) -> None:
            """One pass of the pipeline over `ids`; the writer has committed it on return."""
            queue_ended = asyncio.create_task(writer.run(queue))
            work = iter(ids)  # shared: each ID goes to exactly one worker
            async with asyncio.TaskGroup() as group:
                for _ in range(max(1, min(settings.concurrency, len(ids)))):
                    group.create_task(
                        fetch_worker(
                            work=work,
                            fetcher=fetcher,
                            transport=factory(),
                            control=control,
                            deliver=deliver,
                        )
                    )
            await queue.put(None)
            await queue_ended

        with _signals_handled_by(control.interrupt):
            try:
                await fetch_all(image_ids)
                tried: set[str] = set()  # parents this run asked for (a 404 stays missing)
                for _ in range(MAX_PARENT_GENERATIONS if self.options.with_parents else 0):
                    if self.engine is None or control.stopping:
                        break
                    # Parents of what is mirrored now; a fetched parent may name its own.
                    missing = await asyncio.to_thread(self._missing_parents)
                    parents = [p for p in missing if p not in tried]
                    if not parents:
                        break
                    tried.update(parents)
                    self.requested += len(parents)
                    if self.on_start is not None:
                        self.on_start(self.requested)
                    await fetch_all(parents)
                await writer.commit_deletions()
            finally:
                await factory.aclose()
        if control.fatal is not None and not control.interrupted:
            raise control.fatal

    def _missing_parents(self) -> list[str]:
        assert self.engine is not None
        with db.connect(self.engine) as connection:
            found, malformed = missing_parent_ids(connection)
        if malformed and self.on_warning is not None:
            self.on_warning(
                f"{malformed} parent_image_id value(s) are not UUIDs; those parents were skipped"
            )
        return found

    def close(self, status: RunStatus, *, error: str | None = None) -> None:
        """Record the run's end. After a database failure the connection may be back (a
        restarted server): tried on fresh connections a few times, then given up quietly
        (the original error is what the user needs to see)."""
        if self.run_id is None or self.engine is None:
            return
        fatal = self.control.fatal
        # Another process's SQLite write lock will not be gone in a second: one try then.
        attempts = 1 if isinstance(fatal, DatabaseBusy) else CLOSE_ATTEMPTS
        for attempt in range(attempts):
            try:
                store.finish_run(
                    self.engine,
                    run_id=self.run_id,
                    status=status,
                    requested=self.requested,
                    counts=self.counts,
                    now=_now(),
                    error=error,
                    busy_timeout=CLOSE_BUSY_TIMEOUT,
                )
                return
            except SQLAlchemyError:
                if fatal is None or attempt == attempts - 1:
                    return
                self.engine.dispose()
                time.sleep(CLOSE_RETRY_SECONDS)


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


def _add_selection(
    engine: Engine, image_ids: Collection[str] | RequestedIds, selection: Selection
) -> None:
    """Spool the images the selection names (a snapshot: the run itself moves
    `last_synced_at`), after the IDs given directly, each once."""
    if not isinstance(image_ids, RequestedIds):
        raise TypeError("a selection adds to RequestedIds")
    with db.connect(engine) as connection:
        image_ids.add_selected(selected_ids(connection, selection, now=_now()))


def _db_call(engine: Engine, fn: Callable[..., int], **kwargs: Any) -> int:
    try:
        return fn(engine, **kwargs)
    except SQLAlchemyError as exc:
        raise db.database_error(engine.url, exc) from None


def _now() -> datetime:
    return datetime.now(UTC)
