"""Duplicates: `on_duplicate=reject|skip` on uploads and imports, and GET /images/duplicates."""

from __future__ import annotations

import hashlib
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.test import APIClient

from images.core.errors import RETRY_AFTER_SECONDS
from images.duplicates import claims, groups
from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes.uploads import UploadStore
from tests.helpers import image_bytes
from tests.test_archives import make_zip, post_archive
from tests.test_scope import ALICE_RED, BOB_BLUE
from tests.test_scope import world as scope_world

world = scope_world  # alice, bob and charlie, as in the scope tests
RED = image_bytes(color="red")
GREEN = image_bytes(color="green")
BLUE = image_bytes(color="blue")


@pytest.fixture(autouse=True)
def no_claims(collection):
    """Claims live in their own collection, which the service fixture does not empty."""
    collection.database["claims"].delete_many({})
    yield
    collection.database["claims"].delete_many({})


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def send(client, file: str, content: bytes, on_duplicate: str | None = None, **data):
    """POST /images with `on_duplicate` in the query string."""
    path = "/images" + (f"?on_duplicate={on_duplicate}" if on_duplicate is not None else "")
    image = io.BytesIO(content)
    image.name = file.rsplit("/", 1)[-1]
    fields = {"image": image, "file": file, "json": json.dumps({"file": file, **data})}
    return client.post(path, fields, format="multipart")


def stored_files() -> list[str]:
    return sorted(get_file_store().iter_keys())


# --- uploads ---------------------------------------------------------------------------------
def test_reject_answers_409_with_the_stored_image_and_stores_nothing(api, collection):
    first = send(api, "a/one.jpg", RED, camera="c1").json()
    response = send(api, "b/two.jpg", RED, "reject", camera="c2")
    assert response.status_code == 409
    body = response.json()
    assert body == {
        "detail": "The same bytes are already stored as 'a/one.jpg'",
        "_id": first["_id"],
        "file": "a/one.jpg",
    }
    assert collection.count_documents({}) == 1
    assert stored_files() == ["a/one.jpg"]


def test_skip_answers_200_with_the_stored_document_and_stores_nothing(api, collection):
    first = send(api, "a/one.jpg", RED, camera="c1").json()
    response = send(api, "b/two.jpg", RED, "skip", camera="c2")
    assert response.status_code == 200
    assert response.json() == first
    assert collection.count_documents({}) == 1
    assert stored_files() == ["a/one.jpg"]


def test_without_on_duplicate_the_same_bytes_are_stored_again(api, collection):
    send(api, "a/one.jpg", RED)
    response = send(api, "b/two.jpg", RED)
    assert response.status_code == 200 and response.json()["file"] == "b/two.jpg"
    assert stored_files() == ["a/one.jpg", "b/two.jpg"]


def test_the_oldest_copy_is_the_one_answered(api):
    first = send(api, "a.jpg", RED).json()
    send(api, "b.jpg", RED)
    assert send(api, "c.jpg", RED, "reject").json()["_id"] == first["_id"]
    assert send(api, "c.jpg", RED, "skip").json()["_id"] == first["_id"]


@pytest.mark.parametrize("policy", ["reject", "skip", "REJECT"])
def test_new_bytes_and_the_same_path_are_stored_as_usual(api, collection, policy):
    send(api, "a.jpg", RED, label="old")
    assert send(api, "b.jpg", GREEN, policy).json()["file"] == "b.jpg"
    again = send(api, "a.jpg", RED, policy, label="new")
    assert again.status_code == 200 and again.json()["data"] == {"label": "new"}
    # a.jpg already holds these bytes, so storing them there makes no new copy
    send(api, "c.jpg", RED)
    assert send(api, "a.jpg", RED, policy, label="newer").json()["data"] == {"label": "newer"}
    assert collection.count_documents({}) == 3


def test_replacing_a_path_with_bytes_stored_elsewhere_is_a_duplicate(api):
    send(api, "a.jpg", RED)
    send(api, "b.jpg", GREEN)
    response = send(api, "b.jpg", RED, "reject")
    assert response.status_code == 409 and response.json()["file"] == "a.jpg"
    assert b"".join(get_file_store().read_chunks("b.jpg")) == GREEN


@pytest.mark.parametrize("value", ["yes", "1", "overwrite", "reject,skip"])
def test_unknown_policy_is_400_and_stores_nothing(api, collection, value):
    response = send(api, "a.jpg", RED, value)
    assert response.status_code == 400
    assert "'on_duplicate' must be reject or skip" in response.json()["detail"]
    assert collection.count_documents({}) == 0 and stored_files() == []


def test_duplicates_are_looked_for_in_the_callers_scope_only(world):
    bob, charlie = world.clients["bob"], world.clients["charlie"]
    response = send(bob, "mine.jpg", ALICE_RED, "reject")
    assert response.status_code == 200 and response.json()["file"] == "bob/mine.jpg"
    copy = send(charlie, "c.jpg", BOB_BLUE, "skip")
    assert copy.status_code == 200 and copy.json()["file"] == "charlie/c.jpg"
    rejected = send(world.clients["alice"], "again.jpg", ALICE_RED, "reject")
    assert rejected.status_code == 409
    assert rejected.json()["_id"] == world.ids["alice"]["same.jpg"]


def test_concurrent_uploads_of_the_same_bytes_store_one_copy(api, collection, monkeypatch):
    slow_stage = UploadStore._stage

    def stage_slowly(self, key, upload, sha256, size):
        time.sleep(0.3)  # widen the window between the duplicate check and the document
        return slow_stage(self, key, upload, sha256, size)

    monkeypatch.setattr(UploadStore, "_stage", stage_slowly)
    content = image_bytes(size=(50, 40), color="purple")
    with ThreadPoolExecutor(4) as pool:
        policies = ["reject", "skip", "reject", "skip"]
        responses = list(
            pool.map(lambda i: send(APIClient(), f"copy{i}.jpg", content, policies[i]), range(4))
        )
    assert collection.count_documents({}) == 1
    stored = collection.find_one()
    assert {r.json()["_id"] for r in responses} == {str(stored["_id"])}
    for response, policy in zip(responses, policies, strict=True):
        assert response.status_code == 200 or (response.status_code, policy) == (409, "reject")
    assert sum(r.status_code == 409 for r in responses) >= 1
    assert stored_files() == [stored["file"]]


def test_a_claim_left_by_a_dead_process_is_taken_over(api, monkeypatch):
    repository = ImageRepository()
    name = f"sha256::{sha(RED)}"
    assert repository.take_claim(name, "dead", stale_seconds=120)
    assert not repository.take_claim(name, "other", stale_seconds=120)
    monkeypatch.setattr(claims, "WAIT_SECONDS", 0.2)
    response = send(api, "a.jpg", RED, "reject")
    assert response.status_code == 503
    assert "same bytes is still running" in response.json()["detail"]
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert repository.take_claim(name, "late", stale_seconds=0)
    monkeypatch.setattr(claims, "STALE_SECONDS", 0)
    assert send(api, "a.jpg", RED, "reject").status_code == 200
    assert repository.collection.database["claims"].count_documents({}) == 0


# --- imports ---------------------------------------------------------------------------------
def archive_with_copies() -> bytes:
    manifest = [
        {"file": "new/a.jpg", "data": {"n": 1}},
        {"file": "new/b.jpg", "data": {"n": 2}},
        {"file": "new/c.jpg", "data": {"n": 3}},
    ]
    return make_zip(
        {
            "new/a.jpg": GREEN,
            "new/b.jpg": GREEN,  # the same bytes as the entry before
            "new/c.jpg": RED,  # the same bytes as an image already stored
            "mongodb_data.json": json.dumps(manifest).encode(),
        }
    )


def test_import_skip_leaves_out_entries_already_stored_and_reports_them(api, collection):
    existing = send(api, "old/red.jpg", RED).json()
    response = post_archive(api, archive_with_copies(), on_duplicate="skip")
    assert response.status_code == 200
    assert response.json() == {
        "file": "archive.zip",
        "imported": 1,
        "skipped": [],
        "duplicates": [
            {"entry": "new/b.jpg", "_id": None, "file": "new/a.jpg"},
            {"entry": "new/c.jpg", "_id": existing["_id"], "file": "old/red.jpg"},
        ],
    }
    assert sorted(d["file"] for d in collection.find()) == ["new/a.jpg", "old/red.jpg"]
    assert stored_files() == ["new/a.jpg", "old/red.jpg"]
    assert "on_duplicate" not in collection.find_one({"file": "new/a.jpg"})["data"]


def test_import_reject_lists_the_duplicates_as_skipped_too(api, collection):
    existing = send(api, "old/red.jpg", RED).json()
    body = post_archive(api, archive_with_copies(), on_duplicate="reject").json()
    assert body["imported"] == 1
    assert body["skipped"] == [
        {"entry": "new/b.jpg", "reason": "the same bytes are already stored as 'new/a.jpg'"},
        {"entry": "new/c.jpg", "reason": "the same bytes are already stored as 'old/red.jpg'"},
    ]
    assert [d["_id"] for d in body["duplicates"]] == [None, existing["_id"]]
    assert stored_files() == ["new/a.jpg", "old/red.jpg"]


def test_import_without_on_duplicate_stores_every_copy_as_the_original(api, collection):
    send(api, "old/red.jpg", RED)
    body = post_archive(api, archive_with_copies()).json()
    assert body == {"file": "archive.zip", "imported": 3, "skipped": []}
    assert collection.count_documents({}) == 4


def test_reimport_with_skip_updates_the_same_paths(api, collection):
    assert post_archive(api, archive_with_copies(), on_duplicate="skip").json()["imported"] == 2
    again = post_archive(api, archive_with_copies(), json='{"batch": 2}', on_duplicate="skip")
    body = again.json()
    assert body["imported"] == 2
    assert [d["entry"] for d in body["duplicates"]] == ["new/b.jpg"]
    assert collection.find_one({"file": "new/a.jpg"})["data"] == {"n": 1, "batch": 2}


def test_import_entries_repeating_one_stored_image_all_name_it(api, collection):
    existing = send(api, "old/red.jpg", RED).json()
    content = make_zip({"x/1.jpg": RED, "x/2.jpg": RED, "x/3.jpg": GREEN})
    body = post_archive(api, content, on_duplicate="skip").json()
    assert body["imported"] == 1
    assert body["duplicates"] == [
        {"entry": "x/1.jpg", "_id": existing["_id"], "file": "old/red.jpg"},
        {"entry": "x/2.jpg", "_id": existing["_id"], "file": "old/red.jpg"},
    ]
    assert collection.database["claims"].count_documents({}) == 0


def test_import_leaves_out_bytes_another_request_is_storing(api, collection):
    repository = ImageRepository()
    assert repository.take_claim(f"sha256::{sha(RED)}", "upload-in-flight", 120)
    content = make_zip({"a.jpg": RED, "b.jpg": GREEN})
    body = post_archive(api, content, on_duplicate="reject").json()
    assert body["imported"] == 1
    assert body["duplicates"] == [{"entry": "a.jpg", "_id": None, "file": None}]
    assert body["skipped"] == [
        {
            "entry": "a.jpg",
            "reason": "the same bytes are already stored by another request right now",
        }
    ]
    assert stored_files() == ["b.jpg"]
    claims_left = list(collection.database["claims"].find({}, {"token": 1, "_id": 0}))
    assert claims_left == [{"token": "upload-in-flight"}]


def test_import_policy_is_checked_in_scope_and_bad_values_are_400(world):
    alice, bob = world.clients["alice"], world.clients["bob"]
    content = make_zip({"blue.jpg": BOB_BLUE, "red.jpg": ALICE_RED})
    body = post_archive(alice, content, on_duplicate="skip").json()
    assert body["imported"] == 1
    assert body["duplicates"] == [
        {"entry": "red.jpg", "_id": world.ids["alice"]["same.jpg"], "file": "alice/same.jpg"}
    ]
    bad = post_archive(bob, content, on_duplicate="maybe")
    assert bad.status_code == 400
    assert world.collection.count_documents({"userId": "bob"}) == 2


# --- GET /images/duplicates ------------------------------------------------------------------
@pytest.fixture
def copies(api) -> dict[str, list[str]]:
    """Three images with RED's bytes, two with GREEN's, one with BLUE's."""
    ids: dict[str, list[str]] = {}
    for index, content in enumerate([RED, GREEN, RED, BLUE, GREEN, RED]):
        document = send(api, f"f{index}.jpg", content).json()
        ids.setdefault(sha(content), []).append(document["_id"])
    return ids


def group(ids: list[str], files: list[str], content: bytes) -> dict:
    items = [{"_id": i, "file": f} for i, f in zip(ids, files, strict=True)]
    return {"sha256": sha(content), "count": len(ids), "items": items}


def test_duplicates_are_groups_of_the_same_bytes_in_hash_order(api, copies):
    response = api.get("/images/duplicates")
    assert response.status_code == 200
    expected = sorted(
        [
            group(copies[sha(RED)], ["f0.jpg", "f2.jpg", "f5.jpg"], RED),
            group(copies[sha(GREEN)], ["f1.jpg", "f4.jpg"], GREEN),
        ],
        key=lambda g: g["sha256"],
    )
    assert response.json() == {"limit": 100, "items": expected, "next": None}


def test_duplicates_page_by_hash(api, copies):
    first = api.get("/images/duplicates?limit=1").json()
    assert len(first["items"]) == 1 and first["next"] == first["items"][0]["sha256"]
    second = api.get(f"/images/duplicates?limit=1&after={first['next']}").json()
    assert len(second["items"]) == 1 and second["items"][0]["sha256"] > first["next"]
    last = api.get(f"/images/duplicates?limit=1&after={second['next']}").json()
    assert last == {"limit": 1, "items": [], "next": None}
    both = api.get("/images/duplicates?limit=2").json()
    assert both["items"] == first["items"] + second["items"]


def test_duplicates_list_at_most_a_group_size_of_items_but_count_them_all(api, copies, monkeypatch):
    monkeypatch.setattr(groups, "MAX_GROUP_ITEMS", 2)
    red = next(g for g in api.get("/images/duplicates").json()["items"] if g["count"] == 3)
    assert [item["_id"] for item in red["items"]] == copies[sha(RED)][:2]


def test_duplicates_stop_reading_hashes_when_the_page_is_full(api, copies, monkeypatch):
    read = []
    original = ImageRepository.iter_sha256

    def counted(self, after=""):
        for value in original(self, after):
            read.append(value)
            yield value

    singles = [image_bytes(size=(8 + i, 8)) for i in range(8)]
    for index, content in enumerate(singles):
        send(api, f"single{index}.jpg", content)
    monkeypatch.setattr(ImageRepository, "iter_sha256", counted)
    page = api.get("/images/duplicates?limit=1").json()
    hashes = sorted([sha(RED)] * 3 + [sha(GREEN)] * 2 + [sha(c) for c in [BLUE, *singles]])
    group_end = hashes.index(page["next"]) + hashes.count(page["next"])
    assert len(read) == group_end + 1 < len(hashes)  # the group's end, then one more hash


def test_duplicates_are_the_callers_own(world):
    alice = world.clients["alice"].get("/images/duplicates").json()
    assert alice["items"] == [
        {
            "sha256": sha(ALICE_RED),
            "count": 2,
            "items": [
                {"_id": world.ids["alice"]["same.jpg"], "file": "alice/same.jpg"},
                {"_id": world.ids["alice"]["cam/a1.jpg"], "file": "alice/cam/a1.jpg"},
            ],
        }
    ]
    bob = world.clients["bob"].get("/images/duplicates").json()
    assert [g["sha256"] for g in bob["items"]] == [sha(BOB_BLUE)]
    assert {i["file"] for i in bob["items"][0]["items"]} == {"bob/same.jpg", "bob/b2.jpg"}
    assert world.clients["charlie"].get("/images/duplicates").json()["items"] == []


@pytest.mark.parametrize(
    "query", [f"after={'0' * 129}", "after=a%00b", "limit=0", "limit=1001", "limit=-1", "limit=a"]
)
def test_bad_duplicate_page_parameters_are_400(api, query):
    response = api.get(f"/images/duplicates?{query}")
    assert response.status_code == 400
    assert "'after'" in response.json()["detail"] or "'limit'" in response.json()["detail"]


def test_hashes_written_by_other_services_page_too(api, collection):
    send(api, "a.jpg", RED)
    send(api, "b.jpg", RED)
    collection.insert_many(
        [{"file": f"legacy{i}.jpg", "sha256": "0ABC-legacy", "userId": None} for i in range(2)]
    )
    first = api.get("/images/duplicates?limit=1").json()
    assert first["next"] == "0ABC-legacy"
    second = api.get("/images/duplicates", {"limit": 1, "after": first["next"]}).json()
    assert [g["sha256"] for g in second["items"]] == [sha(RED)]


def test_the_owner_hash_index_exists(collection, api):
    # MongoDB walks it for the listing; the test server's plans scan instead, so only its
    # presence is checked here.
    send(api, "a.jpg", RED)
    indexes = [spec["key"] for spec in collection.index_information().values()]
    assert [("userId", 1), ("sha256", 1)] in indexes


def test_documented_in_the_schema(api):
    schema = api.get("/docs/schema", {"format": "json"}).json()
    assert "/images/duplicates" in schema["paths"]
    upload_parameters = schema["paths"]["/images"]["post"]["parameters"]
    assert "on_duplicate" in {p["name"] for p in upload_parameters}
    form = schema["components"]["schemas"]["ArchiveImportRequest"]["properties"]
    assert "on_duplicate" in form
