"""PATCH /images and DELETE /images: bulk edits by filter."""

from __future__ import annotations

import logging

import pytest

from tests.helpers import upload


@pytest.fixture
def three(api):
    for name, key3 in (("a.jpg", "value3"), ("b.jpg", "value3"), ("c.jpg", "other")):
        assert upload(api, name, key3=key3).status_code == 200


def data_of(api, file):
    return api.get("/images", {"file": file}).json()["items"][0]["data"]


def test_bulk_patch_sets_under_data(api, three):
    response = api.patch(
        "/images?key3=value3", {"label": "bulk", "nested": {"x": 1}}, format="json"
    )
    assert response.json() == {
        "acknowledged": True,
        "matchedCount": 2,
        "modifiedCount": 2,
        "upsertedId": None,
        "upsertedCount": 0,
    }
    assert data_of(api, "a.jpg") == {"key3": "value3", "label": "bulk", "nested": {"x": 1}}
    assert "label" not in data_of(api, "c.jpg")


def test_bulk_patch_unset_dotted_and_filter(api, three):
    api.patch("/images?file=a.jpg", {"nested.y": 2}, format="json")
    assert data_of(api, "a.jpg")["nested"] == {"y": 2}
    api.patch("/images?all=true", {"$unset": {"key3": ""}}, format="json")
    assert all("key3" not in data_of(api, f) for f in ("a.jpg", "b.jpg", "c.jpg"))
    response = api.patch('/images?filter={"file":"c.jpg"}', {"z": 1}, format="json")
    assert response.json()["matchedCount"] == 1


def test_bulk_patch_without_filter_updates_all(api, three):
    response = api.patch("/images?all=true", {"commonKey": "commonValue"}, format="json")
    assert response.json()["modifiedCount"] == 3


def test_bulk_patch_with_empty_body_does_nothing(api, three):
    response = api.patch("/images?key3=value3", {}, format="json")
    assert response.json()["acknowledged"] is False
    assert response.json()["modifiedCount"] == 0


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("filter={", {"a": 1}),
        ("", ["a", "b"]),
        ("", {"$set": {"file": "hijack.jpg"}}),
        ('filter={"$where":"1"}', {"a": 1}),
    ],
)
def test_bad_bulk_patch_is_400_and_changes_nothing(api, three, query, body):
    response = api.patch(f"/images?{query}", body, format="json")
    assert response.status_code == 400
    assert data_of(api, "a.jpg") == {"key3": "value3"}


def test_bulk_patch_on_unknown_top_level_field_matches_nothing(api, three):
    response = api.patch('/images?filter={"fiel":"typo.jpg"}', {"x": 1}, format="json")
    assert response.json()["matchedCount"] == 0


def test_bulk_delete_removes_documents_and_files(api, three, uploads, caplog, backend):
    caplog.set_level(logging.INFO, logger="images.api.views.images")
    response = api.delete("/images?key3=value3")
    assert response.json() == {"acknowledged": True, "deletedCount": 2}
    remaining = [i["file"] for i in api.get("/images").json()["items"]]
    assert remaining == ["c.jpg"]
    if backend == "local":
        kept = sorted(p.name for p in uploads.iterdir() if p.name != ".imagestore")
        assert kept == ["c.jpg"]
        assert not any((uploads / ".imagestore").rglob("*.*"))  # no staged bytes left
    assert "Bulk delete" in caplog.text and "deleted=2" in caplog.text


def test_bulk_delete_with_a_typo_deletes_nothing(api, three):
    response = api.delete('/images?filter={"fiel":"typo.jpg"}')
    assert response.json()["deletedCount"] == 0
    assert api.get("/images").json()["total"] == 3


def test_bulk_delete_malformed_filter_is_400(api, three):
    assert api.delete("/images?filter={").status_code == 400
    assert api.get("/images").json()["total"] == 3


@pytest.mark.parametrize("method", ["delete", "patch"])
@pytest.mark.parametrize(
    "query", ["", "?sort=file", "?limit=0", "?all=false", "?all=true&all=true"]
)
def test_bulk_change_without_filter_or_all_true_is_400_and_changes_nothing(
    api, three, method, query
):
    response = getattr(api, method)(f"/images{query}", {"x": 1}, format="json")
    assert response.status_code == 400
    assert "all" in response.json()["detail"]
    assert api.get("/images", {"filter": '{"data.x": {"$exists": true}}'}).json()["total"] == 0
    assert api.get("/images").json()["total"] == 3


def test_bulk_patch_with_all_true_changes_every_image(api, three):
    assert api.patch("/images?all=true", {"x": 1}, format="json").json()["matchedCount"] == 3
    assert api.get("/images", {"filter": '{"data.x": 1}'}).json()["total"] == 3


def test_all_is_a_data_filter_outside_bulk_changes(api):
    upload(api, "a.jpg", all="yes")
    upload(api, "b.jpg")
    assert api.get("/images", {"all": "yes"}).json()["total"] == 1


def test_bulk_delete_with_all_true_deletes_all(api, three, uploads):
    assert api.delete("/images?all=true").json()["deletedCount"] == 3
    assert [p.name for p in uploads.iterdir()] == [".imagestore"]
    assert not any((uploads / ".imagestore").rglob("*.*"))
    assert api.delete("/images?all=true").json() == {"acknowledged": True, "deletedCount": 0}
