"""`mirror/http11.py` at the byte level (raw socket servers) and against third-party servers
(uvicorn, hypercorn), over HTTP and over TLS with a throwaway CA."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import new_ids, rows, run_cli
from servers import AsgiServer, RawServer, api_app, image_answer, trusted_ca
from sqlalchemy import Engine

from mirror.api import ApiSettings
from mirror.http11 import (
    BodyTooLarge,
    ConnectFailed,
    Connection,
    GetTemplate,
    HttpError,
    Origin,
    ProtocolViolation,
    RawResponse,
)
from mirror.sample_account import PER_PAGE_MAX, SampleAccount
from mirror.standin import record_for

MAX_BODY = 4 * 1024 * 1024


def get_all(
    base_url: str, paths: list[str], *, ssl_context: ssl.SSLContext | None = None
) -> list[RawResponse | HttpError]:
    """GET each path in turn on one keep-alive connection; an error is returned in place."""

    async def main() -> list[RawResponse | HttpError]:
        origin = Origin.parse(base_url)
        template = GetTemplate(origin, ApiSettings(base_url, "2025-08-31").headers())
        connection = Connection(origin, ssl_context=ssl_context, connect_timeout=2)
        results: list[RawResponse | HttpError] = []
        try:
            for path in paths:
                try:
                    async with asyncio.timeout(5):
                        results.append(await connection.get(template.head(path), max_body=MAX_BODY))
                except HttpError as exc:
                    results.append(exc)
        finally:
            connection.close()
        return results

    return asyncio.run(main())


def ok(body: bytes, *headers: bytes) -> bytes:
    lines = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def bodies(results: list[RawResponse | HttpError]) -> list[bytes | str]:
    return [r.body if isinstance(r, RawResponse) else type(r).__name__ for r in results]


# --- interim responses, encodings, framing ----------------------------------------------------


@pytest.mark.parametrize("interim", [b"100 Continue", b"102 Processing", b"103 Early Hints"])
def test_interim_responses_are_skipped_and_do_not_desynchronise(interim: bytes) -> None:
    first = b"HTTP/1.1 " + interim + b"\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok(b"one")
    with RawServer([first, ok(b"two")]) as server:
        results = get_all(server.url, ["/1", "/2"])
    assert bodies(results) == [b"one", b"two"]


def test_101_is_not_taken_as_an_answer() -> None:
    upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n"
    with RawServer([upgrade]) as server:
        [result] = get_all(server.url, ["/1"])
    assert isinstance(result, ProtocolViolation)


def test_gzip_sent_without_being_asked_is_decoded() -> None:
    packed = gzip.compress(b'{"image_name": "a.jpg"}')
    with RawServer([ok(packed, b"Content-Encoding: gzip")]) as server:
        [result] = get_all(server.url, ["/1"])
    assert isinstance(result, RawResponse) and result.body == b'{"image_name": "a.jpg"}'
    assert b"accept-encoding: gzip" in server.requests[0].lower()


def test_a_gzip_bomb_is_too_large() -> None:
    bomb = gzip.compress(b" " * (MAX_BODY + 10))
    with RawServer([ok(bomb, b"Content-Encoding: gzip")]) as server:
        [result] = get_all(server.url, ["/1"])
    assert isinstance(result, BodyTooLarge)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: \xc2\xb2\r\n\r\nab",  # "²" as UTF-8
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab",  # "²" as Latin-1
        b"HTTP/1.1 \xb200 OK\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nab\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\nab",
    ],
)
def test_malformed_responses_are_protocol_violations(answer: bytes) -> None:
    with RawServer([answer]) as server:
        [result] = get_all(server.url, ["/1"])
    assert isinstance(result, ProtocolViolation), result


def test_equal_repeated_content_lengths_are_accepted() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab"
    with RawServer([answer]) as server:
        assert bodies(get_all(server.url, ["/1"])) == [b"ab"]


def test_obs_fold_and_bare_lf_are_read() -> None:
    folded = b"HTTP/1.1 200 OK\r\nX-Note: one\r\n  two\r\nContent-Length: 2\r\n\r\nab"
    bare = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nab"
    chunked_bare = b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nab\n0\n\n"
    with RawServer([folded, bare, chunked_bare]) as server:
        results = get_all(server.url, ["/1", "/2", "/3"])
    assert bodies(results) == [b"ab", b"ab", b"ab"]
    assert isinstance(results[0], RawResponse) and results[0].headers["x-note"] == "one two"


def test_bytes_after_the_answer_are_never_read_as_the_next_answer() -> None:
    with RawServer([ok(b"one") + ok(b"stale"), ok(b"two")]) as server:
        results = get_all(server.url, ["/1", "/2"])
    assert bodies(results) == [b"one", b"two"]


def test_a_server_that_keeps_sending_cannot_grow_the_buffer() -> None:
    endless = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab" + b"x" * (16 * 1024 * 1024)
    with RawServer([endless, ok(b"two")]) as server:
        results = get_all(server.url, ["/1", "/2"])
    assert bodies(results) == [b"ab", b"two"]


def test_a_body_that_runs_past_the_limit_until_close_is_too_large() -> None:
    with RawServer([b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (MAX_BODY + 100_000)]) as server:
        [result] = get_all(server.url, ["/1"])
    assert isinstance(result, BodyTooLarge)


# --- TLS with a throwaway CA --------------------------------------------------------------------


def test_tls_with_a_trusted_ca_works_and_sends_sni(tmp_path: Path) -> None:
    with trusted_ca(tmp_path) as (ca, _, _, _):
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("localhost").configure_cert(server_context)
        seen: list[str | None] = []
        server_context.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment,misc]
        client = ssl.create_default_context()
        ca.configure_trust(client)
        with RawServer([ok(b"secret")], tls=server_context) as server:
            url = server.url.replace("127.0.0.1", "localhost")
            assert bodies(get_all(url, ["/1", "/2"], ssl_context=client)) == [b"secret"] * 2
    assert seen[0] == "localhost"


def test_tls_with_an_untrusted_certificate_fails_to_connect(tmp_path: Path) -> None:
    with trusted_ca(tmp_path) as (ca, _, _, _):
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_context)
        with RawServer([ok(b"x")], tls=server_context) as server:
            [result] = get_all(server.url, ["/1"], ssl_context=ssl.create_default_context())
    assert isinstance(result, ConnectFailed)
    assert "TLS handshake failed" in str(result) and "CERTIFICATE_VERIFY_FAILED" in str(result)


def test_tls_to_a_plain_http_server_times_out_connecting() -> None:
    with RawServer([ok(b"x")]) as server:
        url = server.url.replace("http://", "https://")
        [result] = get_all(url, ["/1"], ssl_context=ssl.create_default_context())
    assert isinstance(result, ConnectFailed)


# --- the whole CLI against third-party servers ----------------------------------------------------


ServeApp = Callable[..., AbstractContextManager[AsgiServer]]


@pytest.fixture(
    params=[(kind, tls) for tls in (False, True) for kind in ("uvicorn", "hypercorn")],
    ids=lambda param: f"{param[0]}-{'https' if param[1] else 'http'}",
)
def third_party(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ServeApp:
    """Serves an ASGI app (by default `api_app()`) with uvicorn or hypercorn; over HTTPS with
    a throwaway CA the CLI is told to trust through SSL_CERT_FILE (how a private CA is
    trusted), or over plain HTTP."""
    kind, tls = request.param

    @contextmanager
    def serve(app: Callable[..., Any] | None = None) -> Iterator[AsgiServer]:
        with trusted_ca(tmp_path) as (_, ca_file, cert_file, key_file):
            if tls:
                monkeypatch.setenv("SSL_CERT_FILE", ca_file)
            certs = {"certfile": cert_file, "keyfile": key_file} if tls else {}
            with AsgiServer(kind, app=app, **certs) as server:
                yield server

    return serve


@pytest.mark.slow
def test_sync_against_third_party_servers(
    third_party: ServeApp, database_url: str, engine: Engine
) -> None:
    ids = new_ids(12)
    with third_party() as server:
        for prefix in ("", "/gz"):  # the second pass gets gzip it did not ask for
            result = run_cli(
                "sync", *ids, "--json", "--concurrency", "3",
                "--base-url", server.url + prefix, "--database-url", database_url,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            summary = json.loads(result.stdout)
            assert summary["inserted"] + summary["unchanged"] == 12
    names = {r["image_id"]: r["image_name"] for r in rows(engine, "SELECT * FROM images")}
    assert names == {i: record_for(i)["image_name"] for i in ids}


@pytest.mark.slow
def test_the_whole_account_against_third_party_servers(
    third_party: ServeApp, database_url: str, engine: Engine
) -> None:
    """`--all` reads listing pages of ~100 KB back to back on one connection, each requested
    as soon as its token is read: chunked by these servers (the app sends no length), and
    gzipped on the second pass. An order ID holding `#` and `/` goes by ID."""
    account = SampleAccount.generate(2000, seed=11)
    odd = next(order_id for order_id in account.orders if "/" in order_id)
    pages = math.ceil(len(account.orders) / PER_PAGE_MAX)
    with third_party(api_app(account)) as server:
        for prefix, new in (("", 2000), ("/gz", 0)):
            result = run_cli(
                "sync", "--all", "--order", odd, "--api-key", "k", "--json",
                "--base-url", server.url + prefix, "--database-url", database_url,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            summary = json.loads(result.stdout)
            assert summary["inserted"] == new
            assert summary["inserted"] + summary["unchanged"] == 2000 == summary["requested"]
            assert summary["orders_requested"] == len(account.orders)
            assert summary["api_requests"] == pages + 1  # the listing, the odd order once
    assert rows(engine, "SELECT count(*) AS n FROM images") == [{"n": 2000}]
    mirrored = {r["order_id"] for r in rows(engine, "SELECT order_id FROM orders")}
    assert mirrored == set(account.orders)


@pytest.mark.parametrize("client", ["http11", "httpx"])
def test_a_malformed_answer_fails_its_image_and_the_run_goes_on(
    client: str, monkeypatch: pytest.MonkeyPatch, database_url: str, engine: Engine
) -> None:
    """`Content-Length: ²` and `Retry-After: ²` once crashed the whole run (with either
    client: the Retry-After parsing is shared)."""
    if client == "httpx":
        monkeypatch.setenv("MIRROR_HTTP_CLIENT", "httpx")
    ids = new_ids(3)
    bad_length = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab"
    bad_retry = b"HTTP/1.1 503 Busy\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n"
    with RawServer([bad_length, bad_retry, image_answer]) as server:
        result = run_cli(
            "sync", *ids, "--concurrency", "1", "--retries", "2", "--json",
            "--base-url", server.url, "--database-url", database_url,
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inserted"] == 3
    assert len(rows(engine, "SELECT image_id FROM images")) == 3
