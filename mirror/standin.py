"""A local stand-in of the Autoenhance API: a real HTTP/1.1 server on loopback.

It serves a realistic, deterministic image record for every UUID (`record_for`), and can be
scripted per image ID to misbehave: a status with `Retry-After`, latency, a stalled answer, a
dropped connection (before or mid-body), a malformed or replaced body, extra properties, or a
404. Tests, benchmarks and `autoenhance-mirror demo` use it, so nothing needs the network.

It is written on asyncio streams rather than a framework so that faults can be injected at the
byte level (a connection closed half-way through a body is not something frameworks offer).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mirror.sample_account import SampleAccount

_IMAGE_PATH = re.compile(r"^/v3/images/([^/?#]+)/?$")
_ORDER_PATH = re.compile(r"^/v3/orders/([^/?#]+)/?$")
_LISTING_PATH = re.compile(r"^/v3/orders/?$")
LISTING = "listing"  # the fault-script key of the order listing's pages
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_ANY_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    302: "Found",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_ORDER_NAMESPACE = uuid.UUID("6f1d3a52-0c8e-4b7a-9d21-5e4c3b2a1f00")

_SCENES = ["kitchen", "living_room", "bedroom", "bathroom", "garden", "patio", "facade", "dining"]
_ENHANCE_TYPES = ["warm", "neutral", "modern", "authentic"]
_AI_VERSIONS = ["5.x", "5.3", "latest", "4.x"]
_CLOUD_TYPES = ["CLEAR", "LOW_CLOUD", "HIGH_CLOUD", None]
_WINDOW_PULL_TYPES = ["NONE", "ONLY_WINDOWS", "WINDOWS_WITH_SKIES"]
_USERS = ["auth0|6363dbcb77f7e74122ea6350", "auth0|64a1f0c2d9e8b7a6c5d4e3f2"]


def record_for(image_id: str) -> dict[str, Any]:
    """The image record the stand-in serves for `image_id`: the same every time.

    Mixes the states of api-notes.md §10: processed, processing (`ai_version: "latest"`, no
    scene yet), error with a `status_reason`, restaged sub-images with `parent_image_id`,
    `restage` and `finetune_settings`, and now and then an unknown property.
    """
    image_id = image_id.lower()
    rng = random.Random(uuid.UUID(image_id).int)
    roll = rng.random()
    status, reason = "processed", None
    if roll < 0.12:
        status = "processing"
    elif roll < 0.18:
        status, reason = "error", "daily enhancement limit reached"
    elif roll < 0.20:
        status = "expired"
    restaged = status == "processed" and rng.random() < 0.12
    record: dict[str, Any] = {
        "ai_version": "latest" if status == "processing" else rng.choice(_AI_VERSIONS),
        "cloud_type": rng.choice(_CLOUD_TYPES),
        "date_added": 1_735_689_600_000 + rng.randrange(0, 60_000_000_000),
        "downloaded": rng.random() < 0.3,
        "enhance": True,
        "enhance_type": rng.choice(_ENHANCE_TYPES),
        "finetune_settings": rng.choice([None, {}, {"brightness": 0.15, "contrast": -0.05}]),
        "image_id": image_id,
        "image_name": f"IMG_{rng.randrange(1000, 9999)}.JPG",
        "lens_correction": rng.random() < 0.9,
        "metadata": rng.choice([{}, {"listing_ref": f"MLS-{rng.randrange(10000, 99999)}"}]),
        "order_id": str(uuid.uuid5(_ORDER_NAMESPACE, str(rng.randrange(40)))),
        "parent_image_id": None,
        "preset_id": rng.choice([None, None, "preset_2b7f0c"]),
        "privacy": rng.choice([True, False, None]),
        "rating": rng.randrange(0, 6) if status == "processed" else 0,
        "restage": None,
        "scene": None if status == "processing" else rng.choice(_SCENES),
        "sky_replacement": rng.random() < 0.6,
        "status": status,
        "status_reason": reason,
        "upscale": rng.random() < 0.2,
        "user_id": rng.choice(_USERS),
        "vertical_correction": rng.random() < 0.8,
        "window_pull": rng.choice([True, False, None]),
        "window_pull_type": rng.choice(_WINDOW_PULL_TYPES),
    }
    if restaged:
        record["parent_image_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        record["restage"] = {
            "fire_in_fireplaces": rng.choice(["AS_SHOT", "ALIGHT"]),
            "grass": rng.choice(["AS_SHOT", "GREEN"]),
            "photographer": "REMOVE",
            "tvs": rng.choice(["AS_SHOT", "BLACK_OUT"]),
        }
        record["finetune_settings"] = {"brightness": 0.15, "contrast": -0.05, "saturation": 0.1}
    if rng.random() < 0.05:
        record["render_revision"] = rng.randrange(1, 5)
    return record


@dataclass
class Fault:
    """One scripted misbehaviour, used for one request of an image.

    status: answer with this HTTP status (and an API-style JSON error body);
    retry_after: the Retry-After header to send with it; location: the Location header to send
    with it (a redirect); delay: seconds to wait first
    (longer than the client's timeout = a timeout); drop: close the connection without an
    answer; drop_mid_body: send the headers and half the body, then close; body: send these raw
    bytes/text as a 200 body; json: send this JSON value as the 200 body; extra: properties
    merged into the normal record; chunked: send the body with chunked transfer-encoding;
    close: answer with `Connection: close` and close the connection; hangup: answer, then
    close the connection without saying so (as servers do with idle keep-alive connections).
    """

    status: int | None = None
    retry_after: str | None = None
    location: str | None = None
    delay: float = 0.0
    drop: bool = False
    drop_mid_body: bool = False
    body: str | bytes | None = None
    json: Any = None
    extra: dict[str, Any] | None = None
    chunked: bool = False
    close: bool = False
    hangup: bool = False

    def status_headers(self) -> dict[str, str]:
        """The headers that go with the scripted status."""
        headers = {"Retry-After": self.retry_after, "Location": self.location}
        return {name: value for name, value in headers.items() if value}

    @classmethod
    def from_dict(cls, data: Any) -> Fault:
        """A fault from its JSON form; raises ValueError naming the first wrong property."""
        if not isinstance(data, dict):
            raise ValueError(f"a fault is a JSON object, not {json.dumps(data)[:40]}")
        for name, value in data.items():
            kinds = _FAULT_PROPERTIES.get(name)
            if kinds is None:
                known = ", ".join(_FAULT_PROPERTIES)
                raise ValueError(f"unknown property {name!r} (known: {known})")
            wrong_bool = type(value) is bool and not {bool, object} & set(kinds)
            if not isinstance(value, kinds) or wrong_bool:
                raise ValueError(f"{name}: {json.dumps(value)[:40]} is not {_KIND_NAMES[kinds]}")
        status = data.get("status")
        if status is not None and not 100 <= status <= 599:
            raise ValueError(f"status: {status} is not an HTTP status (100-599)")
        if data.get("delay", 0) < 0:
            raise ValueError("delay: seconds cannot be negative")
        return cls(**data)


_TEXT: tuple[type, ...] = (str, type(None))
_FAULT_PROPERTIES: dict[str, tuple[type, ...]] = {
    "status": (int, type(None)),
    "retry_after": _TEXT,
    "location": _TEXT,
    "delay": (int, float),
    "drop": (bool,),
    "drop_mid_body": (bool,),
    "body": _TEXT,
    "json": (object,),
    "extra": (dict, type(None)),
    "chunked": (bool,),
    "close": (bool,),
    "hangup": (bool,),
}
_KIND_NAMES = {
    (int, type(None)): "an integer or null",
    _TEXT: "a string or null",
    (int, float): "a number",
    (bool,): "true or false",
    (dict, type(None)): "an object or null",
    (object,): "a JSON value",
}


@dataclass
class StandInState:
    """What the stand-in serves and what it saw; shared between its thread and a test's."""

    latency: float = 0.0
    require_key: str | None = None  # when set, any other x-api-key gets 401
    # By ID only, persistently: orders and the listing embed the account's images as they are
    # (change those with `account.edit_image` / `delete_image`, which both endpoints see), so
    # these can also make the two endpoints disagree, as a live API does for a moment.
    missing: set[str] = field(default_factory=set)  # answered 404
    records: dict[str, Any] = field(default_factory=dict)  # replaces record_for
    faults: dict[str, list[Fault]] = field(default_factory=dict)  # consumed one per request
    requests: Counter[str] = field(default_factory=Counter)  # image_id → requests seen
    paths: Counter[str] = field(default_factory=Counter)  # "GET /v3/images/{id}" → count
    # (any UUID in a path is shown as {id}, so tests can assert which endpoints were called)
    times: list[float] = field(default_factory=list)  # monotonic arrival of each API request
    last_headers: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # A consistent account of orders (spec §7); without one, orders are unknown (404).
    account: SampleAccount | None = None
    # Called with the number of listing pages served so far, before the next is answered:
    # tests change the account there, as a live account changes under a listing.
    on_listing: Callable[[int], None] | None = None
    listing_pages: int = 0

    def script(self, key: str, *faults: Fault) -> None:
        """Faults for the next requests of an image (its ID), an order (its ID, as given) or
        the listing's pages (LISTING)."""
        if _UUID.match(key):
            key = key.lower()
        with self.lock:
            self.faults.setdefault(key, []).extend(faults)

    def load_faults(self, data: Any) -> None:
        """Script faults from JSON: {"<image id>": [{"status": 429, "retry_after": "1"}, ...]}
        (an order ID or LISTING as key too); raises ValueError naming what is wrong, and
        scripts nothing then."""
        if not isinstance(data, dict):
            raise ValueError('the script is an object: {"<image id>": [{"status": 429}, ...]}')
        scripted: list[tuple[str, list[Fault]]] = []
        for key, faults in data.items():
            if not isinstance(faults, list):
                raise ValueError(f"{key}: a list of faults, not {json.dumps(faults)[:40]}")
            parsed = []
            for position, fault in enumerate(faults):
                try:
                    parsed.append(Fault.from_dict(fault))
                except ValueError as exc:
                    raise ValueError(f"{key}[{position}]: {exc}") from None
            scripted.append((key, parsed))
        for key, faults in scripted:
            self.script(key, *faults)

    @property
    def total_requests(self) -> int:
        return sum(self.paths.values())

    def max_per_second(self) -> int:
        """The most API requests (images, orders, listing pages) that arrived within any
        one-second window."""
        times = sorted(self.times)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.total_requests,
            "image_requests": sum(self.requests.values()),
            "max_per_second": self.max_per_second(),
            "max_in_flight": self.max_in_flight,
            "paths": dict(self.paths),
        }

    def reset(self) -> None:
        """Forget what was seen (for benchmarks that reuse one stand-in across runs)."""
        with self.lock:
            self.requests.clear()
            self.paths.clear()
            self.times.clear()
            self.max_in_flight = 0
            self.listing_pages = 0

    def _next_fault(self, key: str) -> Fault | None:
        """The next scripted fault of an image ID, an order ID, or LISTING."""
        with self.lock:
            queue = self.faults.get(key)
            return queue.pop(0) if queue else None


class StandIn:
    """The server. `start()` runs it in a background thread (tests, demo); `serve()` blocks."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, state: StandInState | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.state = state or StandInState()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._failed: OSError | None = None  # why it could not listen (port taken, bad host)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"

    def start(self) -> StandIn:
        self._thread = threading.Thread(target=self._run, name="stand-in", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the stand-in did not start")
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve(self) -> None:
        """Serve in this thread until interrupted."""
        self._run()

    def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except OSError as exc:
            if self._ready.is_set():
                raise
            self._failed = exc  # raised by `start`, in the caller's thread
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        with contextlib.suppress(asyncio.CancelledError):
            async with self._server:
                await self._server.serve_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                keep_alive = await self._respond(writer, method, target, headers)
                if not keep_alive or headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the stand-in is shutting down with this request in flight
        except ValueError:
            with contextlib.suppress(ConnectionError):
                await _send(writer, 400, b'{"detail": {}, "message": "Bad Request"}')
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _respond(
        self, writer: asyncio.StreamWriter, method: str, target: str, headers: dict[str, str]
    ) -> bool:
        """Answer one request; returns False when the connection must be closed."""
        state = self.state
        path, _, query = target.partition("?")
        match = _IMAGE_PATH.match(path)
        with state.lock:
            state.paths[f"{method} {_path_shape(path)}"] += 1
        if path == "/__standin/stats":
            await _send(writer, 200, json.dumps(state.stats()).encode())
            return True
        if path == "/__standin/reset":
            state.reset()
            await _send(writer, 200, b"{}")
            return True
        if method != "GET":
            await _send(writer, 405, _error_body(405))
            return True
        if _LISTING_PATH.match(path):
            return await self._respond_listing(writer, query, headers)
        if (order := _ORDER_PATH.match(path)) is not None:
            return await self._respond_order(writer, urllib.parse.unquote(order.group(1)))
        if match is None or not _UUID.match(match.group(1)):
            await _send(writer, 404, _error_body(404))
            return True
        image_id = match.group(1).lower()
        with state.lock:
            state.requests[image_id] += 1
            state.times.append(time.monotonic())
            state.last_headers = dict(headers)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await self._respond_image(writer, image_id, headers)
        finally:
            with state.lock:
                state.in_flight -= 1

    async def _respond_image(
        self, writer: asyncio.StreamWriter, image_id: str, headers: dict[str, str]
    ) -> bool:
        # The answer is prepared first and sent `latency` after the request arrived, so the
        # stand-in's own work does not add to the latency a benchmark asks for.
        loop = asyncio.get_running_loop()
        state = self.state
        fault = state._next_fault(image_id) or Fault()
        send_at = loop.time() + state.latency + fault.delay
        status, body, extra_headers, keep_alive = self._answer(image_id, headers, fault)
        if (wait := send_at - loop.time()) > 0:
            await asyncio.sleep(wait)
        if status is None:  # drop the connection without an answer
            return False
        if fault.drop_mid_body and status == 200:
            await _send(writer, 200, body, cut_at=len(body) // 2)
            return False
        if fault.close:
            extra_headers = {**extra_headers, "Connection": "close"}
        await _send(writer, status, body, extra_headers, chunked=fault.chunked)
        return keep_alive and not fault.close and not fault.hangup

    async def _respond_order(self, writer: asyncio.StreamWriter, order_id: str) -> bool:
        """GET /v3/orders/{id}: no key needed (api-notes §5)."""
        state = self.state
        arrived = asyncio.get_running_loop().time()
        with state.lock:
            body = state.account.order_body(order_id) if state.account else None
        return await self._send_faulted(writer, order_id, body, arrived)

    async def _respond_listing(
        self, writer: asyncio.StreamWriter, query: str, headers: dict[str, str]
    ) -> bool:
        """GET /v3/orders/?offset=&per_page=&sort=: needs the key when one is required."""
        state = self.state
        arrived = asyncio.get_running_loop().time()
        if state.require_key is not None and headers.get("x-api-key") != state.require_key:
            await _send(writer, 401, _error_body(401))
            return True
        with state.lock:
            served = state.listing_pages
            state.listing_pages += 1
        if state.on_listing is not None:
            state.on_listing(served)
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        body: Any
        try:
            per_page = int(params["per_page"]) if "per_page" in params else None
            with state.lock:
                if state.account is None:
                    pagination = {"next_offset": None, "per_page": min(15, per_page or 5)}
                    body = {"orders": [], "pagination": pagination}
                else:
                    body = state.account.page(
                        offset=params.get("offset"), per_page=per_page, sort=params.get("sort")
                    )
        except ValueError as exc:
            await _send(writer, 422, json.dumps({"detail": {}, "message": str(exc)}).encode())
            return True
        return await self._send_faulted(writer, LISTING, body, arrived)

    async def _send_faulted(
        self, writer: asyncio.StreamWriter, key: str, body: Any, arrived: float
    ) -> bool:
        """Answer with `body` as JSON (404 when None), unless a fault is scripted for `key`,
        `latency` after the request `arrived` (building the body is not added to it)."""
        with self.state.lock:
            self.state.times.append(time.monotonic())
        fault = self.state._next_fault(key) or Fault()
        raw = _body_bytes(body, fault)  # before the wait: serialising is not latency
        await _sleep_until(arrived + self.state.latency + fault.delay)
        if fault.drop:
            return False
        if fault.status is not None and fault.status != 200:
            extra_headers = fault.status_headers()
            await _send(writer, fault.status, _error_body(fault.status), extra_headers)
            return True
        if raw is None:
            await _send(writer, 404, _error_body(404))
            return True
        if fault.drop_mid_body:
            await _send(writer, 200, raw, cut_at=len(raw) // 2)
            return False
        extra_headers = {"Connection": "close"} if fault.close else {}
        await _send(writer, 200, raw, extra_headers, chunked=fault.chunked)
        return not fault.close and not fault.hangup

    def _answer(
        self, image_id: str, headers: dict[str, str], fault: Fault
    ) -> tuple[int | None, bytes, dict[str, str], bool]:
        """(status or None to drop, body, extra headers, keep the connection open)."""
        state = self.state
        if state.require_key is not None and headers.get("x-api-key") != state.require_key:
            return 401, _error_body(401), {}, True
        if fault.drop:
            return None, b"", {}, False
        if fault.status is not None and fault.status != 200:
            extra_headers = fault.status_headers()
            return fault.status, _error_body(fault.status), extra_headers, True
        if image_id in state.missing or (state.account and image_id in state.account.gone):
            return 404, _error_body(404), {}, True
        if fault.body is not None:
            body = fault.body.encode() if isinstance(fault.body, str) else fault.body
        elif fault.json is not None:
            body = json.dumps(fault.json).encode()
        else:
            record = state.records.get(image_id)
            if record is None:
                with state.lock:
                    in_account = state.account is not None and state.account.holds_image(image_id)
                    if in_account:
                        assert state.account is not None
                        record = state.account.image_record(image_id)
                record = record or record_for(image_id)
            if fault.extra:
                record = {**record, **fault.extra}
            body = json.dumps(record).encode()
        return 200, body, {}, True


def _path_shape(path: str) -> str:
    """A path as the stats count it: any UUID as {id}, any order ID as {id}."""
    if _ORDER_PATH.match(path):
        return "/v3/orders/{id}"
    if _LISTING_PATH.match(path):
        return "/v3/orders/"
    return _ANY_UUID.sub("{id}", path)


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise ValueError("bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return parts[0], parts[1], headers


async def _sleep_until(deadline: float) -> None:
    """Wait until the loop's clock reaches `deadline`, to within a fraction of a millisecond.

    asyncio alone wakes up to 1 ms late (epoll counts whole milliseconds): 0.85 ms on each
    50 ms listing page, measured, which the whole-account benchmark would add to the client.
    So sleep to just short of it, then yield to the loop until it is due (order answers and
    listing pages only: images keep the plain sleep, being many more)."""
    loop = asyncio.get_running_loop()
    if (early := deadline - loop.time() - 0.0015) > 0:
        await asyncio.sleep(early)
    while loop.time() < deadline:
        await asyncio.sleep(0)


def _body_bytes(body: Any, fault: Fault) -> bytes | None:
    """The bytes of a 200 answer for `body` as the fault shapes them; None for a 404."""
    if body is None:
        return None
    if fault.body is not None:
        return fault.body.encode() if isinstance(fault.body, str) else fault.body
    if fault.json is not None:
        return json.dumps(fault.json).encode()
    return json.dumps({**body, **(fault.extra or {})}).encode()


def _error_body(status: int) -> bytes:
    # The API's (APIFlask) error shape, api-notes.md §3.
    return json.dumps({"detail": {}, "message": _REASONS.get(status, "Error")}).encode()


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    extra_headers: dict[str, str] | None = None,
    *,
    cut_at: int | None = None,
    chunked: bool = False,
) -> None:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json"]
    if chunked:
        head.append("Transfer-Encoding: chunked")
        third = max(1, len(body) // 3)
        pieces = [body[i : i + third] for i in range(0, len(body), third)]
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        head.append(f"Content-Length: {len(body)}")
    head += [f"{name}: {value}" for name, value in (extra_headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    writer.write(body if cut_at is None else body[:cut_at])
    await writer.drain()
