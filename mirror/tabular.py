"""Rows and columns as a terminal table, CSV or JSON: the formats of `report`."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from mirror.reports import ReportResult
from mirror.shown import printable

FORMATS = ("table", "csv", "json")


def as_text(value: Any) -> str:
    """A cell as CSV and tables show it: timestamps in ISO 8601 UTC, JSON as JSON, NULL empty."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_csv(result: ReportResult) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    writer.writerows([as_text(value) for value in row] for row in result.rows)
    return out.getvalue()


def to_json(result: ReportResult) -> str:
    """One array of objects, one per row; timestamps as ISO 8601 strings."""
    objects = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
    return json.dumps(objects, default=as_text) + "\n"


def to_table(result: ReportResult) -> str:
    """Columns padded to their widest cell, numbers right-aligned; seconds, not microseconds."""
    cells = [[_table_cell(value) for value in row] for row in result.rows]
    widths = [
        max([len(column)] + [len(row[i]) for row in cells])
        for i, column in enumerate(result.columns)
    ]
    numeric = [
        bool(result.rows)
        and all(isinstance(row[i], int | float) or row[i] is None for row in result.rows)
        for i in range(len(result.columns))
    ]

    def line(values: list[str]) -> str:
        padded = [
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(padded).rstrip()

    lines = [line(result.columns), line(["-" * width for width in widths])]
    lines += [line(row) for row in cells]
    if not cells:
        lines.append("(no rows)")
    return "\n".join(lines) + "\n"


def _table_cell(value: Any) -> str:
    """One line per row: a line break in a value (an error message) is shown as a space, other
    control characters escaped (an image's name is its uploader's: CSV and JSON keep it whole)."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return printable(" ".join(as_text(value).splitlines()))


def render(result: ReportResult, output_format: str) -> str:
    return {"table": to_table, "csv": to_csv, "json": to_json}[output_format](result)
