"""Options checked before anything runs: database URLs, the base URL, header values."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli

from mirror.config import (
    Redactor,
    check_base_url,
    check_header_value,
    masked,
    parse_database_url,
)
from mirror.errors import InputError

PASSWORD_PIECES = ["Tr0ub", "dor", "Secr3tTail", "p4ss", "w0rdX"]


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://u:Tr0ub@dor:Secr3tTail/x@127.0.0.1/db",  # was: int() traceback
        "postgresql://u:p4ss@w0rdX@127.0.0.1/db",  # was: failed to resolve host 'w0rdX@…'
        "postgresql://u:Tr0ub@dor@127.0.0.1:5432/db",
    ],
)
def test_a_password_with_reserved_characters_is_refused_without_showing_it(raw: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_database_url(raw)
    message = str(caught.value)
    assert "percent-encoded" in message and "postgresql://***" in message
    assert not any(piece in message for piece in PASSWORD_PIECES), message


def test_a_percent_encoded_password_works_and_is_masked() -> None:
    url = parse_database_url("postgresql://u:Tr0ub%40dor%3ASecr3t@127.0.0.1/db")
    assert url.password == "Tr0ub@dor:Secr3t"
    assert masked(url) == "postgresql://u:***@127.0.0.1/db"


def test_a_driver_that_is_not_installed_names_the_plain_form() -> None:
    with pytest.raises(InputError, match=r"not installed; write plain postgresql://"):
        parse_database_url("postgresql+psycopg2://u:hunter22@h/db")


@pytest.mark.parametrize(
    "raw", ["postgresql://u:hunter22@h/db?pgbouncer=1", "sqlite:///m.db?pgbouncer=true"]
)
def test_the_pooler_switch_is_true_or_false_on_a_postgresql_url(raw: str) -> None:
    with pytest.raises(InputError, match="pgbouncer=true to a postgresql:// URL") as caught:
        parse_database_url(raw)
    assert "hunter22" not in str(caught.value)


def test_the_pooler_switch_is_kept_for_the_engine_to_read() -> None:
    url = parse_database_url("postgres://u@h/db?pgbouncer=true&sslmode=require")
    assert url.query == {"pgbouncer": "true", "sslmode": "require"}


@pytest.mark.parametrize("raw", ["sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:"])
def test_in_memory_sqlite_is_refused(raw: str) -> None:
    with pytest.raises(InputError, match="in-memory"):
        parse_database_url(raw)


def test_plain_paths_and_tilde_are_sqlite_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_database_url("mirror.db").database == "mirror.db"
    assert parse_database_url("~/data/m.db").database == str(tmp_path / "data" / "m.db")
    assert parse_database_url("sqlite:///~/m.db").database == str(tmp_path / "m.db")
    assert parse_database_url("mirror.db").get_backend_name() == "sqlite"


@pytest.mark.parametrize(
    ("base_url", "fix"),
    [
        ("http://127.0.0.1:8000/v3", "use --base-url http://127.0.0.1:8000"),
        ("https://api.autoenhance.ai/v3/", "use --base-url https://api.autoenhance.ai"),
        ("http://h/proxy/v3/images", "use --base-url http://h/proxy"),
    ],
)
def test_a_base_url_holding_v3_is_an_input_error_naming_the_fix(base_url: str, fix: str) -> None:
    with pytest.raises(InputError, match=fix):
        check_base_url(base_url)


@pytest.mark.parametrize(
    "base_url", ["ftp://h", "api.autoenhance.ai", "http://h/a b", "http://h/x?y=1"]
)
def test_other_unusable_base_urls_are_input_errors(base_url: str) -> None:
    with pytest.raises(InputError):
        check_base_url(base_url)


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://u:hunter2@127.0.0.1:8000", "'http://***@127.0.0.1:8000'"),
        ("https://hunter2@api.example/", "'https://***@api.example/'"),
        ("http://u:p@hunter2:w@h/x", "'http://***@h/x'"),
        ("ftp://u:hunter2@h", "'ftp://***@h'"),
    ],
)
def test_a_base_url_with_user_info_is_refused_without_showing_it(base_url: str, shown: str) -> None:
    with pytest.raises(InputError) as raised:
        check_base_url(base_url)
    assert shown in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize("base_url", ["http://api.autoenhance.ai", "HTTP://API.Autoenhance.AI:80/"])
def test_the_api_over_plain_http_is_refused(base_url: str) -> None:
    """It would carry the key in clear text (and the API would redirect it, which stops a run
    only after the key went out)."""
    with pytest.raises(InputError, match="would send the API key over plain HTTP") as raised:
        check_base_url(base_url)
    assert "the API is at https://api.autoenhance.ai" in str(raised.value)


def test_good_base_urls_pass() -> None:
    assert check_base_url("https://api.autoenhance.ai/") == "https://api.autoenhance.ai"
    assert check_base_url("http://127.0.0.1:8000/v30") == "http://127.0.0.1:8000/v30"


@pytest.mark.parametrize("value", ["2025-08-31\r\nX-Injected: yes", "a\nb", "a\x00b", "a\x7f"])
def test_header_values_with_line_breaks_or_controls_are_refused(value: str) -> None:
    with pytest.raises(InputError, match="line break or control"):
        check_header_value("--api-version", value)
    with pytest.raises(InputError) as caught:
        check_header_value("--api-key", value, secret=True)
    assert value not in str(caught.value)


def test_a_key_read_from_a_file_with_windows_line_ends_is_named_so() -> None:
    with pytest.raises(InputError) as caught:
        check_header_value("--api-key (or AUTOENHANCE_API_KEY)", "sk-4f2a\r", secret=True)
    assert "ends in a carriage return: Windows line ends?" in str(caught.value)
    assert "sk-4f2a" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://postgres:postgres@db/mirror", "postgresql://***:***@db/mirror"),
        ("FATAL: too many connections for role", "FATAL: too many connections for role"),
        ('{"detail": "key any is not valid"}', '{"detail": "key *** is not valid"}'),
        ("x-api-key:any,", "x-api-key:***,"),
        ("postgres_backup, anyone", "postgres_backup, anyone"),
        ("host=db password=AEKEY-0c7b user=u", "host=db password=*** user=u"),
        ("AEKEY-0c7b.", "***."),
    ],
)
def test_a_secret_is_masked_where_it_stands_not_inside_a_longer_word(text: str, shown: str) -> None:
    """A secret that is only part of a longer word is not the secret: the password `postgres`
    made every message about the database read `***ql://***:***@...`."""
    assert Redactor(["postgres", "any", "AEKEY-0c7b"])(text) == shown


def test_the_common_postgres_password_leaves_the_databases_address_readable() -> None:
    result = run_cli("status", "--database-url", "postgresql://postgres:postgres@127.0.0.1:1/db")
    assert result.exit_code == 3
    assert "cannot use the database postgresql://***:***@127.0.0.1:1/db:" in result.stderr
    assert "postgres:postgres" not in result.output


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("sqlite:///mirror.db\r", "(it ends in a carriage return: Windows line ends?)"),
        ("mirror.db\r", "(it ends in a carriage return: Windows line ends?)"),
        ("postgresql://u:Secr3tTail@h/db\r", "holds a control character"),
        ("mirror\x00.db", "holds a control character"),
        (" mirror.db", "begins or ends with a space"),
        ("mirror.db ", "begins or ends with a space"),
    ],
)
def test_a_database_url_with_stray_characters_is_refused(raw: str, words: str) -> None:
    """`MIRROR_DATABASE_URL=sqlite:///mirror.db` in an env file with Windows line ends made a
    second file, `mirror.db\\r`, which every cron run filled while the real mirror went stale."""
    with pytest.raises(InputError) as caught:
        parse_database_url(raw)
    assert words in str(caught.value)
    assert "Secr3tTail" not in str(caught.value)


def test_a_sync_to_a_url_read_with_windows_line_ends_creates_no_second_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(
        "sync",
        "0c7b9e2f-1d2e-4f3a-8b4c-5d6e7f8a9b0c",
        "--base-url",
        "http://127.0.0.1:9",
        env={"MIRROR_DATABASE_URL": "sqlite:///mirror.db\r"},
    )
    assert result.exit_code == 2, result.output
    assert "Windows line ends?" in result.stderr
    assert list(tmp_path.iterdir()) == []
