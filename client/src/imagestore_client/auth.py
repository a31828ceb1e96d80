"""Bearer tokens: a fixed one, or OIDC client credentials fetched and refreshed before expiry."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

import httpx

from imagestore_client.errors import ImagestoreError, Unauthorized

# A token is replaced when less than this much of its life is left (seconds).
REFRESH_MARGIN = 30.0


class BearerToken(httpx.Auth):
    """Sends one fixed token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request

    def invalidate(self) -> bool:
        """A fixed token cannot be renewed: False tells the caller not to retry."""
        return False


class ClientCredentials(httpx.Auth):
    """OAuth 2 client-credentials grant against `token_url`, shared safely between threads.

    The token is fetched on first use and again when it is within `refresh_margin` seconds of
    the `expires_in` the provider announced (or when `invalidate` is called after a 401).
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str | None = None,
        refresh_margin: float = REFRESH_MARGIN,
        timeout: float = 30.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.scope = scope
        self.refresh_margin = refresh_margin
        self.timeout = timeout
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.current_token()}"
        yield request

    def current_token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at - self.refresh_margin:
                self._token, lifetime = self._fetch()
                self._expires_at = time.monotonic() + lifetime
            return self._token

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        try:
            response = httpx.post(
                self.token_url,
                data=form,
                auth=(self.client_id, self.client_secret),
                timeout=self.timeout,
            )
        except httpx.HTTPError as error:
            raise ImagestoreError(f"Token endpoint {self.token_url} unreachable: {error}") from None
        if response.status_code != 200:
            raise Unauthorized(
                f"Token endpoint answered {response.status_code}: {response.text[:200]}",
                response.status_code,
            )
        try:
            body = response.json()
            token = body["access_token"]
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("Token endpoint answered without an access_token") from None
        lifetime = body.get("expires_in")
        return token, float(lifetime) if isinstance(lifetime, int | float) else 300.0
