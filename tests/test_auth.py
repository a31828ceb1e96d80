"""OIDC bearer authentication against a JWKS served on 127.0.0.1 (see tests/oidc.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

from images.api.auth.tokens import get_jwks_client
from images.core.errors import RETRY_AFTER_SECONDS
from tests.helpers import upload
from tests.oidc import ec_key, ed25519_key, rsa_key

PROTECTED = [
    ("get", "/images"),
    ("patch", "/images"),
    ("delete", "/images"),
    ("post", "/images"),
    ("get", "/images/0123456789abcdef01234567"),
    ("get", "/images/0123456789abcdef01234567/image"),
    ("post", "/images/0123456789abcdef01234567/url"),
    ("get", "/fields"),
    ("get", "/fields/color"),
    ("post", "/export/url"),
]
PUBLIC = [
    "/",
    "/docs/",
    "/docs/schema",
    "/metrics",
    "/health/live",
    "/health/ready",
    "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css",
]


def assert_unauthorized(response, words: str = "") -> None:
    assert response.status_code == 401, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert words.lower() in response.json()["detail"].lower()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade_token(header: dict, claims: dict, sign) -> str:
    """A JWT built without PyJWT, which refuses to make the forged ones these tests need."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def valid_claims() -> dict:
    now = int(time.time())
    return {"preferred_username": "alice", "iat": now, "exp": now + 300}


# --- on and off --------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_api_route_needs_a_token(api, oidc, method, path):
    assert_unauthorized(getattr(api, method)(path), "credentials were not provided")


def test_auth_off_ignores_authorization_headers(api):
    response = api.get("/images", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert response.status_code == 200


@pytest.mark.parametrize("path", PUBLIC)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic YTpi"])
def test_public_routes_stay_public(api, oidc, path, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = api.get(path, **headers)
    assert response.status_code == 200, (path, response.content[:200])


def test_info_tells_whether_auth_is_on_but_never_the_token(api, oidc):
    token = oidc.token()
    response = api.get("/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.json()["auth"]["enabled"] is True
    assert token not in response.content.decode()


def test_schema_declares_the_bearer_scheme(api, oidc):
    schema = api.get("/docs/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


# --- valid tokens ------------------------------------------------------------------------------
@pytest.mark.parametrize("kid", ["rsa", "ec"])
def test_valid_token_is_accepted(api, oidc, kid):
    response = api.get("/images", **oidc.auth(kid=kid))
    assert response.status_code == 200
    assert response.json()["total"] == 0


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS512"])
def test_rsa_key_without_announced_alg_takes_every_rsa_algorithm(api, oidc, alg):
    oidc.add_key("plain-rsa", rsa_key("main"), alg, announce_alg=False)
    assert api.get("/images", **oidc.auth(kid="plain-rsa")).status_code == 200


def test_eddsa_and_p384_keys_are_accepted(api, oidc):
    oidc.add_key("ed", ed25519_key(), "EdDSA")
    oidc.add_key("p384", ec.generate_private_key(ec.SECP384R1()), "ES384", announce_alg=False)
    assert api.get("/images", **oidc.auth(kid="ed")).status_code == 200
    assert api.get("/images", **oidc.auth(kid="p384")).status_code == 200


def test_authorization_scheme_is_case_insensitive(api, oidc):
    response = api.get("/images", HTTP_AUTHORIZATION=f"bearer {oidc.token()}")
    assert response.status_code == 200


def test_expiry_within_the_leeway_is_accepted(api, oidc):
    assert api.get("/images", **oidc.auth(lifetime=-5)).status_code == 200


def test_jwks_is_fetched_once_and_the_client_is_shared(api, oidc):
    for _ in range(3):
        assert api.get("/images", **oidc.auth()).status_code == 200
    assert oidc.fetches == 1
    assert get_jwks_client() is get_jwks_client()


# --- rejected tokens ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authorization", "words"),
    [
        ("Bearer", "Authorization: Bearer"),
        ("Bearer a b", "Authorization: Bearer"),
        ("Basic YWxpY2U6c2VjcmV0", "Authorization: Bearer"),
        ("Bearer not-a-jwt", "well-formed"),
        ("Bearer a.b.c", "well-formed"),
    ],
)
def test_malformed_authorization_is_401(api, oidc, authorization, words):
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=authorization), words)


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"lifetime": -120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not yet valid"),
        ({"iat": int(time.time()) + 600}, "not yet valid"),
        ({"exp": None}, "exp"),
    ],
    ids=["expired", "not-yet-valid", "issued-in-the-future", "no-exp"],
)
def test_token_outside_its_lifetime_is_401(api, oidc, claims, words):
    assert_unauthorized(api.get("/images", **oidc.auth(**claims)), words)


def test_token_signed_by_another_key_with_a_known_kid_is_401(api, oidc):
    oidc.private_keys["impostor"] = (rsa_key("impostor"), "RS256")
    token = oidc.token(kid="impostor", headers={"kid": "rsa"})
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"), "signature")


def test_token_without_kid_is_401(api, oidc):
    token = jwt.encode(valid_claims(), rsa_key("main"), algorithm="RS256")
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"), "kid")


def test_alg_none_is_401(api, oidc):
    token = jwt.encode(valid_claims(), None, algorithm="none", headers={"kid": "rsa"})
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"), "algorithm")


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hmac_signed_with_the_public_key_is_401(api, oidc, alg):
    public_pem = (
        rsa_key("main")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    digest = hashlib.sha256 if alg == "HS256" else hashlib.sha512
    token = handmade_token(
        {"alg": alg, "typ": "JWT", "kid": "rsa"},
        valid_claims(),
        lambda message: hmac.new(public_pem, message, digest).digest(),
    )
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"), "algorithm")


def test_hmac_key_in_the_jwks_is_never_used(api, oidc):
    secret = b"0123456789abcdef0123456789abcdef"
    oidc.published["oct"] = {"kty": "oct", "kid": "oct", "k": b64(secret), "alg": "HS256"}
    token = jwt.encode(valid_claims(), secret, algorithm="HS256", headers={"kid": "oct"})
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"))


@pytest.mark.parametrize(
    ("header", "claims"),
    [
        ({"alg": ["RS256"], "kid": "rsa"}, {}),
        ({"alg": "RS256", "kid": ["rsa"]}, {}),
        ({"alg": "RS256", "kid": "rsa"}, {"exp": "soon"}),
        ({"alg": "RS256", "kid": "rsa"}, {"iat": [1]}),
        ({"alg": "RS256", "kid": "rsa"}, {"nbf": 10**40}),
    ],
)
def test_odd_headers_and_claims_are_401_not_500(api, oidc, header, claims):
    private_key = rsa_key("main")
    token = handmade_token(
        {"typ": "JWT", **header},
        {**valid_claims(), **claims},
        lambda message: private_key.sign(message, padding.PKCS1v15(), hashes.SHA256()),
    )
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"))


def test_jwks_with_odd_keys_is_503_not_500(api, oidc):
    oidc.raw_body = json.dumps(
        {"keys": [{"kty": "RSA", "kid": "rsa", "alg": ["RS256"], "n": "AQAB", "e": "AQAB"}]}
    ).encode()
    assert api.get("/images", **oidc.auth()).status_code == 503


def test_algorithm_comes_from_the_jwk_not_the_token(api, oidc):
    # The `rsa` key announces RS256: a PS256 signature by the same key is refused.
    token = oidc.token(kid="rsa", alg="PS256")
    assert_unauthorized(api.get("/images", HTTP_AUTHORIZATION=f"Bearer {token}"), "algorithm")


# --- key rotation ------------------------------------------------------------------------------
def test_unknown_kid_is_401_then_accepted_once_the_jwks_has_it(api, oidc):
    assert api.get("/images", **oidc.auth()).status_code == 200
    new_key = ec_key()
    oidc.private_keys["rotated"] = (new_key, "ES256")
    assert_unauthorized(api.get("/images", **oidc.auth(kid="rotated")), "unknown")
    oidc.add_key("rotated", new_key, "ES256")
    assert api.get("/images", **oidc.auth(kid="rotated")).status_code == 200
    assert oidc.fetches == 3


def test_unknown_kids_refetch_at_most_once_per_cooldown(api, oidc, settings):
    settings.OIDC_JWKS_COOLDOWN = 60
    assert api.get("/images", **oidc.auth()).status_code == 200
    oidc.private_keys["unknown"] = (ec_key(), "ES256")
    for _ in range(3):
        assert_unauthorized(api.get("/images", **oidc.auth(kid="unknown")), "unknown")
    assert oidc.fetches == 1


def test_removed_key_stops_working_after_the_cache_lifespan(api, oidc, settings):
    settings.OIDC_JWKS_LIFESPAN = 1
    assert api.get("/images", **oidc.auth(kid="ec")).status_code == 200
    oidc.remove_key("ec")
    assert api.get("/images", **oidc.auth(kid="ec")).status_code == 200  # still cached
    time.sleep(1.1)
    assert_unauthorized(api.get("/images", **oidc.auth(kid="ec")), "unknown")
    assert api.get("/images", **oidc.auth(kid="rsa")).status_code == 200


# --- identity provider failures ----------------------------------------------------------------
def test_unreachable_jwks_is_503(api, oidc):
    oidc.stop()
    response = api.get("/images", **oidc.auth())
    assert response.status_code == 503
    assert "JWKS" in response.json()["detail"]
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


@pytest.mark.parametrize("body", [b"<html>login</html>", b"[]", b'{"keys": []}', b'{"x": 1}'])
def test_broken_jwks_is_503(api, oidc, body):
    oidc.raw_body = body
    response = api.get("/images", **oidc.auth())
    assert response.status_code == 503
    assert "JWKS" in response.json()["detail"]


def test_cached_keys_outlive_a_jwks_outage(api, oidc):
    assert api.get("/images", **oidc.auth()).status_code == 200
    oidc.stop()
    assert api.get("/images", **oidc.auth()).status_code == 200


# --- audience and issuer -----------------------------------------------------------------------
def test_audience_is_checked_when_configured(api, oidc, settings):
    assert api.get("/images", **oidc.auth(aud="account")).status_code == 200
    settings.OIDC_AUDIENCE = "imagestore"
    assert_unauthorized(api.get("/images", **oidc.auth(aud="account")), "audience")
    assert_unauthorized(api.get("/images", **oidc.auth()), "aud")
    assert api.get("/images", **oidc.auth(aud=["account", "imagestore"])).status_code == 200


def test_issuer_is_checked_when_configured(api, oidc, settings):
    settings.OIDC_ISSUER = "https://kc.example/realms/lab"
    assert_unauthorized(api.get("/images", **oidc.auth(iss="https://evil.example")), "issuer")
    assert_unauthorized(api.get("/images", **oidc.auth()), "iss")
    assert api.get("/images", **oidc.auth(iss=settings.OIDC_ISSUER)).status_code == 200


# --- the user id -------------------------------------------------------------------------------
def stored_file(api, headers) -> str:
    api.credentials(**headers)
    response = upload(api, "photo.jpg")
    assert response.status_code == 200, response.content
    return response.json()["file"]


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"preferred_username": "alice"}, "alice"),
        ({"preferred_username": "service-account:alice"}, "service-account:alice"),
        ({"preferred_username": "ab:c:carol"}, "ab:c:carol"),
        ({"preferred_username": None, "sub": "f3a1-99"}, "f3a1-99"),
        ({"preferred_username": "", "sub": "f3a1-99"}, "f3a1-99"),
        ({"preferred_username": 42, "sub": "f3a1-99"}, "f3a1-99"),
    ],
)
def test_user_id_comes_from_the_claim_then_sub(api, oidc, settings, claims, expected):
    settings.IMAGE_SCOPE = "user"
    headers = {"HTTP_AUTHORIZATION": f"Bearer {oidc.token(**claims)}"}
    assert stored_file(api, headers) == f"{expected}/photo.jpg"


def test_user_identifier_names_the_claim(api, oidc, settings):
    settings.IMAGE_SCOPE = "user"
    settings.USER_IDENTIFIER = "email"
    headers = {"HTTP_AUTHORIZATION": f"Bearer {oidc.token(email='dana@example.org')}"}
    assert stored_file(api, headers) == "dana@example.org/photo.jpg"


def test_token_without_a_user_id_is_401_only_under_user_scope(api, oidc, settings):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {oidc.token(preferred_username=None, sub=None)}"}
    assert api.get("/images", **headers).status_code == 200
    settings.IMAGE_SCOPE = "user"
    assert_unauthorized(api.get("/images", **headers), "no user id")
    settings.USER_ID_STRIP_PREFIX = ["service-account:"]
    assert_unauthorized(api.get("/images", **oidc.auth(user="service-account:")), "no user id")


@pytest.mark.parametrize(
    "user_id",
    ["a/b", "a\\b", "..", "a..b", ".hidden", "x\x00y", "tab\there", "é" * 200, "c:carol", "a:b"],
)
def test_user_id_unsafe_as_a_folder_name_is_401(api, oidc, settings, user_id):
    settings.IMAGE_SCOPE = "user"
    assert_unauthorized(api.get("/images", **oidc.auth(user=user_id)), "user id")
