"""The command line: parses options, calls the library, prints. Errors become exit codes here."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

import click

from mirror import __version__, interrupts
from mirror.config import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_DATABASE_URL,
    DEFAULT_MAX_RATE,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    DEMO_DATABASE_URL,
    Redactor,
    check_base_url,
    check_header_value,
    masked,
    parse_database_url,
    plain_sqlite_path,
)
from mirror.errors import InputError, Interrupted, MirrorError, NoMirror, OutputFailed

# Only click and light modules at import time: `--help` and `--version` must not pay for
# SQLAlchemy, SQLModel and the drivers (~0.5 s); commands import what they use.
if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mirror.ids import RequestedIds
    from mirror.outcomes import Failure
    from mirror.selections import Selection
    from mirror.sync import LateDatabase, SyncOptions, SyncSummary

MAX_FAILURES_SHOWN = 20


# What an error's exit code is called in a --json error object.
ERROR_STATUS = {2: "input_error", 3: "failed", 75: "locked", 130: "interrupted"}


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange lets `nan` past every bound (no comparison with it holds) and `inf`
    past a minimum: `--max-rate inf` ended in a traceback, `--timeout nan` turned the request
    timeout off without a word."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class MirrorGroup(click.Group):
    """Maps the library's exceptions to a one-line message and the documented exit code.

    With `--json` the message also goes to stdout as one JSON object, so a script reading
    stdout learns why there is no summary.
    """

    def invoke(self, ctx: click.Context) -> Any:
        # The subcommand's own words, before they are parsed: a bad option value fails in
        # parsing, and a signal noted during start-up is raised before that; either's error
        # must be JSON too when --json was asked for.
        ctx.meta["as_json"] = "--json" in ctx.args
        try:
            with interrupts.raised_while_running():
                return super().invoke(ctx)
        except MirrorError as exc:
            redact: Redactor = ctx.meta.get("redact", Redactor())
            _fail(ctx, redact(str(exc)), exc.exit_code, as_json=_json_asked(ctx))
        except KeyboardInterrupt:  # a signal outside a sync's own handling: nothing fetched
            _fail(ctx, "interrupted", Interrupted.exit_code, as_json=_json_asked(ctx))
        except click.ClickException as exc:
            if not _json_asked(ctx):
                raise
            exc.show()
            _json_error(exc.format_message(), exc.exit_code)
            ctx.exit(exc.exit_code)


def _json_asked(ctx: click.Context) -> bool:
    return bool(ctx.meta.get("as_json"))


def _fail(ctx: click.Context, message: str, exit_code: int, *, as_json: bool) -> None:
    with _unless_output_is_gone():
        click.echo(f"error: {message}", err=True)
        if as_json:
            _json_error(message, exit_code)
    ctx.exit(exit_code)


@contextlib.contextmanager
def _unless_output_is_gone() -> Iterator[None]:
    """What is said once the work is done, to a reader that stopped early (`| head`: EPIPE) or
    a terminal that hung up (EIO, after SIGHUP): the exit code stays the work's own, not the 1
    of a failed write (click's "partial" for a closed pipe, or a traceback). Output that
    could not be written for another reason (a full disk) is said on stderr."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.EPIPE, errno.EIO):
            with contextlib.suppress(OSError):
                click.echo(
                    f"warning: {_unwritable(exc)}; the run is recorded in sync_runs", err=True
                )
        _silence_closed_output()


def _write_out(message: str | bytes, *, nl: bool = True) -> None:
    """What a reading command exists to print (a report, the status), on stdout. A write that
    fails for want of room (a report redirected to a full disk) is exit 3 saying so, not a
    traceback and exit 1, the code of a partial sync. A reader that stopped early (EPIPE) is
    left to the handling it has."""
    try:
        click.echo(message, nl=nl)
        sys.stdout.flush()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise
        _silence_closed_output(stderr_too=False)  # else the flush at exit fails again
        raise OutputFailed(_unwritable(exc)) from None


def _unwritable(exc: OSError) -> str:
    return f"cannot write to standard output ({exc.strerror or exc}): what reached it is incomplete"


def _json_error(message: str, exit_code: int) -> None:
    status = ERROR_STATUS.get(exit_code, "error")
    click.echo(json.dumps({"status": status, "exit_code": exit_code, "message": message}))


def database_url_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--database-url",
        envvar="MIRROR_DATABASE_URL",
        show_envvar=True,
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        help="sqlite:///file.db, a file path, or postgresql://user:password@host/db "
        "(percent-encode @ : / ? # in the password).",
    )(fn)


def open_engine(
    ctx: click.Context, raw_url: str, api_key: str | None = None, *, writing: bool = False
) -> Engine:
    """Parse the URL, remember its secrets for redaction, and create the engine (`writing`:
    for a command that writes, refusing a SQLite file this user may not write)."""
    from mirror import db

    url = parse_database_url(raw_url)
    ctx.meta["redact"] = Redactor.for_run(api_key=api_key, database_url=url)
    ctx.meta["masked_url"] = masked(url)
    engine = db.create_db_engine(url, writing=writing)
    ctx.call_on_close(engine.dispose)
    return engine


def open_existing_mirror(ctx: click.Context, raw_url: str) -> Engine:
    """The engine of a mirror that must already exist and be current, for the commands that
    only read it: no mirror there, or a schema older or newer than the code, is exit 3, and
    nothing is created or migrated."""
    from mirror import db

    engine = open_engine(ctx, raw_url)
    try:
        db.open_mirror(engine, current=True)
    except NoMirror as exc:
        raise NoMirror(f"{exc}{_demo_hint(raw_url)}") from None
    return engine


def _demo_hint(raw_url: str) -> str:
    """Where the demo's mirror is, for a newcomer who ran `demo` and then reads the default
    database: it is a file of its own, so that the demo never lands in a real mirror."""
    demo_file = DEMO_DATABASE_URL.removeprefix("sqlite:///")
    if raw_url != DEFAULT_DATABASE_URL or not os.path.isfile(demo_file):
        return ""
    return f"; the demo's mirror is {demo_file}: --database-url {DEMO_DATABASE_URL}"


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
    metavar="FILE",
    help="File with one image ID a line (# starts a comment, blank lines skipped); - for stdin.",
)
@click.option(
    "--order",
    "order_ids",
    multiple=True,
    metavar="ORDER_ID",
    help="Mirror this order and every image it embeds (repeatable; no API key needed).",
)
@click.option(
    "--orders-from-file",
    metavar="FILE",
    help="File with one order ID a line (# at the start or after a space starts a comment, "
    "blank lines skipped); - for stdin.",
)
@click.option(
    "--all",
    "all_orders",
    is_flag=True,
    help="Mirror every order of the account and every image they embed; needs the API key.",
)
@database_url_option
@click.option(
    "--api-key",
    envvar="AUTOENHANCE_API_KEY",
    show_envvar=True,
    help=(
        "Sent as x-api-key. Never printed or stored. Prefer the variable: ps shows a command "
        "line to every user of the machine."
    ),
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
    type=FiniteFloatRange(min=0),
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
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per request.",
)
@click.option(
    "--connect-timeout",
    envvar="MIRROR_CONNECT_TIMEOUT",
    show_envvar=True,
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to connect (TLS handshake included), within --timeout.",
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
@click.option(
    "--unfinished",
    is_flag=True,
    help="Also refresh every mirrored image whose status is not processed, error or expired.",
)
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Also refresh every mirrored image last synced longer ago than this (90s, 30m, 12h, 7d).",
)
@click.option(
    "--with-parents",
    is_flag=True,
    help="Then fetch the images that mirrored ones name as parent_image_id but that are not "
    "in the mirror (restaged children never point at nothing).",
)
@click.option(
    "--max-deletes",
    envvar="MIRROR_MAX_DELETES",
    show_envvar=True,
    type=click.IntRange(min=0),
    help="Mark at most N mirrored images deleted (404) in one run, else stop with exit 3 "
    "and mark none. Default: 10 % of the requested images, at least 10.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Fetch and compare; list what would be new, changed or deleted. Writes nothing.",
)
@click.option(
    "--metrics-file",
    envvar="MIRROR_METRICS_FILE",
    show_envvar=True,
    metavar="PATH",
    help="After every run that took the lock, write its figures here for node_exporter's "
    "textfile collector (a *.prom file, replaced atomically).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the run succeeds (cron).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.pass_context
def sync(
    ctx: click.Context,
    image_ids: tuple[str, ...],
    from_file: str | None,
    order_ids: tuple[str, ...],
    orders_from_file: str | None,
    all_orders: bool,
    database_url: str,
    api_key: str | None,
    base_url: str,
    api_version: str,
    max_rate: float,
    concurrency: int,
    timeout: float,
    connect_timeout: float,
    retries: int,
    unfinished: bool,
    older_than: str | None,
    with_parents: bool,
    max_deletes: int | None,
    dry_run: bool,
    metrics_file: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Fetch orders (with their images) and images, and upsert them; each once.

    Sources combine: image IDs (arguments, --from-file), orders (--order, --orders-from-file),
    the whole account (--all), and images selected from the mirror (--unfinished,
    --older-than, --with-parents). Orders come first, then single images. The schema is
    created or migrated on the first run. Exit codes: 0 all mirrored, 1 some failed, 2 bad
    input, 3 fatal (key rejected, a redirect from the API, API or database unreachable,
    implausibly many deletions, a listing that never ends, selections alone and no mirror to
    choose from), 75 another sync (or SQLite writer) holds the database, 130 interrupted.

    \b
    Example:
        autoenhance-mirror sync --all
        autoenhance-mirror sync --unfinished
        autoenhance-mirror sync 3f6c2a9e-8b1d-4c57-9e2a-6d0b7f41c8a5 --order ORDER_ID
    """
    from mirror.api import ApiSettings
    from mirror.ids import IdSource, collect_ids, collect_order_ids
    from mirror.metrics import check_metrics_path
    from mirror.outcomes import exit_code_of
    from mirror.selections import Selection, parse_duration
    from mirror.sync import LateDatabase, SyncOptions

    ctx.meta["redact"] = Redactor([api_key])
    selection = Selection(
        unfinished=unfinished,
        older_than=parse_duration(older_than) if older_than is not None else None,
    )
    orders_given = bool(order_ids) or orders_from_file is not None or all_orders
    images_given = bool(image_ids) or from_file is not None or bool(selection) or with_parents
    if not orders_given and not images_given:
        raise click.UsageError(
            "nothing to sync: give image IDs (arguments, --from-file FILE), orders (--order "
            "ORDER_ID, --orders-from-file FILE), --all for the whole account, or select "
            "images with --unfinished, --older-than DURATION or --with-parents"
        )
    if from_file == "-" and orders_from_file == "-":
        raise InputError("--from-file - and --orders-from-file - cannot both read stdin")
    if all_orders and not api_key:
        raise InputError(
            "--all lists the account's orders, which needs the API key: give --api-key or "
            "set AUTOENHANCE_API_KEY (nothing was fetched or written)"
        )
    base_url = check_base_url(base_url)
    from mirror.api import check_proxy

    check_proxy(base_url)
    metrics_path = check_metrics_path(metrics_file) if metrics_file else None
    check_header_value("--api-key (or AUTOENHANCE_API_KEY)", api_key, secret=True)
    check_header_value("--api-version (or AUTOENHANCE_API_VERSION)", api_version)
    orders = collect_order_ids(
        IdSource(
            arguments=order_ids,
            file_name=orders_from_file,
            argument_label="--order",
            option="--orders-from-file",
        )
    )
    ids = collect_ids(IdSource(arguments=image_ids, file_name=from_file))
    engine: Engine | LateDatabase
    plain = plain_sqlite_path(database_url)
    # Selections alone choose from the mirror: with none there, they must not make one.
    only_selected = not orders_given and not image_ids and from_file is None
    if plain is not None and not selection and not only_selected:
        # A plain SQLite file: lock it and start fetching at once; SQLAlchemy is imported and
        # the database opened while the first requests are in flight (cron's start-up).
        engine = LateDatabase.checked(
            plain, functools.partial(open_engine, ctx, database_url, api_key), dry_run=dry_run
        )
        ctx.meta["masked_url"] = engine.shown
    else:
        engine = open_engine(ctx, database_url, api_key, writing=not dry_run)
        if only_selected:
            _refuse_selecting_from_nothing(engine, selection, older_than, with_parents)
    options = SyncOptions(
        api=ApiSettings(
            base_url=base_url,
            api_version=api_version,
            api_key=api_key,
            timeout=timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            concurrency=concurrency,
        ),
        max_rate=max_rate or None,
        dry_run=dry_run,
        max_deletes=max_deletes,
        selection=selection,
        with_parents=with_parents,
        all_orders=all_orders,
        metrics_file=metrics_path,
    )
    summary = _run_sync(
        engine,
        ids,
        options,
        ctx.meta["redact"],
        order_ids=orders,
        quiet=quiet,
        show_progress=not as_json,
    )
    with _unless_output_is_gone():  # the run is over and recorded
        _print_summary(summary, base_url=base_url, quiet=quiet, as_json=as_json)
    ctx.exit(exit_code_of(summary.status))


def _refuse_selecting_from_nothing(
    engine: Engine, selection: Selection, older_than: str | None, with_parents: bool
) -> None:
    """A run of selections alone against a database with no mirror raises NoMirror (exit 3)
    before anything is fetched or created: it has nothing to choose from, and a mistyped
    --database-url would otherwise be an empty mirror that every later run calls a success."""
    from mirror import db

    absence = db.mirror_absence(engine)
    if absence is None:
        return
    names = [
        name
        for name, given in (
            ("--unfinished", selection.unfinished),
            (f"--older-than {older_than}", selection.older_than is not None),
            ("--with-parents", with_parents),
        )
        if given
    ]
    selects = "it selects" if len(names) == 1 else "they select"
    raise NoMirror(
        f"no mirror at {masked(engine.url)} for {' and '.join(names)} to choose from "
        f"({absence}): {selects} images already mirrored. Check --database-url (or "
        "MIRROR_DATABASE_URL); a sync of image IDs, orders or --all creates the mirror. "
        "Nothing was fetched or written"
    )


def _silence_closed_output(*, stderr_too: bool = True) -> None:
    """Point stdout and stderr at /dev/null, so that their flush at exit does not fail again
    on the closed pipe (the recipe of Python's `signal` documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr) if stderr_too else (sys.stdout,):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())


def _run_sync(
    engine: Engine | LateDatabase,
    ids: Collection[str] | RequestedIds,
    options: SyncOptions,
    redact: Redactor,
    *,
    order_ids: Sequence[str] = (),
    quiet: bool,
    show_progress: bool,
) -> SyncSummary:
    def warn(message: str) -> None:
        if not quiet:
            with contextlib.suppress(OSError):  # a terminal gone does not stop the run
                click.echo(f"warning: {redact(message)}", err=True)

    from mirror.sync import sync_images

    # Orders bring images the run cannot count before it has them: no total to show.
    open_ended = options.all_orders or bool(order_ids)
    progress = _Progress(enabled=show_progress and not quiet, open_ended=open_ended)
    try:
        return sync_images(
            engine=engine,
            image_ids=ids,
            order_ids=order_ids,
            options=options,
            redact=redact,
            on_start=progress.start,
            on_progress=progress.advance,
            on_warning=warn,
        )
    finally:
        interrupts.defer()  # the run is over and recorded: what is said of it stands
        progress.close()


class _Progress:
    """A progress bar on a terminal's stderr, opened once the run knows how many images it
    fetches (selections are counted after the lock is taken); nothing when not a terminal.
    `open_ended` (orders, whose images are known only once fetched): images counted as they
    come, with no total and no percentage (it would read 100 % after every page)."""

    def __init__(self, *, enabled: bool, open_ended: bool = False) -> None:
        self._enabled = enabled and sys.stderr.isatty()
        self._open_ended = open_ended
        self._bar: Any = None

    def start(self, total: int) -> None:
        """Called again when the run adds work (the parents of --with-parents)."""
        with self._unless_terminal_gone():
            self._start(total)

    def _start(self, total: int) -> None:
        if self._bar is not None:
            if not self._open_ended:
                self._bar.length = total
        elif self._enabled and self._open_ended:
            self._bar = click.progressbar(
                iterable=_no_length(),
                label="syncing",
                file=sys.stderr,
                show_pos=True,
                item_show_func=lambda _: "images",
            )
            self._bar.__enter__()
        elif self._enabled:
            self._bar = click.progressbar(length=total, label="syncing", file=sys.stderr)
            self._bar.__enter__()

    def advance(self, images: int) -> None:
        if self._bar is not None:
            with self._unless_terminal_gone():
                self._bar.update(images)

    def close(self) -> None:
        if self._bar is not None:
            with self._unless_terminal_gone():
                self._bar.__exit__(None, None, None)

    @contextlib.contextmanager
    def _unless_terminal_gone(self) -> Iterator[None]:
        """A terminal that hung up (EIO after SIGHUP, which stops the run as SIGTERM does):
        the bar stops, the run goes on to its end."""
        try:
            yield
        except OSError:
            self._bar = None


def _no_length() -> Iterator[int]:
    """An iterable without a length: click's bar then counts, with no total."""
    yield from ()


def _print_summary(summary: SyncSummary, *, base_url: str, quiet: bool, as_json: bool) -> None:
    if quiet and summary.status == "succeeded":
        return
    left_out = summary.counts.failed + summary.counts.not_found - len(summary.failures)
    if as_json:
        report = summary.as_dict()
        report["failures"] = [asdict(f) for f in summary.failures]
        report["failures_left_out"] = max(0, left_out)
        if summary.dry_run:
            report["changes"] = [{f"{c.of}_id": c.key, "change": c.change} for c in summary.changes]
            report["changes_left_out"] = summary.changes_left_out
        click.echo(json.dumps(report))
    else:
        click.echo(summary.line())
        if summary.dry_run:
            for c in summary.changes:
                what = c.key if c.of == "image" else f"order {c.key}"
                click.echo(f"  would be {c.change}: {what}")
            if summary.changes_left_out:
                click.echo(f"  … and {summary.changes_left_out} more")
    failed = summary.counts.failed + summary.counts.not_found
    _echo_failures(summary.failures[:MAX_FAILURES_SHOWN], failed)
    if summary.nothing_was_json:
        click.echo(
            f"no answer from {base_url} was JSON: is that the Autoenhance API? (--base-url, "
            f"AUTOENHANCE_BASE_URL; the API is at {DEFAULT_BASE_URL})",
            err=True,
        )


def _echo_failures(shown: list[Failure], total: int) -> None:
    from mirror.outcomes import failure_line

    for f in shown:
        click.echo(failure_line(f.kind, f.subject, f.message, f.http_status), err=True)
    if total > len(shown):
        more = total - len(shown)
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
    from mirror import db
    from mirror.lock import sync_lock

    engine = open_engine(ctx, database_url, writing=True)
    with sync_lock(engine):  # never beside a running sync (exit 75), nor a second migration
        db.upgrade(engine, revision)
    click.echo(f"{ctx.meta['masked_url']}: upgraded to {revision}")


@db_group.command()
@click.argument("revision")
@database_url_option
@click.option("--yes", is_flag=True, help="Confirm a downgrade that drops the mirrored data.")
@click.pass_context
def downgrade(ctx: click.Context, revision: str, database_url: str, yes: bool) -> None:
    """Migrate the database down to REVISION (`base` drops every table: needs --yes).

    \b
    Example:
        autoenhance-mirror db downgrade 0002
    """
    from mirror import db
    from mirror.lock import sync_lock

    engine = open_engine(ctx, database_url, writing=True)
    state = db.open_mirror(engine)
    if db.drops_mirror(state, revision) and not yes:
        where = ctx.meta["masked_url"]
        question = f"this drops every mirrored image and run of {where}; go on?"
        if not (sys.stdin.isatty() and click.confirm(question, err=True)):
            raise InputError(
                f"`db downgrade {revision}` drops every table of {where}, with the mirrored "
                "data; add --yes to do it (nothing was changed)"
            )
    with sync_lock(engine):  # never under a running sync (exit 75)
        db.downgrade(engine, revision)
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
    from mirror import db

    state = db.current_revision(open_engine(ctx, database_url))
    where = ctx.meta["masked_url"]
    if state.up_to_date:
        _write_out(f"{state.current} (head) at {where}")
    elif state.known:
        _write_out(f"{state.current} (older; newest is {state.head}) at {where}")
    else:
        _write_out(
            f"{state.current} (unknown to this version; newest known is {state.head}) at {where}"
        )


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
    from mirror.overview import build_overview

    engine = open_existing_mirror(ctx, database_url)
    overview = build_overview(engine, failures_shown=MAX_FAILURES_SHOWN)
    shown = ctx.meta["masked_url"]
    if as_json:
        _write_out(json.dumps(overview.as_json(shown), default=str))
    else:
        _write_out("\n".join(overview.text(shown)))


@cli.command()
@click.argument("name", required=False)
@click.option("--since", metavar="DATE", help="From this UTC day on (YYYY-MM-DD).")
@click.option("--until", metavar="DATE", help="Up to this UTC day, included (YYYY-MM-DD).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "csv", "json"]),
    help="table on a terminal, csv otherwise; json is one array of objects.",
)
@database_url_option
@click.pass_context
def report(
    ctx: click.Context,
    name: str | None,
    since: str | None,
    until: str | None,
    output_format: str | None,
    database_url: str,
) -> None:
    """List the reports, or run report NAME: plain SQL over the mirror (docs/queries.sql).

    \b
    Example:
        autoenhance-mirror report
        autoenhance-mirror report time-to-process --since 2026-11-01
        autoenhance-mirror report downloads-per-day --format json
    """
    from mirror.reports import load_reports, parse_day, unknown_report

    reports = load_reports()
    if name is None:
        width = max(len(n) for n in reports)
        _write_out("\n".join(f"{r.name:<{width}}  {r.about}" for r in reports.values()))
        return
    if name not in reports:
        raise unknown_report(name, reports)
    first, last = parse_day("--since", since, reports), parse_day("--until", until, reports)
    if first is not None and last is not None and first > last:
        raise InputError(f"--since {first} is after --until {last}: no day is in between")
    from mirror.reports import run_report
    from mirror.tabular import render

    engine = open_existing_mirror(ctx, database_url)
    result = run_report(engine, reports[name], since=first, until=last)
    chosen = output_format or ("table" if sys.stdout.isatty() else "csv")
    rendered = render(result, chosen)
    # CSV is data for other programs: UTF-8 whatever the locale, never a character lost.
    _write_out(rendered.encode() if chosen == "csv" else rendered, nl=False)


@cli.command(name="stand-in")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--latency", type=FiniteFloatRange(min=0), default=0, help="Milliseconds per answer.")
@click.option(
    "--faults",
    type=click.File("r", encoding="utf-8"),
    help='JSON: {"<image id>": [{"status": 429, "retry_after": "1"}, {"drop": true}, ...]}.',
)
@click.option("--require-key", help="Answer 401 unless x-api-key equals this.")
@click.option(
    "--account",
    "account_images",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Serve an account of this many images in orders of 1-20 (GET /v3/orders/...).",
)
def stand_in(
    host: str,
    port: int,
    latency: float,
    faults: TextIO | None,
    require_key: str | None,
    account_images: int,
) -> None:
    """Run the local stand-in of the Autoenhance API, to rehearse a cron set-up offline.

    \b
    Example:
        autoenhance-mirror stand-in --port 8000 &
        autoenhance-mirror sync --base-url http://127.0.0.1:8000 --from-file ids.txt
    """
    from mirror.standin import StandIn, StandInState

    state = StandInState(latency=latency / 1000, require_key=require_key)
    if account_images:
        from mirror.sample_account import SampleAccount

        state.account = SampleAccount.generate(account_images)
    if faults is not None:
        try:
            state.load_faults(json.load(faults))
        except ValueError as exc:
            raise InputError(f"--faults {faults.name}: not a fault script: {exc}") from None
    try:
        server = StandIn(host=host, port=port, state=state).start()
    except OSError as exc:
        # asyncio's bind error repeats the address; a resolver error has a negative errno.
        code = exc.errno or 0
        why = os.strerror(code) if code > 0 else (exc.strerror or str(exc))
        fix = "pick another --port (0 picks a free one)"
        if code != errno.EADDRINUSE:
            fix = "check --host (an address of this machine, such as 127.0.0.1)"
        raise InputError(f"the stand-in cannot listen on {host}:{port}: {why}; {fix}") from None
    orders = f", {len(state.account.orders)} orders" if state.account else ""
    click.echo(
        f"stand-in of the Autoenhance API listening on {server.url}{orders} (Ctrl-C to stop)"
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command()
@click.option(
    "--database-url",
    default=DEMO_DATABASE_URL,
    show_default=True,
    help="Where the sample goes: its own file by default. MIRROR_DATABASE_URL is not read, "
    "so the demo never writes into a real mirror.",
)
@click.option(
    "--count", type=click.IntRange(1, 100_000), default=300, show_default=True, help="Images."
)
@click.pass_context
def demo(ctx: click.Context, database_url: str, count: int) -> None:
    """Offline quick start: mirror a sample account from the local stand-in and report on it.

    Runs `sync --all --with-parents` against the bundled stand-in: every order, the images
    they embed, and the parents of restaged images. Needs no API key of yours and no network.
    Run it twice: the second run finds everything unchanged. Refuses a database that holds
    anything but demo images.

    \b
    Example:
        autoenhance-mirror demo
    """
    from mirror.api import ApiSettings
    from mirror.demo import DEMO_API_KEY, check_demo_database, demo_account
    from mirror.outcomes import exit_code_of
    from mirror.overview import build_overview, format_counts
    from mirror.standin import StandIn, StandInState
    from mirror.sync import SyncOptions

    engine = open_engine(ctx, database_url, writing=True)
    check_demo_database(engine, count)
    state = StandInState(require_key=DEMO_API_KEY, account=demo_account(count))
    with StandIn(host="127.0.0.1", port=0, state=state) as server:
        click.echo(f"stand-in of the Autoenhance API on {server.url}")
        options = SyncOptions(
            api=ApiSettings(
                base_url=server.url,
                api_version=DEFAULT_API_VERSION,
                api_key=DEMO_API_KEY,
                concurrency=16,
            ),
            max_rate=None,
            all_orders=True,
            with_parents=True,
        )
        summary = _run_sync(
            engine, [], options, ctx.meta["redact"], quiet=False, show_progress=True
        )
    click.echo(f"{summary.line()} into {ctx.meta['masked_url']}")
    overview = build_overview(engine)
    click.echo(format_counts("orders by status", overview.orders_by_status))
    click.echo(format_counts("images by status", overview.by_status))
    click.echo(format_counts("images by scene", overview.by_scene))
    shown = ctx.meta["masked_url"]
    click.echo("look closer (or with any SQL client):")
    click.echo(f"  autoenhance-mirror status --database-url {shown}")
    click.echo("  autoenhance-mirror report    (lists the reports)")
    click.echo(f"  autoenhance-mirror report images-per-order --database-url {shown}")
    ctx.exit(exit_code_of(summary.status))


def main() -> None:
    # SIGTERM (what cron and systemd send) behaves like Ctrl-C: a sync commits and exits 130.
    # Until the command runs, both are only noted (`mirror.interrupts`); `mirror.__main__`
    # does this before importing anything heavy, again here for callers of `main` itself.
    interrupts.defer()
    cli(prog_name="autoenhance-mirror")
