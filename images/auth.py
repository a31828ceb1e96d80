"""OIDC bearer tokens verified against a JWKS, and signed URLs, as one DRF authentication.

Active only when settings.OIDC_JWKS_URI is set (read per request). A request authenticates
with `Authorization: Bearer <JWT>`, or, for GET/HEAD, with a signed URL (images.signing).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import (
    InvalidTokenError,
    PyJWKClientError,
    PyJWKError,
    PyJWKSetError,
    PyJWTError,
)
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from images import signing

LEEWAY_SECONDS = 30
JWKS_TIMEOUT_SECONDS = 5
WWW_AUTHENTICATE = 'Bearer realm="imagestore"'
SIGNED_METHODS = frozenset({"GET", "HEAD"})
# As images.paths: a stored path may not start like a Windows drive (`c:`).
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ASYMMETRIC_ALGORITHMS = frozenset({*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA"})


@dataclass(frozen=True)
class AuthenticatedUser:
    """The caller: `user_id` (None when the token names nobody usable) and the token's claims."""

    user_id: str | None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    via_signed_url: bool = False
    is_authenticated: bool = True


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
    """The verified claims of `token`; AuthenticationFailed or ServiceUnavailable otherwise."""
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
    # Imported here: DRF imports this module while images.exceptions is still importing.
    from images.exceptions import ServiceUnavailable

    try:
        return get_jwks_client().get_signing_key(kid)
    except JWKSUnavailable:
        raise ServiceUnavailable("The identity provider's keys (JWKS) are unavailable") from None
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


def user_id_from_claims(claims: dict[str, Any]) -> str | None:
    """The id in USER_IDENTIFIER's claim, else `sub`, verbatim.

    Only the exact prefixes named by USER_ID_STRIP_PREFIX are cut (data stored by the original
    service, which kept the text after the last `:`). An id with leading or trailing whitespace
    or control characters is refused rather than cleaned: `alice\t` is not alice.
    """
    for name in (settings.USER_IDENTIFIER, "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            user_id = _without_configured_prefix(value)
            for checked in (value, user_id or ""):
                if checked != checked.strip() or _has_control_characters(checked):
                    raise AuthenticationFailed(
                        f"The user id in claim '{name}' has surrounding spaces or control "
                        "characters"
                    )
            return user_id
    return None


def _without_configured_prefix(user_id: str) -> str | None:
    for prefix in settings.USER_ID_STRIP_PREFIX:
        if user_id.startswith(prefix):
            return user_id[len(prefix) :] or None
    return user_id


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in text)


def unsafe_user_id(user_id: str) -> bool:
    """True when the id could not serve, verbatim, as one storage path component (`<userId>/`).

    Such ids are refused (401), never rewritten: a rewritten id could equal another user's.
    """
    return (
        user_id.startswith(".")
        or _DRIVE_LETTER.match(user_id) is not None
        or ".." in user_id
        or any(ch in user_id for ch in "/\\")
        or _has_control_characters(user_id)
        or len(user_id.encode("utf-8", "surrogatepass")) > 255
    )


def make_user(user_id: str | None, claims: dict[str, Any], via_signed_url: bool = False):
    if user_id and unsafe_user_id(user_id):
        raise AuthenticationFailed("The user id is not usable as a storage folder name")
    if not user_id and settings.IMAGE_SCOPE == "user":
        raise AuthenticationFailed(
            f"The token has no user id (claim '{settings.USER_IDENTIFIER}' or 'sub')"
        )
    return AuthenticatedUser(user_id or None, claims, via_signed_url)


class OIDCAuthentication(BaseAuthentication):
    """Bearer JWT, or a signed URL on GET/HEAD; nothing at all while OIDC_JWKS_URI is unset."""

    def authenticate(self, request: Request):
        if not settings.OIDC_JWKS_URI:
            return None
        header = get_authorization_header(request).split()
        if header:
            return self._bearer(header)
        if request.method in SIGNED_METHODS and signing.has_signature(request.query_params):
            return self._signed_url(request)
        return None

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE

    def _bearer(self, header: list[bytes]):
        if header[0].lower() != b"bearer" or len(header) != 2:
            raise AuthenticationFailed("Send the token as 'Authorization: Bearer <JWT>'")
        try:
            token = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("The bearer token is not a well-formed JWT") from None
        claims = decode_token(token)
        return make_user(user_id_from_claims(claims), claims), token

    def _signed_url(self, request: Request):
        try:
            user_id = signing.verify(request.path_info, request.query_params)
        except signing.InvalidSignature as error:
            raise AuthenticationFailed(str(error)) from None
        return make_user(user_id, {}, via_signed_url=True), None


class AuthenticatedWhenEnabled(BasePermission):
    """Every request needs an authenticated caller while OIDC_JWKS_URI is set."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not settings.OIDC_JWKS_URI:
            return True
        return bool(getattr(request.user, "is_authenticated", False))


class OIDCAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes OIDCAuthentication (Swagger UI's Authorize button)."""

    target_class = OIDCAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list]]:
        # With auth off a call needs no token: `{}` lets clients call without one.
        bearer = {self.name: []}
        return [bearer] if settings.OIDC_JWKS_URI else [bearer, {}]
