"""The Autoenhance HTTP client: `GET /v3/images/{id}` with retries, backoff and pacing.

Only read-only endpoints are ever called (spec §5): nothing here can change or buy anything.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Literal

import httpx

from mirror import __version__
from mirror.errors import ApiKeyRejected
from mirror.ratelimit import RateLimiter

USER_AGENT = f"autoenhance-mirror/{__version__} (+https://pypi.org/project/autoenhance-mirror/)"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_BODY_BYTES = 4 * 1024 * 1024  # an image record is ~1 KB; anything this big is not one
RETRY_AFTER_CAP = 120.0  # seconds: a hostile Retry-After cannot stall a run for hours
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0

FailureKind = Literal["not_found", "http_error", "timeout", "connection", "invalid_payload"]


@dataclass(frozen=True)
class ApiSettings:
    base_url: str
    api_version: str
    api_key: str | None = None
    timeout: float = 30.0
    retries: int = 3
    concurrency: int = 8


@dataclass(frozen=True)
class Fetched:
    """A 200 response: the raw body, still to be parsed."""

    image_id: str
    body: bytes


@dataclass(frozen=True)
class FetchFailed:
    """Why an image could not be fetched, after any retries."""

    image_id: str
    kind: FailureKind
    message: str
    http_status: int | None = None
    refused: bool = False  # the connection was refused: nothing is listening


FetchResult = Fetched | FetchFailed


def make_http_client(settings: ApiSettings) -> httpx.AsyncClient:
    """One AsyncClient for the run: base URL, headers, timeouts, a pool sized to concurrency."""
    headers = {
        "User-Agent": USER_AGENT,
        "Accept": "application/json",
        "x-api-version": settings.api_version,
    }
    if settings.api_key:
        headers["x-api-key"] = settings.api_key
    return httpx.AsyncClient(
        base_url=settings.base_url,
        headers=headers,
        timeout=httpx.Timeout(settings.timeout),
        limits=httpx.Limits(
            max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency
        ),
        follow_redirects=False,
    )


class ImageFetcher:
    """Fetches one image at a time per call; safe to call concurrently from many tasks."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        limiter: RateLimiter,
        retries: int,
        timeout: float,
        backoff_base: float = BACKOFF_BASE,
    ) -> None:
        self._http = http
        self._limiter = limiter
        self._retries = retries
        self._timeout = timeout
        self._backoff_base = backoff_base

    async def fetch(self, image_id: str) -> FetchResult:
        """GET the image, retrying what is retryable. Raises ApiKeyRejected on 401/403."""
        attempt = 0
        while True:
            result, retry_after = await self._attempt(image_id)
            if isinstance(result, Fetched) or retry_after is None or attempt >= self._retries:
                return result
            attempt += 1
            delay = self._backoff(attempt, retry_after)
            if result.http_status == 429:
                self._limiter.pause(delay)
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float) -> float:
        exponential = min(BACKOFF_CAP, self._backoff_base * 2.0 ** (attempt - 1))
        jittered = exponential / 2 + random.uniform(0, exponential / 2)
        return max(jittered, retry_after)

    async def _attempt(self, image_id: str) -> tuple[FetchResult, float | None]:
        """One request. Returns the result and, when it may be retried, the minimum wait."""
        await self._limiter.acquire()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._request(image_id)
        except (TimeoutError, httpx.TimeoutException):
            return _failed(image_id, "timeout", f"no response within {self._timeout:g} s"), 0.0
        except httpx.ConnectError as exc:
            refused = _caused_by(exc, ConnectionRefusedError)
            message = "connection refused" if refused else f"cannot connect: {_reason(exc)}"
            return FetchFailed(image_id, "connection", message, refused=refused), 0.0
        except httpx.TransportError as exc:
            return _failed(image_id, "connection", f"connection lost: {_reason(exc)}"), 0.0

    async def _request(self, image_id: str) -> tuple[FetchResult, float | None]:
        async with self._http.stream("GET", f"/v3/images/{image_id}") as response:
            status = response.status_code
            if status in (401, 403):
                raise ApiKeyRejected(
                    f"the API rejected the request with HTTP {status}: the API key is missing, "
                    "wrong or revoked; check --api-key / AUTOENHANCE_API_KEY"
                )
            if status == 404:
                return _failed(image_id, "not_found", "HTTP 404", status), None
            if status != 200:
                retry_after = _retry_after(response) if status in RETRYABLE_STATUS else None
                message = f"HTTP {status} {response.reason_phrase}".strip()
                return _failed(image_id, "http_error", message, status), retry_after
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
                return _too_big(image_id), None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return _too_big(image_id), None
                chunks.append(chunk)
            return Fetched(image_id, b"".join(chunks)), None


def _failed(
    image_id: str, kind: FailureKind, message: str, status: int | None = None
) -> FetchFailed:
    return FetchFailed(image_id, kind, message, status)


def _too_big(image_id: str) -> FetchFailed:
    return _failed(image_id, "invalid_payload", f"body larger than {MAX_BODY_BYTES} bytes", 200)


def _retry_after(response: httpx.Response) -> float:
    """Seconds to wait from Retry-After (delta-seconds or HTTP date), capped; 0 when absent."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return 0.0
    seconds: float
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 0.0
        seconds = when.timestamp() - time.time()
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


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
