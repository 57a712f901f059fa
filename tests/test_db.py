"""`mirror.db` on its own: what it reads from a database URL."""

from __future__ import annotations

import pytest

from mirror.config import parse_database_url
from mirror.db import behind_transaction_pooler, search_path_asked


@pytest.mark.parametrize(
    ("query", "asked"),
    [
        ("?options=-csearch_path%3Daccount_a", "account_a"),
        ("?options=-c%20search_path%3Daccount_a,public", "account_a,public"),
        ("?options=--search-path%3Daccount_a", "account_a"),
        ("?options=-cstatement_timeout%3D0%20-csearch_path%3Db", "b"),
        ("?options=-cstatement_timeout%3D0", None),
        ("?sslmode=require", None),
        ("", None),
    ],
)
def test_the_search_path_a_url_asks_for(query: str, asked: str | None) -> None:
    assert search_path_asked(parse_database_url(f"postgresql://u@h/db{query}")) == asked


def test_only_pgbouncer_true_says_a_transaction_pooler_is_between() -> None:
    assert behind_transaction_pooler(parse_database_url("postgresql://u@h/db?pgbouncer=true"))
    assert not behind_transaction_pooler(parse_database_url("postgresql://u@h/db?pgbouncer=false"))
    assert not behind_transaction_pooler(parse_database_url("postgresql://u@h/db"))
