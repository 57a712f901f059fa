"""`sync --all` following an account that changes as a live one does, run after run: images
processed, renamed, failed, moved, deleted alone and coming back; orders created, renamed and
deleted; now and then while a run reads the listing. After every run the counts and the
dry run's changes name exactly what changed since the mirror's last state, the mirror then
equals what the API serves, nothing live is marked deleted, each image is asked for at most
once, `api_requests` is what the stand-in saw, and the history keeps its invariants. On both
databases, with a few seeds: a failure prints its seed and round."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from helpers import rows, run_cli, scalar
from sqlalchemy import Engine
from test_history import _plain, assert_history_consistent

from mirror.sample_account import SampleAccount, SampleOrder
from mirror.standin import LISTING, Fault, StandIn

KEY = "evolution-key"
ROUNDS = 8
# the columns the changes below touch (their other columns are the stand-in's fixed records)
IMAGE_COLUMNS = ["status", "status_reason", "scene", "image_name", "order_id", "downloaded"]
ORDER_COLUMNS = ["name", "status", "total_images"]


@dataclass
class State:
    """Orders and images as the API serves them, or as the mirror holds them: ID → the
    compared columns, and the IDs marked deleted (a served state has none)."""

    orders: dict[str, dict[str, Any]]
    images: dict[str, dict[str, Any]]
    deleted_orders: set[str]
    deleted_images: set[str]

    @classmethod
    def served(cls, account: SampleAccount) -> State:
        orders = {}
        for order_id in account.orders:
            body = account.order_body(order_id)
            assert body is not None
            orders[order_id] = {c: body[c] for c in ORDER_COLUMNS} | {"extra": _extra(body)}
        images = {}
        for image_id in account.image_ids():
            record = account.image_record(image_id)
            images[image_id] = {c: record.get(c) for c in IMAGE_COLUMNS}
            images[image_id]["render_revision"] = record.get("render_revision")
        return cls(orders, images, set(), set())

    @classmethod
    def mirrored(cls, engine: Engine) -> State:
        orders, deleted_orders = {}, set()
        for row in rows(engine, "SELECT * FROM orders"):
            extra = _plain(row["extra"]) or {}
            orders[row["order_id"]] = {c: row[c] for c in ORDER_COLUMNS} | {"extra": extra}
            if row["deleted_at"] is not None:
                deleted_orders.add(row["order_id"])
        images, deleted_images = {}, set()
        for row in rows(engine, "SELECT * FROM images"):
            image = {c: row[c] for c in IMAGE_COLUMNS}
            image["downloaded"] = None if row["downloaded"] is None else bool(row["downloaded"])
            image["render_revision"] = (_plain(row["extra"]) or {}).get("render_revision")
            images[row["image_id"]] = image
            if row["deleted_at"] is not None:
                deleted_images.add(row["image_id"])
        return cls(orders, images, deleted_orders, deleted_images)


def _extra(order_body: dict[str, Any]) -> dict[str, Any]:
    """The order's properties the `orders` table has no column for (`extra`)."""
    known = {
        "order_id", "name", "created_at", "last_updated_at", "is_deleted", "is_merging",
        "is_processing", "status", "total_images", "default_image_sort_order", "images",
    }  # fmt: skip
    return {k: v for k, v in order_body.items() if k not in known}


def expected_changes(mirror: State, served: State) -> set[tuple[str, str, str]]:
    """What a run that reads the whole account must find: (of, ID, change)."""
    changes: set[tuple[str, str, str]] = set()
    for of, held, live, deleted in (
        ("order", mirror.orders, served.orders, mirror.deleted_orders),
        ("image", mirror.images, served.images, mirror.deleted_images),
    ):
        for key, columns in live.items():
            if key not in held:
                changes.add((of, key, "new"))
            elif key in deleted or held[key] != columns:
                changes.add((of, key, "changed"))
        for key in held.keys() - live.keys() - deleted:
            changes.add((of, key, "deleted"))
    return changes


def counts_of(changes: set[tuple[str, str, str]], served: State) -> dict[str, int]:
    """The `--json` counts those changes make, the rest of what is served being unchanged."""
    names = {"new": "inserted", "changed": "updated", "deleted": "deleted"}
    counts = {}
    for of, prefix, live in (("image", "", served.images), ("order", "orders_", served.orders)):
        mine = [c for c in changes if c[0] == of]
        for change, name in names.items():
            counts[prefix + name] = sum(1 for c in mine if c[2] == change)
        counts[prefix + "unchanged"] = len(live) - sum(1 for c in mine if c[2] != "deleted")
        counts[prefix + "failed"] = counts[prefix + "not_found"] = 0
    return counts


class Upstream:
    """Changes the account the way its users and the API do; `seed` replays them."""

    def __init__(self, account: SampleAccount, rng: random.Random) -> None:
        self.account = account
        self.rng = rng
        self.made = 0

    def change(self, *, comebacks: bool) -> str:
        account, rng = self.account, self.rng
        images = sorted(account.image_ids())
        orders = sorted(account.orders)
        self.made += 1
        kinds = ["process", "rename", "fail", "download", "unknown_property", "new_order"]
        kinds += ["move", "delete_image", "delete_order", "edit_order"]
        if comebacks and account.gone:
            kinds.append("comeback")
        kind = rng.choice(kinds)
        image = rng.choice(images)
        if kind == "process":
            account.edit_image(image, status="processed", status_reason=None, scene="kitchen")
        elif kind == "rename":
            account.edit_image(image, image_name=f"renamed-{self.made}.jpg")
        elif kind == "fail":
            account.edit_image(image, status="error", status_reason=f"failed {self.made}")
        elif kind == "download":
            account.edit_image(image, downloaded=not account.image_record(image)["downloaded"])
        elif kind == "unknown_property":
            account.edit_image(image, render_revision=self.made)
        elif kind == "new_order":
            created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(10**6))
            new_images = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in "abc"]
            order = SampleOrder(f"new-{self.made}", f"New {self.made}", created, created)
            account.add_order(order, new_images[: rng.randint(0, 3)])
        elif kind == "move":
            account.move_image(image, rng.choice(orders))
        elif kind == "delete_image":
            account.delete_image(image)
        elif kind == "delete_order" and len(orders) > 3:
            account.delete_order(rng.choice(orders))
        elif kind == "edit_order":
            order = account.orders[rng.choice(orders)]
            if rng.random() < 0.5:
                order.name = f"Renamed {self.made}"
            else:
                order.extra = {"branding": self.made}
        elif kind == "comeback":
            account.move_image(rng.choice(sorted(account.gone)), rng.choice(orders))
        return kind


def sync_all(
    standin: StandIn, database_url: str, *args: str, faulted: str | None = None
) -> dict[str, Any]:
    """`sync --all` (with `args`) that must succeed; checks what every run must hold (the
    image `faulted`, if any, was answered once with a transient fault before)."""
    standin.state.reset()
    result = run_cli(
        "sync", "--all", "--json", "--api-key", KEY, "--base-url", standin.url,
        "--database-url", database_url, "--max-rate", "0", "--retries", "3",
        "--max-deletes", "1000", *args,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    assert summary["status"] == "succeeded", summary
    assert summary["api_requests"] == standin.state.total_requests
    asked = standin.state.requests.copy()
    if faulted in asked:
        asked[faulted] -= 1
    assert max(asked.values(), default=0) <= 1, "an image was asked for twice"
    return summary


TRANSIENT = Fault(status=429, retry_after="0")  # retried at once, invisible in the outcome


def dry_run_changes(standin: StandIn, database_url: str, *args: str) -> set[tuple[str, str, str]]:
    summary = sync_all(standin, database_url, "--dry-run", *args)
    assert summary["changes_left_out"] == 0
    return {
        ("image", c["image_id"], c["change"]) if "image_id" in c else
        ("order", c["order_id"], c["change"])
        for c in summary["changes"]
    }  # fmt: skip


def assert_mirror_is(engine: Engine, served: State) -> None:
    mirror = State.mirrored(engine)
    assert {k: mirror.orders[k] for k in served.orders} == served.orders
    assert {k: mirror.images[k] for k in served.images} == served.images
    assert mirror.deleted_orders == mirror.orders.keys() - served.orders.keys()
    assert mirror.deleted_images == mirror.images.keys() - served.images.keys()


def drift_while_listing(standin: StandIn, upstream: Upstream, chance: float) -> list[str]:
    """Makes the stand-in change the account as the listing's pages are served (each page
    with `chance`); returns the list the changes made are named in."""
    made: list[str] = []

    def change(served_pages: int) -> None:
        if served_pages and upstream.rng.random() < chance:
            with standin.state.lock:
                made.append(upstream.change(comebacks=False))

    standin.state.on_listing = change
    return made


@pytest.mark.parametrize("seed", [11, 23, 47])
def test_all_follows_an_account_that_changes_between_and_during_runs(
    standin: StandIn, database_url: str, engine: Engine, seed: int
) -> None:
    account = SampleAccount.generate(120, seed=seed, max_per_order=8)
    standin.state.account = account
    standin.state.require_key = KEY
    sync_all(standin, database_url)
    upstream = Upstream(account, random.Random(seed))
    rng = upstream.rng
    for round_ in range(ROUNDS):
        kinds = [upstream.change(comebacks=True) for _ in range(rng.randint(0, 6))]
        # --all with refreshes beside it: they must not change what is found, nor ask twice
        sources = rng.choice([[], [], ["--older-than", "0s"], ["--unfinished"]])
        note = f"seed {seed}, round {round_}, changes {kinds}, {sources}"
        served, mirror = State.served(account), State.mirrored(engine)
        changes = expected_changes(mirror, served)
        versions = scalar(engine, "SELECT count(*) FROM image_versions")

        assert dry_run_changes(standin, database_url, *sources) == changes, note
        assert State.mirrored(engine) == mirror, note

        # A transient fault for a listing page, and for an order and an image that this run
        # must ask for by ID (gone upstream, still live in the mirror), if there are any.
        standin.state.script(LISTING, *[TRANSIENT] * rng.randint(0, 1))
        faulted = None
        for held, live, deleted in (
            (mirror.orders, served.orders, mirror.deleted_orders),
            (mirror.images, served.images, mirror.deleted_images),
        ):
            if gone := sorted(held.keys() - live.keys() - deleted):
                faulted = rng.choice(gone)
                standin.state.script(faulted, TRANSIENT)
        drift = drift_while_listing(standin, upstream, chance=rng.choice([0, 0, 0.3]))
        summary = sync_all(standin, database_url, *sources, faulted=faulted)
        standin.state.on_listing = None
        assert not any(standin.state.faults.values()), "a fault was not met"
        assert_history_consistent(engine)
        if drift:
            # A change while the listing is read may be seen by this run or by the next:
            # whatever this one marked deleted is gone upstream, and the next catches up.
            note += f", during the listing {drift}"
            served, before, mirror = State.served(account), mirror, State.mirrored(engine)
            newly_deleted = mirror.deleted_images - before.deleted_images
            assert not newly_deleted & served.images.keys(), note
            assert not (mirror.deleted_orders - before.deleted_orders) & served.orders.keys()
            changes = expected_changes(mirror, served)
            versions = scalar(engine, "SELECT count(*) FROM image_versions")
            summary = sync_all(standin, database_url)
        expected = counts_of(changes, served)
        assert {k: summary[k] for k in expected} == expected, note
        new_versions = sum(1 for c in changes if c[0] == "image" and c[2] != "deleted")
        assert scalar(engine, "SELECT count(*) FROM image_versions") == versions + new_versions
        assert_mirror_is(engine, served)
        assert_history_consistent(engine)

    final = sync_all(standin, database_url)
    assert final["unchanged"] == len(account.image_ids()) and final["updated"] == 0
    assert final["orders_unchanged"] == len(account.orders)
