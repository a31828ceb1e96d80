"""GET /export and POST /import: streamed zips in the original's format, safe imports."""

from __future__ import annotations

import errno
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from pathlib import Path
from types import SimpleNamespace

import openpyxl
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import QueryDict
from pymongo.errors import CursorNotFound

from images.api.filters import ImageQueryFilter
from images.archives import ArchiveExporter, manifest_items
from images.archives import importer as archive_importer
from images.archives import layout as archive_layout
from images.archives import streams as archive_streams
from images.store.files import LocalFileStore, get_file_store
from images.store.repository import ImageRepository
from tests.archives_helpers import make_zip, post_archive, stored_keys
from tests.helpers import batch_sizes_asked, image_bytes, upload

# Archives exported by the original service, kept as test data.
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PNG = image_bytes("PNG", (20, 10), "blue")
JPEG = image_bytes()


# --- helpers ---------------------------------------------------------------------------------
def export(api, query: str = "") -> zipfile.ZipFile:
    response = api.get(f"/export{query}")
    assert response.status_code == 200, response.content
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def manifest(archive: zipfile.ZipFile) -> list[dict]:
    return json.loads(archive.read("mongodb_data.json"))


def all_documents(api) -> list[dict]:
    items = api.get("/images", {"limit": 1000, "sort": "file"}).json()["items"]
    return items


def stored_bytes(file: str) -> bytes:
    return b"".join(get_file_store().read_chunks(file))


def assert_nothing_written(collection) -> None:
    assert collection.count_documents({}) == 0
    assert stored_keys() == []


@pytest.fixture
def dataset(api):
    """Four images in folders, with nested data, numbers and arrays."""
    uploads = [
        ("cam1/2026-11-01/frame_0001.jpg", JPEG, {"camera": "cam1", "score": 0.93, "n": 1}),
        ("cam1/2026-11-01/frame_0002.png", PNG, {"camera": "cam1", "tags": ["a", "b"], "n": 2}),
        ("cam2/frame_0003.jpg", JPEG, {"camera": "cam2", "line": {"id": 3}, "n": 3}),
        ("plain.png", PNG, {"camera": "cam3", "ok": True, "n": 4}),
    ]
    for file, content, data in uploads:
        name = file.rsplit("/", 1)[-1]
        response = upload(api, name, content, file=file, json=json.dumps(data))
        assert response.status_code == 200, response.content
    return [file for file, _, _ in uploads]


# --- export ----------------------------------------------------------------------------------
def test_export_is_a_streamed_zip_with_a_dated_name(api, dataset):
    response = api.get("/export")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/zip"
    assert re.fullmatch(
        r'attachment; filename="images-\d{4}-\d\d-\d\dT\d{6}Z\.zip"',
        response["Content-Disposition"],
    )
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [*dataset, "mongodb_data.json", "mongodb_data.xlsx"]
    methods = {info.filename: info.compress_type for info in archive.infolist()}
    assert all(methods[name] == zipfile.ZIP_STORED for name in dataset)
    assert methods["mongodb_data.json"] == zipfile.ZIP_DEFLATED
    assert archive.read("plain.png") == PNG
    assert archive.read("cam2/frame_0003.jpg") == JPEG


def test_export_manifest_is_the_documents_as_the_api_prints_them(api, dataset):
    archive = export(api)
    printed = sorted(manifest(archive), key=lambda d: d["file"])
    assert printed == all_documents(api)
    first = printed[0]
    assert {"size", "sha256", "width", "height", "format", "mode", "contentType"} <= set(first)
    assert first["time"].endswith("Z")


def test_export_spreadsheet_has_a_column_per_data_key_and_json_for_nested(api, dataset):
    archive = export(api)
    workbook = openpyxl.load_workbook(io.BytesIO(archive.read("mongodb_data.xlsx")))
    rows = list(workbook.active.iter_rows(values_only=True))
    assert rows[0] == ("_id", "file", "time", "camera", "score", "n", "tags", "line", "ok")
    by_file = {row[1]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert len(by_file) == 4
    frame3 = by_file["cam2/frame_0003.jpg"]
    assert frame3["line"] == '{"id":3}'
    assert frame3["camera"] == "cam2"
    assert frame3["tags"] is None
    assert by_file["cam1/2026-11-01/frame_0002.png"]["tags"] == '["a","b"]'
    assert by_file["cam1/2026-11-01/frame_0001.jpg"]["score"] == "0.93"
    assert by_file["plain.png"]["ok"] == "true"
    assert len(frame3["_id"]) == 24
    assert frame3["time"].year >= 2026


def test_export_filters_limit_skip_and_sort_as_get_images(api, dataset):
    assert image_names(export(api, "?camera=cam1")) == dataset[:2]
    assert image_names(export(api, '?filter={"data.n":{"$gte":3}}')) == dataset[2:]
    by_n_desc = image_names(export(api, "?sort=data.n&order=-1"))
    assert by_n_desc == list(reversed(dataset))
    assert image_names(export(api, "?sort=data.n&order=-1&skip=1&limit=2")) == [
        dataset[2],
        dataset[1],
    ]
    assert image_names(export(api, "?camera=nomatch")) == []
    assert manifest(export(api, "?camera=nomatch")) == []


def test_export_has_no_default_limit(api):
    for index in range(105):
        assert upload(api, f"img{index:03d}.png", PNG).status_code == 200
    assert len(image_names(export(api))) == 105


@pytest.mark.parametrize(
    "query", ["?filter=bad", '?filter={"$where":"1"}', "?limit=-1", "?order=up", "?ids=zz"]
)
def test_export_bad_query_is_400_json(api, query):
    response = api.get(f"/export{query}")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_export_reports_missing_files_and_reimport_skips_them(backend, api, dataset, collection):
    get_file_store().delete("plain.png")
    archive = export(api)
    assert "plain.png" not in archive.namelist()
    assert [d["file"] for d in manifest(archive)].count("plain.png") == 1
    missing = json.loads(archive.read("missing_files.json"))
    assert missing == [
        {
            "_id": collection.find_one({"file": "plain.png"})["_id"].__str__(),
            "file": "plain.png",
            "reason": "file not found in storage",
        }
    ]
    content = zip_bytes(archive)
    api.delete("/images?all=true")
    body = post_archive(api, content).json()
    assert body["imported"] == 3
    assert body["skipped"] == [
        {
            "entry": "plain.png",
            "reason": "its file is not in the archive and no image of yours has it",
        }
    ]
    assert collection.find_one({"file": "plain.png"}) is None


def test_exporter_reads_documents_in_batches_lazily(api, dataset, monkeypatch):
    batches = batch_sizes_asked(monkeypatch)
    query = ImageQueryFilter(default_limit=0).query(QueryDict(""))
    exporter = ArchiveExporter(ImageRepository(), get_file_store(), query, batch_size=2)
    stream = exporter.stream()
    assert hasattr(stream, "__next__") and hasattr(stream, "close")
    assert batches == [] and exporter.exported == 0
    content = b"".join(stream)
    assert batches == [2]
    assert exporter.exported == 4
    assert len(zipfile.ZipFile(io.BytesIO(content)).namelist()) == 6


@pytest.mark.parametrize(
    ("query", "expected"), [("", [0, 1, 2, 3]), ("?sort=data.n&order=-1&limit=3", [3, 2, 1])]
)
def test_export_survives_a_cursor_the_server_drops(api, dataset, monkeypatch, query, expected):
    original = ImageRepository.open_cursor
    calls = []

    def dropped_once(self, query, batch_size):
        calls.append(query)
        cursor = original(self, query, batch_size)
        return DroppedAfter(cursor, 2) if len(calls) == 1 else cursor

    monkeypatch.setattr(ImageRepository, "open_cursor", dropped_once)
    archive = export(api, query)
    assert image_names(archive) == [dataset[i] for i in expected]
    assert [d["file"] for d in manifest(archive)] == [dataset[i] for i in expected]
    assert len(calls) == 2


class DroppedAfter:
    """A cursor the server drops after `count` documents."""

    def __init__(self, cursor, count: int) -> None:
        self.cursor, self.count = cursor, count
        self.retrieved, self.alive = cursor.retrieved, True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.cursor.close()

    def __iter__(self):
        return self

    def __next__(self):
        if not self.count:
            raise CursorNotFound("cursor id 42 not found", 43)
        self.count -= 1
        document = next(self.cursor)
        self.retrieved = self.cursor.retrieved
        return document


def test_export_stream_closed_early_leaves_no_temporary_files(api, dataset, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(archive_streams, "OUTPUT_CHUNK", 1)
    query = ImageQueryFilter(default_limit=0).query(QueryDict(""))
    stream = ArchiveExporter(ImageRepository(), get_file_store(), query).stream()
    next(stream)
    assert any(scratch.iterdir())
    stream.close()
    assert list(scratch.iterdir()) == []


def test_failed_import_leaves_no_temporary_files(api, tmp_path, monkeypatch, settings):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    settings.FILE_UPLOAD_TEMP_DIR = str(scratch)
    response = post_archive(api, make_zip({"a.jpg": JPEG, "mongodb_data.json": b"[1]"}))
    assert response.status_code == 400
    assert list(scratch.iterdir()) == []
    assert post_archive(api, make_zip({"a.jpg": JPEG})).status_code == 200
    assert list(scratch.iterdir()) == []


def test_imported_bytes_are_fsynced_before_their_documents(api, monkeypatch, uploads, settings):
    settings.STORAGE_FSYNC = True
    synced: list[str] = []
    real_fsync = os.fsync

    def record(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    real_insert = ImageRepository.insert_new
    unsynced_at_write: list[list[str]] = []
    folder_syncs_at_write: list[int] = []

    def insert_new(self, documents):
        root = os.path.realpath(uploads)
        unsynced_at_write.append(
            [d["file"] for d in documents if f"{root}/{d['file']}" not in synced]
        )
        folder_syncs_at_write.append(synced.count(f"{root}/f"))
        return real_insert(self, documents)

    monkeypatch.setattr(os, "fsync", record)
    monkeypatch.setattr(ImageRepository, "insert_new", insert_new)
    monkeypatch.setattr(archive_importer, "DOCUMENT_BATCH", 2)
    entries = {f"f/{index}.jpg": image_bytes(color=(index, 0, 0)) for index in range(5)}
    response = post_archive(api, make_zip(entries))
    assert response.status_code == 200 and response.json()["imported"] == 5
    assert unsynced_at_write == [[], [], []]  # batches of 2, 2 and 1, each on disk first
    assert folder_syncs_at_write == [1, 2, 3]  # the folder once per batch, not once per file


def test_an_import_whose_fsync_finds_the_disk_full_writes_nothing(
    api, monkeypatch, uploads, settings, collection
):
    settings.STORAGE_FSYNC = True

    real_fsync = os.fsync

    def full(descriptor: int) -> None:
        # Folders are created and synced; the placed files' data no longer fits.
        if stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", full)
    entries = {"a.jpg": JPEG, "b/c.jpg": PNG, **{f"b/{i}.png": PNG for i in range(10)}}
    response = post_archive(api, make_zip(entries))
    assert response.status_code == 507, response.content
    assert collection.count_documents({}) == 0
    assert list(get_file_store().iter_all_keys()) == []


# --- round trip ------------------------------------------------------------------------------
def test_round_trip_gives_identical_documents_and_bytes(backend, api, dataset, collection):
    before = all_documents(api)
    originals = {file: stored_bytes(file) for file in dataset}
    content = zip_bytes(export(api))
    assert api.delete("/images?all=true").json()["deletedCount"] == 4
    assert stored_keys() == []
    response = post_archive(api, content, name="export.zip")
    assert response.status_code == 200, response.content
    assert response.json() == {"file": "export.zip", "imported": 4, "skipped": []}
    assert all_documents(api) == before
    assert {file: stored_bytes(file) for file in dataset} == originals
    assert collection.count_documents({"__v": {"$exists": True}}) == 0


def test_reimport_over_existing_images_keeps_ids_and_count(api, dataset, collection):
    before = all_documents(api)
    response = post_archive(api, zip_bytes(export(api)))
    assert response.json()["imported"] == 4
    assert all_documents(api) == before


# --- reference archives of the original --------------------------------------------------------
def test_imports_the_original_v1_20_2_export_with_nothing_lost(api, uploads, collection):
    path = FIXTURES / "original-export-v1.20.2.zip"
    response = post_archive(api, path.read_bytes(), name=path.name)
    assert response.status_code == 200, response.content
    assert response.json() == {"file": path.name, "imported": 5, "skipped": []}
    with zipfile.ZipFile(path) as original:
        expected = json.loads(original.read("mongodb_data.json"))
        for document in expected:
            assert stored_bytes(document["file"]) == original.read(document["file"])
    imported = {d["file"]: d for d in all_documents(api)}
    assert len(imported) == 5
    for document in expected:
        mine = imported[document["file"]]
        assert mine["_id"] == document["_id"]
        assert mine["time"] == document["time"]
        assert mine["data"] == document["data"]
        assert mine["userId"] is None
        assert "__v" not in mine
    frame1 = imported["cam1/2026-11-01/frame_0001.jpg"]
    assert frame1["data"]["line"] == {"id": 3, "station": "A"}
    assert frame1["data"]["score"] == 0.93
    assert imported["cam1/2026-11-01/frame_0002.jpg"]["data"]["tags"] == ["scratch", "dent"]
    assert imported["cam2/frame_0003.png"]["format"] == "PNG"
    assert frame1["format"] == "JPEG" and frame1["width"] > 0 and len(frame1["sha256"]) == 64
    assert collection.count_documents({"__v": {"$exists": True}}) == 0


def test_imports_the_original_2022_export(api):
    path = FIXTURES / "original-export-2022.zip"
    response = post_archive(api, path.read_bytes(), name=path.name)
    assert response.json() == {"file": path.name, "imported": 1, "skipped": []}
    (document,) = all_documents(api)
    assert document["_id"] == "63630043e69a96978b2bd2dc"
    assert document["time"] == "2022-11-02T23:41:55.711Z"
    assert document["data"] == {}
    with zipfile.ZipFile(path) as original:
        assert stored_bytes("example.jpg") == original.read("example.jpg")
    assert document["size"] == len(stored_bytes("example.jpg"))


# --- bad archives ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_name",
    ["../evil.jpg", "ok/../../evil.jpg", "/abs/evil.jpg", "dir\\evil.jpg", "C:/evil.jpg", "C:evil"],
)
def test_unsafe_entry_names_are_400_with_nothing_written(api, collection, tmp_path, bad_name):
    content = make_zip({"first.jpg": JPEG, bad_name: JPEG, "last.jpg": JPEG})
    response = post_archive(api, content)
    assert response.status_code == 400
    assert "Unsafe archive entry" in response.json()["detail"]
    assert_nothing_written(collection)
    assert not (tmp_path / "evil.jpg").exists()


def test_unsafe_directory_entry_is_400(api, collection):
    response = post_archive(api, make_zip({"../up/": None, "a.jpg": JPEG}))
    assert response.status_code == 400
    assert_nothing_written(collection)


@pytest.mark.parametrize("batch", [1, 500])
def test_corrupt_entry_is_skipped_and_reported_and_the_answer_counts_what_was_written(
    api, collection, monkeypatch, batch
):
    monkeypatch.setattr(archive_importer, "DOCUMENT_BATCH", batch)
    entries = {"a.jpg": JPEG, "b.png": PNG, "c.jpg": JPEG}
    content = bytearray(make_zip(entries, method=zipfile.ZIP_STORED))
    offset = content.index(PNG) + 40
    content[offset] ^= 0xFF
    body = post_archive(api, bytes(content)).json()
    assert body["imported"] == 2 == collection.count_documents({})
    assert [item["entry"] for item in body["skipped"]] == ["b.png"]
    assert "corrupt" in body["skipped"][0]["reason"]
    assert stored_keys() == ["a.jpg", "c.jpg"]


def test_two_manifest_items_for_one_entry_count_one_document(api, collection):
    items = [{"file": "a.jpg", "data": {"n": 1}}, {"file": "a.jpg", "data": {"n": 2}}]
    content = make_zip({"a.jpg": JPEG, "mongodb_data.json": json.dumps(items).encode()})
    body = post_archive(api, content).json()
    assert body["imported"] == 1 == collection.count_documents({})
    assert collection.find_one()["data"] == {"n": 2}
    assert body["skipped"] == [
        {"entry": "a.jpg", "reason": "a later item of the manifest describes the same file"}
    ]


def test_manifest_document_without_entry_never_adopts_a_file_without_a_document(api, collection):
    get_file_store().save("lying/around.jpg", io.BytesIO(JPEG))
    manifest_text = json.dumps([{"file": "lying/around.jpg", "data": {"mine": True}}])
    body = post_archive(api, make_zip({"mongodb_data.json": manifest_text.encode()})).json()
    assert body["imported"] == 0
    assert [item["entry"] for item in body["skipped"]] == ["lying/around.jpg"]
    assert collection.count_documents({}) == 0


@pytest.mark.parametrize(
    "content",
    [b"not a zip at all", JPEG, make_zip({"a.jpg": JPEG})[:60], b""],
    ids=["text", "jpeg", "truncated", "empty"],
)
def test_non_zip_uploads_are_400(api, collection, content):
    response = post_archive(api, content)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert_nothing_written(collection)


def test_wrong_field_name_and_missing_file_are_400(api, collection):
    wrong = post_archive(api, make_zip({"a.jpg": JPEG}), field="file")
    assert wrong.status_code == 400
    assert "archive" in wrong.json()["detail"]
    missing = api.post("/import", {"batch": "x"}, format="multipart")
    assert missing.status_code == 400
    assert "File not provided" in missing.json()["detail"]
    assert api.post("/import").status_code == 400
    assert_nothing_written(collection)


@pytest.mark.parametrize(
    ("manifest_text", "message"),
    [
        ('[{"_id": 1', "not valid JSON"),
        ('[{"file": "a.jpg"}] trailing', "not valid JSON"),
        ('{"file": "a.jpg"}', "JSON array"),
        ("[1]", "not a JSON object"),
        ('[{"file": "../a.jpg"}]', "item 0"),
        ('[{"file": "a.jpg"}, {"data": {}}]', "item 1"),
        ('[{"file": "a.jpg", "_id": "nothex"}]', "_id"),
        ('[{"file": "a.jpg", "time": "yesterday"}]', "time"),
        ('[{"file": "a.jpg", "data": [1]}]', "data"),
        ('[{"file": "a.jpg", "data": {"$where": 1}}]', "$where"),
        ("", "empty"),
    ],
)
def test_bad_manifest_is_400_with_nothing_written(api, collection, manifest_text, message):
    content = make_zip({"a.jpg": JPEG, "mongodb_data.json": manifest_text.encode()})
    response = post_archive(api, content)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert_nothing_written(collection)


# --- what is imported ------------------------------------------------------------------------
def test_directory_entries_macos_metadata_and_dot_files_are_skipped(api, collection):
    content = make_zip(
        {
            "sub/": None,
            "sub/d.jpg": JPEG,
            "__MACOSX/sub/._d.jpg": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00\x00\x00\x01Bud1",
            "sub/.hidden.jpg": JPEG,
        }
    )
    body = post_archive(api, content).json()
    assert body["imported"] == 1
    assert {item["entry"] for item in body["skipped"]} == {
        "__MACOSX/sub/._d.jpg",
        ".DS_Store",
        "sub/.hidden.jpg",
    }
    assert stored_keys() == ["sub/d.jpg"]
    assert [d["file"] for d in collection.find()] == ["sub/d.jpg"]


def test_entries_that_are_not_images_are_skipped_and_reported(api, collection):
    content = make_zip({"a.jpg": JPEG, "notes.txt": b"just some notes", "b.jpg": JPEG[:200]})
    body = post_archive(api, content).json()
    assert body["imported"] == 1
    reasons = {item["entry"]: item["reason"] for item in body["skipped"]}
    assert set(reasons) == {"notes.txt", "b.jpg"}
    assert "not a decodable image" in reasons["notes.txt"]
    assert stored_keys() == ["a.jpg"]


def test_entries_that_are_not_images_are_stored_when_allowed(api, settings):
    settings.ALLOW_NON_IMAGES = True
    body = post_archive(api, make_zip({"notes.txt": b"just some notes"})).json()
    assert body["imported"] == 1
    (document,) = all_documents(api)
    assert document["contentType"] == "text/plain"


def test_without_manifest_one_document_per_image_with_plain_fields(api, collection):
    content = make_zip({"imp/a.jpg": JPEG, "imp/b.png": PNG, "c.jpg": JPEG})
    body = post_archive(api, content, batch="b1", source="importer").json()
    assert body["imported"] == 3
    documents = {d["file"]: d for d in all_documents(api)}
    assert set(documents) == {"imp/a.jpg", "imp/b.png", "c.jpg"}
    assert all(d["data"] == {"batch": "b1", "source": "importer"} for d in documents.values())
    assert documents["imp/b.png"]["width"] == 20
    first_ids = {file: d["_id"] for file, d in documents.items()}

    again = post_archive(api, content, data='{"batch": "b2", "n": 2}').json()
    assert again["imported"] == 3
    documents = {d["file"]: d for d in all_documents(api)}
    assert {file: d["_id"] for file, d in documents.items()} == first_ids
    assert all(d["data"] == {"batch": "b2", "n": 2} for d in documents.values())


def test_form_fields_merge_over_manifest_data_and_time_applies_to_new_images(api):
    manifest_text = json.dumps(
        [
            {
                "_id": "64c000000000000000000001",
                "file": "j/one.jpg",
                "data": {"orig": "x", "batch": "old"},
                "time": "2020-01-02T03:04:05.000Z",
                "__v": 0,
            }
        ]
    )
    content = make_zip(
        {"j/one.jpg": JPEG, "j/two.jpg": JPEG, "mongodb_data.json": manifest_text.encode()}
    )
    body = post_archive(api, content, json='{"batch": "new"}', time="2024-05-06T07:08:09Z").json()
    assert body["imported"] == 2
    documents = {d["file"]: d for d in all_documents(api)}
    one = documents["j/one.jpg"]
    assert one["_id"] == "64c000000000000000000001"
    assert one["data"] == {"orig": "x", "batch": "new"}
    assert one["time"] == "2020-01-02T03:04:05.000Z"
    assert documents["j/two.jpg"]["data"] == {"batch": "new"}
    assert documents["j/two.jpg"]["time"] == "2024-05-06T07:08:09.000Z"


def test_form_fields_file_or_id_are_refused(api, collection):
    response = post_archive(api, make_zip({"a.jpg": JPEG}), file="x.jpg")
    assert response.status_code == 400
    assert_nothing_written(collection)


def test_manifest_document_for_a_file_already_stored_updates_its_data(api):
    upload(api, "kept.jpg", JPEG, label="before")
    image_id = all_documents(api)[0]["_id"]
    manifest_text = json.dumps([{"_id": image_id, "file": "kept.jpg", "data": {"label": "after"}}])
    body = post_archive(api, make_zip({"mongodb_data.json": manifest_text.encode()})).json()
    assert body == {"file": "archive.zip", "imported": 1, "skipped": []}
    (document,) = all_documents(api)
    assert document["data"] == {"label": "after"}
    assert document["sha256"]


def test_an_id_used_by_another_file_is_reported_and_its_file_removed(api):
    upload(api, "owner.jpg", JPEG)
    taken = all_documents(api)[0]["_id"]
    manifest_text = json.dumps([{"_id": taken, "file": "intruder.jpg"}])
    content = make_zip({"intruder.jpg": JPEG, "mongodb_data.json": manifest_text.encode()})
    body = post_archive(api, content).json()
    assert body["imported"] == 0
    assert body["skipped"] == [
        {"entry": "intruder.jpg", "reason": f"_id {taken} is already used by another file"}
    ]
    assert stored_keys() == ["owner.jpg"]


@pytest.mark.parametrize("batch", [2, 500])
def test_storage_failure_midway_leaves_no_document_without_its_file(
    api, collection, monkeypatch, tmp_path, batch
):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(archive_importer, "DOCUMENT_BATCH", batch)
    saves = []
    original_stage = LocalFileStore.stage

    def failing_stage(self, source, staging):
        saves.append(staging)
        if len(saves) == 4:
            raise OSError(28, "No space left on device")
        return original_stage(self, source, staging)

    monkeypatch.setattr(LocalFileStore, "stage", failing_stage)
    content = make_zip({f"{i}.png": PNG for i in range(6)})
    response = post_archive(api, content)
    assert response.status_code == 507
    files = {d["file"] for d in collection.find()}
    assert set(stored_keys()) == files
    assert files == ({"0.png", "1.png"} if batch == 2 else set())
    assert list(scratch.iterdir()) == []


def test_a_batch_waits_for_its_lease_no_longer_than_batch_seconds(api, monkeypatch):
    """Staged files no lease records are a dead writer's to `check_integrity --fix` once they
    are old enough: a slow import sends each batch in time, full or not."""
    from images.writes import FileWriter

    monkeypatch.setattr(archive_importer, "BATCH_SECONDS", 0.0)
    batches: list[int] = []
    original_commit = FileWriter.commit

    def counted_commit(self, staged, write_documents):
        batches.append(len(staged))
        return original_commit(self, staged, write_documents)

    monkeypatch.setattr(FileWriter, "commit", counted_commit)
    body = post_archive(api, make_zip({f"{i}.png": PNG for i in range(3)})).json()
    assert body["imported"] == 3
    assert batches == [1, 1, 1]


def test_empty_archive_imports_nothing(api):
    body = post_archive(api, make_zip({})).json()
    assert body == {"file": "archive.zip", "imported": 0, "skipped": []}


def test_oversized_archive_is_413(api, settings, collection):
    settings.MAX_IMPORT_SIZE = 1000
    content = make_zip({f"{i}.png": PNG for i in range(20)}, method=zipfile.ZIP_STORED)
    response = post_archive(api, content)
    assert response.status_code == 413
    assert_nothing_written(collection)


def test_manifest_is_parsed_a_block_at_a_time():
    class CountingStream(io.BytesIO):
        reads = 0

        def read(self, size=-1):
            CountingStream.reads += 1
            return super().read(size)

    items = [{"file": f"f{i}.jpg", "data": {"text": "x" * 1000}} for i in range(3000)]
    stream = CountingStream(json.dumps(items).encode())
    parsed = manifest_items(stream)
    assert next(parsed)["file"] == "f0.jpg"
    assert CountingStream.reads == 1
    assert stream.tell() < len(stream.getvalue()) / 2
    assert sum(1 for _ in parsed) == 2999


def test_user_scope_imports_as_the_user_and_round_trips(api, settings, collection):
    settings.IMAGE_SCOPE = "user"
    api.force_authenticate(SimpleNamespace(user_id="alice", is_authenticated=True))
    body = post_archive(api, make_zip({"cam/a.jpg": JPEG}), label="x").json()
    assert body["imported"] == 1
    document = collection.find_one()
    assert document["file"] == "alice/cam/a.jpg" and document["userId"] == "alice"
    assert stored_keys() == ["alice/cam/a.jpg"]

    archive = export(api)
    assert image_names(archive) == ["alice/cam/a.jpg"]
    assert post_archive(api, zip_bytes(archive)).json()["imported"] == 1
    assert collection.find_one()["_id"] == document["_id"]  # kept: the image is still there
    api.delete("/images?all=true")
    assert post_archive(api, zip_bytes(archive)).json()["imported"] == 1
    assert stored_keys() == ["alice/cam/a.jpg"]
    # A new image gets a server id under scope: an archive's id is never honoured, whether
    # it is free or another user's, so an import cannot tell which ids others hold.
    assert collection.find_one()["_id"] != document["_id"]

    api.force_authenticate(SimpleNamespace(user_id="bob", is_authenticated=True))
    assert image_names(export(api)) == []


def test_openapi_schema_lists_export_and_import(api):
    schema = api.get("/docs/schema", {"format": "json"}).json()
    assert "filter" in {p["name"] for p in schema["paths"]["/export"]["get"]["parameters"]}
    assert "multipart/form-data" in schema["paths"]["/import"]["post"]["requestBody"]["content"]


# --- management commands -----------------------------------------------------------------------
def test_export_and_import_commands_share_the_routes_format(api, dataset, tmp_path, collection):
    out = tmp_path / "cam1.zip"
    output = io.StringIO()
    call_command(
        "export_images",
        str(out),
        "--filter",
        '{"data.camera": "cam1"}',
        "--sort",
        "file",
        stdout=output,
    )
    assert "Exported 2 images" in output.getvalue()
    with zipfile.ZipFile(out) as archive:
        assert image_names(archive) == dataset[:2]
        assert len(manifest(archive)) == 2
    assert not list(tmp_path.glob(".*partial"))

    api.delete("/images?all=true")
    output = io.StringIO()
    call_command("import_images", str(out), "--data", '{"batch": "cli"}', stdout=output)
    assert "Imported 2 images" in output.getvalue()
    documents = all_documents(api)
    assert [d["file"] for d in documents] == dataset[:2]
    assert all(d["data"]["batch"] == "cli" and d["data"]["camera"] == "cam1" for d in documents)


def test_export_command_limit_skip_order(api, dataset, tmp_path):
    out = tmp_path / "some.zip"
    call_command(
        "export_images",
        str(out),
        "--sort",
        "data.n",
        "--order",
        "-1",
        "--skip",
        "1",
        "--limit",
        "2",
        stdout=io.StringIO(),
    )
    with zipfile.ZipFile(out) as archive:
        assert image_names(archive) == [dataset[2], dataset[1]]


def test_commands_report_bad_input_as_command_errors(tmp_path, collection):
    with pytest.raises(CommandError, match="filter"):
        call_command("export_images", str(tmp_path / "x.zip"), "--filter", "{bad")
    assert not (tmp_path / "x.zip").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(make_zip({"../evil.jpg": JPEG}))
    with pytest.raises(CommandError, match="Unsafe archive entry"):
        call_command("import_images", str(bad))
    with pytest.raises(CommandError, match="JSON"):
        call_command("import_images", str(bad), "--data", "[1]")
    assert_nothing_written(collection)


# --- small helpers used above ------------------------------------------------------------------
def image_names(archive: zipfile.ZipFile) -> list[str]:
    return [name for name in archive.namelist() if name not in archive_layout.MANIFESTS]


def zip_bytes(archive: zipfile.ZipFile) -> bytes:
    archive.fp.seek(0)
    return archive.fp.read()


def test_head_export_answers_headers_without_making_the_archive(api, monkeypatch):
    from images.archives import ArchiveExporter

    monkeypatch.setattr(ArchiveExporter, "stream", lambda self: pytest.fail("export was made"))
    response = api.head("/export?label=cat")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="')
    assert api.head("/export?limit=-1").status_code == 400
