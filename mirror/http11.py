"""A lean HTTP/1.1 client for one thing: many small GETs on keep-alive connections.

Why not httpx here: with 32 connections in one AsyncClient, httpcore's pool bookkeeping costs
more CPU than everything else a sync does per image (encode/httpx#3215), and even one client
per connection spends ~0.6 ms of CPU per request. Each fetch worker of a sync owns one
`Connection` below (no pool to search), written on asyncio's Protocol API: ~0.05 ms a request.

It speaks exactly what the mirror needs: GET, `Content-Length` or chunked bodies, keep-alive,
TLS. Proxies are not supported: `api.py` falls back to httpx when a proxy is configured.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024


HAPPY_EYEBALLS_DELAY = 0.25  # seconds, RFC 8305's recommended "Connection Attempt Delay"


class HttpError(Exception):
    """Base of this module's errors."""


class ConnectFailed(HttpError):
    """No connection to the server: refused, name not resolved, connect timeout, or the TLS
    handshake failed. Nothing reached the server."""


class ConnectionLost(HttpError):
    """The server closed the connection before the response was complete."""


class ProtocolViolation(HttpError):
    """The server's bytes are not an HTTP/1.1 response."""


class BodyTooLarge(HttpError):
    pass


@dataclass(frozen=True)
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    path_prefix: str  # the base URL's path, without a trailing slash

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


class _Stream(asyncio.Protocol):
    """Buffers what the server sends and wakes the reader.

    What it may buffer is bounded: bytes beyond `limit` during a request, or any byte while
    no request is out (a server that keeps sending after its answer), close the connection.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.overflow = False  # closed for sending more than it may
        self.busy = False  # a request is out: bytes are expected
        self.limit = MAX_HEAD_BYTES
        self.received = 0  # bytes that arrived on this connection so far
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if (not self.busy or len(self.buffer) > self.limit) and not self.closed:
            self.overflow = True
            self.closed = True
            self.buffer.clear()
            if self.transport is not None:
                self.transport.close()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def more(self) -> None:
        """Wait for more bytes; raises ConnectionLost once the server has closed."""
        if self.overflow:
            raise BodyTooLarge(f"the server sent more than {self.limit} bytes for one response")
        if self.closed:
            raise ConnectionLost("the server closed the connection")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Connection:
    """One keep-alive connection to an origin, reconnecting when the server closed it.

    Not for concurrent use: each worker owns one. Cancelling a request (a timeout, a signal)
    closes the connection, as its state is then unknown.
    """

    def __init__(
        self,
        origin: Origin,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.origin = origin
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._stream: _Stream | None = None

    async def get(self, head: bytes, *, max_body: int) -> RawResponse:
        """Send a prepared request head; a reused connection found closed is redialled once."""
        reused = self._stream if self._stream is not None and not self._stream.closed else None
        received_before = reused.received if reused is not None else 0
        try:
            return await self._exchange(head, max_body=max_body)
        except ConnectionLost:
            if reused is None or reused.received != received_before:
                raise
            # The server dropped an idle keep-alive connection as we reused it: GET is
            # idempotent and nothing was answered, so asking again on a new one is safe.
            return await self._exchange(head, max_body=max_body)

    async def _exchange(self, head: bytes, *, max_body: int) -> RawResponse:
        try:
            stream = await self._connected()
            assert stream.transport is not None
            stream.busy = True
            stream.limit = MAX_HEAD_BYTES + max_body + MAX_HEAD_BYTES  # head, body, trailers
            stream.transport.write(head)
            response, keep_alive = await _read_response(stream, max_body=max_body)
            stream.busy = False
        except BaseException:
            self.close()
            raise
        if not keep_alive or stream.buffer:
            # Bytes after the answer were never asked for: reading them as the next answer
            # would desynchronise every later request on this connection.
            self.close()
        return response

    async def _connected(self) -> _Stream:
        if self._stream is not None and not self._stream.closed:
            return self._stream
        self.close()
        loop = asyncio.get_running_loop()
        origin = self.origin
        tls = origin.scheme == "https"
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, stream = await loop.create_connection(
                    _Stream,
                    origin.host,
                    origin.port,
                    ssl=self._ssl if tls else None,
                    server_hostname=origin.host if tls else None,
                    ssl_handshake_timeout=self._connect_timeout if tls else None,
                    # Happy Eyeballs (RFC 8305): the next address of the name is tried 250 ms
                    # into an attempt that has not connected, IPv6 and IPv4 in turn. One at a
                    # time, an address whose packets are dropped (a broken IPv6 route) took the
                    # whole connect timeout, and the API, fine on its other address, was
                    # reported unreachable (exit 3).
                    happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY,
                    interleave=1,
                )
        except TimeoutError:
            what = "connection and TLS handshake" if tls else "connection"
            raise ConnectFailed(
                f"no {what} within {self._connect_timeout:g} s (connect timeout)"
            ) from None
        except ConnectionRefusedError:
            raise ConnectFailed("connection refused") from None
        except socket.gaierror as exc:
            raise ConnectFailed(f"cannot resolve {origin.host}: {exc.strerror or exc}") from None
        except ssl.SSLError as exc:
            raise ConnectFailed(f"TLS handshake failed: {exc.reason or exc}") from None
        except OSError as exc:
            raise ConnectFailed(f"cannot connect: {exc.strerror or exc}") from None
        self._stream = stream
        return stream

    def close(self) -> None:
        if self._stream is not None and self._stream.transport is not None:
            self._stream.transport.close()
        self._stream = None


class GetTemplate:
    """The bytes of a GET on `origin` with fixed headers, built once: per request only the
    path changes, so `head(path)` is two concatenations."""

    def __init__(self, origin: Origin, headers: dict[str, str]) -> None:
        self._start = f"GET {origin.path_prefix}".encode("latin-1")
        lines = ["", f"Host: {origin.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._end = (" HTTP/1.1" + "\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def head(self, path: str) -> bytes:
        return self._start + path.encode("latin-1") + self._end


_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes "²"
_HEX = re.compile(rb"[0-9A-Fa-f]+")
_HEAD_END = re.compile(rb"\r?\n\r?\n")  # bare LF line ends are tolerated (RFC 9112 §2.2)
_LINE_END = re.compile(r"\r?\n")


async def _read_response(stream: _Stream, *, max_body: int) -> tuple[RawResponse, bool]:
    """Read one final response; 1xx interim responses before it are skipped."""
    while True:
        version, status, reason, headers = await _read_head(stream)
        if status == 101:
            raise ProtocolViolation("101 Switching Protocols, to a request that asked for none")
        if status >= 200:
            break
    keep_alive = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    buffer = stream.buffer
    if status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(stream, max_body=max_body)
    elif (length := _content_length(headers)) is not None:
        if length > max_body:
            raise BodyTooLarge(f"body larger than {max_body} bytes")
        while len(buffer) < length:
            await stream.more()
        body = bytes(buffer[:length])
        del buffer[:length]
    else:  # the body runs until the server closes
        keep_alive = False
        while not stream.closed:
            if len(buffer) > max_body:
                raise BodyTooLarge(f"body larger than {max_body} bytes")
            await stream.more()
        if stream.overflow:
            raise BodyTooLarge(f"body larger than {max_body} bytes")
        body = bytes(buffer)
        buffer.clear()
    return RawResponse(status, reason, headers, _decoded(body, headers, max_body)), keep_alive


async def _read_head(stream: _Stream) -> tuple[str, int, str, dict[str, str]]:
    buffer = stream.buffer
    while (match := _HEAD_END.search(buffer)) is None:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolViolation("response headers too large")
        await stream.more()
    head = bytes(buffer[: match.start()]).decode("latin-1")
    del buffer[: match.end()]
    if head.count("\n") == head.count("\r\n"):  # CRLF only, as nearly every server sends
        status_line, *header_lines = head.split("\r\n")
    else:
        status_line, *header_lines = _LINE_END.split(head)
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or len(code) != 3 or not _DIGITS.fullmatch(code):
        raise ProtocolViolation(f"not an HTTP/1.1 status line: {status_line[:60]!r}")
    headers: dict[str, str] = {}
    name = ""
    for line in header_lines:
        if line[:1] in (" ", "\t") and name:  # obs-fold: a continuation of the previous value
            headers[name] = f"{headers[name]} {line.strip()}".strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not name:
            raise ProtocolViolation(f"bad header line: {line[:60]!r}")
        value = value.strip()
        # Repeated fields are one list (RFC 9110 §5.3); Content-Length is checked below.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return version, int(code), reason.strip(), headers


def _content_length(headers: dict[str, str]) -> int | None:
    """The Content-Length, or None; repeated values must agree (RFC 9112 §6.3)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    if raw.isascii() and raw.isdigit():  # the usual case: one plain number
        return int(raw)
    values = {value.strip() for value in raw.split(",")}
    if len(values) != 1 or not _DIGITS.fullmatch(value := values.pop()):
        raise ProtocolViolation(f"bad Content-Length: {raw[:40]!r}")
    return int(value)


async def _read_line(stream: _Stream) -> bytes:
    """One line (CRLF or bare LF), without its end."""
    buffer = stream.buffer
    while (end := buffer.find(b"\n")) < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolViolation("chunk line too long")
        await stream.more()
    line = bytes(buffer[:end]).removesuffix(b"\r")
    del buffer[: end + 1]
    return line


async def _read_chunked(stream: _Stream, *, max_body: int) -> bytes:
    buffer = stream.buffer
    parts: list[bytes] = []
    total = 0
    while True:
        size_text = (await _read_line(stream)).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise ProtocolViolation(f"bad chunk size: {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            while await _read_line(stream):  # trailers, then an empty line
                pass
            return b"".join(parts)
        total += size
        if total > max_body:
            raise BodyTooLarge(f"body larger than {max_body} bytes")
        while len(buffer) < size:
            await stream.more()
        parts.append(bytes(buffer[:size]))
        del buffer[:size]
        if await _read_line(stream):
            raise ProtocolViolation("chunk data longer than its size")


def _decoded(body: bytes, headers: dict[str, str], max_body: int) -> bytes:
    """The body with its Content-Encoding (gzip, deflate) undone, at most `max_body` bytes.

    Requests ask for gzip, and a server may compress anyway when it was not asked."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise ProtocolViolation(f"unsupported Content-Encoding {coding[:20]!r}")
    wbits = zlib.MAX_WBITS | 16 if "gzip" in coding else zlib.MAX_WBITS
    decompressor = zlib.decompressobj(wbits)
    try:
        plain = decompressor.decompress(body, max_body + 1)
    except zlib.error as exc:
        raise ProtocolViolation(f"body is not valid {coding}: {exc}") from None
    if len(plain) > max_body:
        raise BodyTooLarge(f"body larger than {max_body} bytes once decompressed")
    return plain
