"""The stand-in itself: deterministic records and byte-level fault injection, over real HTTP."""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from helpers import new_ids, run_cli

from mirror.sample_account import SampleAccount, SampleOrder
from mirror.standin import LISTING, Fault, StandIn, record_for


def test_records_are_deterministic_realistic_and_varied() -> None:
    ids = new_ids(400)
    assert record_for(ids[0]) == record_for(ids[0].upper())
    records = [record_for(i) for i in ids]
    assert {r["status"] for r in records} == {"processed", "processing", "error", "expired"}
    assert any(r["parent_image_id"] and r["restage"] for r in records)
    assert any("render_revision" in r for r in records)
    assert all("metadata" in r and "window_pull" in r for r in records)
    assert all(r["status_reason"] for r in records if r["status"] == "error")


def test_serves_records_and_counts_requests(standin: StandIn) -> None:
    image_id = new_ids(1)[0]
    with httpx.Client(base_url=standin.url) as client:
        response = client.get(f"/v3/images/{image_id}")
        assert response.status_code == 200
        assert response.json() == record_for(image_id)
        assert client.get("/v3/images/not-a-uuid").status_code == 404
        assert client.post(f"/v3/images/{image_id}/process").status_code == 405
        stats = client.get("/__standin/stats").json()
    assert stats["image_requests"] == 1
    assert stats["paths"]["POST /v3/images/{id}/process"] == 1


def test_scripted_faults_are_consumed_one_per_request(standin: StandIn) -> None:
    image_id = new_ids(1)[0]
    standin.state.script(
        image_id,
        Fault(status=429, retry_after="7"),
        Fault(body=b"\xff\xfe not json"),
        Fault(json=[1, 2]),
        Fault(extra={"surprise": True}),
    )
    with httpx.Client(base_url=standin.url) as client:
        first = client.get(f"/v3/images/{image_id}")
        assert (first.status_code, first.headers["retry-after"]) == (429, "7")
        assert first.json() == {"detail": {}, "message": "Too Many Requests"}
        assert client.get(f"/v3/images/{image_id}").content == b"\xff\xfe not json"
        assert client.get(f"/v3/images/{image_id}").json() == [1, 2]
        assert client.get(f"/v3/images/{image_id}").json()["surprise"] is True
        assert client.get(f"/v3/images/{image_id}").json() == record_for(image_id)


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault(drop=True), httpx.RemoteProtocolError),
        (Fault(drop_mid_body=True), httpx.RemoteProtocolError),
        (Fault(delay=2.0), httpx.ReadTimeout),
    ],
)
def test_connection_faults(standin: StandIn, fault: Fault, error: type[Exception]) -> None:
    image_id = new_ids(1)[0]
    standin.state.script(image_id, fault)
    with httpx.Client(base_url=standin.url, timeout=0.5) as client, pytest.raises(error):
        client.get(f"/v3/images/{image_id}")


def test_require_key_answers_401_without_the_right_key(standin: StandIn) -> None:
    standin.state.require_key = "right-key"
    image_id = new_ids(1)[0]
    with httpx.Client(base_url=standin.url) as client:
        assert client.get(f"/v3/images/{image_id}").status_code == 401
        ok = client.get(f"/v3/images/{image_id}", headers={"x-api-key": "right-key"})
        assert ok.status_code == 200


def test_faults_load_from_json() -> None:
    server = StandIn()
    image_id = new_ids(1)[0]
    script = {image_id.upper(): [{"status": 503}, {"drop": True}], "Order-7": [{"status": 500}]}
    server.state.load_faults(json.loads(json.dumps(script)))
    # Image IDs are UUIDs, matched in any case; order IDs are opaque, matched exactly.
    assert server.state.faults == {
        image_id: [Fault(status=503), Fault(drop=True)],
        "Order-7": [Fault(status=500)],
    }


@pytest.mark.parametrize(
    ("script", "named"),
    [
        ("{bad", "Expecting property name"),
        ("[1]", "the script is an object"),
        ('{"k": {"status": 500}}', 'k: a list of faults, not {"status": 500}'),
        ('{"k": [{"status": 500}, 7]}', "k[1]: a fault is a JSON object, not 7"),
        ('{"k": [{"status": "503"}]}', 'k[0]: status: "503" is not an integer or null'),
        ('{"k": [{"status": true}]}', "k[0]: status: true is not an integer or null"),
        ('{"k": [{"status": 1000}]}', "k[0]: status: 1000 is not an HTTP status (100-599)"),
        ('{"k": [{"stauts": 503}]}', "k[0]: unknown property 'stauts' (known: status,"),
        ('{"k": [{"delay": -1}]}', "k[0]: delay: seconds cannot be negative"),
        ('{"k": [{"drop": 1}]}', "k[0]: drop: 1 is not true or false"),
    ],
)
def test_a_bad_fault_script_is_named_before_the_stand_in_starts(
    tmp_path: Path, script: str, named: str
) -> None:
    """A typo in a rehearsal's fault script was accepted and failed only when its fault fired
    (`"status": "503"`), or came out as `'list' object has no attribute 'items'`."""
    path = tmp_path / "faults.json"
    path.write_text(script, encoding="utf-8")
    result = run_cli("stand-in", "--port", "0", "--faults", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --faults {path}: not a fault script: ")
    assert named in result.stderr
    assert "listening" not in result.stdout


def test_a_fault_script_scripts_every_property_it_documents() -> None:
    server = StandIn()
    every = {
        "status": 429, "retry_after": "1", "location": "/x", "delay": 0.5, "drop": False,
        "drop_mid_body": False, "body": "{}", "json": False, "extra": {"a": 1},
        "chunked": True, "close": False, "hangup": False,
    }  # fmt: skip
    assert set(every) == {f.name for f in dataclasses.fields(Fault)}  # none left unchecked
    server.state.load_faults({"k": [every, {"json": None}]})
    assert server.state.faults == {"k": [Fault(**every), Fault()]}


def test_a_port_in_use_is_a_clear_error_at_once(standin: StandIn) -> None:
    """Before, the bind error was a traceback in the server's thread and the command waited
    10 s for a server that would never start."""
    started = time.monotonic()
    result = run_cli("stand-in", "--port", str(standin.port))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: the stand-in cannot listen on 127.0.0.1:{standin.port}: Address already in "
        "use; pick another --port (0 picks a free one)\n"
    )
    assert time.monotonic() - started < 5
    bad_host = run_cli("stand-in", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1
    assert bad_host.exit_code == 2
    assert "check --host" in bad_host.stderr and "Traceback" not in bad_host.output


def test_on_ipv6_loopback_its_url_is_one_a_sync_can_use(tmp_path: Path) -> None:
    """`--host ::1` printed http://::1:8000, which no client can parse."""
    try:
        server = StandIn(host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        assert server.url == f"http://[::1]:{server.port}"
        database = str(tmp_path / "mirror.db")
        result = run_cli("sync", *new_ids(2), "--base-url", server.url, "--database-url", database)
        assert result.exit_code == 0, result.output
        assert sum(server.state.requests.values()) == 2
    finally:
        server.stop()


# --- the account of orders (spec §7) -----------------------------------------------------------


@pytest.fixture
def account_standin(standin: StandIn) -> StandIn:
    standin.state.account = SampleAccount.generate(300)
    return standin


def listing(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every page of the listing, following next_offset."""
    pages = []
    offset = None
    while True:
        query = {**params, **({"offset": offset} if offset else {})}
        page = client.get("/v3/orders/", params=query)
        assert page.status_code == 200, page.text
        pages.append(page.json())
        offset = page.json()["pagination"]["next_offset"]
        if not offset:
            return pages


def test_the_account_is_consistent_between_orders_and_images(account_standin: StandIn) -> None:
    account = account_standin.state.account
    assert account is not None
    assert len(account.image_ids()) == 300
    with httpx.Client(base_url=account_standin.url) as client:
        seen: set[str] = set()
        for order_id in list(account.orders)[:40]:
            body = client.get(f"/v3/orders/{quote(order_id, safe='')}").json()
            assert body["order_id"] == order_id
            assert body["total_images"] == len(body["images"]) >= 1
            for image in body["images"]:
                assert image["order_id"] == order_id
                alone = client.get(f"/v3/images/{image['image_id']}").json()
                assert alone == image
                seen.add(image["image_id"])
        assert len(seen) == sum(len(account.orders[o].image_ids) for o in list(account.orders)[:40])
    assert any(not _is_uuid(o) for o in account.orders)  # opaque IDs, / and # included
    assert any("/" in o for o in account.orders)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def test_the_listing_pages_through_every_order_once(account_standin: StandIn) -> None:
    account = account_standin.state.account
    assert account is not None
    with httpx.Client(base_url=account_standin.url) as client:
        pages = listing(client, per_page=100)  # clamped to 15
        assert {p["pagination"]["per_page"] for p in pages} == {15}
        listed = [o["order_id"] for p in pages for o in p["orders"]]
        assert sorted(listed) == sorted(account.orders)
        created = [o["created_at"] for p in pages for o in p["orders"]]
        assert created == sorted(created, reverse=True)  # -date by default
        by_name = [
            o["name"] for p in listing(client, per_page=15, sort="name") for o in p["orders"]
        ]
        assert by_name == sorted(by_name)
        assert len(client.get("/v3/orders/").json()["orders"]) == 5  # the default per_page
        assert client.get("/v3/orders/", params={"offset": "42"}).status_code == 422
        assert client.get("/v3/orders/", params={"sort": "size"}).status_code == 422


def test_the_listing_needs_the_key_when_one_is_required_orders_by_id_do_not(
    account_standin: StandIn,
) -> None:
    account_standin.state.require_key = "k-1"
    order_id = next(iter(account_standin.state.account.orders))  # type: ignore[union-attr]
    with httpx.Client(base_url=account_standin.url) as client:
        assert client.get("/v3/orders/").status_code == 401
        assert client.get("/v3/orders/", headers={"x-api-key": "k-1"}).status_code == 200
        assert client.get(f"/v3/orders/{quote(order_id, safe='')}").status_code == 200
        assert client.get("/v3/orders/no-such-order").status_code == 404
        stats = client.get("/__standin/stats").json()
    assert stats["paths"]["GET /v3/orders/"] == 2
    assert stats["paths"]["GET /v3/orders/{id}"] == 2


def test_faults_target_orders_and_listing_pages(account_standin: StandIn) -> None:
    order_id = next(iter(account_standin.state.account.orders))  # type: ignore[union-attr]
    account_standin.state.script(order_id, Fault(status=503, retry_after="2"), Fault(json=[1]))
    account_standin.state.script(LISTING, Fault(), Fault(status=500))
    path = f"/v3/orders/{quote(order_id, safe='')}"
    with httpx.Client(base_url=account_standin.url) as client:
        first = client.get(path)
        assert (first.status_code, first.headers["retry-after"]) == (503, "2")
        assert client.get(path).json() == [1]
        assert client.get(path).json()["order_id"] == order_id
        assert client.get("/v3/orders/").status_code == 200
        assert client.get("/v3/orders/").status_code == 500
        assert client.get("/v3/orders/").status_code == 200


def test_an_account_changed_mid_listing_shifts_the_pages(account_standin: StandIn) -> None:
    """Offset paging over a live list: an order created after page 1 was served makes page 2
    repeat an order; a deleted one is gone from the listing and answers 404."""
    account = account_standin.state.account
    assert account is not None
    newest = SampleOrder(
        order_id="fresh-order",
        name="Fresh",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        last_updated_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    gone = next(iter(account.orders))  # the oldest: on the last page, not listed yet

    def change(pages_served: int) -> None:
        if pages_served == 1:
            account.add_order(newest, new_ids(2))
            account.delete_order(gone)

    account_standin.state.on_listing = change
    with httpx.Client(base_url=account_standin.url) as client:
        pages = listing(client, per_page=15)
        listed = [o["order_id"] for p in pages for o in p["orders"]]
        assert len(listed) != len(set(listed))  # page 2 repeated the last order of page 1
        assert "fresh-order" not in listed and gone not in listed
        assert client.get(f"/v3/orders/{quote(gone, safe='')}").status_code == 404
        fresh = client.get("/v3/orders/fresh-order").json()
        assert [i["order_id"] for i in fresh["images"]] == ["fresh-order"] * 2


def test_a_moved_image_belongs_to_its_new_order_everywhere(account_standin: StandIn) -> None:
    account = account_standin.state.account
    assert account is not None
    source, target = list(account.orders)[:2]
    image_id = account.orders[source].image_ids[0]
    account.move_image(image_id, target)
    with httpx.Client(base_url=account_standin.url) as client:
        assert client.get(f"/v3/images/{image_id}").json()["order_id"] == target
        old = client.get(f"/v3/orders/{quote(source, safe='')}").json()
        new = client.get(f"/v3/orders/{quote(target, safe='')}").json()
    assert image_id not in [i["image_id"] for i in old["images"]]
    assert image_id in [i["image_id"] for i in new["images"]]
