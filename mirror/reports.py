"""The named reports of `report` (spec §8): plain SQL shipped in `reports.sql`, run on
either database with the same answers, values normalised so both print alike."""

from __future__ import annotations

import datetime as dt
import importlib.resources
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mirror.errors import InputError
from mirror.payload import as_utc

if TYPE_CHECKING:  # `report` alone lists the reports without importing SQLAlchemy
    from sqlalchemy import Engine

REPORTS_FILE = "reports.sql"
# Bounds when no --since / --until is given: every date the databases hold.
EARLIEST = dt.date(1, 1, 1)
LATEST = dt.date(9999, 12, 31)


@dataclass(frozen=True)
class NamedReport:
    name: str
    about: str
    # The statement per dialect name; "" when one statement serves both.
    statements: dict[str, str]

    def statement_for(self, dialect: str) -> str:
        return self.statements.get(dialect) or self.statements[""]


@dataclass(frozen=True)
class ReportResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def report_source() -> str:
    return importlib.resources.files("mirror").joinpath(REPORTS_FILE).read_text(encoding="utf-8")


def load_reports(source: str | None = None) -> dict[str, NamedReport]:
    """Parse `-- report: NAME`, `-- about: LINE`, optional `-- on: DIALECT` blocks; other
    comment lines are notes for readers and are not sent to the database."""
    reports: dict[str, NamedReport] = {}
    for block in (report_source() if source is None else source).split("\n-- report: ")[1:]:
        name, _, body = block.partition("\n")
        about = ""
        statements: dict[str, list[str]] = {}
        dialect = ""
        for line in body.splitlines():
            if line.startswith("-- about: "):
                about = line.removeprefix("-- about: ").strip()
            elif line.startswith("-- on: "):
                dialect = line.removeprefix("-- on: ").strip()
            elif line.strip() and not line.startswith("--"):
                statements.setdefault(dialect, []).append(line)
        reports[name.strip()] = NamedReport(
            name=name.strip(),
            about=about,
            statements={d: "\n".join(lines).strip().rstrip(";") for d, lines in statements.items()},
        )
    return reports


def _the_reports(reports: dict[str, NamedReport]) -> str:
    """What an input error shows, so a mistyped command line is easy to put right."""
    return f"the reports are: {', '.join(reports)}"


def unknown_report(name: str, reports: dict[str, NamedReport]) -> InputError:
    return InputError(f"no report named {name!r}; {_the_reports(reports)}")


def parse_day(option: str, value: str | None, reports: dict[str, NamedReport]) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"{option} {value!r} is not a date (YYYY-MM-DD, a UTC day); {_the_reports(reports)}"
        ) from None


def run_report(
    engine: Engine, report: NamedReport, *, since: dt.date | None, until: dt.date | None
) -> ReportResult:
    """Run one report over [since, until] (whole UTC days, both included)."""
    from sqlalchemy import text

    before = LATEST if until is None or until == LATEST else until + dt.timedelta(days=1)
    bounds = {"since": (since or EARLIEST).isoformat(), "before": before.isoformat()}
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL TIME ZONE 'UTC'"))  # this transaction: UTC days
        result = connection.execute(text(report.statement_for(engine.dialect.name)), bounds)
        columns = list(result.keys())
        rows = [
            tuple(_plain(column, value) for column, value in zip(columns, row, strict=True))
            for row in result
        ]
    return ReportResult(columns=columns, rows=rows)


def _plain(column: str, value: Any) -> Any:
    """One representation on both databases: timestamps (columns named *_at) as aware UTC
    datetimes, PostgreSQL's numerics as int or float, JSON as the document."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if column.endswith("_at") and isinstance(value, str):
        value = dt.datetime.fromisoformat(value)  # SQLite keeps UTC timestamps as text
    if isinstance(value, dt.datetime):
        return as_utc(value)
    return value
