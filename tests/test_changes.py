"""`GET /changes` on a replica set of one: every kind of write, in order, resumable, long-polled,
and the cursors it refuses (400 malformed, 410 expired, 501 on a standalone server)."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from images.store import repository
from testing.harness import DatabaseServer
from tests.conftest import TEST_DATABASE
from tests.helpers import image_bytes, upload


def current_cursor(api) -> str:
    response = api.get("/changes")
    assert response.status_code == 200, response.content
    assert response.json()["changes"] == []
    return response.json()["next"]


def changes_since(api, cursor: str, **params) -> tuple[list[dict], str]:
    response = api.get("/changes", {"since": cursor, **params})
    assert response.status_code == 200, response.content
    return response.json()["changes"], response.json()["next"]


def stored(api, name: str, color: str = "red", **data) -> dict:
    response = upload(api, name, image_bytes(color=color), json=json.dumps({"file": name, **data}))
    assert response.status_code == 200, response.content
    return response.json()


def test_every_kind_of_write_in_order(api, on_replica_set):
    cursor = current_cursor(api)
    first = stored(api, "a.jpg", label="cat")
    second = stored(api, "b.jpg")
    third = stored(api, "c.jpg")
    fourth = stored(api, "d.jpg")
    assert api.patch(f"/images/{first['_id']}", {"label": "dog"}, format="json").status_code == 200
    reuploaded = stored(api, "b.jpg", color="blue")
    assert api.delete(f"/images/{third['_id']}").status_code == 200
    assert api.delete("/images?file=d.jpg").status_code == 200

    changes, _ = changes_since(api, cursor)

    assert [(c["op"], c["_id"]) for c in changes] == [
        ("insert", first["_id"]),
        ("insert", second["_id"]),
        ("insert", third["_id"]),
        ("insert", fourth["_id"]),
        ("update", first["_id"]),
        ("update", second["_id"]),
        ("delete", third["_id"]),
        ("delete", fourth["_id"]),
    ]
    assert changes[0]["data"] == {"label": "cat"} and changes[4]["data"] == {"label": "dog"}
    assert changes[5]["sha256"] == reuploaded["sha256"] != second["sha256"]
    assert changes[6]["file"] == "c.jpg" and changes[6]["time"] == third["time"]
    assert all(change["changedAt"] for change in changes)


def test_an_update_of_an_image_deleted_since_is_left_to_its_delete(api, on_replica_set):
    cursor = current_cursor(api)
    image = stored(api, "a.jpg")
    api.patch(f"/images/{image['_id']}", {"label": "dog"}, format="json")
    api.delete(f"/images/{image['_id']}")

    changes, _ = changes_since(api, cursor)

    assert [c["op"] for c in changes] == ["insert", "delete"]


def test_pages_resume_from_next_and_end_with_nothing(api, on_replica_set):
    cursor = current_cursor(api)
    ids = [stored(api, f"{n}.jpg")["_id"] for n in range(5)]

    seen = []
    for _ in range(3):
        page, cursor = changes_since(api, cursor, limit=2)
        seen += [change["_id"] for change in page]
    assert seen == ids
    assert changes_since(api, cursor)[0] == []


def test_a_new_cursor_sees_only_later_changes(api, on_replica_set):
    stored(api, "old.jpg")
    cursor = current_cursor(api)
    new = stored(api, "new.jpg")

    changes, _ = changes_since(api, cursor)

    assert [c["_id"] for c in changes] == [new["_id"]]


def test_long_poll_returns_as_soon_as_a_change_arrives(api, on_replica_set):
    cursor = current_cursor(api)
    writer = threading.Timer(1.0, lambda: repository.ImageRepository().collection.insert_one(
        {"_id": repository.new_object_id(), "file": "late.jpg", "userId": None, "data": {}}
    ))  # fmt: skip
    started = time.monotonic()
    writer.start()

    changes, _ = changes_since(api, cursor, wait=20)

    elapsed = time.monotonic() - started
    writer.join()
    assert [c["file"] for c in changes] == ["late.jpg"]
    assert 0.9 < elapsed < 4, elapsed


def test_long_poll_without_a_change_answers_empty_after_the_wait(api, on_replica_set):
    cursor = current_cursor(api)
    started = time.monotonic()

    changes, after = changes_since(api, cursor, wait=1.5)

    assert changes == []
    assert 1.4 < time.monotonic() - started < 4
    assert after


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "abc",
        base64.urlsafe_b64encode(b"\x00" * 20).decode().rstrip("="),
        base64.urlsafe_b64encode(b"\x82" + b"\x00" * 9 + b"\xff" * 6).decode().rstrip("="),
    ],
)
def test_a_malformed_cursor_is_400(api, on_replica_set, cursor):
    response = api.get("/changes", {"since": cursor})

    assert response.status_code == 400, response.content
    assert "cursor" in response.json()["detail"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"wait": 31}, {"wait": "x"}])
def test_out_of_range_limits_are_400(api, on_replica_set, params):
    assert api.get("/changes", params).status_code == 400


def test_a_standalone_server_answers_501(api):
    response = api.get("/changes")

    assert response.status_code == 501
    assert "replica set" in response.json()["detail"]


@pytest.mark.slow
def test_a_cursor_older_than_the_oplog_is_410(api, service, settings, tmp_path):
    server = DatabaseServer(
        tmp_path / "rs-small", replica_set="rs0", oplog_mb=1, extra=["--syncdelay", "1"]
    )
    server.start()
    try:
        settings.MONGODB_CONNECTION_STRING = server.uri(TEST_DATABASE)
        repository.close_client()
        cursor = current_cursor(api)
        stored(api, "a.jpg")
        roll_the_oplog_past(repository.get_collection().database)

        response = api.get("/changes", {"since": cursor})

        assert response.status_code == 410
        assert "full resync" in response.json()["detail"]
    finally:
        repository.close_client()
        server.stop()


def roll_the_oplog_past(database, timeout: float = 60) -> None:
    """Write until the first entry of the oplog is one of these writes (the oplog is cut only
    behind a checkpoint: hence `--syncdelay 1`)."""
    oplog = database.client.local["oplog.rs"]
    filler = database["filler"]
    marker = filler.insert_one({"first": True}).inserted_id
    written = oplog.find_one({"o._id": marker})["ts"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        filler.insert_many([{"pad": "x" * 100_000} for _ in range(10)])
        if oplog.find_one({}, sort=[("$natural", 1)])["ts"] > written:
            return
    raise AssertionError("the oplog did not roll over")
