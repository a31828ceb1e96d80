"""What one client may hold of a gevent worker: how long its request body may keep the worker
waiting, and how many of the worker's connections it may hold at once.

HTTP_IDLE_TIMEOUT bounds each silent read, so a body sent one byte every 25 s resets it with
every byte and holds its connection for ever; 2,100 such sockets took both workers' 1,000
connections. Two limits close that:

- **Body deadline** (`ClientSocket`). While the app reads a request body (`wsgi.input`), the
  client may keep the worker waiting at most HTTP_BODY_TIMEOUT seconds, plus one second for
  every HTTP_BODY_MIN_RATE bytes of the body it sent: a rate floor after a grace period. Only
  the time a read waits for the client's bytes counts, never the app's own work between reads,
  and each read waits at most until the deadline (or HTTP_IDLE_TIMEOUT). Past either, the read
  raises `RequestTimeout`: the answer is 408 JSON (whatever the app made of the error) and the
  connection is closed politely.
- **Connections per client** (`ConnectionCap`). A worker holds at most
  HTTP_MAX_CONNECTIONS_PER_CLIENT connections from one address (an IPv6 client: one /64) at
  once; the next is answered 429 with `Retry-After` before its request is read, then closed.
  The peer address is the only one used: X-Forwarded-For is never trusted (the answer comes
  before any header is read). Behind a proxy every client shares its address: 0 turns the cap
  off (docs/configuration.md).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from images.api.error_body import JSON, error_body
from images.core.errors import RequestTimeout
from images.runtime.serving import http_errors

logger = logging.getLogger(__name__)

# What a refused client is asked to wait: one of its connections usually ends within a second.
RETRY_AFTER_SECONDS = 1
# Refusals are logged at most once per this many seconds per worker (an attack makes thousands).
REFUSAL_LOG_INTERVAL = 10.0


@dataclass(frozen=True)
class BodyPolicy:
    """How long a request body may keep the worker waiting: `grace` seconds plus one second
    per `min_rate` bytes received (`min_rate` 0: no deadline); every read at most `idle`."""

    grace: float
    min_rate: int
    idle: float

    def describe(self) -> str:
        return f"at most {self.grace:g} s plus 1 s per {self.min_rate} bytes received"


class ClientSocket:
    """The worker's socket of one connection. Between `begin_body` and `end_body` (the app
    handling one request), every `recv` is a read of the request body and is bounded by the
    body deadline; otherwise, and for every other method, it is the socket itself."""

    __slots__ = ("_received", "_request", "_sock", "_waited", "expired", "policy")

    def __init__(self, sock: socket.socket, policy: BodyPolicy) -> None:
        self._sock = sock
        self.policy = policy
        self.expired: RequestTimeout | None = None
        self._request: Any = None
        self._received = 0
        self._waited = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def begin_body(self, request: Any) -> None:
        self._request, self._received, self._waited, self.expired = request, 0, 0.0, None

    def end_body(self) -> RequestTimeout | None:
        """Back to a plain socket (the idle timeout); the deadline's error if it passed."""
        self._request = None
        with contextlib.suppress(OSError):
            self._sock.settimeout(self.policy.idle)
        return self.expired

    def allowance(self) -> float | None:
        """Seconds the body may still keep the worker waiting; None: no deadline."""
        if not self.policy.min_rate:
            return None
        return self.policy.grace + self._received / self.policy.min_rate - self._waited

    def recv(self, size: int, *flags: int) -> bytes:
        if self._request is None:
            return self._sock.recv(size, *flags)
        if self.expired is not None:
            raise self.expired  # the app read on after the deadline: it stays passed
        allowance = self.allowance()
        if allowance is not None and allowance <= 0:
            raise self._expire(self.too_slow())
        timeout = self.policy.idle if allowance is None else min(self.policy.idle, allowance)
        self._sock.settimeout(timeout)
        started = time.monotonic()
        try:
            data = self._sock.recv(size, *flags)
        except TimeoutError:
            self._waited += time.monotonic() - started
            if allowance is not None and allowance < self.policy.idle:
                raise self._expire(self.too_slow()) from None
            raise self._expire(self.silent()) from None
        self._waited += time.monotonic() - started
        self._received += len(data)
        return data

    def too_slow(self) -> RequestTimeout:
        return RequestTimeout(
            f"The request body arrived too slowly: {self._received} bytes in "
            f"{self._waited:.0f} s of waiting; a body may keep the server waiting "
            f"{self.policy.describe()}"
        )

    def silent(self) -> RequestTimeout:
        return RequestTimeout(
            f"No byte of the request body arrived for {self.policy.idle:g} s "
            f"({self._received} bytes received)"
        )

    def _expire(self, error: RequestTimeout) -> RequestTimeout:
        self.expired = error
        if self._request is not None:
            self._request.must_close = True  # where the next request would start is unknown
        return error


def answer_expired_bodies(app: Callable) -> Callable:
    """The WSGI app, answering 408 for a request whose body deadline passed, whatever the app
    made of the error (the API's handler answers 408 itself; another route might catch it)."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        statuses: list[str] = []

        def capture(status: str, headers: list, exc_info: Any = None) -> Callable:
            statuses.append(status)
            return start_response(status, headers, exc_info)

        try:
            result = app(environ, capture)
        except Exception:
            expired = sock.expired if isinstance(sock, ClientSocket) else None
            if expired is None:
                raise
            return timeout_answer(expired, start_response)
        expired = sock.expired if isinstance(sock, ClientSocket) else None
        if expired is None or (statuses and statuses[-1].startswith("408")):
            return result
        if hasattr(result, "close"):
            result.close()
        return timeout_answer(expired, start_response)

    return application


def timeout_answer(error: RequestTimeout, start_response: Callable) -> list[bytes]:
    body = error_body(error.detail)
    headers = [
        ("Content-Type", JSON),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Length", str(len(body))),
    ]
    start_response("408 Request Timeout", headers, (type(error), error, error.__traceback__))
    return [body]


def client_key(addr: Any) -> str | None:
    """The address a connection is counted under: an IPv4 address, an IPv6 client's /64 (one
    host holds a whole /64), or None (a Unix socket: not counted)."""
    if not isinstance(addr, tuple) or not addr or not isinstance(addr[0], str):
        return None
    try:
        ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ConnectionCap:
    """Connections one worker holds per client address; `limit` 0: no cap. Greenlets of one
    worker share it on one thread: nothing switches between a check and its count."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[str, int] = {}
        self.refused = 0
        self.next_log = 0.0
        self.refusal = refusal_answer(limit)

    def admit(self, key: str | None) -> bool:
        if not self.limit or key is None:
            return True
        held = self.held.get(key, 0)
        if held >= self.limit:
            self.note_refusal(key)
            return False
        self.held[key] = held + 1
        return True

    def release(self, key: str | None) -> None:
        if not self.limit or key is None:
            return
        held = self.held.get(key, 0) - 1
        if held > 0:
            self.held[key] = held
        else:
            self.held.pop(key, None)

    def note_refusal(self, key: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now >= self.next_log:
            logger.warning(
                "Refused %d connection(s) over HTTP_MAX_CONNECTIONS_PER_CLIENT=%d (latest from %s)",
                self.refused,
                self.limit,
                key,
            )
            self.refused, self.next_log = 0, now + REFUSAL_LOG_INTERVAL

    def refuse(self, sock: socket.socket) -> None:
        """Answer 429 before reading the request, then close politely: what the client sent
        meanwhile is read and dropped briefly, so that the close does not reset the answer."""
        with contextlib.suppress(OSError):
            sock.settimeout(http_errors.LINGER_SECONDS)
            sock.sendall(self.refusal)
            http_errors.linger(sock)


def refusal_answer(limit: int) -> bytes:
    body = error_body(
        f"Too many connections from your address: at most {limit} at once; "
        "retry once one of them has closed"
    )
    head = (
        "HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\n"
        f"Content-Type: {JSON}\r\nX-Content-Type-Options: nosniff\r\n"
        f"Retry-After: {RETRY_AFTER_SECONDS}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body
