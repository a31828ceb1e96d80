"""Lists, exports and change pages hold documents by bytes (DOCUMENT_BUFFER_SIZE), not by
count: a list that fits is answered whole, a larger one streams the same bytes; a read asks
for fewer documents a batch once they turn out large; an export reads ahead a bounded number of
bytes; a change page ends at the budget and its `next` goes on from there.

In-process, with a small budget; tests/test_list_memory.py measures a `serve` worker."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from bson import ObjectId

from images.archives.streams import prefetched
from images.core.query import ImageQuery
from images.store import repository
from images.store.repository import ImageRepository
from tests.helpers import batch_sizes_asked
from tests.test_changes import changes_since, current_cursor
from tests.test_near_duplicates import ASTRONAUT, ASTRONAUT_HALF, ASTRONAUT_Q50, stored

BUDGET = 64 * 1024
VALUE = "abcdefghij" * 2_000  # 20 KB of `data`: four documents pass the budget


@pytest.fixture
def large(collection) -> list[str]:
    """12 documents of about 20 KB, written straight to the collection; their ids in order."""
    documents = [
        {
            "_id": ObjectId(),
            "file": f"large/{index:02d}.jpg",
            "userId": None,
            "time": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            "data": {"n": index, "value": VALUE},
        }
        for index in range(12)
    ]
    collection.insert_many(documents)
    return [str(document["_id"]) for document in documents]


def body(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content) if response.streaming else response.content


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 10},
        {"limit": 12},
        {"limit": 20, "skip": 3},
        {"limit": 5, "sort": "file", "order": "-1"},
        {"limit": 10, "select": "-_id"},
        {"limit": 0},
        {"limit": 0, "select": "file data.n"},
    ],
)
def test_a_list_past_the_budget_streams_the_bytes_of_the_whole_answer(api, large, settings, params):
    settings.DOCUMENT_BUFFER_SIZE = 16 * 1024 * 1024
    whole = api.get("/images", params)
    settings.DOCUMENT_BUFFER_SIZE = BUDGET
    streamed = api.get("/images", params)
    assert whole.streaming == (params["limit"] == 0)
    assert streamed.streaming
    content = body(streamed)
    assert content == body(whole)
    listed = json.loads(content)
    assert listed["total"] == 12
    skip = params.get("skip", 0)
    expected = min(params["limit"] or 12, 12 - skip)
    assert len(listed["items"]) == expected
    if params.get("select") == "-_id":
        assert all("_id" not in item for item in listed["items"])
    elif "sort" not in params:
        assert [item["_id"] for item in listed["items"]] == large[skip : skip + expected]


def test_a_list_within_the_budget_is_answered_whole(api, large, settings):
    settings.DOCUMENT_BUFFER_SIZE = BUDGET
    response = api.get("/images", {"limit": 2})
    assert not response.streaming
    assert int(response["Content-Length"]) == len(response.content)
    assert response.json()["total"] == 12 and len(response.json()["items"]) == 2


@pytest.mark.parametrize(
    ("sort", "projection"),
    [([("_id", 1)], None), ([("data.n", -1), ("_id", -1)], None), ([("_id", 1)], {"_id": 0})],
)
def test_a_read_asks_for_fewer_documents_a_batch_once_they_are_large(
    large, settings, monkeypatch, sort, projection
):
    settings.DOCUMENT_BUFFER_SIZE = BUDGET
    asked = batch_sizes_asked(monkeypatch)
    query = ImageQuery(filter={}, sort=sort, limit=0, projection=projection)
    found = list(ImageRepository().find_resumable(query, batch_size=10))
    numbers = [document["data"]["n"] for document, _size in found]
    assert numbers == (list(range(12)) if sort[0][1] == 1 else list(range(11, -1, -1)))
    assert all(20_000 < size < 21_000 for _document, size in found)
    # 10 a batch at first; then as many as fit 64 KiB: 3, after the last one delivered.
    assert asked == [10, 3]
    if projection:
        assert all("_id" not in document for document, _size in found)


def test_an_export_reads_ahead_at_most_the_budget():
    size, budget = 1000, 3500
    consumed = 0
    most_ahead = 0

    def items():
        nonlocal most_ahead
        for index in range(50):
            # Asked for the next item only once the last one found room.
            most_ahead = max(most_ahead, index - consumed)
            yield index, size

    taken = []
    for item, _size in prefetched(items(), ahead=100, budget=budget):
        taken.append(item)
        consumed += 1
        if item == 0:
            threading.Event().wait(0.2)  # a reader that stalls: the producer runs ahead
    assert taken == list(range(50))
    # Three fit the budget; one more is with the reader, one being made.
    assert most_ahead <= budget // size + 2


def test_a_change_page_ends_at_the_budget_and_next_goes_on(api, on_replica_set, settings):
    settings.DOCUMENT_BUFFER_SIZE = BUDGET
    cursor = current_cursor(api)
    collection = repository.get_collection()
    ids = []
    for index in range(7):
        document = {"_id": ObjectId(), "file": f"{index}.jpg", "userId": None}
        collection.insert_one({**document, "data": {"value": VALUE}})
        ids.append(str(document["_id"]))
    seen: list[str] = []
    pages = []
    for _ in range(4):
        changes, cursor = changes_since(api, cursor, limit=100)
        if not changes:
            break
        pages.append(len(changes))
        seen += [change["_id"] for change in changes]
    assert seen == ids
    assert pages == [4, 3]  # a page stops once its changes passed 64 KiB


def test_similar_images_past_the_budget_stream_the_bytes_of_the_whole_answer(
    api, collection, settings
):
    original = stored(api, "a.jpg", ASTRONAUT)
    for name, picture in [("b.jpg", ASTRONAUT), ("q50.jpg", ASTRONAUT_Q50), ("c.jpg", ASTRONAUT)]:
        stored(api, name, picture)
    stored(api, "half.png", ASTRONAUT_HALF)
    collection.update_many({}, {"$set": {"data.value": VALUE}})
    settings.DOCUMENT_BUFFER_SIZE = 16 * 1024 * 1024
    whole = api.get(f"/images/{original['_id']}/similar")
    settings.DOCUMENT_BUFFER_SIZE = BUDGET
    streamed = api.get(f"/images/{original['_id']}/similar")
    assert not whole.streaming and streamed.streaming
    content = body(streamed)
    assert content == body(whole)
    items = json.loads(content)["items"]
    assert {item["file"] for item in items} == {"b.jpg", "c.jpg", "q50.jpg", "half.png"}
    ranks = [(item["distance"], item["_id"]) for item in items]
    assert ranks == sorted(ranks)  # nearest, then oldest
    assert all(item["data"]["value"] == VALUE for item in items)
