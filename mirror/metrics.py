"""The Prometheus textfile of `sync --metrics-file` (spec §8), for node_exporter's textfile
collector: written after every run that took the lock, whatever its end, so an alert on the
last success time catches a cron job that fails or stops running."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.config import refuse_stray_characters
from mirror.errors import InputError
from mirror.outcomes import Counts, OrderCounts, RunStatus

if TYPE_CHECKING:
    from sqlalchemy import Engine

PREFIX = "autoenhance_mirror"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"
ENDED_STATES = ["succeeded", "partial", "failed", "interrupted"]


@dataclass(frozen=True)
class RunFigures:
    """What the metrics say of the run that just ended; times are Unix seconds. The tallies
    are zero for a run that failed before its pipeline started."""

    started: float
    finished: float
    status: RunStatus
    exit_code: int
    requested: int = 0
    counts: Counts = field(default_factory=Counts)
    orders_requested: int = 0
    order_counts: OrderCounts = field(default_factory=OrderCounts)
    api_requests: int = 0


@dataclass(frozen=True)
class MirrorFigures:
    """What the metrics say of the mirror, read back from the database after the run."""

    last_success: float | None
    images_by_status: dict[str, int]
    images_deleted: int
    # The run row's own start and end, when it could be closed: the file then says what
    # sync_runs says, to the microsecond.
    run_times: tuple[float, float] | None = None


def check_metrics_path(raw: str) -> Path:
    """Refuse, before the run, a path node_exporter would not read or we could not write.
    `~` is expanded, as in SQLite paths: cron does not expand it in a crontab's variables."""
    refuse_stray_characters(
        "--metrics-file (or MIRROR_METRICS_FILE)", raw, shown=repr(raw), names="file"
    )
    path = Path(raw).expanduser()
    if path.suffix != ".prom":
        raise InputError(
            f"--metrics-file {raw}: node_exporter's textfile collector reads only *.prom files"
        )
    if not path.parent.is_dir():
        raise InputError(f"--metrics-file {raw}: the directory {path.parent} does not exist")
    return path


def read_mirror(engine: Engine, run_id: int | None) -> MirrorFigures:
    """The last success (this run's, if it succeeded), the images by status, and the times
    the run row `run_id` records."""
    from sqlalchemy import func, select

    from mirror.models import images_table, sync_runs_table
    from mirror.overview import count_by, count_deleted

    runs, images = sync_runs_table.c, images_table.c
    with engine.connect() as connection:
        success = connection.execute(
            select(func.max(runs.finished_at)).where(runs.status == "succeeded")
        ).scalar_one()
        by_status = count_by(connection, images.status, images.deleted_at)
        deleted = count_deleted(connection, images.deleted_at)
        times = connection.execute(
            select(runs.started_at, runs.finished_at).where(runs.id == run_id)
        ).first()
    return MirrorFigures(
        run_times=(
            (times.started_at.timestamp(), times.finished_at.timestamp())
            if times is not None and times.finished_at is not None
            else None
        ),
        last_success=None if success is None else success.timestamp(),
        images_by_status={status or "none": n for status, n in by_status},
        images_deleted=deleted,
    )


def previous_last_success(path: Path) -> float | None:
    """The last success the previous file recorded: what is left to say when the database
    cannot be read (it is down, say) after a failed run."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except (OSError, ValueError):
        pass
    return None


def write_metrics(path: Path, run: RunFigures, mirror: MirrorFigures | None) -> None:
    """Write the file atomically (a temporary file renamed over it): node_exporter never
    reads half of one. `mirror` is None when the database could not be read."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float) -> None:
        Gauge(f"{PREFIX}_{name}", doc, registry=registry).set(value)

    def by_label(name: str, doc: str, label: str, values: dict[str, int]) -> None:
        family = Gauge(f"{PREFIX}_{name}", doc, [label], registry=registry)
        for key, value in values.items():
            family.labels(key).set(value)

    started, finished = (mirror and mirror.run_times) or (run.started, run.finished)
    gauge("last_run_timestamp_seconds", "When the last sync run ended (Unix time).", finished)
    gauge("last_run_start_timestamp_seconds", "When the last sync run started.", started)
    gauge("last_run_duration_seconds", "How long the last sync run took.", finished - started)
    gauge("last_run_exit_code", "The last sync run's exit code (0 = all mirrored).", run.exit_code)
    by_label(
        "last_run_status",
        "How the last sync run ended: 1 for its status, 0 for the others.",
        "status",
        {state: int(state == run.status) for state in ENDED_STATES},
    )
    gauge("last_run_images_requested", "Images the last run set out to fetch.", run.requested)
    by_label(
        "last_run_images",
        "Images of the last run by result.",
        "result",
        run.counts.as_dict(),
    )
    gauge(
        "last_run_orders_requested", "Orders the last run set out to fetch.", run.orders_requested
    )
    by_label(
        "last_run_orders",
        "Orders of the last run by result.",
        "result",
        {name.removeprefix("orders_"): n for name, n in run.order_counts.as_dict().items()},
    )
    gauge(
        "last_run_api_requests", "API requests of the last run, retries included.", run.api_requests
    )
    if mirror is not None:
        last_success = mirror.last_success
    elif run.status == "succeeded":
        last_success = finished
    else:
        last_success = previous_last_success(path)
    if last_success is not None:  # absent until a run has succeeded: alert on absent() too
        gauge(
            "last_success_timestamp_seconds",
            "When the last sync run that mirrored everything ended (Unix time).",
            last_success,
        )
    if mirror is not None:
        by_label(
            "images",
            "Mirrored images (not deleted upstream) by status.",
            "status",
            mirror.images_by_status,
        )
        gauge("images_deleted_upstream", "Mirrored images deleted upstream.", mirror.images_deleted)
    write_to_textfile(str(path), registry)
