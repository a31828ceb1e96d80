"""The in-memory index of perceptual hashes (images.duplicates.hash_index) on a replica set:
it finds exactly what the band index finds, in the same order, for every scope, distance and
page, and stays current through inserts, replacements, hash updates, deletes, a dropped
collection and another process writing while it answers."""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest
from bson import ObjectId
from pymongo.errors import PyMongoError

from images.duplicates import near_copies
from images.duplicates.hash_index import HashIndex, index_for
from images.duplicates.perceptual import bands
from images.store.repository import ImageRepository, get_collection

pytestmark = pytest.mark.replica_set

OWNERS = [None, "alice", "bob"]


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(64):016x}"


def near(phash: str, rng: random.Random, flips: int) -> str:
    value = int(phash, 16)
    for bit in rng.sample(range(64), flips):
        value ^= 1 << bit
    return f"{value:016x}"


def document(phash: str, owner: str | None, file: str) -> dict:
    stored = {"_id": ObjectId(), "file": file, "phash": phash, "phashBands": bands(phash)}
    if owner is not None:
        stored["userId"] = owner
    return stored


def families(rng: random.Random, count: int, size: int, prefix: str = "f") -> list[dict]:
    """`count` families of `size` hashes, each within 0-14 bits of its first, owners mixed."""
    documents = []
    for family in range(count):
        first = random_hash(rng)
        for member in range(size):
            phash = first if member == 0 else near(first, rng, rng.randint(0, 14))
            owner = rng.choice(OWNERS)
            documents.append(document(phash, owner, f"{prefix}{family}/{member}.jpg"))
    return documents


def built(collection, timeout: float = 30) -> HashIndex:
    index = index_for(collection)
    assert index is not None, "a replica set supports the in-memory index"
    index.start()
    deadline = time.monotonic() + timeout
    while not index.ready:
        assert time.monotonic() < deadline, "the index was not built in time"
        time.sleep(0.01)
    return index


def both_ways(repository, phash, within, limit, settings, **options):
    """The answer through memory (asserted to be used), then through the band index."""
    index = index_for(repository.collection)
    assert index is not None and index.ready
    found = near_copies.near_copies(repository, phash, within, limit, **options)
    settings.SIMILAR_MEMORY_INDEX = False
    try:
        expected = near_copies.near_copies(repository, phash, within, limit, **options)
    finally:
        settings.SIMILAR_MEMORY_INDEX = True
    return found, expected


def summary(found) -> tuple:
    return found.total, [(near.distance, near.id, near.document["file"]) for near in found]


@pytest.fixture
def collection(on_replica_set):
    return get_collection()


def test_memory_and_band_index_answer_alike(collection, settings):
    rng = random.Random(7)
    documents = families(rng, 40, 25)
    collection.insert_many(documents)
    built(collection)
    for _ in range(120):
        probe = rng.choice(documents)
        phash = near(probe["phash"], rng, rng.randint(0, 6))
        owner = rng.choice(OWNERS)
        within = rng.choice([0, 4, 10, 12])
        limit = rng.choice([1, 5, 1000])
        after = rng.choice([None, probe["_id"]])
        exclude = rng.choice([None, probe["_id"]])
        found, expected = both_ways(
            ImageRepository(owner), phash, within, limit, settings, after=after, exclude=exclude
        )
        assert summary(found) == summary(expected)


def test_exclude_file_and_projection_match_the_band_index(collection, settings):
    rng = random.Random(8)
    documents = families(rng, 5, 30)
    for stored in documents:
        stored["data"] = {"split": rng.choice(["train", "test"])}
    collection.insert_many(documents)
    built(collection)
    probe = documents[0]
    options = {"exclude_file": probe["file"], "projection": {"data.split": 1}}
    found, expected = both_ways(ImageRepository(), probe["phash"], 12, 3, settings, **options)
    assert summary(found) == summary(expected)
    assert probe["file"] not in [near.document["file"] for near in found]
    assert all("split" in near.document["data"] for near in found)


def test_every_kind_of_write_is_seen_by_the_next_lookup(collection, settings):
    rng = random.Random(9)
    collection.insert_many(families(rng, 3, 10))
    built(collection)
    repository = ImageRepository()
    phash = random_hash(rng)
    for round_number in range(30):  # each write is found at once, with no wait in between
        added = document(near(phash, rng, 2), None, f"new/{round_number}.jpg")
        collection.insert_one(added)
        assert added["_id"] in {near.id for near in near_copies.near_copies(repository, phash, 4)}
    target = collection.find_one({"file": "new/0.jpg"})
    far = f"{int(phash, 16) ^ (2**64 - 1):016x}"
    collection.update_one({"_id": target["_id"]}, {"$set": {"phash": far}})
    assert target["_id"] not in {n.id for n in near_copies.near_copies(repository, phash, 4)}
    assert target["_id"] in {n.id for n in near_copies.near_copies(repository, far, 0)}
    collection.update_one({"_id": target["_id"]}, {"$unset": {"phash": ""}})
    assert near_copies.near_copies(repository, far, 0) == []
    replaced = collection.find_one({"file": "new/1.jpg"})
    collection.replace_one({"_id": replaced["_id"]}, {**replaced, "phash": far})
    assert [n.id for n in near_copies.near_copies(repository, far, 0)] == [replaced["_id"]]
    collection.delete_many({"file": {"$regex": "^new/"}})
    assert near_copies.near_copies(repository, phash, 4) == []
    found, expected = both_ways(repository, phash, 12, 1000, settings)
    assert summary(found) == summary(expected)


def test_an_owner_never_sees_another_owners_images(collection):
    rng = random.Random(10)
    phash = random_hash(rng)
    collection.insert_many([document(phash, owner, f"{owner}.jpg") for owner in OWNERS])
    index = built(collection)
    for owner in OWNERS:
        found = near_copies.near_copies(ImageRepository(owner), phash, 0)
        assert found.total == (3 if owner is None else 1)
        if owner is not None:
            assert [near.document["file"] for near in found] == [f"{owner}.jpg"]
    stranger = near_copies.near_copies(ImageRepository("carol"), phash, 0)
    assert (stranger, stranger.total) == ([], 0)
    assert index.nearest(phash, 0, 10, owner="carol") == []


def test_many_inserts_are_merged_into_the_sorted_arrays(collection, settings):
    rng = random.Random(11)
    collection.insert_many(families(rng, 2, 10))
    index = built(collection)
    later = families(
        rng, 30, 60, prefix="later"
    )  # 1,800 images: more than MERGE_AFTER waiting at once
    collection.insert_many(later)
    probe = later[-1]["phash"]
    found, expected = both_ways(ImageRepository(), probe, 12, 1000, settings)
    assert summary(found) == summary(expected)
    assert index.recent == {} and index.size == 20 + len(later)
    assert list(index.ids) == sorted(index.ids)


def test_a_dropped_collection_is_rebuilt_and_answers_meanwhile(collection, settings):
    rng = random.Random(12)
    documents = families(rng, 3, 10)
    collection.insert_many(documents)
    index = built(collection)
    collection.drop()
    collection.insert_many(documents[:5])
    probe = documents[0]["phash"]
    during = near_copies.near_copies(ImageRepository(), probe, 14, 1000)  # the band index
    assert {near.id for near in during} == {stored["_id"] for stored in documents[:5]}
    deadline = time.monotonic() + 30
    while not index.ready:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    found, expected = both_ways(ImageRepository(), probe, 14, 1000, settings)
    assert summary(found) == summary(expected) and found.total == 5


def test_another_process_writing_meanwhile(collection, settings, on_replica_set):
    """A second process inserts and deletes while lookups run; afterwards, and at every
    lookup, memory and the band index agree on what has been written."""
    rng = random.Random(13)
    phash = random_hash(rng)
    collection.insert_many([document(near(phash, rng, 3), None, f"a/{n}.jpg") for n in range(50)])
    built(collection)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, on_replica_set.uri(collection.database.name), phash],
        stderr=subprocess.PIPE,
    )
    repository = ImageRepository()
    lookups = 0
    while writer.poll() is None:
        found = near_copies.near_copies(repository, phash, 8, 1000)
        assert all(near.distance <= 8 for near in found)
        lookups += 1
    assert writer.returncode == 0, writer.stderr.read()
    found, expected = both_ways(repository, phash, 8, 5000, settings)
    assert summary(found) == summary(expected)
    assert found.total == 50 + 1500 - 500 and lookups > 5


WRITER = """
import random, sys
from bson import ObjectId
from pymongo.errors import PyMongoError
from pymongo import MongoClient
from images.duplicates.perceptual import bands
collection = MongoClient(sys.argv[1]).get_default_database()["images"]
rng = random.Random(1)
value = int(sys.argv[2], 16)
ids = []
for batch in range(15):
    documents = []
    for n in range(100):
        phash = f"{value ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)):016x}"
        documents.append({"_id": ObjectId(), "file": f"w/{batch}/{n}.jpg", "phash": phash,
                          "phashBands": bands(phash)})
    collection.insert_many(documents)
    ids += [stored["_id"] for stored in documents]
    if batch % 3 == 2:
        doomed = ids[:100]
        ids = ids[100:]
        collection.delete_many({"_id": {"$in": doomed}})
"""


def test_a_standalone_server_uses_the_band_index(service, collection_standalone):
    index = index_for(collection_standalone)
    assert index is not None
    index.start()
    deadline = time.monotonic() + 10
    while index.supported:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert index_for(collection_standalone) is None


@pytest.fixture
def collection_standalone():
    return get_collection()


# --- through the API, on real photos ----------------------------------------------------------
def test_the_api_answers_from_memory_and_sees_each_upload_at_once(api, collection, settings):
    from tests.test_near_duplicates import ASTRONAUT, ASTRONAUT_CROP, ASTRONAUT_Q50, COFFEE, send

    index = built(collection)
    first = send(api, "train/a.jpg", ASTRONAUT, split="train").json()
    send(api, "train/coffee.jpg", COFFEE)
    refused = send(api, "test/b.jpg", ASTRONAUT_CROP, "?on_duplicate=reject&similar=10")
    assert refused.status_code == 409 and refused.json()["_id"] == first["_id"]
    leak = send(api, "test/c.jpg", ASTRONAUT_Q50, "?check_leak=split", split="test")
    assert leak.status_code == 409, leak.content
    stored = send(api, "train/c.jpg", ASTRONAUT_Q50, split="train").json()
    similar = api.get(f"/images/{first['_id']}/similar").json()
    assert [item["_id"] for item in similar["items"]] == [stored["_id"]]
    settings.SIMILAR_MEMORY_INDEX = False
    assert api.get(f"/images/{first['_id']}/similar").json() == similar
    assert index.ready and index.size == 3


@pytest.mark.slow
def test_a_new_primary_leaves_no_gap_in_the_index(tmp_path, settings):
    """Three members; the primary steps down between writes. The stream resumes on the new
    primary (or the index is rebuilt): afterwards memory and the band index agree."""
    from images.store import repository as store
    from tests.test_failover import ReplicaSet

    members = ReplicaSet(tmp_path / "set")
    members.start()
    try:
        settings.MONGODB_CONNECTION_STRING = members.uri("hash_index_failover")
        store.close_client()
        collection = get_collection()
        rng = random.Random(14)
        phash = random_hash(rng)
        before = [document(near(phash, rng, 2), None, f"before/{n}.jpg") for n in range(30)]
        collection.insert_many(before)
        index = built(collection)
        first = members.wait_for_primary()
        members.step_down(first)
        members.wait_for_primary(other_than=first)
        after = [document(near(phash, rng, 3), None, f"after/{n}.jpg") for n in range(30)]
        deadline = time.monotonic() + 30
        while True:  # the first writes after an election may still find no primary
            try:
                collection.insert_many(after)
                collection.delete_many({"file": {"$in": [d["file"] for d in before[:10]]}})
                break
            except PyMongoError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        deadline = time.monotonic() + 60
        while True:
            if index.ready:
                found, expected = both_ways(ImageRepository(), phash, 8, 1000, settings)
                if found.total == 50:
                    break
            assert time.monotonic() < deadline, "the index never caught up with the new primary"
            near_copies.near_copies(ImageRepository(), phash, 8, 1000)
            time.sleep(0.2)
        assert summary(found) == summary(expected)
    finally:
        store.close_client()
        members.stop()
