"""JWKS refetches while the identity provider hangs: tokens with unknown key ids (`kid`) never
hold up a token whose key is cached, and refetch the JWKS at most once per cooldown.

The served test runs the same flood against `manage.py serve` with one gevent worker, where
every request shares one OS thread.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from rest_framework.test import APIClient

from images.core.errors import RETRY_AFTER_SECONDS
from tests.oidc import IdentityProvider, ec_key, rsa_key

# Longer than the client's 5 s timeout (images.api.auth.tokens.JWKS_TIMEOUT_SECONDS): the fetch
# fails by timing out; the provider's handler is released when the test ends.
HANG_SECONDS = 30
# A blocking check, not a benchmark: a request stuck behind the hung fetch takes 5 s.
KNOWN_KID_BOUND = 2.5
# Long enough that a burst of requests on a loaded machine ends inside one cooldown.
COOLDOWN = 4
PAST_COOLDOWN = COOLDOWN + 0.1
UNKNOWN_SENDERS = 24


def timed_get(headers: dict[str, str]) -> tuple[int, float, dict]:
    """Status, seconds taken and body of GET /images, from a client of this thread's own."""
    started = time.monotonic()
    response = APIClient().get("/images", **headers)
    elapsed = time.monotonic() - started
    return response.status_code, elapsed, {**response.json(), "retry": response.get("Retry-After")}


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def unknown_kid_tokens(oidc: IdentityProvider, count: int, wave: str) -> list[str]:
    """Tokens signed by the provider's own key but naming a key id its JWKS does not hold."""
    return [oidc.token(headers={"kid": f"{wave}-{n}"}) for n in range(count)]


def wait_for_fetches(oidc: IdentityProvider, count: int, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while oidc.fetches < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert oidc.fetches == count


def test_unknown_kids_never_hold_up_a_cached_key_while_the_provider_hangs(oidc, settings):
    settings.OIDC_JWKS_COOLDOWN = COOLDOWN
    assert timed_get(oidc.auth())[0] == 200  # the JWKS is fetched and cached
    time.sleep(
        PAST_COOLDOWN
    )  # past the cooldown that first fetch started: an unknown kid may refetch

    oidc.hang_seconds = HANG_SECONDS
    with ThreadPoolExecutor(max_workers=UNKNOWN_SENDERS + 4) as pool:
        flood = [
            pool.submit(timed_get, bearer(t))
            for t in unknown_kid_tokens(oidc, UNKNOWN_SENDERS, "a")
        ]
        wait_for_fetches(oidc, 2)  # one of them is waiting on the hung provider

        # Twelve known-kid requests at once (both keys) while that fetch hangs; and meanwhile a
        # second wave of unknown kids, which start no fetch while one is in flight.
        known = [pool.submit(timed_get, oidc.auth(kid=kid)) for kid in ["rsa", "ec"] * 2]
        known += [pool.submit(timed_get, oidc.auth()) for _ in range(8)]
        second_wave = [timed_get(bearer(t)) for t in unknown_kid_tokens(oidc, 8, "b")]
        known_results = [future.result() for future in known]
        flood_results = [future.result() for future in flood]

    assert [status for status, _, _ in known_results] == [200] * 12
    assert max(elapsed for _, elapsed, _ in known_results) < KNOWN_KID_BOUND, known_results

    # The one that fetched waited for the client's timeout and got 503; every other unknown kid
    # was refused at once with 401.
    fetched = [r for r in flood_results if r[0] == 503]
    refused = [r for r in flood_results if r[0] == 401] + second_wave
    assert len(fetched) == 1 and fetched[0][1] >= 4, flood_results
    assert "JWKS" in fetched[0][2]["detail"]
    assert len(refused) == UNKNOWN_SENDERS - 1 + 8, flood_results
    assert max(elapsed for _, elapsed, _ in refused) < KNOWN_KID_BOUND
    assert all("being fetched" in body["detail"] for _, _, body in refused), refused

    # Within the cooldown after that failure: an unknown kid is 503 at once, as an unreachable
    # provider always is; a known kid is still served from the cache.
    status, elapsed, body = timed_get(bearer(unknown_kid_tokens(oidc, 1, "c")[0]))
    assert (status, body["retry"]) == (503, str(RETRY_AFTER_SECONDS)), body
    assert elapsed < KNOWN_KID_BOUND
    assert "JWKS" in body["detail"]
    assert timed_get(oidc.auth())[0] == 200
    assert oidc.fetches == 2  # the first fetch, and one refetch the hung provider received


def test_unknown_kids_refetch_at_most_once_per_cooldown_however_many_arrive(oidc, settings):
    settings.OIDC_JWKS_COOLDOWN = COOLDOWN
    assert timed_get(oidc.auth())[0] == 200
    time.sleep(PAST_COOLDOWN)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(timed_get, map(bearer, unknown_kid_tokens(oidc, 40, "a"))))
    assert {status for status, _, _ in results} == {401}
    assert oidc.fetches == 2  # the first fetch and one refetch: the others were refused
    assert any(f"at most once every {COOLDOWN} s" in body["detail"] for _, _, body in results)


def test_a_rotated_key_is_picked_up_once_the_cooldown_has_passed(oidc, settings):
    settings.OIDC_JWKS_COOLDOWN = COOLDOWN
    assert timed_get(oidc.auth())[0] == 200
    oidc.add_key("rotated", ec_key(), "ES256")  # published just after the JWKS was fetched
    status, _, body = timed_get(oidc.auth(kid="rotated"))
    assert status == 401 and "unknown" in body["detail"].lower()
    assert oidc.fetches == 1
    time.sleep(PAST_COOLDOWN)
    assert timed_get(oidc.auth(kid="rotated"))[0] == 200
    assert timed_get(oidc.auth(kid="rsa"))[0] == 200
    assert oidc.fetches == 2


def test_a_rotated_key_is_picked_up_after_a_failed_refetch_and_the_cooldown(oidc, settings):
    settings.OIDC_JWKS_COOLDOWN = COOLDOWN
    assert timed_get(oidc.auth())[0] == 200
    time.sleep(PAST_COOLDOWN)
    new_key = ec_key()
    oidc.private_keys["rotated"] = (new_key, "ES256")
    oidc.raw_body = b"<html>maintenance</html>"  # the provider is broken
    assert timed_get(oidc.auth(kid="rotated"))[0] == 503
    assert oidc.fetches == 2
    oidc.raw_body = None
    oidc.add_key("rotated", new_key, "ES256")  # back, with the new key
    assert timed_get(oidc.auth(kid="rotated"))[0] == 503  # no refetch within the cooldown
    assert timed_get(oidc.auth(kid="rsa"))[0] == 200
    assert oidc.fetches == 2
    time.sleep(PAST_COOLDOWN)
    assert timed_get(oidc.auth(kid="rotated"))[0] == 200
    assert oidc.fetches == 3


def test_an_expired_jwks_is_fetched_once_for_every_waiting_token(oidc, settings):
    settings.OIDC_JWKS_LIFESPAN = 1
    settings.OIDC_JWKS_COOLDOWN = 60
    assert timed_get(oidc.auth())[0] == 200
    time.sleep(1.1)  # the cached set expired: every token needs the refetch, whatever the cooldown
    oidc.hang_seconds = 0.5
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(timed_get, [oidc.auth() for _ in range(8)]))
    assert [status for status, _, _ in results] == [200] * 8
    assert oidc.fetches == 2


@pytest.mark.slow
def test_served_by_one_gevent_worker_a_cached_key_is_never_held_up(start_server):
    provider = IdentityProvider()
    provider.add_key("rsa", rsa_key("main"), "RS256")
    try:
        server = start_server(
            OIDC_JWKS_URI=provider.jwks_uri, OIDC_JWKS_COOLDOWN=str(COOLDOWN), WEB_CONCURRENCY="1"
        )
        # One client for every thread: a client each would spend the bound on its TLS setup.
        limits = httpx.Limits(max_connections=UNKNOWN_SENDERS + 8)
        with httpx.Client(base_url=server.url, timeout=30, limits=limits) as client:

            def get(headers: dict[str, str]) -> tuple[int, float]:
                started = time.monotonic()
                status = client.get("/images", headers=headers).status_code
                return status, time.monotonic() - started

            known = {"Authorization": f"Bearer {provider.token()}"}
            assert get(known)[0] == 200
            time.sleep(PAST_COOLDOWN)
            provider.hang_seconds = HANG_SECONDS
            tokens = unknown_kid_tokens(provider, UNKNOWN_SENDERS, "a")
            with ThreadPoolExecutor(max_workers=UNKNOWN_SENDERS + 4) as pool:
                flood = [pool.submit(get, {"Authorization": f"Bearer {t}"}) for t in tokens]
                wait_for_fetches(provider, 2)
                known_results = list(pool.map(get, [known] * 12))
                flood_results = [future.result() for future in flood]
        assert [status for status, _ in known_results] == [200] * 12
        assert max(elapsed for _, elapsed in known_results) < KNOWN_KID_BOUND, known_results
        assert sorted(status for status, _ in flood_results) == [401] * (UNKNOWN_SENDERS - 1) + [
            503
        ]
        assert provider.fetches == 2
    finally:
        provider.stop()
