"""Near-copies by perceptual hash, on scikit-image's photos and copies of them re-encoded,
resized and cropped: `phash` facts, `GET /images/<id>/similar`, near groups, split leaks,
`similar` and `check_leak` on uploads and imports, and `backfill_facts`."""

from __future__ import annotations

import io
import json
import random
from functools import cache

import pytest
import skimage.data
from django.core.management import call_command
from PIL import Image

from images.duplicates import near_groups
from images.duplicates.perceptual import (
    MAX_DISTANCE,
    band_keys,
    band_radii,
    bands,
    distance,
)
from images.store.repository import ImageRepository
from tests.archives_helpers import make_zip, post_archive
from tests.helpers import image_bytes
from tests.test_scope import world as scope_world

world = scope_world


@pytest.fixture(autouse=True)
def no_claims(collection):
    collection.database["claims"].delete_many({})
    yield
    collection.database["claims"].delete_many({})


@cache
def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


ASTRONAUT = jpeg(photo("astronaut"))
ASTRONAUT_Q50 = jpeg(photo("astronaut"), quality=50)
ASTRONAUT_HALF = png(photo("astronaut").resize((256, 256)))
COFFEE = jpeg(photo("coffee"))


def cropped(image: Image.Image, share: float = 0.05) -> Image.Image:
    width, height = image.size
    left, top = int(width * share / 2), int(height * share / 2)
    return image.crop((left, top, width - left, height - top))


ASTRONAUT_CROP = jpeg(cropped(photo("astronaut")))  # 6 bits from the original


def send(client, file: str, content: bytes, query: str = "", **data):
    image = io.BytesIO(content)
    image.name = file.rsplit("/", 1)[-1]
    fields = {"image": image, "json": json.dumps({"file": file, **data})}
    return client.post(f"/images{query}", fields, format="multipart")


def stored(client, file: str, content: bytes, **data) -> dict:
    response = send(client, file, content, **data)
    assert response.status_code == 200, response.content
    return response.json()


# --- the hash -------------------------------------------------------------------------------
def test_a_picture_gets_a_perceptual_hash_and_its_bands_stay_inside(api, collection):
    document = stored(api, "a.jpg", ASTRONAUT)
    assert len(document["phash"]) == 16 and int(document["phash"], 16) >= 0
    assert "phashBands" not in document
    assert "phashBands" not in api.get(f"/images/{document['_id']}").json()
    listed = api.get("/images").json()["items"]
    assert "phashBands" not in listed[0] and listed[0]["phash"] == document["phash"]
    raw = collection.find_one({"file": "a.jpg"})
    assert raw["phashBands"] == bands(document["phash"])


def test_copies_hash_near_and_other_photos_far(api):
    original = stored(api, "a.jpg", ASTRONAUT)["phash"]
    assert distance(original, stored(api, "q50.jpg", ASTRONAUT_Q50)["phash"]) <= 4
    assert distance(original, stored(api, "half.png", ASTRONAUT_HALF)["phash"]) <= 4
    assert distance(original, stored(api, "coffee.jpg", COFFEE)["phash"]) > MAX_DISTANCE


def test_a_file_that_is_no_picture_has_no_hash_and_no_similar(api, settings):
    settings.ALLOW_NON_IMAGES = True
    response = send(api, "notes.txt", b"just text, no picture")
    assert response.status_code == 200, response.content
    assert "phash" not in response.json()
    answer = api.get(f"/images/{response.json()['_id']}/similar")
    assert answer.status_code == 422
    assert "perceptual hash" in answer.json()["detail"]


def test_replacing_a_picture_with_a_non_picture_drops_its_hash(api, settings, collection):
    settings.ALLOW_NON_IMAGES = True
    stored(api, "a.jpg", ASTRONAUT)
    stored(api, "a.jpg", b"not a picture any more")
    raw = collection.find_one({"file": "a.jpg"})
    assert "phash" not in raw and "phashBands" not in raw


def test_every_hash_within_the_distance_shares_a_band_key():
    """The pigeonhole rule the lookup relies on, on random hashes and random flips."""
    rng = random.Random(7)
    for _ in range(300):
        value = rng.getrandbits(64)
        within = rng.randint(0, MAX_DISTANCE)
        flipped = value
        for bit in rng.sample(range(64), rng.randint(0, within)):
            flipped ^= 1 << bit
        keys = set(band_keys(f"{value:016x}", within))
        assert keys & set(bands(f"{flipped:016x}"))
    assert band_radii(10) == [3, 3, 2] and band_radii(0) == [0, -1, -1]
    assert len(band_keys("0" * 16, 0)) == 1  # the same hash: one band's value suffices
    assert len(band_keys("0" * 16, 10)) == 1794 + 1562 + 232  # C(22, <=3), C(21, <=3), C(21, <=2)


def test_the_lookup_reads_the_band_index_not_the_collection(api, collection):
    document = stored(api, "a.jpg", ASTRONAUT)
    query = {"phashBands": {"$in": band_keys(document["phash"], 10)}}
    plan = collection.find(query).explain()["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in json.dumps(plan) and "COLLSCAN" not in json.dumps(plan)


# --- GET /images/<id>/similar -----------------------------------------------------------------
def test_similar_lists_the_copies_nearest_first_and_not_the_others(api):
    original = stored(api, "a.jpg", ASTRONAUT)
    q50 = stored(api, "q50.jpg", ASTRONAUT_Q50)
    half = stored(api, "half.png", ASTRONAUT_HALF)
    stored(api, "coffee.jpg", COFFEE)
    response = api.get(f"/images/{original['_id']}/similar")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["distance"] == 10
    items = body["items"]
    assert {item["file"] for item in items} == {"q50.jpg", "half.png"}
    assert [item["distance"] for item in items] == sorted(item["distance"] for item in items)
    by_file = {item["file"]: item for item in items}
    assert by_file["q50.jpg"]["_id"] == q50["_id"]
    assert by_file["half.png"]["distance"] == distance(original["phash"], half["phash"])
    assert by_file["q50.jpg"]["data"] == {}  # whole documents, as GET /images/<id> prints


def test_similar_at_distance_zero_lists_only_identical_hashes(api):
    original = stored(api, "a.jpg", ASTRONAUT)
    copy = stored(api, "copy.jpg", ASTRONAUT)  # the same bytes elsewhere
    stored(api, "coffee.jpg", COFFEE)
    items = api.get(f"/images/{original['_id']}/similar?distance=0").json()["items"]
    assert [item["_id"] for item in items] == [copy["_id"]]
    assert items[0]["distance"] == 0


def test_similar_limit_keeps_the_nearest_then_the_oldest(api):
    original = stored(api, "a.jpg", ASTRONAUT)
    first = stored(api, "b1.jpg", ASTRONAUT)
    stored(api, "b2.jpg", ASTRONAUT)
    stored(api, "q50.jpg", ASTRONAUT_HALF)
    items = api.get(f"/images/{original['_id']}/similar?limit=1").json()["items"]
    assert [item["_id"] for item in items] == [first["_id"]]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("distance=13", "distance"),
        ("distance=-1", "distance"),
        ("distance=x", "distance"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ],
)
def test_similar_refuses_bad_parameters(api, query, named):
    original = stored(api, "a.jpg", ASTRONAUT)
    response = api.get(f"/images/{original['_id']}/similar?{query}")
    assert response.status_code == 400
    assert f"'{named}'" in response.json()["detail"]


def test_similar_of_an_unknown_image_is_404(api):
    assert api.get("/images/0123456789abcdef01234567/similar").status_code == 404
    assert api.get("/images/nothex/similar").status_code == 400


def test_similar_never_crosses_users(world):
    alice, bob = world.clients["alice"], world.clients["bob"]
    mine = stored(alice, "a.jpg", ASTRONAUT)
    stored(bob, "b.jpg", ASTRONAUT_Q50)
    assert alice.get(f"/images/{mine['_id']}/similar").json()["items"] == []
    assert bob.get(f"/images/{mine['_id']}/similar").status_code == 404


def test_a_picture_with_thousands_of_identical_hashes_answers_a_bounded_page(api, collection):
    """Flat frames all hash alike: the lookup streams them and keeps the `limit` nearest."""
    original = stored(api, "a.jpg", ASTRONAUT)
    raw = collection.find_one({"file": "a.jpg"}, {"_id": 0})
    collection.insert_many([{**raw, "file": f"frame/{n}.jpg"} for n in range(3000)])
    items = api.get(f"/images/{original['_id']}/similar?limit=5").json()["items"]
    assert [item["file"] for item in items] == [f"frame/{n}.jpg" for n in range(5)]


# --- uploads: on_duplicate with similar, check_leak ------------------------------------------
def test_reject_similar_answers_409_naming_the_near_copy(api, collection):
    original = stored(api, "train/a.jpg", ASTRONAUT)
    response = send(api, "train/b.jpg", ASTRONAUT_CROP, "?on_duplicate=reject&similar=10")
    assert response.status_code == 409
    body = response.json()
    assert body["_id"] == original["_id"] and body["file"] == "train/a.jpg"
    assert 0 < body["distance"] <= 10 and "near-copy" in body["detail"]
    assert collection.count_documents({"file": "train/b.jpg"}) == 0
    closer = send(
        api, "train/b.jpg", ASTRONAUT_CROP, f"?on_duplicate=reject&similar={body['distance'] - 2}"
    )
    assert closer.status_code == 200


def test_skip_similar_answers_the_stored_image(api, collection):
    original = stored(api, "a.jpg", ASTRONAUT)
    response = send(api, "b.png", ASTRONAUT_HALF, "?on_duplicate=skip&similar=10")
    assert response.status_code == 200
    assert response.json()["_id"] == original["_id"]
    assert collection.count_documents({}) == 1


def test_a_picture_far_from_every_stored_one_is_stored(api):
    stored(api, "a.jpg", ASTRONAUT)
    response = send(api, "coffee.jpg", COFFEE, "?on_duplicate=reject&similar=12")
    assert response.status_code == 200
    assert response.json()["file"] == "coffee.jpg"


def test_without_similar_a_near_copy_is_stored(api):
    stored(api, "a.jpg", ASTRONAUT)
    assert send(api, "b.jpg", ASTRONAUT_Q50, "?on_duplicate=reject").status_code == 200


def test_similar_needs_on_duplicate_or_check_leak(api):
    response = send(api, "a.jpg", ASTRONAUT, "?similar=4")
    assert response.status_code == 400
    assert "'similar'" in response.json()["detail"]


def test_re_uploading_a_near_copy_to_its_own_path_is_not_a_duplicate(api):
    original = stored(api, "a.jpg", ASTRONAUT)
    response = send(api, "a.jpg", ASTRONAUT_Q50, "?on_duplicate=reject&similar=10")
    assert response.status_code == 200
    assert response.json()["_id"] == original["_id"]


def test_check_leak_refuses_a_near_copy_in_another_split(api, collection):
    original = stored(api, "a.jpg", ASTRONAUT, split="train")
    response = send(api, "b.jpg", ASTRONAUT_Q50, "?check_leak=split", split="test")
    assert response.status_code == 409
    body = response.json()
    assert body["_id"] == original["_id"] and body["field"] == "split"
    assert body["value"] == "train" and "train" in body["detail"]
    assert collection.count_documents({"file": "b.jpg"}) == 0


def test_check_leak_lets_the_same_split_and_far_pictures_in(api):
    stored(api, "a.jpg", ASTRONAUT, split="train")
    assert send(api, "b.jpg", ASTRONAUT_Q50, "?check_leak=split", split="train").status_code == 200
    assert send(api, "c.jpg", COFFEE, "?check_leak=split", split="test").status_code == 200
    assert send(api, "d.jpg", ASTRONAUT_HALF, "?check_leak=split").status_code == 200


def test_check_leak_reads_nested_fields_within_similar(api):
    stored(api, "a.jpg", ASTRONAUT, meta={"split": "train"})
    near = send(api, "b.jpg", ASTRONAUT_CROP, "?check_leak=meta.split", meta={"split": "val"})
    assert near.status_code == 409 and near.json()["value"] == "train"
    closer_only = "?check_leak=meta.split&similar=2"
    assert send(api, "b.jpg", ASTRONAUT_CROP, closer_only, meta={"split": "val"}).status_code == 200


@pytest.mark.parametrize("field", ["a..b", "$where", ".split", "split\x00"])
def test_check_leak_refuses_a_field_that_is_no_data_path(api, field):
    response = send(api, "a.jpg", ASTRONAUT, f"?check_leak={field}")
    assert response.status_code == 400
    assert "'check_leak'" in response.json()["detail"]


# --- near groups and leaks ---------------------------------------------------------------------
def test_near_groups_list_each_picture_with_its_later_copies(api):
    a = stored(api, "a.jpg", ASTRONAUT)
    b = stored(api, "b.jpg", ASTRONAUT_Q50)
    stored(api, "coffee.jpg", COFFEE)
    body = api.get("/images/duplicates?distance=10").json()
    assert body["distance"] == 10 and body["next"] is None
    assert len(body["items"]) == 1
    group = body["items"][0]
    assert group["phash"] == a["phash"] and group["count"] == 2
    assert [item["_id"] for item in group["items"]] == [a["_id"], b["_id"]]
    assert group["items"][0]["distance"] == 0


def test_near_groups_page_with_next_until_null(api, monkeypatch):
    monkeypatch.setattr(near_groups, "SCAN_PER_PAGE", 2)
    for n in range(3):
        stored(api, f"a{n}.jpg", ASTRONAUT if n % 2 == 0 else ASTRONAUT_Q50)
        stored(api, f"c{n}.jpg", COFFEE)
    seen, after, pages = [], "", 0
    while True:
        body = api.get(f"/images/duplicates?distance=10&limit=1&after={after}").json()
        pages += 1
        seen += [group["items"][0]["file"] for group in body["items"]]
        if body["next"] is None:
            break
        after = body["next"]
    assert seen == ["a0.jpg", "c0.jpg", "a1.jpg", "c1.jpg"]
    assert pages >= 4


def test_near_groups_refuse_a_bad_cursor(api):
    response = api.get("/images/duplicates?distance=10&after=zzz")
    assert response.status_code == 400 and "'after'" in response.json()["detail"]


def test_exact_groups_are_unchanged_without_distance(api):
    stored(api, "a.jpg", ASTRONAUT)
    stored(api, "b.jpg", ASTRONAUT)
    stored(api, "q.jpg", ASTRONAUT_Q50)
    items = api.get("/images/duplicates").json()["items"]
    assert [group["count"] for group in items] == [2] and "sha256" in items[0]


def test_leaks_pair_near_copies_across_splits_only(api):
    a = stored(api, "train/a.jpg", ASTRONAUT, split="train")
    stored(api, "train/b.jpg", ASTRONAUT_Q50, split="train")
    c = stored(api, "test/c.png", ASTRONAUT_HALF, split="test")
    stored(api, "test/coffee.jpg", COFFEE, split="test")
    stored(api, "coffee.jpg", COFFEE, split="train")
    stored(api, "nosplit.jpg", ASTRONAUT)
    body = api.get("/images/leaks?field=split").json()
    assert body["field"] == "split" and body["next"] is None
    pairs = {(item["a"]["file"], item["b"]["file"]) for item in body["items"]}
    assert pairs == {
        ("train/a.jpg", "test/c.png"),
        ("train/b.jpg", "test/c.png"),
        ("test/coffee.jpg", "coffee.jpg"),
    }
    first = next(item for item in body["items"] if item["a"]["_id"] == a["_id"])
    assert first["b"]["_id"] == c["_id"]
    assert first["a"]["value"] == "train" and first["b"]["value"] == "test"
    assert first["distance"] == distance(a["phash"], c["phash"])


def test_leaks_need_a_field(api):
    response = api.get("/images/leaks")
    assert response.status_code == 400 and "'field'" in response.json()["detail"]
    assert api.get("/images/leaks?field=$x").status_code == 400


def test_leaks_never_cross_users(world):
    alice, bob = world.clients["alice"], world.clients["bob"]
    stored(alice, "a.jpg", ASTRONAUT, split="train")
    stored(bob, "b.jpg", ASTRONAUT, split="test")
    assert alice.get("/images/leaks?field=split").json()["items"] == []


# --- imports --------------------------------------------------------------------------------
def test_import_with_similar_skips_near_copies_of_stored_and_earlier_entries(api, collection):
    original = stored(api, "a.jpg", ASTRONAUT)
    archive = make_zip(
        {
            "q50.jpg": ASTRONAUT_Q50,
            "coffee.jpg": COFFEE,
            "coffee-again.jpg": jpeg(photo("coffee"), quality=60),
        }
    )
    response = post_archive(api, archive, on_duplicate="skip", similar="10")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["imported"] == 1
    by_entry = {item["entry"]: item for item in body["duplicates"]}
    assert by_entry["q50.jpg"]["_id"] == original["_id"]
    assert by_entry["q50.jpg"]["distance"] <= 10
    assert by_entry["coffee-again.jpg"]["file"] == "coffee.jpg"
    assert by_entry["coffee-again.jpg"]["_id"] is None
    assert sorted(doc["file"] for doc in collection.find()) == ["a.jpg", "coffee.jpg"]
    assert collection.find_one({"file": "coffee.jpg"})["phash"]


def test_imported_pictures_get_their_hash(api, collection):
    response = post_archive(api, make_zip({"a.png": ASTRONAUT_HALF, "b.jpg": COFFEE}))
    assert response.json()["imported"] == 2
    assert all(len(doc["phash"]) == 16 for doc in collection.find())


def test_import_refuses_similar_without_on_duplicate(api):
    response = post_archive(api, make_zip({"a.jpg": ASTRONAUT}), similar="10")
    assert response.status_code == 400 and "'similar'" in response.json()["detail"]


# --- backfill -------------------------------------------------------------------------------
def test_backfill_facts_hashes_pictures_stored_without_a_hash(api, collection):
    document = stored(api, "a.jpg", ASTRONAUT)
    stored(api, "small.png", image_bytes(color="red"))
    collection.update_many({}, {"$unset": {"phash": "", "phashBands": ""}})
    output = io.StringIO()
    call_command("backfill_facts", "--no-progress", stdout=output)
    raw = collection.find_one({"file": "a.jpg"})
    assert raw["phash"] == document["phash"] and raw["phashBands"] == bands(document["phash"])
    assert collection.count_documents({"phash": {"$exists": False}}) == 0
    assert "2 images" in output.getvalue()
    assert ImageRepository().count({"phash": {"$exists": True}}) == 2


def test_a_huge_near_group_lists_a_bounded_page_and_counts_every_member(api, collection):
    stored(api, "a.jpg", ASTRONAUT)
    raw = collection.find_one({"file": "a.jpg"}, {"_id": 0})
    collection.insert_many([{**raw, "file": f"frame/{n}.jpg"} for n in range(1500)])
    body = api.get("/images/duplicates?distance=0&limit=1").json()
    group = body["items"][0]
    assert group["count"] == 1501 and len(group["items"]) == 1001
    oldest = collection.find_one({}, sort=[("_id", 1)])
    assert group["items"][0]["_id"] == str(oldest["_id"]) and body["next"] is not None
