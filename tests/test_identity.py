"""The user id is the token's claim verbatim: no cut at ':' and no trimming, unless configured."""

from __future__ import annotations

import pytest

from tests.helpers import client_for, image_bytes, upload

SERVICE_ACCOUNT_A = "system:serviceaccount:team-a:default"
SERVICE_ACCOUNT_B = "system:serviceaccount:team-b:default"


@pytest.fixture
def scoped(oidc, settings):
    settings.IMAGE_SCOPE = "user"
    settings.USER_ID_STRIP_PREFIX = []
    return oidc


def alices_image(oidc) -> str:
    response = upload(client_for(oidc, "alice"), "secret.jpg", image_bytes(color="red"))
    assert response.status_code == 200, response.content
    assert response.json()["file"] == "alice/secret.jpg"
    return response.json()["_id"]


def test_a_prefixed_claim_is_another_user(scoped):
    image_id = alices_image(scoped)
    mallory = client_for(scoped, "mallory:alice")
    assert mallory.get("/images").json()["total"] == 0
    assert mallory.get(f"/images/{image_id}").status_code == 404
    assert mallory.delete("/images?file=alice/secret.jpg").json()["deletedCount"] == 0
    mine = upload(mallory, "secret.jpg").json()
    assert mine["file"] == "mallory:alice/secret.jpg" and mine["userId"] == "mallory:alice"
    assert client_for(scoped, "alice").get(f"/images/{image_id}").status_code == 200


@pytest.mark.parametrize(
    "claim",
    [
        "alice\t",
        " alice",
        "alice ",
        "alice\n",
        "\u00a0alice",
        "al\x7fice",
        "\u202ealice",
        "a\u2028",
    ],
)
def test_ids_with_surrounding_spaces_or_control_characters_are_401(scoped, claim):
    alices_image(scoped)
    response = client_for(scoped, claim).get("/images")
    assert response.status_code == 401, response.content
    assert "user id" in response.json()["detail"]


def test_kubernetes_service_accounts_of_two_namespaces_are_two_users(scoped):
    team_a, team_b = client_for(scoped, SERVICE_ACCOUNT_A), client_for(scoped, SERVICE_ACCOUNT_B)
    created = upload(team_a, "model.jpg", image_bytes(color="green")).json()
    assert created["file"] == f"{SERVICE_ACCOUNT_A}/model.jpg"
    assert team_b.get(f"/images/{created['_id']}/image").status_code == 404
    assert team_b.delete(f"/images/{created['_id']}").status_code == 404
    assert team_b.delete("/images?file=model.jpg").json()["deletedCount"] == 0
    assert team_a.get(f"/images/{created['_id']}/image").status_code == 200


def test_strip_prefix_cuts_only_the_exact_configured_prefix(scoped, settings):
    settings.USER_ID_STRIP_PREFIX = ["system:serviceaccount:team-a:"]
    cut = upload(client_for(scoped, SERVICE_ACCOUNT_A), "a.jpg").json()
    assert cut["userId"] == "default" and cut["file"] == "default/a.jpg"
    kept = upload(client_for(scoped, SERVICE_ACCOUNT_B), "b.jpg").json()
    assert kept["userId"] == SERVICE_ACCOUNT_B
    assert client_for(scoped, "default").get(f"/images/{cut['_id']}").status_code == 200
    assert client_for(scoped, SERVICE_ACCOUNT_B).get(f"/images/{cut['_id']}").status_code == 404


def test_what_is_left_after_the_prefix_is_checked_too(scoped, settings):
    settings.USER_ID_STRIP_PREFIX = ["sa:"]
    assert client_for(scoped, "sa: alice").get("/images").status_code == 401
    assert client_for(scoped, "sa:alice").get("/images").status_code == 200


def test_strip_prefix_is_off_by_default():
    from imagestore import settings as configured

    assert configured.USER_ID_STRIP_PREFIX == []
