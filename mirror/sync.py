"""Orchestration of one run: lock, schema, run row, then the pipeline of stages

    sources: order and image IDs, the listing (`listing.py`), selections (`selections.py`)
    → fetch workers (`fetching.py`) → classification, each image and order once
    (`intake.py`, `classify.py`) → writer (`writer.py`, batched commits)

stopped together by one `RunControl` (a fatal error or a signal), and the run's end recorded.
No click and no printing here: progress, warnings and the summary go to callbacks and return
values, and errors are the exceptions of `mirror.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mirror import interrupts
from mirror.api import (
    BACKOFF_BASE,
    ApiSettings,
    Fetcher,
    FetchResult,
    Reachability,
    Target,
    TransportFactory,
)
from mirror.batch import SoFar
from mirror.clock import RunClock
from mirror.config import Redactor, check_sqlite_path
from mirror.control import RunControl
from mirror.errors import DatabaseBusy, Interrupted, MirrorError, TransientDatabaseError
from mirror.fetching import fetch_worker
from mirror.ids import RequestedIds
from mirror.intake import Intake, RunPlan
from mirror.limits import allow_open_files_for
from mirror.listing import Listing
from mirror.lock import HeldLock, sqlite_file_lock, sync_lock
from mirror.outcomes import (
    Change,
    Counts,
    Failure,
    OrderCounts,
    Outcome,
    RunStatus,
    exit_code_of,
)
from mirror.payload import NOT_JSON
from mirror.ratelimit import RateLimiter
from mirror.schema import refuse_unusable_sqlite_revision
from mirror.selections import (
    Selection,
    images_of_deleted_orders,
    mirrored_order_ids,
    missing_parent_ids,
    selected_ids,
)
from mirror.writer import BATCH_SIZE, DeletionGuard, Writer

if TYPE_CHECKING:  # imported by the run when it needs the database (see LateDatabase)
    from sqlalchemy import Engine

# Recording the end of a run after a database failure: a few tries, not minutes of them.
CLOSE_ATTEMPTS = 3
CLOSE_RETRY_SECONDS = 1.0
CLOSE_LOCK_TIMEOUT = 3.0  # seconds another's lock may hold up the recording of a run's end
_T = TypeVar("_T")
# This many failed connection attempts, with no answer from the API at all, means it is not
# there (see api.Reachability).
UNREACHABLE_AFTER = 3
# A LateDatabase is opened once the first request is answered, or after this many seconds.
LATE_OPEN_AFTER = 0.25
# ... in a thread beside the requests when the first answer took at least this long (s).
LATE_OPEN_OVERLAP_LATENCY = 0.005
# --with-parents follows parent_image_id this many generations at most (restaged from restaged).
MAX_PARENT_GENERATIONS = 10


@dataclass(frozen=True)
class LateDatabase:
    """A SQLite database opened while the run's first requests are in flight: its file lock
    is taken first (no SQLAlchemy needed; a dry run takes none), then, once the first answer
    is in, `open` makes the engine (importing SQLAlchemy and SQLModel, half a second) and the
    run row is created before the first commit. Cron pays start-up on every run; this moves
    it off the path to the first request."""

    path: Path
    shown: str  # as the user may see it, e.g. sqlite:///autoenhance-mirror.db
    open: Callable[[], Engine]

    @classmethod
    def checked(
        cls, path: str, open: Callable[[], Engine], *, dry_run: bool = False
    ) -> LateDatabase:
        """The SQLite file at `path`, checked as far as it can be without SQLAlchemy: its
        directory exists, it is a SQLite file or nothing yet, its schema stamp is one this
        code knows (for a dry run, which migrates nothing, the newest). Raises
        DatabaseUnavailable or SchemaMismatch before any request."""
        shown = f"sqlite:///{path}"
        check_sqlite_path(Path(path), shown, writing=not dry_run)
        refuse_unusable_sqlite_revision(Path(path), upgrade_allowed=not dry_run)
        return cls(Path(path), shown, open)


@dataclass(frozen=True)
class SyncOptions:
    api: ApiSettings
    max_rate: float | None = 100.0
    dry_run: bool = False
    backoff_base: float = BACKOFF_BASE
    max_deletes: int | None = None  # None: the deletion guard's default rule
    selection: Selection = field(default_factory=Selection)  # images to refresh
    with_parents: bool = False  # then fetch the parents missing from the mirror too
    all_orders: bool = False  # list every order of the account (`--all`; needs the key)
    metrics_file: Path | None = None  # the Prometheus textfile to write after the run


@dataclass
class SyncSummary:
    run_id: int | None
    status: RunStatus  # succeeded, partial, failed (for a dry run: what it would be)
    requested: int
    counts: Counts
    dry_run: bool = False
    failures: list[Failure] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # dry runs: what would happen
    changes_left_out: int = 0  # beyond what the writer keeps
    seconds: float = 0.0  # from taking the lock to the last commit (start-up not included)
    orders_requested: int = 0
    order_counts: OrderCounts = field(default_factory=OrderCounts)
    api_requests: int = 0
    touched_orders: bool = False  # order sources were given: the line names the orders

    @property
    def nothing_was_json(self) -> bool:
        """Nothing was mirrored and every failure shown is an answer that was not JSON: what
        a web page or another service at the base URL gives, rather than the API."""
        return (
            self.counts.mirrored() + self.order_counts.mirrored() == 0
            and bool(self.failures)
            and all(f.kind == "invalid_payload" and NOT_JSON in f.message for f in self.failures)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "requested": self.requested,
            **self.counts.as_dict(),
            "orders_requested": self.orders_requested,
            **self.order_counts.as_dict(),
            "api_requests": self.api_requests,
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        c = self.counts
        verb = "dry run: would sync" if self.dry_run else "synced"
        noun = "image" if self.requested == 1 else "images"
        source = ""
        orders = ""
        tail = "" if self.run_id is None else f" (run {self.run_id})"
        if self.touched_orders:
            o = self.order_counts
            source = (
                f" from {self.orders_requested} order{'' if self.orders_requested == 1 else 's'}"
            )
            orders = (
                f"; orders: {o.inserted} new, {o.updated} changed, {o.unchanged} unchanged, "
                f"{o.deleted} deleted, {o.not_found} not found, {o.failed} failed"
            )
            run = "" if self.run_id is None else f", run {self.run_id}"
            requests = "request" if self.api_requests == 1 else "requests"
            tail = f" ({self.api_requests} {requests}{run})"
        return (
            f"{verb} {self.requested} {noun}{source}: {c.inserted} new, {c.updated} changed, "
            f"{c.unchanged} unchanged, {c.deleted} deleted, {c.not_found} not found, "
            f"{c.failed} failed{orders}{tail}"
        )


ProgressCallback = Callable[[int], None]
WarningCallback = Callable[[str], None]


def run_status(
    requested: int,
    counts: Counts,
    *,
    orders_requested: int = 0,
    order_counts: OrderCounts | None = None,
    listing_failures: int = 0,
) -> RunStatus:
    """succeeded: nothing failed; failed: nothing could be mirrored; partial: in between.
    Orders count like images; a failed listing page leaves the run incomplete (partial)."""
    order_counts = order_counts or OrderCounts()
    problems = counts.not_found + counts.failed + listing_failures
    problems += order_counts.not_found + order_counts.failed
    if problems == 0:
        return "succeeded"
    mirrored = counts.inserted + counts.updated + counts.unchanged + counts.deleted
    mirrored += order_counts.inserted + order_counts.updated + order_counts.unchanged
    mirrored += order_counts.deleted
    asked = requested + orders_requested + listing_failures
    return "failed" if asked and mirrored == 0 else "partial"


def sync_images(
    *,
    engine: Engine | LateDatabase,
    image_ids: Collection[str] | RequestedIds,
    options: SyncOptions,
    redact: Redactor,
    order_ids: Sequence[str] = (),
    on_start: ProgressCallback | None = None,
    on_progress: ProgressCallback | None = None,
    on_warning: WarningCallback | None = None,
) -> SyncSummary:
    """Mirror the orders (`order_ids`, and every order with `options.all_orders`) with the
    images they embed, then `image_ids` (canonical, unique; iterated once) and the images
    the options select, into the database behind `engine`; each image and order once.

    Migrates the schema first (a `LateDatabase` while the first requests are in flight). A
    dry run takes no lock and creates nothing: against a missing or empty database everything
    is new. Raises FatalError subclasses for key rejection, an unreachable API or database,
    the deletion guard, a runaway listing, after committing what was fetched and recording
    the run as failed.
    """
    started = time.monotonic()
    late = engine if isinstance(engine, LateDatabase) else None
    allow_open_files_for(options.api.concurrency)
    with _lock(engine, options) as held:
        ending = _Ending(started=time.time())
        clock = RunClock()
        try:
            opened: Engine | None = None
            run_id = None
            if not isinstance(engine, LateDatabase):
                opened, run_id = _open_now(engine, image_ids, options, clock)
            if on_start is not None:
                on_start(len(image_ids))  # the images the run will try, as far as known yet
            plan = RunPlan(
                images=len(image_ids), orders=len(order_ids), explicit_orders=set(order_ids)
            )
            run = ending.run = _Run(
                engine=opened,
                late=late,
                lock=held,
                run_id=run_id,
                clock=clock,
                options=options,
                plan=plan,
                on_start=on_start,
                on_progress=on_progress,
                on_warning=on_warning,
            )
            ending.status = status = _drive(run, image_ids, order_ids, redact)
            ending.exit_code = exit_code_of(status)
        except BaseException as exc:
            ending.ended_by(exc)
            raise
        finally:
            if options.metrics_file is not None and not options.dry_run:
                ending.write_metrics(options.metrics_file, on_warning)
            if ending.run is not None and ending.run.engine is not None and not options.dry_run:
                from mirror import db

                db.leave_wal(ending.run.engine)
    writer = run.writer
    return SyncSummary(
        run_id=run.run_id,
        status=status,
        requested=plan.images,
        counts=run.counts,
        dry_run=options.dry_run,
        failures=writer.failures,
        changes=writer.changes,
        changes_left_out=writer.changes_left_out,
        seconds=time.monotonic() - started,
        orders_requested=plan.orders,
        order_counts=writer.order_counts,
        api_requests=run.fetcher.requests,
        touched_orders=bool(order_ids) or options.all_orders,
    )


def _drive(
    run: _Run,
    image_ids: Collection[str] | RequestedIds,
    order_ids: Sequence[str],
    redact: Redactor,
) -> RunStatus:
    """Run the pipeline and record its end in the run row, whatever the end. From here on a
    signal is only noted, never raised where it lands: the pipeline takes one while it runs
    (`_signals_handled_by`), and once it is over the run's end stands."""
    interrupts.defer()
    try:
        asyncio.run(run.execute(image_ids, order_ids))
    except MirrorError as exc:
        run.close("failed", error=redact(str(exc)))
        raise
    except BaseException as exc:
        run.close("failed", error=redact(f"{type(exc).__name__}: {exc}"))
        raise
    if run.control.interrupted:
        run.close("interrupted", error="interrupted by a signal")
        raise Interrupted(run.how_far())
    status = run.status()
    run.close(status)
    return status


@dataclass
class _Ending:
    """How a run that took the lock ended, for the metrics file: written whatever the end,
    even when the run failed before its pipeline started (no `run` then)."""

    started: float  # Unix time
    run: _Run | None = None
    status: RunStatus = "failed"  # as the run row records it
    exit_code: int = 1  # as the command will exit

    def ended_by(self, exc: BaseException) -> None:
        if isinstance(exc, Interrupted):
            self.status = "interrupted"
        if isinstance(exc, MirrorError):
            self.exit_code = exc.exit_code
        elif isinstance(exc, KeyboardInterrupt):  # outside the run's own signal handling
            self.exit_code = Interrupted.exit_code

    def write_metrics(self, path: Path, on_warning: WarningCallback | None) -> None:
        """A database that cannot be read leaves out what only it knows; a file that cannot
        be written is a warning, not a change of the run's exit code."""
        from mirror import metrics

        run = self.run
        mirror = None
        if run is not None and run.engine is not None:
            from sqlalchemy.exc import SQLAlchemyError

            with contextlib.suppress(SQLAlchemyError):
                mirror = metrics.read_mirror(run.engine, run.run_id)
        figures = metrics.RunFigures(
            started=self.started, finished=time.time(), status=self.status, exit_code=self.exit_code
        )
        if run is not None:
            figures = dataclasses.replace(
                figures,
                requested=run.plan.images,
                counts=run.counts,
                orders_requested=run.plan.orders,
                order_counts=run.writer.order_counts,
                api_requests=run.fetcher.requests,
            )
        try:
            metrics.write_metrics(path, figures, mirror)
        except OSError as exc:
            if on_warning is not None:
                on_warning(f"--metrics-file {path}: not written: {exc.strerror or exc}")


def _lock(
    engine: Engine | LateDatabase, options: SyncOptions
) -> contextlib.AbstractContextManager[HeldLock]:
    """The sync lock (none for a dry run: it writes nothing)."""
    if options.dry_run:
        return contextlib.nullcontext(HeldLock())
    if isinstance(engine, LateDatabase):
        return _held(sqlite_file_lock(engine.path, engine.shown))
    return sync_lock(engine)


@contextlib.contextmanager
def _held(lock: contextlib.AbstractContextManager[None]) -> Iterator[HeldLock]:
    with lock:
        yield HeldLock()


def _open_now(
    engine: Engine,
    image_ids: Collection[str] | RequestedIds,
    options: SyncOptions,
    clock: RunClock,
) -> tuple[Engine | None, int | None]:
    """Schema, selection and run row before the first request: (the engine, or None for a
    dry run with no mirror to compare with; the run's ID, None for a dry run)."""
    from mirror import db, store

    if options.dry_run:
        mirror = _mirror_to_compare(engine)
        if mirror is not None and options.selection:
            _add_selection(mirror, image_ids, options.selection)
        return mirror, None
    _once_more_if_transient(db.ensure_schema, engine)
    db.use_wal(engine)
    if options.selection:
        _add_selection(engine, image_ids, options.selection)
    return engine, _once_more_if_transient(
        _db_call, engine, store.start_run, requested=len(image_ids), clock=clock
    )


def _mirror_to_compare(engine: Engine) -> Engine | None:
    """What a dry run compares with: the mirror at the code's schema, or None when there is
    none yet (then everything is new). Creates and migrates nothing."""
    from mirror import db

    return engine if db.comparable_mirror(engine) else None


class _Run:
    """One run's pipeline, in passes that each end with everything committed:

    1. orders: those given (fetch workers) and the listing's pages (one task, the next page
       in flight while the previous one is written), each order's images with it;
    2. after a complete listing, the mirrored orders it did not return, by ID;
    3. images by ID: those given and selected, and those their order no longer embeds;
    4. with --with-parents, the missing parents, a generation at a time.
    """

    def __init__(
        self,
        *,
        engine: Engine | None,  # None: a dry run with no mirror, or not open yet (`late`)
        late: LateDatabase | None,
        lock: HeldLock,
        run_id: int | None,
        clock: RunClock,
        options: SyncOptions,
        plan: RunPlan,
        on_start: ProgressCallback | None,
        on_progress: ProgressCallback | None,
        on_warning: WarningCallback | None,
    ) -> None:
        self.engine = engine
        self.late = late
        self.run_id = run_id
        self.clock = clock
        self.options = options
        self.plan = plan
        self.on_warning = on_warning
        self.control = RunControl()
        base_url = options.api.base_url
        self.writer = Writer(
            engine=engine,
            lock=lock,
            run_id=run_id,
            clock=clock,
            dry_run=options.dry_run,
            guard=DeletionGuard(lambda: plan.images, base_url, options.max_deletes),
            order_guard=DeletionGuard(lambda: plan.orders, base_url, options.max_deletes, "orders"),
            control=self.control,
            so_far=lambda: SoFar(plan.images, plan.orders, self.fetcher.requests),
            on_warning=on_warning,
        )
        settings = options.api
        planned = plan.images + plan.orders + (1 if options.all_orders else 0)
        self.fetcher = Fetcher(
            limiter=RateLimiter(options.max_rate),
            retries=settings.retries,
            timeout=settings.timeout,
            backoff_base=options.backoff_base,
            # Never more attempts than the run could make at all (one image, no retries: one).
            reachability=Reachability(
                base_url,
                give_up_after=min(UNREACHABLE_AFTER, max(1, planned) * (settings.retries + 1)),
            ),
        )
        self.factory = TransportFactory(settings)
        self._queue: asyncio.Queue[Outcome | None] = asyncio.Queue(maxsize=2 * BATCH_SIZE)
        self.intake = Intake(
            queue=self._queue,
            plan=plan,
            on_start=on_start,
            on_progress=on_progress,
            on_warning=on_warning,
        )
        self.listing = Listing(
            fetcher=self.fetcher,
            transports=self.factory,
            control=self.control,
            on_order=self.intake.listed,
            on_failure=self.intake.failure,
        )

    @property
    def counts(self) -> Counts:
        return self.writer.counts

    def how_far(self) -> str:
        """What an interrupted run tells: what was committed (a dry run: compared, nothing
        written), and what is left."""
        plan = self.plan
        images = self.counts.total()
        orders = self.writer.order_counts.total()
        done = f"{images} of {plan.images} images"
        if plan.orders:
            done += f" and {orders} of {plan.orders} orders"
        fate = "compared (a dry run: nothing written)" if self.options.dry_run else "committed"
        told = [f"interrupted by a signal; {done} were {fate}"]
        if images < plan.images or orders < plan.orders:
            told.append("the rest were never tried")
        if self.options.all_orders and not self.listing.complete:
            told.append("the order listing was not read to its end: run it again for the rest")
        return "; ".join(told)

    def status(self) -> RunStatus:
        return run_status(
            self.plan.images,
            self.counts,
            orders_requested=self.plan.orders,
            order_counts=self.writer.order_counts,
            listing_failures=self.writer.listing_failures,
        )

    async def execute(
        self, image_ids: Collection[str] | RequestedIds, order_ids: Sequence[str]
    ) -> None:
        control = self.control
        with _signals_handled_by(control.interrupt):
            opening = None
            if self.late is not None:  # opened while the first requests go out
                opening = asyncio.create_task(self._open_late(self.late))
                self.writer.opened_by(opening)
            try:
                orders_involved = bool(order_ids) or self.options.all_orders
                if orders_involved:
                    listing = [self.listing.run()] if self.options.all_orders else []
                    await self._pass(self._order_workers(iter(order_ids)) + listing)
                if self.listing.complete and opening is not None:
                    await opening  # the reconciliation reads the mirror
                stranded: list[str] = []
                if self.listing.complete and self.engine is not None and not control.stopping:
                    unlisted, stranded = await asyncio.to_thread(self._to_reconcile)
                    self.intake.planned(orders=len(unlisted))
                    await self._pass(self._order_workers(iter(unlisted)))
                given = iter(image_ids)
                if not control.stopping:
                    targets = self._image_targets(
                        given, filtered=orders_involved, stranded=stranded
                    )
                    await self._pass(self._image_workers(targets))
                if control.stopping and orders_involved:
                    self._discount_met(given)
                if self.options.with_parents and opening is not None:
                    await opening  # the parents are found in the mirror
                await self._parents()
                await self.writer.commit_deletions()
            finally:
                if opening is not None:
                    # Never leave it behind: its thread would create the run row later.
                    await asyncio.wait({opening})
                await self.factory.aclose()
        if control.fatal is not None and not control.interrupted:
            raise control.fatal

    async def _open_late(self, late: LateDatabase) -> tuple[Engine | None, int | None] | None:
        """Open the database, migrate it and create the run row (a dry run: only find the
        mirror to compare with, if any); on failure the run stops (nothing was written) and
        None is returned.

        Started once the first request has been answered (or after LATE_OPEN_AFTER). When
        answers take a while, in a worker thread, so that requests keep flowing during the
        imports; when they come at once there is nothing to overlap, and the imports' GIL
        contention beside the loop would only cost CPU (+10 % measured): on the loop then."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.fetcher.first_answer.wait(), LATE_OPEN_AFTER)
        answered_after = self.fetcher.first_answer_seconds
        try:
            if answered_after is None or answered_after >= LATE_OPEN_OVERLAP_LATENCY:
                engine, run_id = await asyncio.to_thread(self._open_database, late)
            else:
                engine, run_id = self._open_database(late)
        except MirrorError as exc:
            self.control.abort(exc)
            return None
        self.engine, self.run_id = engine, run_id
        return engine, run_id

    def _open_database(self, late: LateDatabase) -> tuple[Engine | None, int | None]:
        with _uncollected():
            from mirror import db, store

        engine = late.open()
        if self.options.dry_run:
            return _mirror_to_compare(engine), None
        _once_more_if_transient(db.ensure_schema, engine)
        db.use_wal(engine)
        return engine, _once_more_if_transient(
            _db_call, engine, store.start_run, requested=self.plan.images, clock=self.clock
        )

    # --- passes -----------------------------------------------------------------------------

    async def _pass(self, workers: list[_Worker]) -> None:
        """Run fetch workers (and the listing) to the end; the writer has committed it all
        on return."""
        writer_done = asyncio.create_task(self.writer.run(self._queue))
        try:
            async with asyncio.TaskGroup() as group:
                for worker in workers:
                    group.create_task(worker)
        finally:
            await self._queue.put(None)
            await writer_done

    def _workers(self, work: Iterator[Target], deliver: _Deliver) -> list[_Worker]:
        return [
            fetch_worker(
                work=work,
                fetcher=self.fetcher,
                transport=self.factory(),
                control=self.control,
                deliver=deliver,
            )
            for _ in range(self.options.api.concurrency)
        ]

    def _order_workers(self, order_ids: Iterator[str]) -> list[_Worker]:
        plan = self.plan
        targets = (Target.order(o) for o in order_ids if o not in plan.seen_orders)
        return self._workers(targets, self.intake.order)

    def _image_workers(self, targets: Iterator[Target]) -> list[_Worker]:
        return self._workers(targets, self.intake.image)

    def _image_targets(
        self, image_ids: Iterator[str], *, filtered: bool, stranded: list[str]
    ) -> Iterator[Target]:
        """The images given and selected, then those their orders no longer embed and those
        of orders deleted earlier (`stranded`); when orders were fetched, without the images
        they already brought."""
        plan = self.plan
        for image_id in image_ids:
            if filtered and not plan.first_image(image_id):
                self.intake.planned(images=-1)  # counted with its order already
                continue
            yield Target.image(image_id)
        for image_id in (*self.writer.take_recheck(), *stranded):
            if plan.first_image(image_id):
                self.intake.planned(images=1)
                yield Target.image(image_id)

    def _discount_met(self, untried: Iterator[str]) -> None:
        """A run stopped before it tried these images given or selected: those that its
        orders brought meanwhile were counted twice (up front, and with their order), and
        `requested` minus the counts overstated the images never tried (3,907 of an account
        of 3,000)."""
        met = self.plan.met_image
        self.intake.planned(images=-sum(1 for image_id in untried if met(image_id)))

    async def _parents(self) -> None:
        tried: set[str] = set()  # parents this run asked for (a 404 stays missing)
        for _ in range(MAX_PARENT_GENERATIONS if self.options.with_parents else 0):
            if self.engine is None or self.control.stopping:
                return
            # Parents of what is mirrored now; a fetched parent may name its own.
            missing = await asyncio.to_thread(self._missing_parents)
            parents = [p for p in missing if p not in tried]
            if not parents:
                return
            tried.update(parents)
            self.intake.planned(images=len(parents))
            await self._pass(self._image_workers(Target.image(p) for p in parents))

    # --- reads of the mirror ----------------------------------------------------------------

    def _to_reconcile(self) -> tuple[list[str], list[str]]:
        """After a listing read to its end: the mirrored orders it did not return, and the
        mirrored images of orders marked deleted that are not marked deleted themselves."""
        from mirror import db

        assert self.engine is not None
        with db.connect(self.engine) as connection:
            mirrored = mirrored_order_ids(connection)
            stranded = images_of_deleted_orders(connection)
        unlisted = [order_id for order_id in mirrored if order_id not in self.plan.seen_orders]
        return unlisted, stranded

    def _missing_parents(self) -> list[str]:
        from mirror import db

        assert self.engine is not None
        with db.connect(self.engine) as connection:
            found, malformed = missing_parent_ids(connection)
        if malformed and self.on_warning is not None:
            self.on_warning(
                f"{malformed} parent_image_id value(s) are not UUIDs; those parents were skipped"
            )
        return found

    def close(self, status: RunStatus, *, error: str | None = None) -> None:
        """Record the run's end, on fresh connections a few times if it fails: the server
        may have ended the session (a restart, a terminated session), or be back after the
        failure that ended the run. Then given up quietly (after a failure, the original
        error is what the user needs to see)."""
        if self.run_id is None or self.engine is None:
            return
        from sqlalchemy.exc import SQLAlchemyError

        from mirror import store

        fatal = self.control.fatal
        # Another's lock, waited for already, will not be gone in a second: one try then.
        attempts = 1 if isinstance(fatal, DatabaseBusy) else CLOSE_ATTEMPTS
        for attempt in range(attempts):
            try:
                store.finish_run(
                    self.engine,
                    run_id=self.run_id,
                    status=status,
                    requested=self.plan.images,
                    counts=self.counts,
                    order_counts=self.writer.order_counts,
                    orders_requested=self.plan.orders,
                    api_requests=self.fetcher.requests,
                    now=self.clock.now(),
                    error=error,
                    lock_timeout=CLOSE_LOCK_TIMEOUT,
                )
                return
            except SQLAlchemyError:
                if attempt == attempts - 1:
                    return
                # No dispose(): the pool replaces a dead connection as it lends it (pre-ping),
                # and a new pool would orphan the lock's connection, checked out of the old.
                time.sleep(CLOSE_RETRY_SECONDS)


_Deliver = Callable[[FetchResult], Awaitable[None]]
_Worker = Coroutine[Any, Any, None]


@contextlib.contextmanager
def _signals_handled_by(handler: Callable[[], None]) -> Iterator[None]:
    """Give the signals that stop a run (`interrupts.SIGNALS`) to `handler` on the event loop
    while it runs (main thread only), one noted as the run started included.

    Their handlers stay the noting ones of `interrupts.defer` (`_drive` puts them there), and
    the loop learns of a signal through Python's wakeup fd: a byte holding the signal's number,
    written whichever thread the signal reaches. Not asyncio's `add_signal_handler`: its
    removal puts SIGTERM back to the default for a moment (a signal then killed a run that
    was over, exit 143), and around it a raising handler landed KeyboardInterrupt in the
    loop's own callbacks as the run started or ended (a traceback, exit 1).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    receive, send = socket.socketpair()
    receive.setblocking(False)
    send.setblocking(False)
    stopping = {int(sig) for sig in interrupts.SIGNALS}

    def on_wakeup() -> None:
        try:
            numbers = receive.recv(4096)
        except BlockingIOError:
            return
        if stopping.intersection(numbers):
            handler()

    loop.add_reader(receive, on_wakeup)
    previous = signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    try:
        if interrupts.take_noted():  # one came as the run started
            handler()
        yield
    finally:
        signal.set_wakeup_fd(previous)
        loop.remove_reader(receive)
        receive.close()
        send.close()


@contextlib.contextmanager
def _uncollected() -> Iterator[None]:
    """For imports beside a running sync: their objects live as long as the process, yet the
    collector would walk them while they are young, pausing the run for ~50 ms at a time (up
    to 0.1 s of `sync --all`'s first pages). Paused meanwhile, then frozen out of its walks;
    left as it was found (a program embedding the sync may have turned it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _add_selection(
    engine: Engine, image_ids: Collection[str] | RequestedIds, selection: Selection
) -> None:
    """Spool the images the selection names (a snapshot: the run itself moves
    `last_synced_at`), after the IDs given directly, each once."""
    from mirror import db

    if not isinstance(image_ids, RequestedIds):
        raise TypeError("a selection adds to RequestedIds")
    with db.connect(engine) as connection:
        image_ids.add_selected(selected_ids(connection, selection, now=datetime.now(UTC)))


def _db_call(engine: Engine, fn: Callable[..., int], **kwargs: Any) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from mirror import db

    try:
        return fn(engine, **kwargs)
    except SQLAlchemyError as exc:
        raise db.database_error(engine, exc) from None


def _once_more_if_transient(step: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """A step of a run's opening (schema check or migration, the run's row) that met an error
    that may pass (the server ended its session, ...) is done once more: each is one
    transaction, rolled back whole. The rule of a commit (`Writer`), at a run's start."""
    try:
        return step(*args, **kwargs)
    except TransientDatabaseError:
        return step(*args, **kwargs)
