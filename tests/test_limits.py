"""Limits on one request, archive or document (images/limits/): each refused with a status
naming the limit, with files and documents untouched."""

from __future__ import annotations

import errno
import io
import json
import struct
import threading
import zipfile
from urllib.parse import urlencode

import openpyxl
import pytest
from PIL import Image

from images.limits.bounded_json import DepthGauge
from images.store.files import LocalFileStore
from tests.archives_helpers import make_zip, post_archive, stored_keys
from tests.helpers import image_bytes, noise_image, upload

JPEG = image_bytes()


# --- helpers ---------------------------------------------------------------------------------
def detail(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    text = response.json()["detail"]
    assert "Traceback" not in text and "/work" not in text and "/tmp" not in text
    return text


def solid_bmp(width: int, height: int) -> bytes:
    """A valid image whose bytes compress almost to nothing."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buffer, "BMP")
    return buffer.getvalue()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- JSON depth and size, bounded while parsing ---------------------------------------------
@pytest.mark.parametrize("depth", [40, 2_000, 200_000])
@pytest.mark.parametrize("route", ["json field", "data field", "PATCH", "bulk PATCH", "PUT"])
def test_deep_json_is_refused_before_it_is_built(api, collection, route, depth):
    image = upload(api, "a.jpg", label="x").json()
    deep = nested(depth)
    if route in ("json field", "data field"):
        response = upload(api, "b.jpg", **{route.split()[0]: '{"x": ' + deep + "}"})
    else:
        method = api.put if route == "PUT" else api.patch
        url = "/images?all=true" if route == "bulk PATCH" else f"/images/{image['_id']}"
        response = method(url, '{"x": ' + deep + "}", content_type="application/json")
    assert "deeper than" in detail(response, 400)
    assert list(collection.find({}, {"_id": 0, "file": 1, "data": 1})) == [
        {"file": "a.jpg", "data": {"label": "x"}}
    ]


def test_json_within_the_depth_limit_is_kept(api):
    value: object = "leaf"
    for _ in range(31):
        value = {"k": value}
    image = upload(api, "a.jpg", json=json.dumps({"x": value}))
    assert image.status_code == 200, image.content
    put = api.put(f"/images/{image.json()['_id']}", {"x": value}, format="json")
    assert put.status_code == 200 and put.json()["data"] == {"x": value}


@pytest.mark.parametrize("piece", [1, 7, 64, 10**6])
def test_depth_is_measured_the_same_whatever_the_pieces(piece):
    text = json.dumps(
        [{"s": 'a"[[{\\', "t": "]]}}", "n": [[[1]]], "e": ""}, [[["x\\"]]], {"k": {"j": []}}]
    ).encode()
    gauge = DepthGauge()
    for start in range(0, len(text), piece):
        gauge.feed(text[start : start + piece])
    assert (gauge.peak, gauge.depth, gauge.carry) == (5, 0, b"")


def test_hostile_strings_are_measured_in_one_pass(api):
    image = upload(api, "a.jpg").json()
    escaped_quotes = '{"x": "' + '\\"' * 400_000 + '"}'
    response = api.patch(f"/images/{image['_id']}", escaped_quotes, content_type="application/json")
    assert response.status_code == 200 and response.json()["data"]["x"] == '"' * 400_000
    unterminated = "[" * 40 + '"' + '\\"' * 400_000
    response = api.patch(f"/images/{image['_id']}", unterminated, content_type="application/json")
    assert "deeper than" in detail(response, 400)


@pytest.mark.parametrize("depth", [17, 5_000])
def test_deep_filter_is_refused(api, depth):
    response = api.get("/images", {"filter": '{"a": ' + nested(depth) + "}"})
    assert "deeper than" in detail(response, 400)


def test_brackets_inside_strings_do_not_count_as_depth(api):
    text = "[" * 5000 + "{" * 5000
    image = upload(api, "a.jpg", json=json.dumps({"text": text}))
    assert image.status_code == 200 and image.json()["data"]["text"] == text
    found = api.get("/images", {"filter": json.dumps({"data.text": text})}).json()
    assert found["total"] == 1


@pytest.mark.parametrize("depth", [40, 20_000])
def test_deep_manifest_is_refused_with_nothing_written(api, collection, depth):
    manifest = '[{"file": "a.jpg", "data": {"x": ' + nested(depth) + "}}]"
    response = post_archive(api, make_zip({"a.jpg": JPEG, "mongodb_data.json": manifest}))
    assert "deeper than" in detail(response, 400)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_manifest_over_its_size_cap_is_413(api, settings, collection):
    settings.MAX_MANIFEST_SIZE = 10_000
    items = [{"file": f"{i}.jpg", "data": {"n": i}} for i in range(1000)]
    archive = make_zip({"0.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    assert "MAX_MANIFEST_SIZE" in detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_manifest_item_over_its_size_cap_is_413(api, settings, collection):
    settings.MAX_MANIFEST_ITEM_SIZE = 20_000
    items = [{"file": "a.jpg", "data": {"n": 1}}, {"file": "b.jpg", "data": {"s": "x" * 30_000}}]
    archive = make_zip({"a.jpg": JPEG, "b.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    assert "item 1" in detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


# --- regular expressions that backtrack ------------------------------------------------------
REFUSED_PATTERNS = {
    "^(a+)+$": "nested quantifiers",
    "(a*)*b": "nested quantifiers",
    "(x+x+)+y": "nested quantifiers",
    "([a-z]+)*$": "nested quantifiers",
    "(.*a){20}": "nested quantifiers",
    "(a|a)*$": "alternatives overlap",
    "(a|aa)+$": "alternatives overlap",
    "(a|ab|abc)*z": "alternatives overlap",
    "(?:a?){30}a{30}": "alternatives overlap",
    "(a{1,2})*$": "alternatives overlap",
    "(a)\\1": "backreference",
    "(a)?(?(1)b|c)": "backreference",
    "(?=a)a": "lookahead or lookbehind",
    "(?<!a)b": "lookahead or lookbehind",
    "(" * 250 + "a" + ")" * 250: "nests groups 250 deep",
}


@pytest.mark.parametrize("pattern", sorted(REFUSED_PATTERNS))
@pytest.mark.parametrize(
    "shape",
    [
        '{{"data.label": {{"$regex": {p}}}}}',
        '{{"file": {{"$regex": {p}, "$options": "i"}}}}',
        '{{"data.label": {{"$not": {{"$regex": {p}}}}}}}',
        '{{"$or": [{{"file": "x"}}, {{"data.tags": {{"$elemMatch": {{"$regex": {p}}}}}}}]}}',
    ],
)
def test_catastrophic_patterns_are_refused_naming_the_construct(api, pattern, shape):
    upload(api, "a.jpg", label="aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!")
    query_filter = shape.format(p=json.dumps(pattern))
    for url in ("/images", "/fields/label", "/export"):
        response = api.get(url, {"filter": query_filter})
        assert REFUSED_PATTERNS[pattern] in detail(response, 400)
    response = api.patch(f"/images?{urlencode({'filter': query_filter})}", {"x": 1}, format="json")
    assert REFUSED_PATTERNS[pattern] in detail(response, 400)


@pytest.mark.parametrize(
    "pattern, matches",
    [
        ("^cam\\d+$", True),
        ("(cat|dog)*", True),
        ("^(a|b)+$", False),
        ("(\\d{1,3}\\.){3}\\d{1,3}", False),
        ("(ab?)*c", True),
        ("(foo|fo)+", False),
        (".*7$", True),
        ("(" + "(ab|cd)" * 60 + ")*x", False),  # checked in linear time, not 2**60 paths
        ("(" * 200 + "cam" + ")" * 200, True),
        ("(?:" * 100 + "[(]cam" + ")" * 100, False),
    ],
)
def test_safe_patterns_still_match(api, pattern, matches):
    upload(api, "a.jpg", label="cam7")
    found = api.get("/images", {"filter": json.dumps({"data.label": {"$regex": pattern}})})
    assert found.status_code == 200, found.content
    assert found.json()["total"] == (1 if matches else 0)


@pytest.mark.parametrize("text", ["(a+)+", "(a|a)*", "x\\1", "(?=a)"])
def test_escaped_partial_matches_stay_as_they_are(api, text):
    upload(api, "a.jpg", label=f"before {text} after")
    found = api.get("/images", {"label": text, "regex": "true"})
    assert found.status_code == 200 and found.json()["total"] == 1


def test_invalid_pattern_is_400(api):
    response = api.get("/images", {"filter": '{"file": {"$regex": "(unclosed"}}'})
    assert "not a valid regular expression" in detail(response, 400)


# --- what one import may unpack --------------------------------------------------------------
def test_entry_expanding_past_the_ratio_is_413_before_writing(api, collection):
    bomb = solid_bmp(1500, 1000)  # 4.5 MB of pixels, a few KB deflated
    archive = make_zip({"fine.jpg": JPEG, "bomb.bmp": bomb})
    assert len(archive) < 100_000
    assert "MAX_COMPRESSION_RATIO" in detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_many_small_entries_expanding_together_are_413(api, collection):
    entries = {f"{i}.bmp": solid_bmp(120, 100) for i in range(60)}  # 36 KB each
    assert "MAX_COMPRESSION_RATIO" in detail(post_archive(api, make_zip(entries)), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_archive_unpacking_past_the_total_cap_is_413(api, settings, collection):
    settings.MAX_IMPORT_UNPACKED_SIZE = 100_000
    entries = {f"{i}.png": noise_image(64, 64) for i in range(12)}  # ~12 KB each, stored
    response = post_archive(api, make_zip(entries, zipfile.ZIP_STORED))
    assert "MAX_IMPORT_UNPACKED_SIZE" in detail(response, 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_ordinary_archive_within_the_limits_imports(api, settings):
    settings.MAX_IMPORT_UNPACKED_SIZE = 1_000_000
    entries = {f"{i}.png": noise_image(64, 64) for i in range(12)}
    response = post_archive(api, make_zip(entries))
    assert response.status_code == 200 and response.json()["imported"] == 12


# --- data size per document ------------------------------------------------------------------
@pytest.fixture
def small_data_limit(settings) -> int:
    settings.MAX_DATA_SIZE = 10_000
    return 10_000


def test_upload_with_data_over_the_limit_is_413(api, collection, small_data_limit):
    response = upload(api, "a.jpg", json=json.dumps({"s": "x" * 11_000}))
    assert "MAX_DATA_SIZE" in detail(response, 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []
    plain = upload(api, "a.jpg", note="x" * 11_000)
    assert "MAX_DATA_SIZE" in detail(plain, 413)


def test_put_over_the_limit_is_413_and_changes_nothing(api, small_data_limit):
    image = upload(api, "a.jpg", label="x").json()
    response = api.put(f"/images/{image['_id']}", {"s": "x" * 11_000}, format="json")
    assert "MAX_DATA_SIZE" in detail(response, 413)
    assert api.get(f"/images/{image['_id']}").json() == image


def test_patch_growing_a_document_past_the_limit_is_413(api, small_data_limit):
    image = upload(api, "a.jpg", json=json.dumps({"a": "x" * 6_000})).json()
    response = api.patch(f"/images/{image['_id']}", {"b": "y" * 6_000}, format="json")
    assert "MAX_DATA_SIZE" in detail(response, 413)
    assert api.get(f"/images/{image['_id']}").json() == image
    small = api.patch(f"/images/{image['_id']}", {"b": "y" * 100}, format="json")
    assert small.status_code == 200 and small.json()["data"]["b"] == "y" * 100
    missing = api.patch("/images/" + "0" * 24, {"b": "y"}, format="json")
    assert missing.status_code == 404


def test_bulk_patch_taking_any_document_past_the_limit_changes_none(api, small_data_limit):
    big = upload(api, "big.jpg", json=json.dumps({"cam": "c", "a": "x" * 6_000})).json()
    small = upload(api, "small.jpg", json=json.dumps({"cam": "c"})).json()
    response = api.patch("/images?cam=c", {"b": "y" * 5_000}, format="json")
    assert big["_id"] in detail(response, 413)
    assert api.get(f"/images/{big['_id']}").json() == big
    assert api.get(f"/images/{small['_id']}").json() == small
    assert api.patch("/images?cam=c", {"b": "y" * 2_000}, format="json").json()["matchedCount"] == 2


def test_values_set_over_the_limit_by_themselves_are_413(api, small_data_limit):
    upload(api, "a.jpg")
    response = api.patch("/images?all=true", {"b": "y" * 11_000}, format="json")
    assert "MAX_DATA_SIZE" in detail(response, 413)
    # Each level a dotted key creates counts: 60 keys 20 levels deep, 4 KB flat, 12 KB stored.
    deep = {".".join([f"p{i}"] * 20): 1 for i in range(60)}
    assert "MAX_DATA_SIZE" in detail(api.patch("/images?all=true", deep, format="json"), 413)


def test_concurrent_bulk_patches_cannot_pass_the_limit_together(api, small_data_limit):
    from rest_framework.test import APIClient

    image = upload(api, "a.jpg", cam="c").json()
    answers: list[int] = []

    def patch(key: str) -> None:
        response = APIClient().patch("/images?cam=c", {key: "z" * 4_000}, format="json")
        answers.append(response.status_code)

    threads = [threading.Thread(target=patch, args=(f"k{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(answers) <= {200, 413}
    data = api.get(f"/images/{image['_id']}").json()["data"]
    assert len(json.dumps(data)) < small_data_limit


def test_import_with_manifest_data_over_the_limit_is_413(api, collection, small_data_limit):
    items = [{"file": "a.jpg", "data": {"s": "x" * 11_000}}]
    archive = make_zip({"a.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    assert "MAX_DATA_SIZE" in detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []
    items = [{"file": "a.jpg", "data": {"s": "x" * 6_000}}]
    archive = make_zip({"a.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    merged = post_archive(api, archive, json=json.dumps({"t": "y" * 6_000}))
    assert "MAX_DATA_SIZE" in detail(merged, 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_documents_past_mongodb_limit_are_413_not_503(api, settings, collection):
    settings.MAX_DATA_SIZE = 64 * 1024 * 1024
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 12 * 1024 * 1024
    image = upload(api, "a.jpg").json()
    first = api.patch(f"/images/{image['_id']}", {"a": "x" * 9_000_000}, format="json")
    assert first.status_code == 200
    for url in (f"/images/{image['_id']}", "/images?all=true"):
        response = api.patch(url, {"b": "y" * 9_000_000}, format="json")
        assert "16 MB" in detail(response, 413)
    assert set(collection.find_one()["data"]) == {"a"}


@pytest.mark.slow  # about 30 s: a manifest past MongoDB's 16 MB
def test_manifest_data_past_mongodb_limit_is_413(api, settings, collection):
    settings.MAX_DATA_SIZE = 64 * 1024 * 1024
    settings.MAX_MANIFEST_ITEM_SIZE = 64 * 1024 * 1024
    settings.MAX_COMPRESSION_RATIO = 100_000
    items = [{"file": "a.jpg", "data": {"s": "x" * 17_000_000}}]
    archive = make_zip({"a.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    assert "16 MB" in detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_manifest_data_over_16_mb_with_default_limits_is_413(api, collection):
    items = [{"file": "a.jpg", "data": {"s": "x" * 17_000_000}}]
    archive = make_zip({"a.jpg": JPEG, "mongodb_data.json": json.dumps(items)})
    detail(post_archive(api, archive), 413)
    assert collection.count_documents({}) == 0 and stored_keys() == []


# --- inputs that answered 500 ----------------------------------------------------------------
@pytest.mark.parametrize("length", [220, 240, 255])
def test_name_components_up_to_255_bytes_are_stored(api, length):
    name = "é" * ((length - 4) // 2) + "x" * ((length - 4) % 2) + ".jpg"
    assert len(name.encode()) == length
    response = upload(api, "a.jpg", file=f"cam/{name}")
    assert response.status_code == 200, response.content
    assert stored_keys() == [f"cam/{name}"]
    imported = post_archive(api, make_zip({f"in/{name}": JPEG}))
    assert imported.status_code == 200 and imported.json()["imported"] == 1


@pytest.mark.parametrize(
    "first, second",
    [("a.jpg", "a.jpg/b.jpg"), ("a/b.jpg", "a"), ("a.jpg", "a.jpg/c/d.jpg")],
)
def test_file_versus_folder_conflicts_are_409(api, collection, first, second):
    stored = upload(api, "x.jpg", file=first).json()
    response = upload(api, "y.jpg", file=second)
    assert "conflicts" in detail(response, 409)
    assert [d["file"] for d in collection.find()] == [first]
    assert stored_keys() == [first]
    assert api.get(f"/images/{stored['_id']}/image").status_code == 200


@pytest.mark.parametrize("name", ["skip", "limit"])
@pytest.mark.parametrize("value", [2**63, 2**64, 10**30])
@pytest.mark.parametrize("url", ["/images", "/export", "/fields/label"])
def test_skip_and_limit_past_64_bits_are_400(api, name, value, url):
    upload(api, "a.jpg", label="x")
    assert "64 bits" in detail(api.get(url, {name: str(value)}), 400)


def test_skip_and_limit_at_64_bits_still_work(api):
    upload(api, "a.jpg")
    response = api.get("/images", {"limit": str(2**63 - 1), "skip": "0"})
    assert response.status_code == 200 and len(b"".join(response.streaming_content)) > 0


OUT_OF_RANGE_DATES = ["0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00"]


@pytest.mark.parametrize("date", OUT_OF_RANGE_DATES)
def test_dates_leaving_years_1_to_9999_in_utc_are_400(api, collection, date):
    for params in ({"from": date}, {"to": date}, {"filter": json.dumps({"time": {"$gte": date}})}):
        assert "out of range" in detail(api.get("/images", params), 400)
    assert "out of range" in detail(upload(api, "a.jpg", time=date), 400)
    assert collection.count_documents({}) == 0


def test_full_disk_is_507_with_nothing_stored(api, collection, monkeypatch):
    def full(self, key, source):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalFileStore, "stage", full)
    monkeypatch.setattr(LocalFileStore, "stage_path", full)
    response = upload(api, "a.jpg")
    assert "full" in detail(response, 507)
    big = upload(api, "b.jpg", noise_image(800, 800))  # spooled to a temporary file
    assert "full" in detail(big, 507)
    assert collection.count_documents({}) == 0 and stored_keys() == []


def test_free_space_below_the_reserve_refuses_writes_and_readiness(api, settings, collection):
    upload(api, "kept.jpg")
    assert api.get("/health/ready").status_code == 200
    settings.STORAGE_MIN_FREE_SPACE = 2**62
    assert "STORAGE_MIN_FREE_SPACE" in detail(upload(api, "a.jpg"), 507)
    assert "STORAGE_MIN_FREE_SPACE" in detail(post_archive(api, make_zip({"b.jpg": JPEG})), 507)
    ready = api.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["storage"] is False and ready.json()["storageFull"] is True
    assert [d["file"] for d in collection.find()] == ["kept.jpg"]
    assert stored_keys() == ["kept.jpg"]
    assert api.get("/images").json()["total"] == 1  # reads go on


# --- spreadsheet cells -----------------------------------------------------------------------
def test_spreadsheet_cells_are_strings_never_formulas(api):
    data = {
        "link": '=HYPERLINK("http://evil.example","x")',
        "=cmd|' /C calc'!A0": "=1+1",
        "n": 5,
        "plus": "+1",
        "at": "@SUM(1)",
    }
    upload(api, "a.jpg", file="=x.jpg", json=json.dumps(data))
    response = api.get("/export")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    raw = archive.read("mongodb_data.xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(raw)).active
    cells = [cell for row in sheet.iter_rows() for cell in row if cell.value is not None]
    for cell in cells:
        if cell.column_letter == "C" and cell.row > 1:
            assert cell.data_type == "d"
        else:
            assert cell.data_type == "s", (cell.coordinate, cell.value)
    values = {cell.value for cell in cells}
    assert {"=cmd|' /C calc'!A0", "=1+1", '=HYPERLINK("http://evil.example","x")', "5"} <= values
    with zipfile.ZipFile(io.BytesIO(raw)) as workbook:
        assert b"<f>" not in workbook.read("xl/worksheets/sheet1.xml")


def test_entry_lying_about_its_size_is_read_no_further(api, collection):
    """The limits trust the zip directory's sizes: the reader stops at them."""
    content = bytearray(make_zip({"a.bmp": solid_bmp(1500, 1000)}))
    for signature, offset in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        struct.pack_into("<I", content, content.find(signature) + offset, 1000)
    body = post_archive(api, bytes(content)).json()  # a corrupt entry is skipped and reported
    assert body["imported"] == 0 and "corrupt" in body["skipped"][0]["reason"]
    assert collection.count_documents({}) == 0 and stored_keys() == []
