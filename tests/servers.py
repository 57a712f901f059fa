"""Servers that are not ours, for testing the HTTP client against them.

- `RawServer`: a socket server that answers each request with scripted bytes, for what only
  raw bytes can produce (a 103 before the answer, `Content-Length: ²`, obs-fold, bare LF).
- `AsgiServer`: a real third-party server (uvicorn or hypercorn) in a thread, serving image
  records (and an account's orders and listing) from a small ASGI app, over HTTP or HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, unquote

from mirror.sample_account import SampleAccount
from mirror.standin import record_for

Answer = bytes | Callable[[str], bytes]  # raw bytes, or made from the request's path


class RawServer:
    """Answers the n-th request on any connection with `answers[n]` (the last one repeats),
    then keeps the connection open for the next request."""

    def __init__(self, answers: list[Answer], *, tls: ssl.SSLContext | None = None) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self._tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            conn.settimeout(10)
            pending = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                head, pending = pending.split(b"\r\n\r\n", 1)
                self.requests.append(head)
                answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
                path = head.split(b" ", 2)[1].decode()
                conn.sendall(answer(path) if callable(answer) else answer)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def image_answer(path: str) -> bytes:
    """A correct 200 for /v3/images/{id}."""
    match = re.search(r"[0-9a-f-]{36}", path)
    body = json.dumps(record_for(match.group(0) if match else "0" * 36)).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def api_app(account: SampleAccount | None = None) -> Callable[..., Any]:
    """An ASGI app: GET /v3/images/{id} → the stand-in's record; with an `account`, also
    GET /v3/orders/{id} and the order listing (GET /v3/orders/?per_page=&offset=&sort=), as
    the stand-in serves them. Gzipped, without being asked (as RFC 9110 allows a server to
    when the request has no Accept-Encoding), on /gz/ paths."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        # Still percent-encoded: an order ID may hold "/" (`MLS#1007/b`).
        raw_path = scope.get("raw_path") or scope["path"].encode()
        zipped, path = _unzipped_path(raw_path.decode())
        status, value = 404, {"message": "Not Found"}
        if match := re.fullmatch(r"/v3/images/([0-9a-f-]{36})", path):
            status, value = 200, record_for(match.group(1))
        elif account is not None and path == "/v3/orders/":
            query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
            size = int(query["per_page"]) if "per_page" in query else None
            status = 200
            value = account.page(offset=query.get("offset"), per_page=size, sort=query.get("sort"))
        elif account is not None and (match := re.fullmatch(r"/v3/orders/([^/]+)", path)):
            order = account.order_body(unquote(match.group(1)))
            if order is not None:
                status, value = 200, order
        body = json.dumps(value).encode()
        headers = [(b"content-type", b"application/json")]
        if zipped:
            body = gzip.compress(body)
            headers.append((b"content-encoding", b"gzip"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _unzipped_path(path: str) -> tuple[bool, str]:
    return (True, path[3:]) if path.startswith("/gz/") else (False, path)


class AsgiServer:
    """uvicorn or hypercorn serving `app` (by default `api_app()`) on 127.0.0.1 in a thread."""

    def __init__(
        self,
        kind: str,
        *,
        certfile: str | None = None,
        keyfile: str | None = None,
        app: Callable[..., Any] | None = None,
    ):
        self.kind = kind
        self._app = app or api_app()
        self._tls = certfile is not None
        self._certfile, self._keyfile = certfile, keyfile
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.kind == "uvicorn":
            import uvicorn

            config = uvicorn.Config(
                self._app,
                host="127.0.0.1",
                port=self.port,
                log_level="error",
                ssl_certfile=self._certfile,
                ssl_keyfile=self._keyfile,
            )
            self._server = uvicorn.Server(config)
            task = asyncio.create_task(self._server.serve())
            while not self._server.started:
                await asyncio.sleep(0.01)
            self._started.set()
            await self._stop.wait()
            self._server.should_exit = True
            await task
        else:
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{self.port}"]
            config.loglevel = "ERROR"
            if self._certfile:
                config.certfile, config.keyfile = self._certfile, self._keyfile
            self._loop.call_later(0.3, self._started.set)
            await serve(self._app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

    def __enter__(self) -> AsgiServer:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError(f"{self.kind} did not start")
        _wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def _wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            threading.Event().wait(0.02)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def trusted_ca(tmp_path: Any) -> Iterator[tuple[Any, str, str, str]]:
    """A throwaway CA (trustme) and a certificate for 127.0.0.1 and localhost:
    yields (ca, ca_file, cert_file, key_file)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (
        str(tmp_path / "ca.pem"),
        str(tmp_path / "cert.pem"),
        str(tmp_path / "key.pem"),
    )
    ca.cert_pem.write_to_path(ca_file)
    cert.private_key_and_cert_chain_pem.write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    yield ca, ca_file, cert_file, key_file


class SilentAddress:
    """A TCP address that drops every connection attempt, as a broken route or a firewall
    does: a listener whose accept queue is full and never drained, so the kernel drops each
    new SYN and a client's connect() waits until its own timeout."""

    def __init__(self, host: str, port: int) -> None:
        self._listener = socket.create_server((host, port), backlog=0)
        self._fillers: list[socket.socket] = []
        for _ in range(3):  # a backlog of 0 still queues one; the rest fill the SYN path
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect((host, port))
            self._fillers.append(filler)

    def __enter__(self) -> SilentAddress:
        return self

    def __exit__(self, *exc: object) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()
