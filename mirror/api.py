"""The Autoenhance HTTP client: `GET /v3/images/{id}`, `GET /v3/orders/{id}` and the order
listing `GET /v3/orders/`, with retries, backoff and pacing.

Only read-only endpoints are ever called (spec §5): nothing here can change or buy anything.
Requests go through a `Transport`, one per fetch worker: the lean keep-alive connection of
`http11.py` by default, or a shared httpx client when a proxy is configured (httpx honours
HTTP(S)_PROXY / NO_PROXY; `MIRROR_HTTP_CLIENT=httpx` forces it).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import re
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mirror import __version__
from mirror.config import without_user_info
from mirror.errors import (
    ApiKeyRejected,
    ApiRedirected,
    ApiUnreachable,
    InputError,
    ProxyRejected,
)
from mirror.http11 import (
    BodyTooLarge,
    ConnectFailed,
    Connection,
    ConnectionLost,
    GetTemplate,
    HttpError,
    Origin,
    RawResponse,
)
from mirror.outcomes import Failure, FailureKind, Subject
from mirror.ratelimit import RateLimiter
from mirror.shown import printable

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx  # imported at run time only when a proxy needs it

USER_AGENT = f"autoenhance-mirror/{__version__} (+https://pypi.org/project/autoenhance-mirror/)"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# What a gateway or proxy answers when the service behind it does not (RFC 9110 §15.6.3-5).
GATEWAY_STATUS = frozenset({502, 503, 504})
MAX_BODY_BYTES = 4 * 1024 * 1024  # an image record is ~1 KB; anything this big is not one
# An order embeds all its images (hundreds of KB for a big one), a listing page 15 orders.
MAX_ORDER_BODY_BYTES = 64 * 1024 * 1024
RETRY_AFTER_CAP = 120.0  # seconds: a hostile Retry-After cannot stall a run for hours
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²"


@dataclass(frozen=True)
class ApiSettings:
    base_url: str
    api_version: str
    api_key: str | None = None
    timeout: float = 30.0
    retries: int = 3
    concurrency: int = 8
    connect_timeout: float = 10.0  # connecting and the TLS handshake, within `timeout`

    @property
    def effective_connect_timeout(self) -> float:
        return min(self.connect_timeout, self.timeout)

    def headers(self) -> dict[str, str]:
        headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "x-api-version": self.api_version,
        }
        if self.api_key:
            headers["x-api-key"] = self.api_key
        return headers


# Orders a listing page asks for: the most the API serves (api-notes §5).
LISTING_PER_PAGE = 15
# Oldest first: orders created while a listing is read land at its end, where it still
# finds them (newest first would shift every page and repeat orders instead).
LISTING_SORT = "date"


@dataclass(slots=True)
class Target:
    """One resource to GET, and whose failure it is when it cannot be had."""

    path: str
    of: Subject
    key: str | None = None  # the image ID or order ID; for a listing page its offset token

    @property
    def max_body(self) -> int:
        return MAX_BODY_BYTES if self.of == "image" else MAX_ORDER_BODY_BYTES

    @classmethod
    def image(cls, image_id: str) -> Target:
        return cls(f"/v3/images/{image_id}", "image", image_id)

    @classmethod
    def order(cls, order_id: str) -> Target:
        # Order IDs are chosen by users: "/", "#", "?" and the like must not shape the path.
        return cls(f"/v3/orders/{urllib.parse.quote(order_id, safe='')}", "order", order_id)

    @classmethod
    def listing_page(cls, offset: str | None) -> Target:
        query = {"per_page": LISTING_PER_PAGE, "sort": LISTING_SORT}
        if offset is not None:
            query["offset"] = offset
        return cls(f"/v3/orders/?{urllib.parse.urlencode(query)}", "listing", offset)

    @property
    def image_id(self) -> str | None:
        return self.key if self.of == "image" else None

    @property
    def order_id(self) -> str | None:
        return self.key if self.of == "order" else None

    def failure(self, kind: FailureKind, message: str, status: int | None = None) -> Failure:
        if self.of == "listing":
            message = f"order listing page (offset {self.key or 'start'}): {message}"
        return Failure(self.image_id, kind, message, status, order_id=self.order_id, of=self.of)


@dataclass(slots=True)
class Fetched:
    """A 200 response: the raw body, still to be parsed."""

    target: Target
    body: bytes

    @property
    def image_id(self) -> str:
        assert self.target.key is not None
        return self.target.key


FetchResult = Fetched | Failure  # a 200's body, or why not (after any retries)


class Transport(Protocol):
    """Sends one GET at a time; raises `http11` errors or TimeoutError."""

    async def get(self, path: str, max_body: int = MAX_BODY_BYTES) -> RawResponse: ...

    async def aclose(self) -> None: ...


class Http11Transport:
    """One dedicated keep-alive connection (see `http11.py` for why)."""

    def __init__(self, settings: ApiSettings, ssl_context: ssl.SSLContext | None) -> None:
        origin = Origin.parse(settings.base_url)
        self._template = GetTemplate(origin, settings.headers())
        self._connection = Connection(
            origin, ssl_context=ssl_context, connect_timeout=settings.effective_connect_timeout
        )

    async def get(self, path: str, max_body: int = MAX_BODY_BYTES) -> RawResponse:
        return await self._connection.get(self._template.head(path), max_body=max_body)

    async def aclose(self) -> None:
        self._connection.close()


class HttpxTransport:
    """A view on a shared httpx client, for set-ups that need a proxy."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def get(self, path: str, max_body: int = MAX_BODY_BYTES) -> RawResponse:
        import httpx

        try:
            async with self._client.stream("GET", path) as response:
                declared = response.headers.get("content-length", "")
                if _DIGITS.fullmatch(declared) and int(declared) > max_body:
                    raise BodyTooLarge(f"body larger than {max_body} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_body:
                        raise BodyTooLarge(f"body larger than {max_body} bytes")
                    chunks.append(chunk)
                headers = {k.lower(): v for k, v in response.headers.items()}
                return RawResponse(
                    response.status_code, response.reason_phrase, headers, b"".join(chunks)
                )
        except httpx.ConnectTimeout:
            raise ConnectFailed("no connection within the connect timeout") from None
        except httpx.TimeoutException:
            raise TimeoutError from None
        except httpx.ConnectError as exc:
            refused = _caused_by(exc, ConnectionRefusedError)
            raise ConnectFailed(
                "connection refused" if refused else f"cannot connect: {exc}"
            ) from None
        except httpx.ProxyError as exc:  # the proxy refused the tunnel: "407 Proxy ..."
            status, _, reason = str(exc).partition(" ")
            if status == "407":
                raise proxy_rejected(reason) from None
            raise ConnectFailed(f"the proxy answered {shown(str(exc))}") from None
        except httpx.TransportError as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    async def aclose(self) -> None:
        pass  # the shared client is closed by its owner


class TransportFactory:
    """Makes one transport per worker; owns them and what they share (TLS context or httpx
    client), and closes it all in `aclose`."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._made: list[Transport] = []
        self._client: httpx.AsyncClient | None = None
        self._ssl: ssl.SSLContext | None = None
        if _needs_httpx(settings.base_url):
            import httpx

            self._client = httpx.AsyncClient(
                base_url=settings.base_url,
                headers=settings.headers(),
                timeout=httpx.Timeout(settings.timeout, connect=settings.effective_connect_timeout),
                limits=httpx.Limits(max_connections=settings.concurrency),
                follow_redirects=False,
            )
        elif settings.base_url.startswith("https://"):
            self._ssl = ssl.create_default_context()

    def __call__(self) -> Transport:
        transport: Transport
        if self._client is not None:
            transport = HttpxTransport(self._client)
        else:
            transport = Http11Transport(self._settings, self._ssl)
        self._made.append(transport)
        return transport

    async def aclose(self) -> None:
        for transport in self._made:
            await transport.aclose()
        if self._client is not None:
            await self._client.aclose()


def _needs_httpx(base_url: str) -> bool:
    if os.environ.get("MIRROR_HTTP_CLIENT", "").lower() == "httpx":
        return True
    return proxy_for(base_url) is not None


def proxy_for(base_url: str) -> str | None:
    """The proxy that requests to `base_url` go through, as the environment names it
    (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, unless NO_PROXY names the host), or None."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # and urllib.request (15 ms of every run's start-up) is not imported
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    scheme = base_url.split("://", 1)[0]
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy:
        return None
    host = Origin.parse(base_url).host
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxy


PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")  # what httpx can go through


def check_proxy(base_url: str) -> None:
    """Raises InputError, before anything runs, for a proxy that applies to `base_url` and
    that httpx cannot use: `ALL_PROXY=socks5://...` (an SSH tunnel, say) without httpx's
    SOCKS support ended the run in a traceback, after it had been recorded as started."""
    proxy = proxy_for(base_url)
    if proxy is None or "://" not in proxy:  # no scheme: httpx takes it as http://
        return
    shown_proxy = f"the proxy {without_user_info(proxy)} (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY)"
    scheme = proxy.split("://", 1)[0].lower()
    if scheme not in PROXY_SCHEMES:
        raise InputError(f"{shown_proxy} is not a proxy URL: {', '.join(PROXY_SCHEMES)} only")
    if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        raise InputError(
            f"{shown_proxy} is a SOCKS proxy, which needs httpx's SOCKS support: "
            "pip install 'httpx[socks]' into autoenhance-mirror's environment"
        )


def proxy_rejected(reason: str) -> ProxyRejected:
    """A 407 comes from a proxy, never from the API, and it answers every request alike: the
    run stops, as on a rejected key, instead of failing each image in turn."""
    return ProxyRejected(
        f"the proxy between this tool and the API rejected the request with HTTP 407 "
        f"{shown(reason)}: its user name or password is missing or wrong; give them in the "
        "proxy's URL (http://user:password@host:port in HTTPS_PROXY, HTTP_PROXY or ALL_PROXY, "
        "reserved characters percent-encoded)"
    )


class Reachability:
    """Whether the API answers. When the first attempts of a run all fail to connect
    (refused, DNS, connect timeout, TLS handshake), the API is not there. When fetches end,
    their retries spent, in a gateway's 502/503/504, a timeout or a connection closed without
    an answer, and nothing else answers meanwhile, the API is down behind the gateway or
    proxy in front of it: the first few of a run, or many in a row later. Either way the run
    stops (ApiUnreachable, exit 3) instead of retrying each image in turn: behind nginx,
    3,000 images took 16 minutes of 502s, 100,000 would take hours, and every cron run
    meanwhile exits 75."""

    def __init__(
        self,
        base_url: str,
        *,
        give_up_after: int = 3,
        silent_at_start: int = 3,
        silent_in_a_row: int = 100,
    ) -> None:
        self._base_url = base_url
        proxy = proxy_for(base_url)
        self._through = f" through the proxy {without_user_info(proxy)}" if proxy else ""
        self._give_up_after = give_up_after
        self._failures = 0
        self._silent_at_start = silent_at_start
        self._silent_in_a_row = silent_in_a_row
        self._silent = 0  # fetches that ended in silence since the API last answered
        self.answered = False

    def heard(self, status: int | None) -> None:
        """An answer came: an HTTP status, or None for bytes that were not HTTP. A gateway's
        502/503/504 is no word from the API itself."""
        if status not in GATEWAY_STATUS:
            self.answered = True
            self._silent = 0

    def connect_failed(self, reason: str) -> None:
        if self.answered:
            return
        self._failures += 1
        if self._failures >= self._give_up_after:
            tried = (
                "the first attempt"
                if self._failures == 1
                else f"the first {self._failures} attempts"
            )
            check = "--base-url, the proxy" if self._through else "--base-url"
            raise ApiUnreachable(
                f"cannot reach the API at {self._base_url}{self._through}: {tried} failed to "
                f"connect ({reason}); check {check} and the network, nothing more was tried"
            )

    def gave_up(self, failure: Failure, attempts: int) -> None:
        """A fetch ended failed, its retries spent: a gateway's status, a timeout or a
        connection without an answer is the API's silence."""
        silent = failure.kind in ("timeout", "connection") or failure.http_status in GATEWAY_STATUS
        if not silent:
            return
        self._silent += 1
        limit = self._silent_in_a_row if self.answered else self._silent_at_start
        if self._silent < limit:
            return
        each = "once" if attempts == 1 else f"{attempts} times"
        if self.answered:
            what = f"stopped answering: the last {self._silent} requests"
            kept = "what it answered before is kept, "
        else:
            what = f"never answered: the first {self._silent} requests"
            kept = ""
        raise ApiUnreachable(
            f"the API at {self._base_url}{self._through} {what}, each tried {each}, ended "
            f"with {_silence(failure)}; the API or the way to it is down: {kept}nothing more "
            "was tried (the next run tries again)"
        )


def _silence(failure: Failure) -> str:
    """How a fetch that ended in the API's silence ended, for the message that stops a run."""
    if failure.kind == "timeout":
        return "no response within --timeout (raise it if the API is only slow)"
    if failure.kind == "connection":
        return "no answer on the connection (refused, or closed before an answer)"
    from http import HTTPStatus  # only as a run gives up: not imported at start-up

    assert failure.http_status is not None  # one of GATEWAY_STATUS
    status = HTTPStatus(failure.http_status)
    return (
        f"HTTP {status.value} {status.phrase}, what a gateway or proxy answers when the "
        "service behind it does not"
    )


class Fetcher:
    """GETs images, orders and listing pages with retries, backoff and the run's shared
    pacing; counts every request it sends (`requests`, retries included)."""

    def __init__(
        self,
        *,
        limiter: RateLimiter,
        retries: int,
        timeout: float,
        backoff_base: float = BACKOFF_BASE,
        reachability: Reachability | None = None,
    ) -> None:
        self._reachability = reachability
        self._limiter = limiter
        self._retries = retries
        self._timeout = timeout
        self._backoff_base = backoff_base
        self.requests = 0
        self.first_answer = asyncio.Event()  # set when the run's first request has ended
        self.first_answer_seconds: float | None = None  # how long that request took

    async def fetch(
        self, transport: Transport, target: Target, *, on_send: Callable[[], None] | None = None
    ) -> FetchResult:
        """GET the target, retrying what is retryable. Raises ApiKeyRejected on 401/403,
        ApiRedirected on a redirect, ApiUnreachable when the run's first attempts all failed
        to connect. `on_send` is called as each attempt goes out (its bytes are written before
        the loop next runs)."""
        attempt = 0
        while True:
            result, retry_after = await self._attempt(transport, target, on_send)
            if isinstance(result, Fetched) or retry_after is None or attempt >= self._retries:
                if self._reachability is not None and not isinstance(result, Fetched):
                    self._reachability.gave_up(result, attempt + 1)
                return result
            attempt += 1
            delay = self._backoff(attempt, retry_after)
            if result.http_status == 429:
                self._limiter.pause(delay)  # the whole run slows down, not just this image
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float) -> float:
        exponential = min(BACKOFF_CAP, self._backoff_base * 2.0 ** (attempt - 1))
        return max(exponential / 2 + random.uniform(0, exponential / 2), retry_after)

    async def _attempt(
        self, transport: Transport, target: Target, on_send: Callable[[], None] | None
    ) -> tuple[FetchResult, float | None]:
        """One request. Returns the result and, when it may be retried, the minimum wait."""
        await self._limiter.acquire()
        self.requests += 1
        sent = time.monotonic()
        if on_send is not None:
            on_send()
        try:
            async with asyncio.timeout(self._timeout):
                response = await transport.get(target.path, target.max_body)
            self._answered_after(sent)
        except TimeoutError:
            self._answered_after(sent)
            return target.failure("timeout", f"no response within {self._timeout:g} s"), 0.0
        except ConnectFailed as exc:
            if self._reachability is not None:
                self._reachability.connect_failed(str(exc))
            return target.failure("connection", str(exc)), 0.0
        except BodyTooLarge as exc:
            self._heard(200)
            return target.failure("invalid_payload", str(exc), 200), None
        except HttpError as exc:
            if not isinstance(exc, ConnectionLost):  # bytes came, if not HTTP ones
                self._heard(None)
            return target.failure("connection", f"connection lost: {exc}"), 0.0
        self._heard(response.status)
        return _interpret(target, response)

    def _answered_after(self, sent: float) -> None:
        if not self.first_answer.is_set():
            self.first_answer_seconds = time.monotonic() - sent
            self.first_answer.set()

    def _heard(self, status: int | None) -> None:
        if self._reachability is not None:
            self._reachability.heard(status)


def _interpret(target: Target, response: RawResponse) -> tuple[FetchResult, float | None]:
    status = response.status
    if status == 200:
        return Fetched(target, response.body), None
    if status == 407:
        raise proxy_rejected(response.reason)
    if status in (401, 403):
        raise ApiKeyRejected(
            f"the API rejected the request with HTTP {status}: the API key is missing, "
            "wrong or revoked; check --api-key / AUTOENHANCE_API_KEY"
        )
    if 300 <= status < 400:
        raise _redirected(target, response)
    if status == 404:
        return target.failure("not_found", "HTTP 404", status), None
    retry_after = _retry_after(response.headers) if status in RETRYABLE_STATUS else None
    message = f"HTTP {status} {shown(response.reason)}".strip()
    return target.failure("http_error", message, status), retry_after


def shown(text: str, limit: int = 300) -> str:
    """Text a server sent, as it may be printed and stored: at most `limit` characters, control
    characters escaped (RFC 9112 allows none in a reason phrase, and a terminal obeys them)."""
    return printable(text[:limit])


def _redirected(target: Target, response: RawResponse) -> ApiRedirected:
    """The API's endpoints answer where they are asked, so a redirect means that --base-url
    is not the API's address: every request would be redirected alike. The run stops, as on
    a rejected key; following it instead would send the key wherever the redirect points."""
    location = shown(response.headers.get("location", ""))
    where = f" to {location}" if location else ""
    fix = ", and set --base-url to the API's address"
    if location.endswith(target.path) and "://" in location:
        fix = f": use --base-url {location.removesuffix(target.path)}"
    return ApiRedirected(
        f"the API answered HTTP {response.status} {shown(response.reason)}, redirecting "
        f"{target.path}{where}: --base-url is not the API's address (an http:// address the "
        f"API moved to https://, or an old host){fix}. The mirror follows no redirect, so the "
        "API key goes nowhere else"
    )


def _retry_after(headers: dict[str, str]) -> float:
    """Seconds to wait from Retry-After (delta-seconds or HTTP date), capped; 0 when absent."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return 0.0
    seconds: float
    if _DIGITS.fullmatch(value):
        seconds = float(value)
    else:
        import email.utils  # an HTTP date is rare: not imported at start-up

        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - time.time()
        except Exception:  # whatever a server sends, a bad header is no reason to wait
            return 0.0
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `kind` is anywhere in the chain of causes (httpx wraps httpcore wraps anyio)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
