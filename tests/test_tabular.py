"""The formats of `report`: what a cell becomes in a table, in CSV and in JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from mirror.reports import ReportResult
from mirror.tabular import as_text, to_csv, to_json, to_table

WHEN = dt.datetime(2026, 11, 26, 2, 24, 11, 621560, tzinfo=dt.UTC)
RESULT = ReportResult(
    columns=["image_id", "images", "median_seconds", "seen_at", "message"],
    rows=[
        ("a", 3, 12.5, WHEN, 'HTTP 500: "oops", then\na second line'),
        ("bb", None, None, None, None),
    ],
)


def test_cells_as_text() -> None:
    assert as_text(None) == ""
    assert as_text(WHEN) == "2026-11-26T02:24:11.621560Z"
    assert as_text(WHEN.replace(microsecond=0)) == "2026-11-26T02:24:11Z"
    assert as_text({"tvs": "BLACK_OUT", "grass": "GREEN"}) == (
        '{"grass": "GREEN", "tvs": "BLACK_OUT"}'
    )
    assert as_text(True) == "true"
    assert as_text(7.0) == "7.0"


def test_csv_quotes_what_needs_quoting_and_reads_back() -> None:
    text = to_csv(RESULT)
    back = list(csv.reader(io.StringIO(text)))
    assert back[0] == RESULT.columns
    assert back[1] == ["a", "3", "12.5", "2026-11-26T02:24:11.621560Z", RESULT.rows[0][4]]
    assert back[2] == ["bb", "", "", "", ""]


def test_json_is_one_array_of_objects_with_nulls_and_iso_times() -> None:
    parsed = json.loads(to_json(RESULT))
    assert parsed == [
        {
            "image_id": "a",
            "images": 3,
            "median_seconds": 12.5,
            "seen_at": "2026-11-26T02:24:11.621560Z",
            "message": RESULT.rows[0][4],
        },
        {
            "image_id": "bb",
            "images": None,
            "median_seconds": None,
            "seen_at": None,
            "message": None,
        },
    ]


def test_table_pads_columns_and_right_aligns_numbers() -> None:
    short = ReportResult(columns=["day", "images"], rows=[("2026-11-01", 7), ("2026-11-02", 120)])
    assert to_table(short) == (
        "day         images\n----------  ------\n2026-11-01       7\n2026-11-02     120\n"
    )
    lines = to_table(RESULT).splitlines()
    assert len(lines) == 4  # one line per row, the message's line break included
    assert lines[2].endswith('HTTP 500: "oops", then a second line')
    assert lines[2].split()[3:5] == ["2026-11-26", "02:24:11"]  # seconds, not microseconds
    assert to_table(ReportResult(columns=["day"], rows=[])).splitlines()[-1] == "(no rows)"
