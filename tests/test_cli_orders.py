"""Orders and the whole account (spec §7) end to end: `sync --order`, `--orders-from-file`,
`--all` with its listing and drift reconciliation, through the real CLI against the stand-in's
account, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import new_ids, on_a_terminal, rows, run_cli, scalar
from sqlalchemy import Engine, inspect

from mirror.sample_account import SampleAccount, SampleOrder, encode_offset
from mirror.standin import LISTING, Fault, StandIn

KEY = "test-key-for-listing"
ORDER_COUNT_KEYS = [
    "orders_requested",
    "orders_inserted",
    "orders_updated",
    "orders_unchanged",
    "orders_deleted",
    "orders_not_found",
    "orders_failed",
    "api_requests",
]


@pytest.fixture
def account(standin: StandIn) -> SampleAccount:
    """400 images in orders of 1-20 (three or more listing pages), the listing behind the
    key."""
    standin.state.account = SampleAccount.generate(400, seed=7)
    standin.state.require_key = KEY
    return standin.state.account


def sync(standin: StandIn, database_url: str, *args: str, input: str | None = None) -> Any:
    return run_cli(
        "sync",
        "--base-url",
        standin.url,
        "--database-url",
        database_url,
        "--api-key",
        KEY,
        "--max-rate",
        "0",
        "--retries",
        "0",
        *args,
        input=input,
    )


def summary_of(result: Any) -> dict[str, Any]:
    assert result.exit_code in (0, 1), result.output
    return dict(json.loads(result.stdout))


def adds_up(summary: dict[str, Any]) -> None:
    images = ["inserted", "updated", "unchanged", "deleted", "not_found", "failed"]
    assert summary["requested"] == sum(summary[k] for k in images)
    assert summary["orders_requested"] == sum(summary[f"orders_{k}"] for k in images)


def mirrored_orders(engine: Engine) -> dict[str, dict[str, Any]]:
    return {r["order_id"]: r for r in rows(engine, "SELECT * FROM orders")}


def test_all_mirrors_every_order_and_image_then_finds_them_unchanged(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    first = summary_of(sync(standin, database_url, "--all", "--json"))
    pages = -(-len(account.orders) // 15)
    assert first["status"] == "succeeded"
    assert first["requested"] == first["inserted"] == 400
    assert first["orders_requested"] == first["orders_inserted"] == len(account.orders)
    assert first["api_requests"] == pages == standin.state.total_requests
    assert [key for key in first if key in ORDER_COUNT_KEYS] == ORDER_COUNT_KEYS
    adds_up(first)
    assert standin.state.paths == {"GET /v3/orders/": pages}  # no image fetched by ID

    orders = mirrored_orders(engine)
    assert set(orders) == set(account.orders)
    for order_id, order in account.orders.items():
        row = orders[order_id]
        assert row["name"] == order.name and row["status"] == order.status
        assert row["total_images"] == len(order.image_ids) and row["deleted_at"] is None
        mirrored = rows(engine, "SELECT image_id FROM images WHERE order_id = :o", o=order_id)
        assert sorted(r["image_id"] for r in mirrored) == sorted(order.image_ids)
    created = scalar(engine, "SELECT created_at FROM orders ORDER BY created_at LIMIT 1")
    assert created is not None
    branded = [o for o in account.orders.values() if o.extra]
    assert branded  # unknown properties land in extra
    extra = scalar(engine, "SELECT extra FROM orders WHERE order_id = :o", o=branded[0].order_id)
    assert (json.loads(extra) if isinstance(extra, str) else extra) == {"branding": True}

    standin.state.reset()
    again = summary_of(sync(standin, database_url, "--all", "--json"))
    assert again["status"] == "succeeded"
    assert again["unchanged"] == 400 and again["inserted"] == again["updated"] == 0
    assert again["orders_unchanged"] == len(account.orders)
    assert again["api_requests"] == pages == standin.state.total_requests
    runs = rows(engine, "SELECT * FROM sync_runs ORDER BY id")
    assert [r["orders_unchanged"] for r in runs] == [0, len(account.orders)]
    assert [r["api_requests"] for r in runs] == [pages, pages]


def test_the_summary_line_names_orders_and_requests(
    standin: StandIn, account: SampleAccount, database_url: str
) -> None:
    result = sync(standin, database_url, "--all")
    assert result.exit_code == 0, result.output
    n = len(account.orders)
    pages = -(-n // 15)
    assert result.stdout.strip() == (
        f"synced 400 images from {n} orders: 400 new, 0 changed, 0 unchanged, 0 deleted, "
        f"0 not found, 0 failed; orders: {n} new, 0 changed, 0 unchanged, 0 deleted, "
        f"0 not found, 0 failed ({pages} requests, run 1)"
    )


def test_all_without_a_key_is_exit_2_before_any_request(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    result = run_cli(
        "sync", "--all", "--base-url", standin.url, "--database-url", database_url, "--json"
    )
    assert result.exit_code == 2, result.output
    assert "--all lists the account's orders, which needs the API key" in result.stderr
    assert json.loads(result.stdout)["exit_code"] == 2
    assert standin.state.total_requests == 0
    if engine.dialect.name == "sqlite":
        assert not Path(engine.url.database or "").exists()
    else:
        assert inspect(engine).get_table_names() == []


def test_orders_by_id_and_from_a_file_need_no_key_and_combine_with_images(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    standin.state.require_key = None  # orders by ID need no key (images here neither)
    chosen = list(account.orders)[:4]
    odd = next(o for o in account.orders if "#" in o)  # "MLS#1007/b": encoded in the path
    listing = tmp_path / "orders.txt"
    listing.write_text(f"\ufeff# orders of the week\n{chosen[2]}  # a comment\n\n{odd}\r\n")
    embedded = account.orders[chosen[0]].image_ids[0]
    loose = new_ids(2)  # not in any order: fetched by ID
    result = run_cli(
        "sync",
        "--base-url",
        standin.url,
        "--database-url",
        database_url,
        "--order",
        chosen[0],
        "--order",
        chosen[1],
        "--order",
        chosen[0],
        "--orders-from-file",
        str(listing),
        embedded,
        *loose,
        "--json",
    )
    summary = summary_of(result)
    wanted = [chosen[0], chosen[1], chosen[2], odd]
    images = sum(len(account.orders[o].image_ids) for o in wanted)
    assert summary["status"] == "succeeded"
    assert summary["orders_requested"] == summary["orders_inserted"] == 4
    assert summary["requested"] == summary["inserted"] == images + 2
    assert summary["api_requests"] == 4 + 2 == standin.state.total_requests
    adds_up(summary)
    assert standin.state.requests[embedded] == 0  # it came with its order
    assert set(mirrored_orders(engine)) == set(wanted)
    assert (
        scalar(engine, "SELECT order_id FROM images WHERE image_id = :i", i=embedded) == (chosen[0])
    )


def test_bad_order_ids_are_exit_2_naming_each(
    standin: StandIn, database_url: str, tmp_path: Path
) -> None:
    listing = tmp_path / "orders.txt"
    listing.write_text("good-one\nhas space\n" + "x" * 201 + "\n")
    result = run_cli(
        "sync",
        "--base-url",
        standin.url,
        "--database-url",
        database_url,
        "--order",
        "",
        "--orders-from-file",
        str(listing),
    )
    assert result.exit_code == 2, result.output
    assert "3 invalid order IDs" in result.stderr
    assert "--order 1: ''" in result.stderr
    assert f"{listing}:2: 'has space'" in result.stderr
    assert f"{listing}:3: 'xxxxx" in result.stderr
    assert standin.state.total_requests == 0


def test_an_unknown_order_is_a_not_found_failure_of_that_order(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    known = next(iter(account.orders))
    summary = summary_of(
        sync(standin, database_url, "--order", "no/such#order", "--order", known, "--json")
    )
    assert summary["status"] == "partial"
    assert summary["orders_not_found"] == 1 and summary["orders_inserted"] == 1
    adds_up(summary)
    [failure] = summary["failures"]
    assert failure["order_id"] == "no/such#order" and failure["image_id"] is None
    assert failure["kind"] == "not_found" and failure["of"] == "order"
    stored = rows(engine, "SELECT image_id, order_id, kind, http_status FROM sync_failures")
    assert stored == [
        {"image_id": None, "order_id": "no/such#order", "kind": "not_found", "http_status": 404}
    ]


def test_a_deleted_order_is_marked_and_its_images_are_checked_one_by_one(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    assert sync(standin, database_url, "--all").exit_code == 0
    gone_order = next(iter(account.orders))
    gone_images = account.delete_order(gone_order)
    standin.state.reset()

    # Over 10 images 404 in a run of that many: the deletion guard wants them allowed.
    args = ["--order", gone_order, "--max-deletes", "20", "--json"]
    summary = summary_of(sync(standin, database_url, *args))
    assert summary["orders_deleted"] == 1
    assert summary["deleted"] == len(gone_images) == summary["requested"]
    adds_up(summary)
    assert summary["api_requests"] == 1 + len(gone_images)
    assert scalar(
        engine, "SELECT deleted_at IS NOT NULL FROM orders WHERE order_id = :o", o=gone_order
    )
    deleted = rows(engine, "SELECT image_id FROM images WHERE deleted_at IS NOT NULL")
    assert sorted(r["image_id"] for r in deleted) == sorted(gone_images)


def test_an_image_of_a_deleted_order_that_could_not_be_checked_is_checked_by_the_next_run(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    """Found by a fault campaign: an order deleted upstream is marked deleted, and one of its
    images cannot be fetched then (a dropped connection). No later `--all` fetched the order
    (it is deleted) or the image (no listed order embeds it): it stayed in the mirror as live.
    Now every `--all` whose listing reached its end checks such images again."""
    assert sync(standin, database_url, "--all").exit_code == 0
    order = next(o for o in account.orders.values() if len(o.image_ids) >= 2)
    unlucky, *others = order.image_ids
    account.delete_order(order.order_id)
    standin.state.script(unlucky, Fault(drop=True))
    first = summary_of(sync(standin, database_url, "--all", "--max-deletes", "40", "--json"))
    assert first["status"] == "partial" and first["orders_deleted"] == 1
    assert first["deleted"] == len(others) and first["failed"] == 1
    assert [f["image_id"] for f in first["failures"]] == [unlucky]
    live = "SELECT deleted_at IS NULL FROM images WHERE image_id = :i"
    assert scalar(engine, live, i=unlucky)

    pages = -(-len(account.orders) // 15)
    for args in (["--dry-run"], []):
        standin.state.reset()
        summary = summary_of(sync(standin, database_url, "--all", "--json", *args))
        assert summary["status"] == "succeeded", summary
        assert summary["deleted"] == 1 and summary["orders_deleted"] == 0
        adds_up(summary)
        assert standin.state.requests[unlucky] == 1
        assert summary["api_requests"] == pages + 1
    assert not scalar(engine, live, i=unlucky)

    standin.state.reset()
    again = summary_of(sync(standin, database_url, "--all", "--json"))
    assert again["deleted"] == 0 and standin.state.requests[unlucky] == 0


def test_listing_drift_misses_nothing_and_deletes_nothing_wrongly(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    """While `--all` reads the listing, an order listed on the first page is deleted (which
    shifts an order past the listing's offset: skipped), one not listed yet is deleted, one
    is created and an image moves between orders. The skipped order is fetched by ID, the
    unlisted deleted one is marked deleted with its images; the one deleted after it was
    listed is caught by the next run. Nothing else is deleted, nothing is fetched twice."""
    assert sync(standin, database_url, "--all").exit_code == 0
    by_date = sorted(account.orders.values(), key=lambda o: o.created_at)
    listed_then_deleted = by_date[0].order_id
    deleted_before_listed = by_date[-2].order_id
    mover = by_date[-1].image_ids[0]
    target_order = by_date[1].order_id
    new_images = new_ids(3)
    removed: dict[str, list[str]] = {}

    def change_the_account(served: int) -> None:
        if served == 2:  # after two pages: orders of the first page are behind the offset
            with standin.state.lock:
                for order_id in (listed_then_deleted, deleted_before_listed):
                    removed[order_id] = account.delete_order(order_id)
                account.add_order(
                    SampleOrder(
                        order_id="created-mid-listing",
                        name="Brand New",
                        created_at=datetime.now(UTC),
                        last_updated_at=datetime.now(UTC),
                    ),
                    new_images,
                )
                account.move_image(mover, target_order)

    standin.state.on_listing = change_the_account
    standin.state.reset()
    summary = summary_of(sync(standin, database_url, "--all", "--max-deletes", "40", "--json"))
    assert summary["status"] == "succeeded", summary
    adds_up(summary)
    assert standin.state.listing_pages >= 3

    orders = mirrored_orders(engine)
    live = {o for o, row in orders.items() if row["deleted_at"] is None}
    assert live == set(account.orders) | {listed_then_deleted}
    assert orders[deleted_before_listed]["deleted_at"] is not None
    assert summary["orders_deleted"] == 1 and summary["orders_inserted"] == 1
    images = {r["image_id"]: r for r in rows(engine, "SELECT * FROM images")}
    for order_id, order in account.orders.items():
        for image_id in order.image_ids:
            assert images[image_id]["deleted_at"] is None
            assert images[image_id]["order_id"] == order_id
    deleted = {i for i, r in images.items() if r["deleted_at"] is not None}
    assert deleted == set(removed[deleted_before_listed])
    assert images[mover]["order_id"] == target_order
    # Each image and order once: the deleted order's images one by one, nothing twice.
    assert max(standin.state.requests.values()) == 1
    assert summary["requested"] == len(images)  # those of the order listed, then deleted, too

    standin.state.on_listing = None
    after = summary_of(sync(standin, database_url, "--all", "--max-deletes", "40", "--json"))
    assert after["orders_deleted"] == 1 and after["status"] == "succeeded"
    assert after["deleted"] == len(removed[listed_then_deleted])
    live = {o for o, row in mirrored_orders(engine).items() if row["deleted_at"] is None}
    assert live == set(account.orders)


def test_a_failed_listing_page_is_partial_and_marks_nothing_deleted(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    assert sync(standin, database_url, "--all").exit_code == 0
    account.delete_order(next(iter(account.orders)))
    standin.state.script(LISTING, Fault(), Fault(status=503))
    assert len(account.orders) > 15  # so there is a second page
    summary = summary_of(sync(standin, database_url, "--all", "--json"))
    assert summary["status"] == "partial"
    assert summary["orders_deleted"] == 0 and summary["deleted"] == 0
    [failure] = summary["failures"]
    assert failure["of"] == "listing" and failure["http_status"] == 503
    assert failure["image_id"] is None and failure["order_id"] is None
    assert "order listing page" in failure["message"]
    assert scalar(engine, "SELECT count(*) FROM orders WHERE deleted_at IS NOT NULL") == 0


def test_a_failed_listing_page_is_named_once_with_its_status_once(
    standin: StandIn, database_url: str
) -> None:
    """It read `http_error: order listing (HTTP 502): order listing page (offset start): HTTP
    502 Bad Gateway`, and `status` `http_error: order listing: order listing page ...`."""
    standin.state.script(LISTING, Fault(status=502))
    result = sync(standin, database_url, "--all")
    assert result.exit_code == 1, result.output
    assert "  http_error: order listing page (offset start): HTTP 502 " in result.stderr
    assert "(HTTP 502)" not in result.stderr
    status = run_cli("status", "--database-url", database_url)  # the same line there
    assert "  http_error: order listing page (offset start): HTTP 502 " in status.output
    assert "order listing: " not in status.output


def test_a_run_stopped_in_the_listing_counts_each_image_once(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Images given by ID and brought by an order of the listing before the run stopped were
    counted twice: `requested` minus the counts overstated the images never tried."""
    given = account.image_ids()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(given))
    standin.state.script(LISTING, Fault(), Fault(status=401))  # the second page: key revoked
    result = sync(standin, database_url, "--all", "--from-file", str(ids_file))
    assert result.exit_code == 3, result.output
    [run] = rows(engine, "SELECT requested, inserted, failed FROM sync_runs")
    mirrored = scalar(engine, "SELECT count(*) FROM images")
    assert 0 < mirrored < len(given)  # the first page's orders, then the stop
    assert run["inserted"] == mirrored
    assert run["requested"] == len(given)  # each image once; never tried: the rest


def test_a_listing_that_repeats_its_token_stops_with_exit_3(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    page = {"orders": [], "pagination": {"next_offset": encode_offset(15), "per_page": 15}}
    page["orders"] = [account.order_body(next(iter(account.orders)))]
    standin.state.script(LISTING, Fault(json=page), Fault(json=page))
    result = sync(standin, database_url, "--all")
    assert result.exit_code == 3, result.output
    assert "repeated a next_offset token" in result.stderr
    run = rows(engine, "SELECT status, orders_inserted, api_requests FROM sync_runs")
    assert run == [{"status": "failed", "orders_inserted": 1, "api_requests": 2}]


def test_malformed_orders_and_embedded_images_fail_alone(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    standin.state.require_key = None
    broken, other, with_bad_image = list(account.orders)[:3]
    standin.state.script(broken, Fault(body="[1, 2"))
    body = account.order_body(with_bad_image)
    assert body is not None
    bad_image = body["images"][0]["image_id"]
    body["images"][0] = {**body["images"][0], "rating": "4", "image_id": 5}
    body["images"].append("not an image")
    standin.state.script(with_bad_image, Fault(json=body))
    summary = summary_of(
        sync(
            standin,
            database_url,
            "--order",
            broken,
            "--order",
            other,
            "--order",
            with_bad_image,
            "--json",
        )
    )
    assert summary["status"] == "partial"
    assert summary["orders_failed"] == 1 and summary["orders_inserted"] == 2
    assert summary["failed"] == 2  # the image with a bad ID and the non-object
    adds_up(summary)
    kinds = rows(engine, "SELECT image_id, order_id, kind FROM sync_failures ORDER BY id")
    assert {"image_id": None, "order_id": broken, "kind": "invalid_payload"} in kinds
    assert all(k["order_id"] in (broken, with_bad_image) for k in kinds)
    assert scalar(engine, "SELECT count(*) FROM images WHERE image_id = :i", i=bad_image) == 0
    good = len(account.orders[other].image_ids) + len(account.orders[with_bad_image].image_ids)
    assert scalar(engine, "SELECT count(*) FROM images") == good - 1


def test_dry_runs_of_orders_write_nothing_and_list_what_would_change(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    dry = summary_of(sync(standin, database_url, "--all", "--dry-run", "--json"))
    assert dry["dry_run"] and dry["run_id"] is None
    assert dry["orders_inserted"] == len(account.orders) and dry["inserted"] == 400
    assert {c["order_id"] for c in dry["changes"] if "order_id" in c} == set(account.orders)
    if engine.dialect.name == "sqlite":
        assert not Path(engine.url.database or "").exists()

    assert sync(standin, database_url, "--all").exit_code == 0
    gone = next(iter(account.orders))
    gone_images = account.delete_order(gone)
    dry = summary_of(sync(standin, database_url, "--all", "--dry-run", "--json"))
    assert dry["orders_deleted"] == 1 and dry["deleted"] == len(gone_images)
    assert {"order_id": gone, "change": "deleted"} in dry["changes"]
    # By ID too: a changed order and one that is gone.
    changed = next(o for o in account.orders.values() if o.order_id != gone)
    changed.name = "Renamed"
    args = [
        "--order",
        changed.order_id,
        "--order",
        gone,
        "--dry-run",
        "--json",
        "--max-deletes",
        "50",
    ]
    by_id = summary_of(sync(standin, database_url, *args))
    assert by_id["orders_updated"] == 1 and by_id["orders_deleted"] == 1
    assert {"order_id": changed.order_id, "change": "changed"} in by_id["changes"]
    assert scalar(engine, "SELECT count(*) FROM orders WHERE deleted_at IS NOT NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM orders WHERE name = 'Renamed'") == 0
    assert scalar(engine, "SELECT count(*) FROM sync_runs") == 1


def test_status_shows_orders(standin: StandIn, account: SampleAccount, database_url: str) -> None:
    assert sync(standin, database_url, "--all").exit_code == 0
    shown = run_cli("status", "--database-url", database_url)
    assert shown.exit_code == 0, shown.output
    processed = sum(1 for o in account.orders.values() if o.status == "processed")
    assert "orders by status" in shown.stdout
    assert "processed" in shown.stdout and str(processed) in shown.stdout
    assert f"orders {len(account.orders)}" in shown.stdout
    as_json = json.loads(run_cli("status", "--json", "--database-url", database_url).stdout)
    assert as_json["orders_by_status"]["processed"] == processed
    assert as_json["runs"][0]["orders_inserted"] == len(account.orders)


def test_an_account_that_vanished_trips_the_deletion_guard_for_orders(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    """A listing that comes back empty (say, the key of another, empty account) makes every
    mirrored order 404 by ID: over the guard's limit, none is marked and the run exits 3."""
    assert sync(standin, database_url, "--all").exit_code == 0
    for order_id in list(account.orders):
        account.delete_order(order_id)
    result = sync(standin, database_url, "--all")
    assert result.exit_code == 3, result.output
    assert "orders that are in the mirror" in result.stderr
    assert scalar(engine, "SELECT count(*) FROM orders WHERE deleted_at IS NOT NULL") == 0
    assert scalar(engine, "SELECT count(*) FROM images WHERE deleted_at IS NOT NULL") == 0
    assert rows(engine, "SELECT status FROM sync_runs ORDER BY id DESC LIMIT 1") == [
        {"status": "failed"}
    ]


def test_all_with_unfinished_fetches_no_embedded_image_again(
    standin: StandIn, account: SampleAccount, database_url: str
) -> None:
    assert sync(standin, database_url, "--all").exit_code == 0
    standin.state.reset()
    summary = summary_of(sync(standin, database_url, "--all", "--unfinished", "--json"))
    assert summary["requested"] == summary["unchanged"] == 400
    assert standin.state.paths == {"GET /v3/orders/": summary["api_requests"]}


def test_all_with_older_than_rechecks_only_the_images_no_listed_order_brings(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    """The README's cron line. Images synced by ID before `--all` whose order was deleted
    before the mirror knew it, and parents outside the account's orders, are in no listed
    order and under no mirrored order: `--all` alone never looks at them again (found by a
    fault campaign). `--older-than` picks them, as `--all` refreshes every image it lists."""
    gone_order, kept_order = list(account.orders)[:2]
    gone_images = list(account.orders[gone_order].image_ids)
    kept_image = account.orders[kept_order].image_ids[0]
    assert sync(standin, database_url, *gone_images, kept_image).exit_code == 0
    account.delete_order(gone_order)
    pages = -(-len(account.orders) // 15)

    alone = summary_of(sync(standin, database_url, "--all", "--json"))
    assert alone["api_requests"] == pages and alone["deleted"] == 0
    stale = "SELECT count(*) FROM images WHERE deleted_at IS NULL AND order_id = :o"
    assert scalar(engine, stale, o=gone_order) == len(gone_images)

    standin.state.reset()
    args = ["--all", "--older-than", "0s", "--max-deletes", "40", "--json"]
    summary = summary_of(sync(standin, database_url, *args))
    assert summary["status"] == "succeeded", summary
    assert summary["deleted"] == len(gone_images)
    assert summary["api_requests"] == pages + len(gone_images)
    assert standin.state.requests[kept_image] == 0  # it came with its order
    adds_up(summary)
    assert scalar(engine, stale, o=gone_order) == 0


def test_a_next_offset_inside_an_order_does_not_mislead_the_listing(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    """The next page is asked for as soon as its token is read from the raw page; when an
    order itself has a `next_offset` property (after the pagination, so it is the last one
    in the bytes), the guess is wrong and the right page is asked for instead."""
    first = account.page(offset=None, per_page=15, sort="date")
    orders = [{**order, "next_offset": "not-a-token"} for order in first["orders"]]
    standin.state.script(LISTING, Fault(json={"pagination": first["pagination"], "orders": orders}))
    summary = summary_of(sync(standin, database_url, "--all", "--json"))
    assert summary["status"] == "succeeded", summary
    assert set(mirrored_orders(engine)) == set(account.orders)
    assert summary["requested"] == 400
    extra = scalar(engine, "SELECT extra FROM orders WHERE order_id = :o", o=orders[0]["order_id"])
    assert (json.loads(extra) if isinstance(extra, str) else extra)["next_offset"] == "not-a-token"


def test_a_rejected_key_stops_the_listing_with_exit_3_and_quiet_prints_nothing(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    common = ["--base-url", standin.url, "--database-url", database_url, "--all"]
    rejected = run_cli("sync", *common, "--api-key", "wrong-key")
    assert rejected.exit_code == 3, rejected.output
    assert "HTTP 401" in rejected.stderr and "wrong-key" not in rejected.output
    assert standin.state.total_requests == 1  # no retry, no further page
    quiet = run_cli("sync", *common, "--api-key", KEY, "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""
    assert scalar(engine, "SELECT count(*) FROM orders") == len(account.orders)


def test_a_redirected_listing_stops_with_exit_3_naming_the_address(
    standin: StandIn, account: SampleAccount, database_url: str
) -> None:
    path = "/v3/orders/?per_page=15&sort=date"
    standin.state.script(LISTING, Fault(status=308, location=f"https://api.example.test{path}"))
    result = sync(standin, database_url, "--all", "--api-key", KEY)
    assert result.exit_code == 3, result.output
    assert f"HTTP 308 Permanent Redirect, redirecting {path}" in result.stderr
    assert "use --base-url https://api.example.test." in result.stderr
    assert standin.state.total_requests == 1  # no retry, no further page


def test_wrong_typed_order_fields_are_kept_in_extra_with_a_warning(
    standin: StandIn, account: SampleAccount, database_url: str, engine: Engine
) -> None:
    order_id = next(iter(account.orders))
    body = account.order_body(order_id)
    assert body is not None
    standin.state.script(order_id, Fault(json={**body, "total_images": "12", "created_at": 5}))
    result = sync(standin, database_url, "--order", order_id)
    assert result.exit_code == 0, result.output
    assert f"warning: order {order_id}: total_images" in result.stderr
    [row] = rows(engine, "SELECT total_images, created_at, extra FROM orders")
    assert row["total_images"] is None and row["created_at"] is None
    extra = json.loads(row["extra"]) if isinstance(row["extra"], str) else row["extra"]
    assert extra["total_images"] == "12" and extra["created_at"] == 5


# --- on a terminal --------------------------------------------------------------------------


def test_the_progress_of_a_listing_counts_images_instead_of_showing_a_total(
    standin: StandIn, account: SampleAccount, database_url: str
) -> None:
    """Orders bring images nobody can count beforehand: the bar counts them as they come
    (it used to show 100 % after the first page). A run by ID keeps its percentage."""
    standin.state.latency = 0.01
    common = ["--base-url", standin.url, "--database-url", database_url, "--api-key", KEY]
    shown = on_a_terminal("sync", "--all", *common)
    renders = [r for r in re.split(r"[\r\n]", shown) if "syncing" in r]
    assert renders and not any("%" in r for r in renders), renders
    counts = [int(m.group(1)) for r in renders if (m := re.search(r"(\d+)\s+images", r))]
    assert counts == sorted(counts) and len(set(counts)) > 3
    assert counts[-1] == len(account.image_ids())
    assert f"synced {len(account.image_ids())} images" in shown

    by_id = on_a_terminal("sync", *account.image_ids()[:50], *common)
    renders = [r for r in re.split(r"[\r\n]", by_id) if "syncing" in r]
    assert renders and "100%" in renders[-1] and "0%" in renders[0], renders
