"""The stand-in itself: deterministic records and byte-level fault injection, over real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest
from helpers import new_ids

from mirror.standin import Fault, StandIn, record_for


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
    server.state.load_faults(json.loads('{"ABC": [{"status": 503}, {"drop": true}]}'))
    assert server.state.faults == {"abc": [Fault(status=503), Fault(drop=True)]}
