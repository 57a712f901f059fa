"""The HTTP layer against the real stand-in: both transports, the wire's odd corners."""

from __future__ import annotations

import json

import pytest
from helpers import new_ids, rows, run_cli
from sqlalchemy import Engine

from mirror.standin import Fault, StandIn, record_for


@pytest.fixture(params=["http11", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs on the lean client and on the httpx fallback used behind proxies."""
    if request.param == "httpx":
        monkeypatch.setenv("MIRROR_HTTP_CLIENT", "httpx")
    return str(request.param)


def sync(standin: StandIn, database_url: str, *args: str) -> object:
    return run_cli("sync", "--base-url", standin.url, "--database-url", database_url, *args)


@pytest.mark.usefixtures("transport")
def test_wire_variants_and_faults_end_the_same_way(
    standin: StandIn, database_url: str, engine: Engine
) -> None:
    ids = new_ids(8)
    standin.state.script(ids[0], Fault(chunked=True))
    standin.state.script(ids[1], Fault(close=True), Fault(close=True))
    standin.state.script(ids[2], Fault(drop=True))
    standin.state.script(ids[3], Fault(drop_mid_body=True))
    standin.state.script(ids[4], Fault(status=503, retry_after="0"))
    standin.state.script(ids[5], Fault(body=b"{" + b" " * (5 * 1024 * 1024) + b"}"))
    standin.state.script(ids[6], Fault(delay=2), Fault(delay=2))
    result = sync(
        standin, database_url, *ids, "--concurrency", "2", "--timeout", "0.5", "--retries", "1"
    )
    assert result.exit_code == 1, result.output
    summary = {r["image_id"]: r for r in rows(engine, "SELECT image_id, status FROM images")}
    assert set(summary) == {ids[0], ids[1], ids[2], ids[3], ids[4], ids[7]}
    for image_id, row in summary.items():
        assert row["status"] == record_for(image_id)["status"]
    failures = {
        r["image_id"]: r["kind"] for r in rows(engine, "SELECT image_id, kind FROM sync_failures")
    }
    assert failures == {ids[5]: "invalid_payload", ids[6]: "timeout"}


@pytest.mark.usefixtures("transport")
def test_headers_reach_the_api(standin: StandIn, database_url: str) -> None:
    result = sync(standin, database_url, *new_ids(1), "--api-key", "abc-key", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["inserted"] == 1
    headers = standin.state.last_headers
    assert headers["x-api-key"] == "abc-key"
    assert headers["x-api-version"] == "2025-08-31"
    assert headers["user-agent"].startswith("autoenhance-mirror/")
    assert headers["host"] == standin.url.removeprefix("http://")


@pytest.mark.parametrize("fault", [Fault(close=True), Fault(hangup=True)])
def test_a_connection_the_server_closed_is_redialled_without_a_failure(
    standin: StandIn, database_url: str, fault: Fault
) -> None:
    """`Connection: close`, or a silent hang-up after an answer: the next GET dials anew."""
    ids = new_ids(4)
    for image_id in ids:
        standin.state.script(image_id, fault)
    result = sync(standin, database_url, *ids, "--concurrency", "1", "--retries", "0")
    assert result.exit_code == 0, result.output
    assert sum(standin.state.requests.values()) == 4


@pytest.mark.parametrize(
    ("environment", "base_url", "uses_httpx"),
    [
        ({}, "https://api.autoenhance.ai", False),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "https://api.autoenhance.ai", True),
        ({"https_proxy": "http://proxy:3128"}, "https://api.autoenhance.ai", True),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://127.0.0.1:8000", True),
        ({"HTTP_PROXY": "http://proxy:3128"}, "https://api.autoenhance.ai", False),
        (
            {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "autoenhance.ai"},
            "https://api.autoenhance.ai",
            False,
        ),
        ({"MIRROR_HTTP_CLIENT": "httpx"}, "https://api.autoenhance.ai", True),
    ],
)
def test_a_proxy_in_the_environment_selects_httpx(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], base_url: str, uses_httpx: bool
) -> None:
    """The lean client speaks no proxy protocol: where a proxy applies, httpx is used."""
    from mirror.api import _needs_httpx

    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _needs_httpx(base_url) is uses_httpx


@pytest.mark.usefixtures("transport")
def test_a_redirect_is_never_followed(standin: StandIn, database_url: str) -> None:
    """Not even to the same server: the key goes to --base-url and nowhere else."""
    image_id, elsewhere = new_ids(2)
    location = f"{standin.url}/v3/images/{elsewhere}"
    standin.state.script(image_id, Fault(status=307, location=location))
    result = sync(standin, database_url, image_id, "--api-key", "abc-key")
    assert result.exit_code == 3, result.output
    assert f"redirecting /v3/images/{image_id} to {location}" in result.stderr
    assert standin.state.requests == {image_id: 1}
