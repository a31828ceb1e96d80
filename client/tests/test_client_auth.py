"""The client's auth against a service with OIDC on: tokens from the test JWKS, client credentials."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

import pytest
from conftest import LocalHTTPServer, Service, cli, cli_environment, image_bytes

from imagestore_client import Client, ClientCredentials, Unauthorized
from tests.oidc import IdentityProvider, rsa_key

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


@pytest.fixture(scope="module")
def identity() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add_key("rsa", rsa_key("main"), "RS256")
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def secured(identity, tmp_path_factory) -> Iterator[Service]:
    env = {"OIDC_JWKS_URI": identity.jwks_uri, "IMAGE_SCOPE": "user", "OIDC_JWKS_COOLDOWN": "0"}
    running = Service(tmp_path_factory.mktemp("secured"), env)
    running.start()
    yield running
    running.stop()


class TokenEndpoint(LocalHTTPServer):
    """A client-credentials token endpoint: checks the client's secret, mints tokens for it."""

    def __init__(self, identity: IdentityProvider, expires_in: int, first_expired: bool = False):
        endpoint = self
        self.fetches = 0
        self.expires_in = expires_in
        self.first_expired = first_expired

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                credentials = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
                if form.get("grant_type") != ["client_credentials"] or credentials != "cli:s3cret":
                    self._send(401, {"error": "invalid_client"})
                    return
                endpoint.fetches += 1
                lifetime = -120 if endpoint.first_expired and endpoint.fetches == 1 else 300
                token = identity.token(lifetime=lifetime, preferred_username="svc")
                self._send(200, {"access_token": token, "expires_in": endpoint.expires_in})

            def _send(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format, *args) -> None:
                pass

        self.start_server(Handler)

    @property
    def url(self) -> str:
        return f"{super().url}/token"


def test_without_a_token_the_error_carries_the_detail(secured):
    with Client(secured.url) as anonymous, pytest.raises(Unauthorized) as error:
        anonymous.count()
    assert error.value.status == 401
    assert error.value.detail


def test_a_token_from_the_jwks_works_and_scopes_the_push(secured, identity, tmp_path):
    token = identity.token(preferred_username="alice")
    with Client(secured.url, token=token) as alice:
        alice.delete_many(all=True)
        document = alice.upload(image_bytes(1), "cam/a.png", {"k": 1})
        assert document["file"] == "alice/cam/a.png"
    tree = tmp_path / "tree"
    (tree / "cam").mkdir(parents=True)
    (tree / "cam" / "a.png").write_bytes(image_bytes(1))
    (tree / "cam" / "b.png").write_bytes(image_bytes(2))
    result = cli(secured.url, "--token", token, "push", str(tree))
    assert result.returncode == 0, result.stderr
    # The stored copy of cam/a.png is recognised under alice's folder: only b.png is new.
    assert "1 uploaded" in result.stdout
    assert "1 skipped" in result.stdout
    with Client(secured.url, token=identity.token(preferred_username="bob")) as bob:
        assert bob.count() == 0
    bad = cli(secured.url, "--token", "not-a-jwt", "ls")
    assert bad.returncode == 1
    assert "401" in bad.stderr


def test_the_token_and_url_can_come_from_the_environment(secured, identity):
    token = identity.token(preferred_username="carol")
    with Client(secured.url, token=token) as carol:
        carol.upload(image_bytes(3), "env.png")
    env = {**cli_environment(), "IMAGESTORE_TOKEN": token, "IMAGESTORE_URL": secured.url}
    result = subprocess.run(
        [sys.executable, "-m", "imagestore_client", "ls"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "carol/env.png" in result.stdout


def test_client_credentials_are_refreshed_before_they_expire(secured, identity):
    short = TokenEndpoint(identity, expires_in=20)  # inside the 30 s margin: always renewed
    long = TokenEndpoint(identity, expires_in=3600)
    try:
        with Client(secured.url, auth=ClientCredentials(short.url, "cli", "s3cret")) as client:
            for _ in range(3):
                client.count()
        with Client(secured.url, auth=ClientCredentials(long.url, "cli", "s3cret")) as client:
            for _ in range(3):
                client.count()
    finally:
        short.stop()
        long.stop()
    assert short.fetches == 3
    assert long.fetches == 1


def test_a_rejected_token_is_fetched_again_once(secured, identity):
    endpoint = TokenEndpoint(identity, expires_in=3600, first_expired=True)
    try:
        with Client(secured.url, auth=ClientCredentials(endpoint.url, "cli", "s3cret")) as client:
            assert client.count() >= 0
    finally:
        endpoint.stop()
    assert endpoint.fetches == 2


def test_cli_client_credentials_and_a_wrong_secret(secured, identity):
    endpoint = TokenEndpoint(identity, expires_in=3600)
    try:
        base = ["--token-url", endpoint.url, "--client-id", "cli"]
        good = cli(secured.url, *base, "--client-secret", "s3cret", "ls")
        wrong = cli(secured.url, *base, "--client-secret", "nope", "ls")
        partial = cli(secured.url, "--token-url", endpoint.url, "ls")
    finally:
        endpoint.stop()
    assert good.returncode == 0, good.stderr
    assert wrong.returncode == 1
    assert "Token endpoint answered 401" in wrong.stderr
    assert partial.returncode == 2
