"""HTTP with retries: backoff on 502/503/504/429 and connection errors, typed errors otherwise.

A connection refused (or a host not found) before the service has ever answered is not
retried: it is a wrong URL or a service that is not running, and says so at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from imagestore_client.errors import ConnectionFailed, ImagestoreError, error_for

RETRY_STATUSES = frozenset({429, 502, 503, 504})
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all, waiting base * 2**n (jittered, capped) or the `Retry-After`."""

    attempts: int = 6
    base: float = 0.5
    cap: float = 20.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            after = response.headers.get("Retry-After", "")
            if after.replace(".", "", 1).isdigit():
                return min(float(after), self.cap)
        return min(self.cap, self.base * 2**attempt) * random.uniform(0.5, 1.0)


class Transport:
    """One pooled httpx client shared by every thread of a `Client`."""

    def __init__(
        self,
        url: str,
        auth: httpx.Auth | None,
        timeout: float,
        retry: RetryPolicy,
        pool_size: int = 16,
    ) -> None:
        limits = httpx.Limits(max_connections=pool_size, max_keepalive_connections=pool_size)
        self.http = httpx.Client(
            base_url=url.rstrip("/"),
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=limits,
            headers={"User-Agent": "imagestore-client"},
        )
        self.url = url.rstrip("/")
        self.auth = auth
        self.retry = retry
        self.reached = False  # set by the first answer: from then on a refusal is worth a retry

    def close(self) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, body: Callable[[], dict[str, Any]] | None = None, **kwargs
    ) -> httpx.Response:
        """The response of a successful request; `body()` builds fresh content per attempt."""
        with self.stream(method, path, body, **kwargs) as response:
            response.read()
            return response

    @contextmanager
    def stream(
        self,
        method: str,
        path: str,
        body: Callable[[], dict[str, Any]] | None = None,
        retry: bool = True,
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """A successful streamed response, after retrying what a busy service may answer.

        `body()` is called for each attempt (a file is read again from its start).
        """
        attempts = self.retry.attempts if retry else 1
        refreshed = False
        attempt = 0
        while True:
            try:
                response = self._send(method, path, body, kwargs)
            except httpx.TransportError as error:
                if attempt + 1 >= attempts or self._unreachable(error):
                    raise self._failed(method, path, error) from None
                time.sleep(self.retry.delay(attempt, None))
                attempt += 1
                continue
            self.reached = True
            if response.status_code < 300:
                try:
                    yield response
                finally:
                    response.close()
                return
            response.read()
            response.close()
            if response.status_code == 401 and not refreshed and self._renew_token():
                refreshed = True
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                time.sleep(self.retry.delay(attempt, response))
                attempt += 1
                continue
            raise error_for(response)

    def _send(
        self, method: str, path: str, body: Callable[[], dict[str, Any]] | None, kwargs: dict
    ) -> httpx.Response:
        """Send once; `body()` gives fresh content, and under "opened" the files to close after."""
        extra = body() if body else {}
        opened = extra.pop("opened", [])
        try:
            request = self.http.build_request(method, path, **kwargs, **extra)
            # A download may answer 307 to its bytes elsewhere (presigned S3): GETs follow it,
            # and httpx drops the Authorization header when the redirect leaves the service.
            follow = method in ("GET", "HEAD")
            return self.http.send(request, stream=True, follow_redirects=follow)
        except httpx.TooManyRedirects as error:
            raise ImagestoreError(f"{method} {self.url}{path}: {error}") from None
        finally:
            for handle in opened:
                handle.close()

    def read_body(self, path: str, consume: Callable[[httpx.Response], T]) -> T:
        """`consume(response)` of a GET, started again when the body breaks off midway."""
        attempt = 0
        while True:
            try:
                with self.stream("GET", path) as response:
                    return consume(response)
            except httpx.TransportError as error:
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise self._failed("GET", path, error) from None
                time.sleep(self.retry.delay(attempt - 1, None))

    def _unreachable(self, error: httpx.TransportError) -> bool:
        """A first connection that failed: retrying would only make the user wait."""
        return not self.reached and isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)

    def _failed(self, method: str, path: str, error: httpx.TransportError) -> ConnectionFailed:
        reason = str(error) or type(error).__name__
        if self._unreachable(error):
            return ConnectionFailed(f"cannot connect to {self.url}: {reason}")
        return ConnectionFailed(f"{method} {self.url}{path}: {reason}")

    def _renew_token(self) -> bool:
        invalidate = getattr(self.auth, "invalidate", None)
        return bool(invalidate and invalidate())
