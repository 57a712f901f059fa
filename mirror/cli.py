"""The command line: parses options, calls the library, prints. Errors become exit codes here."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import click
from sqlalchemy import Engine

from mirror import __version__, db
from mirror.api import ApiSettings
from mirror.config import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_DATABASE_URL,
    DEFAULT_MAX_RATE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Redactor,
    masked,
    parse_database_url,
)
from mirror.errors import InputError, Interrupted, MirrorError
from mirror.ids import IdSource, RequestedIds, collect_ids
from mirror.sync import SyncOptions, SyncSummary, sync_images

MAX_FAILURES_SHOWN = 20


class MirrorGroup(click.Group):
    """Maps the library's exceptions to a one-line message and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MirrorError as exc:
            redact: Redactor = ctx.meta.get("redact", Redactor())
            click.echo(f"error: {redact(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:  # a signal outside a sync's own handling: nothing fetched
            click.echo("error: interrupted", err=True)
            ctx.exit(Interrupted.exit_code)


def database_url_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--database-url",
        envvar="MIRROR_DATABASE_URL",
        show_envvar=True,
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        help="SQLAlchemy URL: sqlite:///file.db or postgresql://user:password@host/db.",
    )(fn)


def open_engine(ctx: click.Context, raw_url: str, api_key: str | None = None) -> Engine:
    """Parse the URL, remember its secrets for redaction, and create the engine."""
    url = parse_database_url(raw_url)
    ctx.meta["redact"] = Redactor.for_run(api_key=api_key, database_url=url)
    ctx.meta["masked_url"] = masked(url)
    engine = db.create_db_engine(url)
    ctx.call_on_close(engine.dispose)
    return engine


@click.group(cls=MirrorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="autoenhance-mirror")
def cli() -> None:
    """Keep a local SQL copy (SQLite or PostgreSQL) of your Autoenhance.ai images.

    \b
    Example:
        autoenhance-mirror sync --from-file image-ids.txt
    """


@cli.command()
@click.argument("image_ids", nargs=-1, metavar="[IMAGE_ID]...")
@click.option(
    "--from-file",
    type=click.File("r", encoding="utf-8"),
    help="File with one image ID a line (# comments and blank lines skipped); - for stdin.",
)
@database_url_option
@click.option(
    "--api-key",
    envvar="AUTOENHANCE_API_KEY",
    show_envvar=True,
    help="Sent as x-api-key. Never printed or stored.",
)
@click.option(
    "--base-url",
    envvar="AUTOENHANCE_BASE_URL",
    show_envvar=True,
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="The API's address (e.g. the local stand-in's).",
)
@click.option(
    "--api-version",
    envvar="AUTOENHANCE_API_VERSION",
    show_envvar=True,
    default=DEFAULT_API_VERSION,
    show_default=True,
    help="Sent as x-api-version, so the response shape cannot change under the mirror.",
)
@click.option(
    "--max-rate",
    envvar="MIRROR_MAX_RATE",
    show_envvar=True,
    type=click.FloatRange(min=0),
    default=DEFAULT_MAX_RATE,
    show_default=True,
    help="Requests per second at most, retries included; 0 for no cap.",
)
@click.option(
    "--concurrency",
    envvar="MIRROR_CONCURRENCY",
    show_envvar=True,
    type=click.IntRange(min=1, max=1024),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Requests in flight.",
)
@click.option(
    "--timeout",
    envvar="MIRROR_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--retries",
    envvar="MIRROR_RETRIES",
    show_envvar=True,
    type=click.IntRange(min=0, max=20),
    default=DEFAULT_RETRIES,
    show_default=True,
    help="Retries per image after the first attempt (429, 5xx, timeouts, connection errors).",
)
@click.option("--dry-run", is_flag=True, help="Fetch and compare; report what would change.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the run succeeds (cron).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def sync(
    ctx: click.Context,
    image_ids: tuple[str, ...],
    from_file: TextIO | None,
    database_url: str,
    api_key: str | None,
    base_url: str,
    api_version: str,
    max_rate: float,
    concurrency: int,
    timeout: float,
    retries: int,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fetch the listed images from the API and upsert them into the database.

    The schema is created or migrated on the first run. Exit codes: 0 all mirrored, 1 some
    failed, 2 bad input, 3 fatal (key rejected, database unusable), 75 another sync is running,
    130 interrupted.

    \b
    Example:
        autoenhance-mirror sync 3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5 --from-file ids.txt
    """
    ctx.meta["redact"] = Redactor([api_key])
    if not image_ids and from_file is None:
        raise click.UsageError("give image IDs as arguments or with --from-file FILE")
    ids = collect_ids(
        IdSource(
            arguments=image_ids,
            file_name=from_file.name if from_file is not None else None,
            file=from_file,
        )
    )
    if not base_url.startswith(("http://", "https://")):
        raise InputError(f"--base-url must start with http:// or https://, not {base_url!r}")
    engine = open_engine(ctx, database_url, api_key)
    options = SyncOptions(
        api=ApiSettings(
            base_url=base_url,
            api_version=api_version,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            concurrency=concurrency,
        ),
        max_rate=max_rate or None,
        dry_run=dry_run,
    )
    summary = _run_sync(
        engine, ids, options, ctx.meta["redact"], quiet=quiet, show_progress=not as_json
    )
    _print_summary(summary, quiet=quiet, as_json=as_json)
    ctx.exit(0 if summary.status == "succeeded" else 1)


def _run_sync(
    engine: Engine,
    ids: Collection[str] | RequestedIds,
    options: SyncOptions,
    redact: Redactor,
    *,
    quiet: bool,
    show_progress: bool,
) -> SyncSummary:
    def warn(message: str) -> None:
        if not quiet:
            click.echo(f"warning: {redact(message)}", err=True)

    with _progress(len(ids), enabled=show_progress and not quiet) as advance:
        return sync_images(
            engine=engine,
            image_ids=ids,
            options=options,
            redact=redact,
            on_progress=advance,
            on_warning=warn,
        )


@contextmanager
def _progress(length: int, *, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on a terminal's stderr; nothing at all when output is not a terminal."""
    if not (enabled and sys.stderr.isatty()):
        yield None
        return
    with click.progressbar(length=length, label="syncing", file=sys.stderr) as bar:
        yield bar.update


def _print_summary(summary: SyncSummary, *, quiet: bool, as_json: bool) -> None:
    if quiet and summary.status == "succeeded":
        return
    click.echo(json.dumps(summary.as_dict()) if as_json else summary.line())
    shown = summary.failures[:MAX_FAILURES_SHOWN]
    for failure in shown:
        status = f" (HTTP {failure.http_status})" if failure.http_status else ""
        click.echo(
            f"  {failure.kind}: {failure.image_id}{status}: {failure.message}",
            err=True,
        )
    total_failures = summary.counts.failed + summary.counts.not_found
    if total_failures > len(shown):
        more = total_failures - len(shown)
        click.echo(f"  … and {more} more (see the sync_failures table)", err=True)


@cli.group(name="db")
def db_group() -> None:
    """Schema migrations (Alembic), for upgrading ahead of a run or rolling back."""


@db_group.command()
@click.argument("revision", default="head")
@database_url_option
@click.pass_context
def upgrade(ctx: click.Context, revision: str, database_url: str) -> None:
    """Migrate the database to REVISION (default: the newest).

    \b
    Example:
        autoenhance-mirror db upgrade --database-url postgresql://mirror@localhost/mirror
    """
    db.upgrade(open_engine(ctx, database_url), revision)
    click.echo(f"{ctx.meta['masked_url']}: upgraded to {revision}")


@db_group.command()
@click.argument("revision")
@database_url_option
@click.pass_context
def downgrade(ctx: click.Context, revision: str, database_url: str) -> None:
    """Migrate the database down to REVISION (`base` removes every table).

    \b
    Example:
        autoenhance-mirror db downgrade base
    """
    db.downgrade(open_engine(ctx, database_url), revision)
    click.echo(f"{ctx.meta['masked_url']}: downgraded to {revision}")


@db_group.command()
@database_url_option
@click.pass_context
def current(ctx: click.Context, database_url: str) -> None:
    """Print the database's schema revision, and whether it is the newest.

    \b
    Example:
        autoenhance-mirror db current
    """
    state = db.current_revision(open_engine(ctx, database_url))
    if state.current is None:
        click.echo(f"none (empty database; newest is {state.head})")
    elif state.up_to_date:
        click.echo(f"{state.current} (head)")
    elif state.known:
        click.echo(f"{state.current} (older; newest is {state.head})")
    else:
        click.echo(f"{state.current} (unknown to this version; newest known is {state.head})")


@cli.command()
@database_url_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
def status(ctx: click.Context, database_url: str, as_json: bool) -> None:
    """Mirrored images by status, the last runs, and the failures of the last run.

    \b
    Example:
        autoenhance-mirror status
    """
    from mirror.report import build_report, format_counts

    engine = open_engine(ctx, database_url)
    db.ensure_schema(engine, allow_upgrade=False)
    report = build_report(engine)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "images_by_status": {str(k): n for k, n in report.by_status},
                    "deleted": report.deleted,
                    "runs": report.last_runs,
                    "last_run_failures": report.last_run_failures,
                },
                default=str,
            )
        )
        return
    click.echo(format_counts("images by status", report.by_status))
    click.echo(f"deleted upstream: {report.deleted}")
    click.echo("last runs")
    for run in report.last_runs:
        click.echo(
            f"  run {run['id']}  {run['started_at']:%Y-%m-%d %H:%M:%S}  {run['status']:<11} "
            f"requested {run['requested']}, new {run['inserted']}, changed {run['updated']}, "
            f"unchanged {run['unchanged']}, deleted {run['deleted']}, "
            f"not found {run['not_found']}, failed {run['failed']}"
        )
    if report.last_run_failures:
        click.echo("failures of the last run")
        for f in report.last_run_failures:
            click.echo(f"  {f['kind']}: {f['image_id']}: {f['message']}")


@cli.command(name="stand-in")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--latency", type=click.FloatRange(min=0), default=0, help="Milliseconds per answer.")
@click.option(
    "--faults",
    type=click.File("r", encoding="utf-8"),
    help='JSON: {"<image id>": [{"status": 429, "retry_after": "1"}, {"drop": true}, ...]}.',
)
@click.option("--require-key", help="Answer 401 unless x-api-key equals this.")
def stand_in(
    host: str, port: int, latency: float, faults: TextIO | None, require_key: str | None
) -> None:
    """Run the local stand-in of the Autoenhance API, to rehearse a cron set-up offline.

    \b
    Example:
        autoenhance-mirror stand-in --port 8000 &
        autoenhance-mirror sync --base-url http://127.0.0.1:8000 --from-file ids.txt
    """
    from mirror.standin import StandIn, StandInState

    state = StandInState(latency=latency / 1000, require_key=require_key)
    if faults is not None:
        try:
            state.load_faults(json.load(faults))
        except (ValueError, TypeError, AttributeError) as exc:
            raise InputError(f"--faults {faults.name}: not a fault script: {exc}") from None
    server = StandIn(host=host, port=port, state=state).start()
    click.echo(f"stand-in of the Autoenhance API listening on {server.url} (Ctrl-C to stop)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command()
@database_url_option
@click.option(
    "--count", type=click.IntRange(1, 100_000), default=300, show_default=True, help="Images."
)
@click.pass_context
def demo(ctx: click.Context, database_url: str, count: int) -> None:
    """Offline quick start: mirror sample images from the local stand-in and report on them.

    Needs no API key and no network. Run it twice: the second run finds everything unchanged.

    \b
    Example:
        autoenhance-mirror demo
    """
    from mirror.demo import demo_image_ids
    from mirror.report import build_report, format_counts
    from mirror.standin import StandIn

    engine = open_engine(ctx, database_url)
    ids = demo_image_ids(count)
    with StandIn(host="127.0.0.1", port=0) as server:
        click.echo(f"stand-in of the Autoenhance API on {server.url}")
        options = SyncOptions(
            api=ApiSettings(base_url=server.url, api_version=DEFAULT_API_VERSION, concurrency=16),
            max_rate=None,
        )
        summary = _run_sync(
            engine, ids, options, ctx.meta["redact"], quiet=False, show_progress=True
        )
    click.echo(f"{summary.line()} into {ctx.meta['masked_url']}")
    report = build_report(engine)
    click.echo(format_counts("images by status", report.by_status))
    click.echo(format_counts("images by scene", report.by_scene))
    ctx.exit(0 if summary.status == "succeeded" else 1)


def main() -> None:
    # SIGTERM (what cron and systemd send) behaves like Ctrl-C: a sync commits and exits 130.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    cli(prog_name="autoenhance-mirror")
