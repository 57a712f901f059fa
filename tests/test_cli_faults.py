"""What the sync does when the API misbehaves: retries, failures recorded, fatal stops."""

from __future__ import annotations

import base64
import email.utils
import importlib.util
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import new_ids, rows, run_cli, scalar
from servers import RawServer, SilentAddress, image_answer
from sqlalchemy import Engine

from mirror.api import RETRY_AFTER_CAP, _retry_after
from mirror.standin import LISTING, Fault, StandIn, record_for


def sync(base_url: str, database_url: str, *args: str) -> object:
    return run_cli("sync", "--base-url", base_url, "--database-url", database_url, *args)


def test_dropped_connections_are_retried(standin: StandIn, database_url: str) -> None:
    ids = new_ids(2)
    standin.state.script(ids[0], Fault(drop=True))
    standin.state.script(ids[1], Fault(drop_mid_body=True))
    result = sync(standin.url, database_url, *ids, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 2
    assert standin.state.requests == {ids[0]: 2, ids[1]: 2}


def test_timeouts_are_retried_then_recorded(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    image_id = new_ids(1)[0]
    standin.state.script(image_id, Fault(delay=3), Fault(delay=3))
    result = sync(standin.url, database_url, image_id, "--timeout", "0.3", "--retries", "1")
    assert result.exit_code == 1
    assert standin.state.requests[image_id] == 2
    [failure] = rows(engine, "SELECT kind, http_status, message FROM sync_failures")
    assert failure["kind"] == "timeout" and failure["http_status"] is None
    assert scalar(engine, "SELECT status FROM sync_runs") == "failed"


def test_retry_after_is_honoured(standin: StandIn, database_url: str) -> None:
    image_id = new_ids(1)[0]
    standin.state.script(image_id, Fault(status=429, retry_after="1"))
    result = sync(standin.url, database_url, image_id)
    assert result.exit_code == 0
    first, second = standin.state.times
    assert second - first >= 1.0


def test_a_rejected_key_stops_at_once_and_keeps_what_was_fetched(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(5)
    standin.state.script(ids[2], Fault(status=401))
    key = "sk-live-DO-NOT-LEAK-91c2"
    result = sync(standin.url, database_url, *ids, "--concurrency", "1", "--api-key", key)
    assert result.exit_code == 3
    assert "API key" in result.stderr and "401" in result.stderr
    assert key not in result.output
    assert standin.state.total_requests == 3  # nothing after the 401
    assert {r["image_id"] for r in rows(engine, "SELECT image_id FROM images")} == set(ids[:2])
    [run] = rows(engine, "SELECT status, inserted, error FROM sync_runs")
    assert (run["status"], run["inserted"]) == ("failed", 2)
    assert "401" in run["error"] and key not in run["error"]


@pytest.mark.parametrize(
    ("status", "location", "advice"),
    [
        (301, "https://api.example.test/v3/images/{id}", "use --base-url https://api.example.test"),
        (
            308,
            "https://api.example.test/v1/proxy/v3/images/{id}",
            "https://api.example.test/v1/proxy",
        ),
        (307, "/v3/images/{id}/", "set --base-url to the API's address"),
        (302, "", "set --base-url to the API's address"),
    ],
)
def test_a_redirect_stops_the_run_and_names_the_address(
    standin: StandIn, database_url: str, engine: Engine, status: int, location: str, advice: str
) -> None:
    """The API's endpoints never redirect: a redirect means --base-url is not its address
    (http:// where it moved to https://), and every image would be redirected alike. Like a
    rejected key, it stops the run at once, keeping what was fetched; none is followed."""
    ids = new_ids(5)
    redirect = Fault(status=status, location=location.format(id=ids[2]) or None)
    standin.state.script(ids[2], redirect)
    result = sync(standin.url, database_url, *ids, "--concurrency", "1")
    assert result.exit_code == 3, result.output
    assert f"the API answered HTTP {status} " in result.stderr
    assert f"redirecting /v3/images/{ids[2]}" in result.stderr
    assert advice in result.stderr
    assert standin.state.total_requests == 3  # no retry, no request after it, none followed
    assert {r["image_id"] for r in rows(engine, "SELECT image_id FROM images")} == set(ids[:2])
    [run] = rows(engine, "SELECT status, inserted, error FROM sync_runs")
    assert (run["status"], run["inserted"]) == ("failed", 2)
    assert f"HTTP {status}" in run["error"]


def test_an_api_that_cannot_be_reached_stops_the_run_early(
    database_url: str, engine: Engine
) -> None:
    result = sync("http://127.0.0.1:1", database_url, *new_ids(50), "--retries", "0")
    assert result.exit_code == 3
    assert "cannot reach the API at http://127.0.0.1:1" in result.stderr
    [run] = rows(engine, "SELECT status, requested, failed FROM sync_runs")
    assert run["status"] == "failed" and run["requested"] == 50
    assert run["failed"] < 50  # stopped early, not each image in turn


def gateway_answer(status: int, phrase: str) -> bytes:
    """What nginx answers when the service behind it does not."""
    body = f"<html><head><title>{status} {phrase}</title></head><body>nginx</body></html>"
    return (
        f"HTTP/1.1 {status} {phrase}\r\nServer: nginx\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


@pytest.mark.parametrize(
    ("status", "phrase"),
    [(502, "Bad Gateway"), (503, "Service Unavailable"), (504, "Gateway Timeout")],
)
def test_an_api_down_behind_its_gateway_stops_the_run_early(
    database_url: str, engine: Engine, status: int, phrase: str
) -> None:
    """Behind nginx with the API down, every image was retried in turn: 3,000 images took 16
    minutes of 502s, and every cron run meanwhile exited 75."""
    with RawServer([gateway_answer(status, phrase)]) as gateway:
        result = sync(gateway.url, database_url, *new_ids(50), "--retries", "1")
    assert result.exit_code == 3, result.output
    assert (
        f"the API at {gateway.url} never answered: the first 3 requests, each tried 2 times, "
        f"ended with HTTP {status} {phrase}, what a gateway or proxy answers"
    ) in result.stderr
    assert len(gateway.requests) <= 20  # 8 images in flight at most, 2 attempts each; not 100
    [run] = rows(engine, "SELECT status, requested, error FROM sync_runs")
    assert (run["status"], run["requested"]) == ("failed", 50)
    assert "never answered" in run["error"]


def test_an_api_that_never_answers_in_time_stops_the_run_early(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(30)
    for image_id in ids:
        standin.state.script(image_id, Fault(delay=3))
    result = sync(standin.url, database_url, *ids, "--timeout", "0.3", "--retries", "0")
    assert result.exit_code == 3, result.output
    assert "never answered: the first 3 requests, each tried once, ended with no response " in (
        result.stderr
    )
    assert "raise it if the API is only slow" in result.stderr
    assert standin.state.total_requests <= 10  # the first 8, perhaps one or two more; not 30
    assert scalar(engine, "SELECT status FROM sync_runs") == "failed"


def test_connections_closed_unanswered_from_the_start_stop_the_run_early(
    standin: StandIn, database_url: str
) -> None:
    """A load balancer with no server behind it closes each connection without a word."""
    ids = new_ids(30)
    for image_id in ids:
        standin.state.script(image_id, Fault(drop=True))
    result = sync(standin.url, database_url, *ids, "--retries", "0")
    assert result.exit_code == 3, result.output
    assert "never answered: the first 3 requests, each tried once, ended with no answer on " in (
        result.stderr
    )
    assert standin.state.total_requests <= 10  # the first 8, perhaps one or two more; not 30


def test_an_api_that_stops_answering_stops_the_run_and_keeps_what_came(
    database_url: str, engine: Engine
) -> None:
    ids = new_ids(300)
    answers = [image_answer] * 20 + [gateway_answer(502, "Bad Gateway")]
    with RawServer(answers) as gateway:
        result = sync(gateway.url, database_url, *ids, "--retries", "0", "--concurrency", "1")
    assert result.exit_code == 3, result.output
    assert (
        f"the API at {gateway.url} stopped answering: the last 100 requests, each tried once, "
        "ended with HTTP 502 Bad Gateway"
    ) in result.stderr
    assert "what it answered before is kept" in result.stderr
    assert len(gateway.requests) == 120  # 20 answered, then 100 in a row; not 300
    assert scalar(engine, "SELECT count(*) FROM images") == 20
    [run] = rows(engine, "SELECT status, inserted, failed FROM sync_runs")
    assert (run["status"], run["inserted"]) == ("failed", 20)


def test_gateway_errors_between_answers_are_each_image_s_failure(
    database_url: str, engine: Engine
) -> None:
    """The API answering between them, the 502s are its trouble with those images: the run
    goes on and records each."""
    with RawServer([image_answer, gateway_answer(502, "Bad Gateway")] * 150) as gateway:
        result = sync(
            gateway.url, database_url, *new_ids(300), "--retries", "0", "--concurrency", "1"
        )
    assert result.exit_code == 1, result.output
    assert len(gateway.requests) == 300
    assert scalar(engine, "SELECT count(*) FROM images") == 150
    assert scalar(engine, "SELECT count(*) FROM sync_failures WHERE http_status = 502") == 150


def test_retry_after_as_an_http_date_is_honoured(standin: StandIn, database_url: str) -> None:
    image_id = new_ids(1)[0]
    # Whole seconds: +3 s is at least 2 s away, whatever the fraction of now.
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    standin.state.script(image_id, Fault(status=503, retry_after=when))
    assert sync(standin.url, database_url, image_id).exit_code == 0
    first, second = standin.state.times
    assert second - first >= 1.0


def test_a_429_slows_the_whole_run_not_just_one_request(
    standin: StandIn, database_url: str
) -> None:
    ids = new_ids(40)
    standin.state.latency = 0.02
    standin.state.script(ids[5], Fault(status=429, retry_after="1"))
    result = sync(standin.url, database_url, *ids, "--concurrency", "4", "--max-rate", "0")
    assert result.exit_code == 0
    times = sorted(standin.state.times)
    # The 429 was answered about 20 ms after the request for ids[5] arrived; afterwards
    # the other workers waited too: some gap of nearly a second in all the traffic.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 0.9


def test_huge_and_non_utf8_bodies_are_invalid_payloads(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(3)
    standin.state.script(ids[0], Fault(body=b"{" + b" " * (5 * 1024 * 1024) + b"}"))
    standin.state.script(ids[1], Fault(body='{"image_name": "caf\u00e9"}'.encode("latin-1")))
    result = sync(standin.url, database_url, *ids)
    assert result.exit_code == 1
    messages = {
        r["image_id"]: (r["kind"], r["message"])
        for r in rows(engine, "SELECT image_id, kind, message FROM sync_failures")
    }
    assert messages[ids[0]][0] == "invalid_payload" and "larger than" in messages[ids[0]][1]
    assert messages[ids[1]][0] == "invalid_payload" and "not UTF-8" in messages[ids[1]][1]
    assert rows(engine, "SELECT image_id FROM images") == [{"image_id": ids[2]}]


def test_a_web_page_at_the_base_url_is_pointed_out(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """Every answer HTML (a web app that serves its page for any path): each image is an
    invalid_payload failure as the spec asks, and the run says what is likely wrong. One
    real record among them, and it does not."""
    page = b"<!doctype html><html><body><div id=root></div></body></html>"
    ids = new_ids(4)
    for image_id in ids:
        standin.state.script(image_id, Fault(body=page))
    result = sync(standin.url, database_url, *ids)
    assert result.exit_code == 1
    assert scalar(engine, "SELECT count(*) FROM sync_failures WHERE kind = 'invalid_payload'") == 4
    hint = f"no answer from {standin.url} was JSON: is that the Autoenhance API?"
    assert hint in result.stderr

    mixed = new_ids(3)
    for image_id in mixed[:2]:
        standin.state.script(image_id, Fault(body=page))
    result = sync(standin.url, database_url, *mixed)
    assert result.exit_code == 1
    assert "invalid_payload" in result.stderr and hint not in result.stderr

    standin.state.script(LISTING, Fault(body=page))  # the order listing's first page too
    result = sync(standin.url, database_url, "--all", "--api-key", "k")
    assert result.exit_code == 1
    assert "invalid_payload: order listing page (offset start) (HTTP 200): " in result.stderr
    assert hint in result.stderr


def test_403_is_a_rejected_key_too(standin: StandIn, database_url: str) -> None:
    image_id = new_ids(1)[0]
    standin.state.script(image_id, Fault(status=403))
    result = sync(standin.url, database_url, image_id, "--api-key", "k-123456")
    assert result.exit_code == 3
    assert "HTTP 403" in result.stderr and "k-123456" not in result.output
    assert standin.state.total_requests == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0", 0.0), ("999999", RETRY_AFTER_CAP), ("soon", 0.0), ("", 0.0)],
)
def test_retry_after_values_are_parsed_and_capped(value: str, expected: float) -> None:
    assert _retry_after({"retry-after": value}) == expected


def test_a_retry_after_date_far_away_is_capped() -> None:
    far = email.utils.formatdate(time.time() + 86_400, usegmt=True)
    assert _retry_after({"retry-after": far}) == RETRY_AFTER_CAP


def test_a_single_image_against_an_api_that_is_not_there_is_fatal(
    database_url: str, engine: Engine
) -> None:
    result = sync("http://127.0.0.1:1", database_url, *new_ids(1), "--retries", "0")
    assert result.exit_code == 3
    assert "cannot reach the API at http://127.0.0.1:1: the first attempt failed" in result.stderr
    assert scalar(engine, "SELECT status FROM sync_runs") == "failed"


def test_retries_count_against_the_rate_limit(standin: StandIn, database_url: str) -> None:
    ids = new_ids(20)
    for image_id in ids:
        standin.state.script(image_id, Fault(status=503))
    result = sync(standin.url, database_url, *ids, "--max-rate", "15", "--concurrency", "8")
    assert result.exit_code == 0
    assert standin.state.total_requests == 40
    assert standin.state.max_per_second() <= 15


def test_a_value_the_database_cannot_hold_fails_that_image_only(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """PostgreSQL text and JSONB cannot hold NUL; SQLite can. Either way the run goes on."""
    ids = new_ids(3)
    odd = record_for(ids[1])
    odd["image_name"] = "IMG\u0000.JPG"
    odd["metadata"] = {"note": "a\u0000b"}
    standin.state.records[ids[1]] = odd
    result = sync(standin.url, database_url, *ids, "--json")
    stored = {r["image_id"] for r in rows(engine, "SELECT image_id FROM images")}
    if engine.dialect.name == "postgresql":
        assert result.exit_code == 1, result.output
        assert stored == {ids[0], ids[2]}
        [failure] = rows(engine, "SELECT image_id, kind, message FROM sync_failures")
        assert (failure["image_id"], failure["kind"]) == (ids[1], "invalid_payload")
        assert "the database refused it" in failure["message"]
    else:
        assert result.exit_code == 0, result.output
        assert stored == set(ids)
        name = scalar(engine, "SELECT image_name FROM images WHERE image_id = :id", id=ids[1])
        assert name == "IMG\u0000.JPG"
    summary = json.loads(result.stdout)
    assert summary["requested"] == sum(
        summary[k] for k in ["inserted", "updated", "unchanged", "deleted", "not_found", "failed"]
    )


BODIES_THAT_CANNOT_BE_MAPPED = {
    "lone surrogate": b'{"image_name": "a\\ud800b"}',
    "lone surrogate in a key": b'{"a\\udfffb": 1}',
    "deep nesting": b'{"metadata": ' + b"[" * 990 + b"]" * 990 + b"}",
    "deeper than Python's recursion": b'{"metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "a number out of range": b'{"metadata": {"ratio": 1e400}}',
    "a negative number out of range": b'{"rating": -1e400}',
}


def test_a_body_that_cannot_be_mapped_fails_that_image_only(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    """Any such body is an invalid_payload failure of its image: the run goes on, and the
    images after it are mirrored (before, the first one crashed every run at that point)."""
    ids = new_ids(len(BODIES_THAT_CANNOT_BE_MAPPED) + 2)
    bad = dict(zip(ids[1:], BODIES_THAT_CANNOT_BE_MAPPED.values(), strict=False))
    for image_id, body in bad.items():
        standin.state.script(image_id, Fault(body=body))
    result = sync(standin.url, database_url, *ids, "--json", "--concurrency", "1")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["inserted"], summary["failed"]) == (2, len(bad))
    failures = {
        r["image_id"]: r
        for r in rows(engine, "SELECT image_id, kind, http_status, message FROM sync_failures")
    }
    assert set(failures) == set(bad)
    assert {f["kind"] for f in failures.values()} == {"invalid_payload"}
    assert {f["http_status"] for f in failures.values()} == {200}
    stored = {r["image_id"] for r in rows(engine, "SELECT image_id FROM images")}
    assert stored == {ids[0], ids[-1]}
    if engine.dialect.name == "sqlite":  # every stored JSON value reads back as JSON
        assert scalar(engine, "SELECT min(json_valid(extra)) FROM images") == 1


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        ("http://nonexistent-host.invalid", "cannot resolve nonexistent-host.invalid"),
        ("https://127.0.0.1:{port}", "connect timeout"),  # TLS to a plain-HTTP server
    ],
)
def test_an_api_that_cannot_be_connected_to_stops_the_run_at_once(
    standin: StandIn, database_url: str, engine: Engine, base_url: str, words: str
) -> None:
    """DNS failures and handshakes that never finish count like refused connections: with
    no answer ever, the first attempts failing to connect end the run (exit 3)."""
    started = time.monotonic()
    result = sync(
        base_url.format(port=standin.port), database_url, *new_ids(300), "--connect-timeout", "1"
    )
    assert result.exit_code == 3, result.output
    assert "cannot reach the API" in result.stderr and words in result.stderr
    assert time.monotonic() - started < 20
    assert scalar(engine, "SELECT status FROM sync_runs") == "failed"


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"  # retitle the terminal, clear it, turn red


def test_control_characters_a_server_sends_reach_no_terminal_and_no_row(
    database_url: str, engine: Engine
) -> None:
    """A reason phrase is the server's words: printed as they came, by the run's summary and
    by `status`, the terminal obeyed its escape sequences. Now they are shown escaped."""
    failing = f"HTTP/1.1 503 {ESCAPES}Down\r\nContent-Length: 0\r\n\r\n".encode("latin-1")
    with RawServer([failing]) as server:
        result = sync(server.url, database_url, *new_ids(1), "--retries", "0")
    assert result.exit_code == 1, result.output
    status = run_cli("status", "--database-url", database_url).output
    for text in (result.output, result.stderr, status):
        assert "\x1b" not in text and "\x07" not in text
    assert "HTTP 503 \\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mDown" in result.stderr
    message = scalar(engine, "SELECT message FROM sync_failures")
    assert message == "HTTP 503 \\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mDown"

    moved = f"HTTP/1.1 301 {ESCAPES}\r\nLocation: /x{ESCAPES}\r\nContent-Length: 0\r\n\r\n"
    with RawServer([moved.encode("latin-1")]) as server:
        result = sync(server.url, database_url, *new_ids(1))
    assert result.exit_code == 3, result.output
    assert "\x1b" not in result.stderr and "HTTP 301 \\x1b]0;pwned" in result.stderr


# glibc's default address order (gai.conf(5)), with 127.0.0.2 put before every other address.
SILENT_FIRST = """precedence ::ffff:127.0.0.2/128 100
precedence ::1/128 50
precedence ::/0 40
precedence 2002::/16 30
precedence ::/96 20
precedence ::ffff:0:0/96 10
"""
# In a mount namespace of its own, the process gets these as /etc/hosts and /etc/gai.conf.
OWN_RESOLVER = (
    'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/gai.conf && shift 2 && exec "$@"'
)


def test_an_address_that_drops_packets_does_not_hide_the_names_next_one(
    standin: StandIn, tmp_path: Path
) -> None:
    """A name with two addresses, the first dropping every packet (an IPv6 route that is
    broken, a firewall), the second the API. Tried one at a time, the first took the whole
    connect timeout of every attempt, and the run stopped as if the API could not be reached
    (exit 3), where curl and browsers connect (Happy Eyeballs, RFC 8305)."""
    if os.geteuid() != 0:
        pytest.skip("giving a process /etc/hosts of its own needs root (unshare --mount)")
    port = urlsplit(standin.url).port
    (tmp_path / "hosts").write_text("127.0.0.2 api.test\n127.0.0.1 api.test\n")
    (tmp_path / "gai.conf").write_text(SILENT_FIRST)

    def own_resolver(*command: str) -> subprocess.CompletedProcess[str]:
        files = (str(tmp_path / "hosts"), str(tmp_path / "gai.conf"))
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", OWN_RESOLVER, "sh", *files, *command],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    order = own_resolver(
        sys.executable, "-c", "import socket; print(socket.getaddrinfo('api.test', 1)[0][4][0])"
    )
    if order.returncode != 0:
        pytest.skip(f"as root, and cannot unshare and mount here: {order.stderr}")
    assert order.stdout.strip() == "127.0.0.2"  # the silent address is tried first
    ids = new_ids(3)
    with SilentAddress("127.0.0.2", port):
        done = own_resolver(
            sys.executable, "-m", "mirror", "sync", *ids, "--base-url", f"http://api.test:{port}",
            "--database-url", str(tmp_path / "mirror.db"), "--connect-timeout", "3",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 new" in done.stdout
    assert standin.state.total_requests == 3


# --- a proxy between the tool and the API (httpx's path) -------------------------------------

PROXY_PASSWORD = "Pr0xy-pw-do-not-leak"


@pytest.fixture
def proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Sets HTTP_PROXY and HTTPS_PROXY (conftest cleared every other) for the CLI run in this
    process."""

    def use(proxy: str) -> None:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.setenv("HTTPS_PROXY", proxy)

    return use


def test_requests_go_through_the_proxy_with_its_credentials(
    proxy_environment: Callable[[str], None], database_url: str, engine: Engine
) -> None:
    """The proxy here answers for the API itself (as a cache would): what it saw proves the
    requests went to it, in absolute form, with the credentials of HTTP_PROXY's URL."""
    ids = new_ids(3)
    with RawServer([image_answer]) as proxy:
        proxy_environment(f"http://mirror:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}")
        result = sync("http://api.example.test", database_url, *ids)
    assert result.exit_code == 0, result.output
    assert scalar(engine, "SELECT count(*) FROM images") == 3
    credentials = base64.b64encode(f"mirror:{PROXY_PASSWORD}".encode()).decode()
    assert len(proxy.requests) == 3
    for head in proxy.requests:
        assert head.startswith(b"GET http://api.example.test/v3/images/")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
        assert headers[b"Proxy-Authorization"] == f"Basic {credentials}".encode()


@pytest.mark.parametrize("api", ["http://api.example.test", "https://api.example.test"])
def test_a_proxy_that_rejects_the_credentials_stops_the_run_at_once(
    proxy_environment: Callable[[str], None], database_url: str, engine: Engine, api: str
) -> None:
    """407 comes from the proxy and answers every request alike (to a CONNECT for https). It
    was a failure of each image in turn: a run of 10,000 images sent 10,000 requests and
    recorded 10,000 failures (http_error; for https, a lost connection retried first)."""
    rejected = (
        b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=p\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    with RawServer([rejected]) as proxy:
        proxy_environment(f"http://mirror:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}")
        result = sync(api, database_url, *new_ids(50), "--json")
    assert result.exit_code == 3, result.output
    error = json.loads(result.stdout)
    assert (
        "the proxy between this tool and the API rejected the request with HTTP 407"
        in (error["message"])
    )
    assert len(proxy.requests) <= 8  # those already in flight (--concurrency)
    assert PROXY_PASSWORD not in result.output
    assert scalar(engine, "SELECT count(*) FROM sync_failures") == 0
    assert scalar(engine, "SELECT status FROM sync_runs") == "failed"


def test_an_unreachable_proxy_is_named_without_its_password(
    proxy_environment: Callable[[str], None], database_url: str
) -> None:
    """It said "cannot reach the API at <base url>", and the user looked at the API's address."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proxy_environment(f"http://mirror:{PROXY_PASSWORD}@127.0.0.1:{port}")
    result = sync("http://api.example.test", database_url, *new_ids(2))
    assert result.exit_code == 3, result.output
    assert (
        f"cannot reach the API at http://api.example.test through the proxy "
        f"http://***@127.0.0.1:{port}:" in result.stderr
    )
    assert PROXY_PASSWORD not in result.output


@pytest.mark.parametrize(
    ("proxy", "words"),
    [
        (f"ftp://mirror:{PROXY_PASSWORD}@127.0.0.1:21", "is not a proxy URL"),
        (f"socks5://mirror:{PROXY_PASSWORD}@127.0.0.1:1080", "needs httpx's SOCKS support"),
    ],
)
def test_a_proxy_httpx_cannot_use_is_an_input_error_before_anything(
    proxy_environment: Callable[[str], None], tmp_path: Path, proxy: str, words: str
) -> None:
    """A SOCKS proxy without httpx's SOCKS support ended the run in a traceback (ImportError)
    after it had been recorded as started."""
    if "socks" in proxy and importlib.util.find_spec("socksio") is not None:
        pytest.skip("httpx's SOCKS support is installed here: such a proxy is usable")
    proxy_environment(proxy)
    result = sync("http://api.example.test", str(tmp_path / "m.db"), *new_ids(1))
    assert result.exit_code == 2, result.output
    assert words in result.stderr
    assert "://***@127.0.0.1" in result.stderr
    assert PROXY_PASSWORD not in result.output
    assert list(tmp_path.iterdir()) == []
