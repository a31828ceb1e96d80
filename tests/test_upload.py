"""POST /images: metadata rules of the contract, system fields, validation and both backends."""

from __future__ import annotations

import hashlib
import io

import pytest

from images.store.files import get_file_store
from images.store.repository import ImageRepository
from tests.helpers import image_bytes, noise_image, upload


def stored_bytes(file: str) -> bytes:
    return b"".join(get_file_store().read_chunks(file))


def test_plain_fields_become_string_data(api, backend):
    response = upload(api, "photo1.jpg", key1="value1", count="5")
    assert response.status_code == 200
    body = response.json()
    assert body["file"] == "photo1.jpg"
    assert body["data"] == {"key1": "value1", "count": "5"}
    assert body["userId"] is None
    assert len(body["_id"]) == 24
    assert body["time"].endswith("Z") and len(body["time"]) == 24
    assert stored_bytes("photo1.jpg") == image_bytes()


def test_json_field_keeps_types_and_ignores_plain_fields(api):
    payload = '{"parentKey": {"n": 2}, "num": 5, "flag": true, "arr": [1, "a"]}'
    body = upload(api, json=payload, plainKey="ignored").json()
    assert body["data"] == {"parentKey": {"n": 2}, "num": 5, "flag": True, "arr": [1, "a"]}


def test_json_field_wins_over_data_field(api):
    body = upload(api, data='{"fromData": 1}', json='{"fromJson": 1}').json()
    assert body["data"] == {"fromJson": 1}


def test_data_field_is_read_when_no_json_field(api):
    body = upload(api, data='{"nested": {"a": {"b": "c"}}, "label": "cat"}').json()
    assert body["data"] == {"nested": {"a": {"b": "c"}}, "label": "cat"}


def test_file_field_chooses_the_path_whatever_its_position(api, uploads):
    file = io.BytesIO(image_bytes())
    file.name = "late.jpg"
    # The file part comes first and `file` after it: the original stored the bytes at the wrong
    # path here; the document and the bytes must agree.
    response = api.post("/images", {"image": file, "file": "lateFolder/renamed.jpg"})
    assert response.json()["file"] == "lateFolder/renamed.jpg"
    assert (uploads / "lateFolder" / "renamed.jpg").read_bytes() == image_bytes()
    assert not (uploads / "late.jpg").exists()


def test_file_inside_json_is_a_system_field(api):
    body = upload(api, json='{"file": "jsonFolder/j.jpg", "k": "v"}').json()
    assert body["file"] == "jsonFolder/j.jpg"
    assert body["data"] == {"k": "v"}


def test_client_chosen_id_and_time(api):
    body = upload(api, "withid.jpg", _id="64b000000000000000000001", time="2021-05-05T12:34:56Z")
    assert body.json()["_id"] == "64b000000000000000000001"
    assert body.json()["time"] == "2021-05-05T12:34:56.000Z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"time": "not-a-date"}, "time"),
        ({"_id": "xyz"}, "_id"),
        ({"json": "{bad"}, "json"),
        ({"json": "5"}, "json"),
        ({"json": "[1, 2]"}, "json"),
        ({"data": '"abc"'}, "data"),
        ({"json": '{"$where": 1}'}, "$where"),
        ({"json": '{"a": {"b.c": 1}}'}, "b.c"),
        ({"file": "/abs/evil.jpg"}, "absolute"),
        ({"file": "../../etc/evil.jpg"}, ".."),
        ({"file": "a/../../b.jpg"}, ".."),
        ({"file": "a\\b.jpg"}, "backslash"),
        ({"file": "C:/x.jpg"}, "drive"),
        ({"file": "a\x00b.jpg"}, "NUL"),
        ({"file": "."}, "'.'"),
        ({"file": ".imagestore/thumbs/x.jpg"}, "reserved"),
        ({"file": "x" * 300 + ".jpg"}, "longer"),
    ],
)
def test_bad_metadata_is_a_400_naming_the_problem(api, uploads, fields, message):
    response = upload(api, **fields)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert list(uploads.rglob("*")) == []


def test_reupload_keeps_id_replaces_data_and_bytes(api, uploads):
    first = upload(api, "photo1.jpg", key1="value1").json()
    second = upload(api, "photo1.jpg", image_bytes(color="blue"), other="x").json()
    assert second["_id"] == first["_id"]
    assert second["data"] == {"other": "x"}
    assert second["time"] >= first["time"]
    assert (uploads / "photo1.jpg").read_bytes() == image_bytes(color="blue")
    assert api.get("/images").json()["total"] == 1


def reupload(api, query: str, **fields):
    """POST /images?<query> of new bytes to `photo1.jpg`."""
    file = io.BytesIO(image_bytes(color="blue"))
    file.name = "photo1.jpg"
    form = {"image": file, "file": "photo1.jpg", **fields}
    return api.post(f"/images?{query}", form, format="multipart")


def test_reupload_with_metadata_merge_keeps_the_stored_data_under_the_new(api, uploads):
    first = upload(api, "photo1.jpg", json='{"label": "cat", "box": {"x": 1, "y": 2}}').json()
    curated = {"reviewed": True, "label": "dog"}
    assert api.patch(f"/images/{first['_id']}", curated, format="json").status_code == 200

    sent = '{"label": "bird", "box": {"x": 5}, "new": [1]}'
    response = reupload(api, "metadata=merge", json=sent)
    assert response.status_code == 200
    # Top-level keys: the upload's win, whole (a nested object is not merged); the rest stays.
    merged = {"label": "bird", "box": {"x": 5}, "new": [1], "reviewed": True}
    assert response.json()["data"] == merged
    assert response.json()["_id"] == first["_id"]
    assert api.get(f"/images/{first['_id']}").json()["data"] == merged
    assert (uploads / "photo1.jpg").read_bytes() == image_bytes(color="blue")


def test_metadata_merge_keeps_a_patch_that_lands_just_before_the_document_write(
    api, collection, monkeypatch
):
    upload(api, "photo1.jpg", label="cat")
    write_document = ImageRepository.upsert

    def patched_meanwhile(self, file, *args, **kwargs):
        collection.update_one({"file": file}, {"$set": {"data.reviewed": True}})
        return write_document(self, file, *args, **kwargs)

    monkeypatch.setattr(ImageRepository, "upsert", patched_meanwhile)
    body = reupload(api, "metadata=merge", label="dog").json()
    assert body["data"] == {"label": "dog", "reviewed": True}
    assert collection.find_one({"file": "photo1.jpg"})["data"] == body["data"]


def test_metadata_replace_is_the_default(api):
    first = upload(api, "photo1.jpg", json='{"label": "cat"}').json()
    api.patch(f"/images/{first['_id']}", {"reviewed": True}, format="json")
    assert reupload(api, "metadata=REPLACE", json='{"n": 1}').json()["data"] == {"n": 1}
    assert reupload(api, "", json='{"n": 2}').json()["data"] == {"n": 2}
    assert reupload(api, "metadata=", json='{"n": 3}').json()["data"] == {"n": 3}  # as absent


def test_metadata_merge_of_a_new_path_or_of_data_that_is_not_an_object(api, collection):
    assert reupload(api, "metadata=merge", label="new").json()["data"] == {"label": "new"}
    collection.update_one({"file": "photo1.jpg"}, {"$set": {"data": None}})
    assert reupload(api, "metadata=merge", n="1").json()["data"] == {"n": "1"}
    assert collection.find_one({"file": "photo1.jpg"})["data"] == {"n": "1"}


def test_metadata_merge_beyond_the_data_limit_is_a_413(api, settings):
    settings.MAX_DATA_SIZE = 10_000
    upload(api, "photo1.jpg", big="x" * 6_000)
    response = reupload(api, "metadata=merge", other="y" * 6_000)
    assert response.status_code == 413
    assert "MAX_DATA_SIZE" in response.json()["detail"]
    assert api.get("/images").json()["items"][0]["data"] == {"big": "x" * 6_000}
    assert stored_bytes("photo1.jpg") == image_bytes()  # the old bytes with their document


@pytest.mark.parametrize("value", ["shallow", "merge,replace", "true"])
def test_bad_metadata_mode_is_a_400_naming_the_parameter(api, uploads, value):
    response = reupload(api, f"metadata={value}", label="x")
    assert response.status_code == 400
    assert "Parameter 'metadata' must be replace or merge" in response.json()["detail"]
    assert list(uploads.rglob("*")) == []


def test_reupload_with_another_explicit_id_is_a_conflict(api):
    upload(api, "photo1.jpg")
    response = upload(api, "photo1.jpg", _id="64b0000000000000000000ff")
    assert response.status_code == 409


def test_explicit_id_of_another_file_is_a_conflict(api, uploads):
    upload(api, "a.jpg", _id="64b0000000000000000000ff")
    response = upload(api, "b.jpg", _id="64b0000000000000000000ff")
    assert response.status_code == 409
    assert api.get("/images").json()["total"] == 1
    assert sorted(p.name for p in uploads.iterdir() if p.name != ".imagestore") == ["a.jpg"]
    assert list((uploads / ".imagestore" / "staging").iterdir()) == []


def test_no_file_is_a_400(api):
    assert api.post("/images").status_code == 400
    response = api.post("/images", {"k": "v"}, format="multipart")
    assert response.status_code == 400
    assert "image" in response.json()["detail"]


def test_file_under_another_field_name_is_a_400(api):
    file = io.BytesIO(image_bytes())
    file.name = "wrongfield.jpg"
    response = api.post("/images", {"file": file}, format="multipart")
    assert response.status_code == 400
    assert "'file'" in response.json()["detail"]


def test_two_files_in_image_is_a_400(api, uploads):
    files = []
    for name in ("two1.jpg", "two2.jpg"):
        handle = io.BytesIO(image_bytes())
        handle.name = name
        files.append(handle)
    response = api.post("/images", {"image": files}, format="multipart")
    assert response.status_code == 400
    assert list(uploads.iterdir()) == []


@pytest.mark.parametrize("kind", ["json", "form"])
def test_a_body_that_is_not_multipart_is_an_upload_without_file(api, kind):
    if kind == "json":
        response = api.post("/images", {"file": "x.jpg"}, format="json")
    else:
        response = api.post(
            "/images", "file=x.jpg", content_type="application/x-www-form-urlencoded"
        )
    assert response.status_code == 400
    assert "File not provided" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", b"hello, not an image"),
        ("empty.jpg", b""),
        ("truncated.jpg", image_bytes(size=(256, 256))[:400]),
    ],
)
def test_non_images_empty_and_truncated_files_are_refused(api, uploads, name, content):
    response = upload(api, name, content)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert list(uploads.iterdir()) == []


def test_non_images_are_accepted_when_configured(api, settings):
    settings.ALLOW_NON_IMAGES = True
    response = upload(api, "notes.txt", b"hello, not an image")
    assert response.status_code == 200
    assert response.json()["contentType"] == "text/plain"


def test_oversized_upload_is_a_413(api, settings, uploads):
    settings.MAX_UPLOAD_SIZE = 1000
    response = upload(api, "big.png", image_bytes("PNG", size=(400, 400), mode="RGB"))
    assert response.status_code == 413
    assert list(uploads.iterdir()) == []


def test_client_folders_in_the_filename_are_dropped(api, uploads):
    body = upload(api, "../../x/evil_name.jpg").json()
    assert body["file"] == "evil_name.jpg"
    assert (uploads / "evil_name.jpg").exists()


def test_unicode_file_name_round_trips(api, backend):
    body = upload(api, "日本語.jpg").json()
    assert body["file"] == "日本語.jpg"
    response = api.get(f"/images/{body['_id']}/image")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == image_bytes()
    assert "filename*=utf-8''%E6%97%A5" in response["Content-Disposition"]


def test_image_facts_are_stored_beside_the_document(api):
    content = image_bytes("PNG", size=(40, 30), mode="RGBA", color=(1, 2, 3, 4))
    body = upload(api, "alpha.png", content).json()
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert (body["width"], body["height"]) == (40, 30)
    assert body["format"] == "PNG"
    assert body["mode"] == "RGBA"
    assert body["contentType"] == "image/png"
    assert "sha256" not in body["data"]


def test_large_upload_goes_through_a_temporary_file(api, uploads, settings):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    content = noise_image(300, 300)
    assert len(content) > 100_000
    body = upload(api, "big.png", content, file="deep/big.png").json()
    assert body["size"] == len(content)
    assert (uploads / "deep" / "big.png").read_bytes() == content
    assert oct((uploads / "deep" / "big.png").stat().st_mode & 0o777) == "0o644"


def test_a_non_image_replacing_an_image_keeps_no_stale_facts(api, settings):
    upload(api, "x.bin", file="same.bin")
    settings.ALLOW_NON_IMAGES = True
    body = upload(api, "x.bin", b"plain bytes", file="same.bin").json()
    assert "width" not in body and "format" not in body
    stored = api.get(f"/images/{body['_id']}").json()
    assert stored == body


def test_an_empty_time_or_id_is_no_time_or_id(api):
    """What a form (Swagger UI's "Try it out") sends for an input left empty."""
    response = upload(api, "empty-fields.jpg", time="", _id="")
    assert response.status_code == 200, response.content
    assert response.json()["time"] and response.json()["_id"]
