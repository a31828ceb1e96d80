"""A local identity provider for the tests: keys, a JWKS served on 127.0.0.1, and token minting.

The `oidc` fixture switches auth on for one test; tests/conftest.py makes it available to all.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


@cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make: one per name for the whole session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private_key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk.update(kid=kid, use="sig")
    if alg:
        jwk["alg"] = alg
    return jwk


class JWKSHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        provider: IdentityProvider = self.server.provider  # type: ignore[attr-defined]
        with provider.lock:
            provider.fetches += 1
        if provider.hang_seconds:
            provider.released.wait(provider.hang_seconds)
        status, body = provider.response()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting (its timeout is shorter than the hang)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class IdentityProvider:
    """Serves a JWKS on 127.0.0.1 whose keys a test can add and remove; mints tokens.

    `fetches` counts the requests the JWKS received (counted on arrival). With `hang_seconds`
    set, each request waits that long (or until `released` is set) before it is answered: an
    identity provider that hangs.
    """

    def __init__(self) -> None:
        self.private_keys: dict[str, tuple[Any, str]] = {}
        self.published: dict[str, dict[str, Any]] = {}
        self.fetches = 0
        self.lock = threading.Lock()
        self.hang_seconds = 0.0
        self.released = threading.Event()
        # A realm of its own: a port the OS reuses must not hit another test's cached keys.
        self.realm = uuid.uuid4().hex
        self.raw_body: bytes | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), JWKSHandler)
        self.server.provider = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def jwks_uri(self) -> str:
        port = self.server.server_port
        return f"http://127.0.0.1:{port}/realms/{self.realm}/protocol/openid-connect/certs"

    def response(self) -> tuple[int, bytes]:
        if self.raw_body is not None:
            return 200, self.raw_body
        return 200, json.dumps({"keys": list(self.published.values())}).encode()

    def add_key(self, kid: str, private_key: Any, alg: str, announce_alg: bool = True) -> None:
        self.private_keys[kid] = (private_key, alg)
        self.published[kid] = public_jwk(private_key, kid, alg if announce_alg else None)

    def remove_key(self, kid: str) -> None:
        self.published.pop(kid, None)

    def token(
        self,
        kid: str = "rsa",
        lifetime: int = 300,
        alg: str | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with `kid`'s private key; claims default to a valid one for alice."""
        private_key, key_alg = self.private_keys[kid]
        now = int(time.time())
        payload = {"preferred_username": "alice", "sub": "id-alice", "iat": now, "nbf": now}
        payload["exp"] = now + lifetime
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(
            payload, private_key, algorithm=alg or key_alg, headers={"kid": kid, **(headers or {})}
        )

    def auth(self, user: str = "alice", **options: Any) -> dict[str, str]:
        """Request headers carrying a valid token for `user`."""
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token(preferred_username=user, **options)}"}

    def stop(self) -> None:
        self.released.set()  # no request handler stays hung
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def oidc(settings) -> Iterator[IdentityProvider]:
    """Auth on: a JWKS with an RSA (`rsa`, RS256) and an EC (`ec`, ES256) key."""
    provider = IdentityProvider()
    provider.add_key("rsa", rsa_key("main"), "RS256")
    provider.add_key("ec", ec_key(), "ES256")
    settings.OIDC_JWKS_URI = provider.jwks_uri
    settings.OIDC_JWKS_LIFESPAN = 300
    settings.OIDC_JWKS_COOLDOWN = 0
    settings.OIDC_AUDIENCE = ""
    settings.OIDC_ISSUER = ""
    settings.USER_IDENTIFIER = "preferred_username"
    yield provider
    provider.stop()
