"""IMAGE_SCOPE=user: each user's change feed holds their own images' changes only, deletes
included (matched on the owner the deleted document had)."""

from __future__ import annotations

import json

from tests.helpers import image_bytes, upload
from tests.test_scope import client_for


def write_some(client, user: str) -> list[str]:
    """Insert two images, update one, delete the other; their ids."""
    ids = []
    for name in ("same.jpg", f"{user}.jpg"):
        body = json.dumps({"file": name, "owner": user})
        response = upload(client, name, image_bytes(color="red"), json=body)
        assert response.status_code == 200, response.content
        ids.append(response.json()["_id"])
    assert client.patch(f"/images/{ids[0]}", {"seen": 1}, format="json").status_code == 200
    assert client.delete(f"/images/{ids[1]}").status_code == 200
    return ids


def test_two_users_feeds_never_mix(oidc, settings, on_replica_set):
    settings.IMAGE_SCOPE = "user"
    alice, bob = client_for(oidc, "alice"), client_for(oidc, "bob")
    cursors = {name: c.get("/changes").json()["next"] for name, c in (("a", alice), ("b", bob))}

    alice_ids = write_some(alice, "alice")
    bob_ids = write_some(bob, "bob")

    for client, cursor, ids, user in (
        (alice, cursors["a"], alice_ids, "alice"),
        (bob, cursors["b"], bob_ids, "bob"),
    ):
        changes = client.get("/changes", {"since": cursor}).json()["changes"]
        assert [(c["op"], c["_id"]) for c in changes] == [
            ("insert", ids[0]),
            ("insert", ids[1]),
            ("update", ids[0]),
            ("delete", ids[1]),
        ]
        assert {c["userId"] for c in changes if c["op"] != "delete"} == {user}
        assert changes[3]["file"] == f"{user}/{user}.jpg"


def test_a_cursor_of_another_user_shows_only_the_callers_changes(oidc, settings, on_replica_set):
    settings.IMAGE_SCOPE = "user"
    alice, bob = client_for(oidc, "alice"), client_for(oidc, "bob")
    alices_cursor = alice.get("/changes").json()["next"]
    write_some(alice, "alice")

    assert bob.get("/changes", {"since": alices_cursor}).json()["changes"] == []


def test_the_feed_needs_a_token_when_auth_is_on(oidc, on_replica_set, api):
    assert api.get("/changes").status_code == 401
