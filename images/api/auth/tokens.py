"""OIDC bearer tokens (JWTs) verified against the identity provider's JWKS with PyJWT.

Imported by images.api.auth.authentication when the first bearer token arrives: PyJWT and cryptography cost a
few MiB in every process, which a service without OIDC_JWKS_URI never needs.
"""

from __future__ import annotations

import threading
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


class JWKSClient(PyJWKClient):
    """PyJWKClient that tells "the identity provider is down or broken" from "unknown key"."""

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
