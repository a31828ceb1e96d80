"""GET/PATCH/PUT/DELETE /images/<id>."""

from __future__ import annotations

import pytest

from tests.helpers import upload

UNKNOWN = "64b0000000000000000000aa"


@pytest.fixture
def image(api) -> dict:
    return upload(api, "photo1.jpg", file="f/photo1.jpg", key1="value1", key2="value2").json()


def test_get_one(api, image):
    response = api.get(f"/images/{image['_id']}")
    assert response.status_code == 200
    assert response.json() == image


@pytest.mark.parametrize("method", ["get", "patch", "put", "delete"])
def test_unknown_id_is_404_and_malformed_id_is_400(api, method):
    call = getattr(api, method)
    kwargs = {"data": {"a": 1}, "format": "json"} if method in ("patch", "put") else {}
    missing = call(f"/images/{UNKNOWN}", **kwargs)
    assert missing.status_code == 404
    assert UNKNOWN in missing.json()["detail"]
    for bad in ("not-an-id", "abcdefghijkl", "6b058aaec8b51334bbf4858g"):
        response = call(f"/images/{bad}", **kwargs)
        assert response.status_code == 400, bad
        assert "Invalid id" in response.json()["detail"]


def test_patch_sets_and_unsets_keys_and_returns_the_document(api, image):
    url = f"/images/{image['_id']}"
    body = api.patch(url, {"newField": "newValue", "key2": "changed"}, format="json").json()
    assert body["data"] == {"key1": "value1", "key2": "changed", "newField": "newValue"}
    body = api.patch(url, {"$unset": {"newField": ""}}, format="json").json()
    assert body["data"] == {"key1": "value1", "key2": "changed"}
    body = api.patch(url, {"nested.deep": 1}, format="json").json()
    assert body["data"]["nested"] == {"deep": 1}
    body = api.patch(url, {"key1": None}, format="json").json()
    assert body["data"]["key1"] is None


def test_patch_with_an_empty_or_missing_body_changes_nothing(api, image):
    url = f"/images/{image['_id']}"
    assert api.patch(url, {}, format="json").json() == image
    assert api.patch(url).json() == image


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"k": 1, "$unset": {"k": ""}}', "application/json"),
        ('["a", "b"]', "application/json"),
        ('"just a string"', "application/json"),
        ("{bad json", "application/json"),
        ('{"$set": {"file": "hijack.jpg"}}', "application/json"),
        ('{"$unset": "k"}', "application/json"),
        ('{"a..b": 1}', "application/json"),
        ('{"a": {"$where": 1}}', "application/json"),
    ],
)
def test_bad_patch_bodies_are_400(api, image, body, content_type):
    response = api.patch(f"/images/{image['_id']}", body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert api.get(f"/images/{image['_id']}").json() == image


def test_patch_with_a_form_body_is_415(api, image):
    response = api.patch(
        f"/images/{image['_id']}", "a=1", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 415


def test_put_replaces_data_and_returns_the_updated_document(api, image):
    response = api.put(f"/images/{image['_id']}", {"replaced": True, "n": 1}, format="json")
    assert response.status_code == 200
    assert response.json()["data"] == {"replaced": True, "n": 1}
    assert api.get(f"/images/{image['_id']}").json()["data"] == {"replaced": True, "n": 1}


@pytest.mark.parametrize("body", ["[1, 2]", '"just a string"', "5", "null", ""])
def test_put_needs_a_json_object(api, image, body):
    if body:
        response = api.put(f"/images/{image['_id']}", body, content_type="application/json")
    else:
        response = api.put(f"/images/{image['_id']}")
    assert response.status_code == 400
    assert api.get(f"/images/{image['_id']}").json() == image


def test_delete_removes_document_and_file(api, image, uploads):
    assert (uploads / "f" / "photo1.jpg").exists()
    response = api.delete(f"/images/{image['_id']}")
    assert response.json() == {"_id": image["_id"]}
    assert api.get(f"/images/{image['_id']}").status_code == 404
    assert not (uploads / "f").exists()
    assert api.delete(f"/images/{image['_id']}").status_code == 404


def test_delete_when_the_file_is_already_gone(api, image, uploads):
    (uploads / "f" / "photo1.jpg").unlink()
    assert api.delete(f"/images/{image['_id']}").status_code == 200


def test_legacy_document_with_an_unsafe_path_is_never_followed(api, collection, tmp_path):
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    result = collection.insert_one({"file": "../victim.txt", "userId": None, "data": {}})
    image_id = str(result.inserted_id)
    assert api.get(f"/images/{image_id}/image").status_code == 404
    assert api.delete(f"/images/{image_id}").status_code == 200
    assert outside.read_text() == "keep me"
