"""OIDC bearer tokens (JWTs) verified against the identity provider's JWKS with PyJWT.

Imported by images.api.auth.authentication when the first bearer token arrives: PyJWT and cryptography cost a
few MiB in every process, which a service without OIDC_JWKS_URI never needs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
from django.conf import settings
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import (
    InvalidTokenError,
    PyJWKClientError,
    PyJWKError,
    PyJWKSetError,
    PyJWTError,
)
from rest_framework.exceptions import AuthenticationFailed

from images.core.errors import Unavailable

LEEWAY_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 5

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ASYMMETRIC_ALGORITHMS = frozenset({*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA"})


class JWKSUnavailable(Exception):
    """The JWKS could not be fetched or holds no usable signing key."""


class UnknownSigningKey(PyJWKClientError):
    """The token's `kid` is not in the JWKS, and the JWKS is not refetched for it now."""


class JWKSClient(PyJWKClient):
    """PyJWKClient that tells "the identity provider is down or broken" from "unknown key", and
    whose refetches never hold up a token whose key is cached.

    PyJWKClient.get_signing_key holds one lock across the fetch, and only a successful fetch
    starts its cooldown: while the provider hangs, every token with an unknown `kid` fetches in
    turn, each up to the timeout, and every other token waits for the lock. Here the keys are
    read from PyJWT's JWKSetCache with no lock, and `_fetch_lock` guards only the bookkeeping,
    never the network:

    - a `kid` in the cached set (within its lifespan) is answered at once;
    - at most one fetch is in flight per process;
    - an unknown `kid` refetches only when none is in flight and the last attempt, successful
      or not, ended `cooldown_duration` seconds ago or more; otherwise it is refused at once:
      UnknownSigningKey (401), or JWKSUnavailable (503) when the last attempt failed;
    - an empty or expired set is needed by every token: they wait for the fetch in flight (up to
      the timeout), or start one unless the last attempt failed within the cooldown (503).
    """

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self._fetch_lock = threading.Lock()  # held for the fields below, never across a fetch
        self._fetch_done: threading.Event | None = None  # set when the fetch in flight ends
        self._last_attempt_end: float | None = None  # time.monotonic()
        self._last_attempt_failed = False

    def fetch_data(self) -> Any:
        try:
            return super().fetch_data()
        except (PyJWKClientError, ValueError) as error:  # unreachable, not JSON, not an object
            raise JWKSUnavailable(str(error)) from error

    def get_jwk_set(self, refresh: bool = False):
        try:
            return super().get_jwk_set(refresh)
        except (PyJWKSetError, TypeError, ValueError) as error:  # e.g. a key with `"alg": []`
            raise JWKSUnavailable(str(error)) from error

    @staticmethod
    def _get_signing_keys_from_jwk_set(jwk_set) -> list[PyJWK]:
        try:
            return PyJWKClient._get_signing_keys_from_jwk_set(jwk_set)
        except PyJWKClientError as error:
            raise JWKSUnavailable(str(error)) from error

    def get_signing_key(self, kid: str) -> PyJWK:
        assert self.jwk_set_cache is not None  # get_jwks_client keeps cache_jwk_set on
        cached = self.jwk_set_cache.get()  # None while empty or past its lifespan
        if cached is not None:
            key = self.match_kid(self._get_signing_keys_from_jwk_set(cached), kid)
            if key is not None:
                return key
        done, fetch, last_failed = self._claim_fetch(expired=cached is None)
        if fetch:
            assert done is not None
            keys = self._fetch_signing_keys(done)
        elif done is not None and cached is None:  # every token needs the fetch in flight
            if not done.wait(self.timeout + 1):
                raise JWKSUnavailable("the JWKS fetch in flight did not end")
            fetched = self.jwk_set_cache.get()
            if fetched is None:
                raise JWKSUnavailable("the JWKS fetch in flight failed")
            keys = self._get_signing_keys_from_jwk_set(fetched)
        elif last_failed:
            raise JWKSUnavailable("the last JWKS fetch failed, less than the cooldown ago")
        elif done is not None:
            raise UnknownSigningKey(
                "The token's signing key is unknown; the identity provider's keys (JWKS) are "
                "being fetched again: retry shortly"
            )
        else:
            raise UnknownSigningKey(
                "The token's signing key is unknown; the identity provider's keys (JWKS) are "
                f"fetched again for an unknown key at most once every {self.cooldown_duration:g} s"
            )
        key = self.match_kid(keys, kid)
        if key is None:
            raise UnknownSigningKey("The token's signing key is unknown")
        return key

    def _claim_fetch(self, expired: bool) -> tuple[threading.Event | None, bool, bool]:
        """The event of the fetch in flight (None if there is none), whether this caller is to
        make it, and whether the last attempt failed."""
        with self._fetch_lock:
            if self._fetch_done is not None:
                return self._fetch_done, False, self._last_attempt_failed
            cooling_down = (
                self._last_attempt_end is not None
                and time.monotonic() - self._last_attempt_end < self.cooldown_duration
                # An expired set is refetched whenever the last attempt succeeded: the cooldown
                # limits refetches for unknown keys, not the set's lifespan.
                and (self._last_attempt_failed or not expired)
            )
            if cooling_down:
                return None, False, self._last_attempt_failed
            self._fetch_done = threading.Event()
            return self._fetch_done, True, self._last_attempt_failed

    def _fetch_signing_keys(self, done: threading.Event) -> list[PyJWK]:
        failed = True
        try:
            keys = self.get_signing_keys(refresh=True)  # fetch_data stores the set in the cache
            failed = False
            return keys
        finally:
            with self._fetch_lock:
                self._last_attempt_end = time.monotonic()
                self._last_attempt_failed = failed
                self._fetch_done = None
            done.set()


_clients_lock = threading.Lock()
_clients: dict[tuple[str, float, float], JWKSClient] = {}


def get_jwks_client() -> JWKSClient:
    """One client per process and JWKS URI (and cache settings): it holds the key cache."""
    config = (settings.OIDC_JWKS_URI, settings.OIDC_JWKS_LIFESPAN, settings.OIDC_JWKS_COOLDOWN)
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = JWKSClient(
                config[0],
                cache_keys=False,
                lifespan=config[1],
                cooldown_duration=config[2],
                timeout=JWKS_TIMEOUT_SECONDS,
            )
            _clients.clear()  # the settings changed: the old URI's keys are no longer wanted
            _clients[config] = client
        return client


def allowed_algorithms(key: PyJWK) -> list[str]:
    """The algorithms a JWKS key may verify: its `alg` if it names one, else its type's family."""
    jwk = key._jwk_data  # PyJWK keeps no public copy of the raw fields (`alg`, `crv`)
    announced = jwk.get("alg")
    if announced:
        return [announced] if str(announced) in ASYMMETRIC_ALGORITHMS else []
    if key.key_type == "RSA":
        return list(RSA_ALGORITHMS)
    if key.key_type == "EC":
        curve = EC_ALGORITHMS.get(jwk.get("crv", "P-256"))
        return [curve] if curve else []
    if key.key_type == "OKP" and jwk.get("crv") == "Ed25519":
        return ["EdDSA"]
    return []


def decode_token(token: str) -> dict[str, Any]:
    """The verified claims of `token`; AuthenticationFailed or Unavailable otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except InvalidTokenError:
        raise AuthenticationFailed("The bearer token is not a well-formed JWT") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
        raise AuthenticationFailed("The token's algorithm is not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthenticationFailed("The token names no signing key (kid)")
    key = _signing_key(kid)
    algorithms = allowed_algorithms(key)
    if alg not in algorithms:
        raise AuthenticationFailed("The token's algorithm does not match its signing key")
    try:
        return jwt.decode(token, key.key, **_decode_options(algorithms))
    except PyJWTError as error:
        raise AuthenticationFailed(f"Invalid token: {error}") from None


def _signing_key(kid: str) -> PyJWK:
    try:
        return get_jwks_client().get_signing_key(kid)
    except JWKSUnavailable:
        raise Unavailable("The identity provider's keys (JWKS) are unavailable") from None
    except UnknownSigningKey as error:
        raise AuthenticationFailed(str(error)) from None
    except (PyJWKClientError, PyJWKError):
        raise AuthenticationFailed("The token's signing key is unknown") from None


def _decode_options(algorithms: list[str]) -> dict[str, Any]:
    audiences = [a.strip() for a in settings.OIDC_AUDIENCE.split(",") if a.strip()]
    return {
        "algorithms": algorithms,
        "leeway": LEEWAY_SECONDS,
        "audience": audiences or None,
        "issuer": settings.OIDC_ISSUER or None,
        "options": {"require": ["exp"], "verify_aud": bool(audiences)},
    }
