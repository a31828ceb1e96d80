"""OIDC bearer tokens verified against a JWKS, and signed URLs, as one DRF authentication.

Active only when settings.OIDC_JWKS_URI is set (read per request). A request authenticates
with `Authorization: Bearer <JWT>` (verified by images.api.auth.tokens), or, for GET/HEAD, with a signed
URL (images.api.auth.signing).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from images.api.auth import signing

WWW_AUTHENTICATE = 'Bearer realm="imagestore"'
SIGNED_METHODS = frozenset({"GET", "HEAD"})
# As images.core.paths: a stored path may not start like a Windows drive (`c:`).
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class AuthenticatedUser:
    """The caller: `user_id` (None when the token names nobody usable) and the token's claims."""

    user_id: str | None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    via_signed_url: bool = False
    is_authenticated: bool = True


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
        from images.api.auth.tokens import decode_token  # PyJWT only once a token arrives

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
        bearer: dict[str, list] = {self.name: []}
        return [bearer] if settings.OIDC_JWKS_URI else [bearer, {}]
