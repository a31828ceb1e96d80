"""Signed URLs: short-lived links that a browser can follow without an Authorization header.

A signature is an HMAC-SHA256 (keyed from SECRET_KEY) over the path, the request's own query
parameters, the user id and the expiry time. It is method-agnostic (GET and HEAD use the same
link) and any replica sharing SECRET_KEY can check it. The signature, user and expiry travel as
the query parameters `signature`, `user` and `expires`, which the query parser ignores.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson
from django.conf import settings
from django.http import QueryDict
from django.utils.crypto import constant_time_compare, salted_hmac

from images.core.query import TRANSPORT_PARAMS

SIGNATURE_SALT = "imagestore.signed-url"


class InvalidSignature(Exception):
    """The signed parameters are missing, malformed, expired or do not match."""


@dataclass(frozen=True)
class SignedUrl:
    path: str
    query: str
    expires: int

    def relative(self) -> str:
        return f"{self.path}?{self.query}"


def bound_parameters(params: QueryDict) -> list[tuple[str, str]]:
    """The query parameters a signature covers: all but the transport ones, in a fixed order."""
    pairs = [(k, v) for k in params for v in params.getlist(k) if k not in TRANSPORT_PARAMS]
    return sorted(pairs)


def compute_signature(path: str, params: Iterable[tuple[str, str]], user: str, expires: int):
    # A JSON array keeps the message unambiguous whatever the parts contain.
    message = orjson.dumps([path, urlencode(list(params)), user, expires])
    return salted_hmac(SIGNATURE_SALT, message, algorithm="sha256").hexdigest()


def sign(path: str, params: QueryDict | None, user: str, lifetime: int | None = None) -> SignedUrl:
    """A signed link to `path` with `params` (the query it may carry) for `user`."""
    lifetime = settings.SIGNED_URL_LIFETIME if lifetime is None else lifetime
    expires = int(time.time()) + lifetime
    bound = bound_parameters(params) if params is not None else []
    signature = compute_signature(path, bound, user, expires)
    transport = [("expires", str(expires)), ("user", user), ("signature", signature)]
    return SignedUrl(path=path, query=urlencode(bound + transport), expires=expires)


def has_signature(params: QueryDict) -> bool:
    return "signature" in params


def verify(path: str, params: QueryDict) -> str:
    """The user id a valid signed request acts for; InvalidSignature otherwise."""
    transport = {}
    for name in TRANSPORT_PARAMS:
        values = params.getlist(name)
        if len(values) != 1:
            raise InvalidSignature(f"A signed URL needs exactly one '{name}' parameter")
        transport[name] = values[0]
    try:
        expires = int(transport["expires"])
    except ValueError:
        raise InvalidSignature("'expires' must be an integer (seconds since the epoch)") from None
    expected = compute_signature(path, bound_parameters(params), transport["user"], expires)
    if not constant_time_compare(expected, transport["signature"]):
        raise InvalidSignature("The URL signature does not match")
    if expires < time.time():
        raise InvalidSignature("The signed URL has expired")
    return transport["user"]
