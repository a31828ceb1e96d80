"""The calls the original's web GUI makes, one test each, with the parameters it sends.

The GUI (image-storage-microservice-gui) lists, filters, builds its columns from `/fields`,
edits one or many images, deletes, uploads and imports with an optional Metadata box, and opens
exports as pages. Query strings below are what its axios calls put on the wire.
"""

from __future__ import annotations

import io
import json
import zipfile
from urllib.parse import quote

import pytest

from tests.helpers import image_bytes, upload

CAMERAS = ["cam1"] * 6 + ["cam2"] * 4 + ["cam3"] * 3


def frame(index: int) -> dict:
    camera = CAMERAS[index]
    return {
        "file": f"{camera}/img_{index:02d}.jpg",
        "time": f"2026-11-{1 + index // 7:02d}T{index:02d}:00:00.000Z",
        "data": {"camera": camera, "label": "ok" if index % 2 == 0 else "ng", "score": index % 5},
    }


@pytest.fixture
def gallery(api) -> list[dict]:
    """13 images: 6 of cam1, 4 of cam2, 3 of cam3; labels ok/ng; scores 0-4; 1 and 2 November."""
    stored = []
    for index in range(len(CAMERAS)):
        meta = frame(index)
        response = upload(
            api,
            meta["file"].rsplit("/", 1)[1],
            file=meta["file"],
            time=meta["time"],
            data=json.dumps(meta["data"]),
        )
        assert response.status_code == 200, response.content
        stored.append(response.json())
    return stored


def listed(api, query: str) -> dict:
    response = api.get(f"/images?{query}")
    assert response.status_code == 200, response.content
    return response.json()


def files_of(body: dict) -> list[str]:
    return [item["file"] for item in body["items"]]


def filter_query(document: dict) -> str:
    return "filter=" + quote(json.dumps(document, separators=(",", ":")))


# --- the list ----------------------------------------------------------------------------------
def test_list_first_page_newest_first(api, gallery):
    body = listed(api, "limit=10&skip=0&sort=time&order=-1")
    assert (body["total"], body["skip"], body["limit"]) == (13, 0, 10)
    assert files_of(body) == [g["file"] for g in reversed(gallery)][:10]


def test_list_sorted_by_a_data_column(api, gallery):
    body = listed(api, "limit=10&skip=0&sort=data.camera&order=1")
    cameras = [item["data"]["camera"] for item in body["items"]]
    assert cameras == sorted(CAMERAS)[:10]


def test_list_second_page(api, gallery):
    body = listed(api, "limit=10&skip=10&sort=time&order=-1")
    assert body["total"] == 13
    assert files_of(body) == [g["file"] for g in reversed(gallery)][10:]


def test_list_larger_page(api, gallery):
    body = listed(api, "limit=50&skip=0&sort=time&order=-1")
    assert (body["total"], body["limit"], len(body["items"])) == (13, 50, 13)


def test_filter_and_of_one_equality(api, gallery):
    body = listed(api, filter_query({"$and": [{"data.camera": "cam2"}]}) + "&limit=10")
    assert body["total"] == 4 and {i["data"]["camera"] for i in body["items"]} == {"cam2"}


def test_filter_regex_with_options_and_regex_true(api, gallery):
    document = {"$and": [{"data.camera": {"$regex": "AM3", "$options": "i"}}]}
    body = listed(api, filter_query(document) + "&regex=true&limit=10")
    assert body["total"] == 3 and {i["data"]["camera"] for i in body["items"]} == {"cam3"}


def test_filter_not_equal(api, gallery):
    body = listed(api, filter_query({"data.camera": {"$ne": "cam1"}}) + "&limit=50")
    assert body["total"] == 7 and "cam1" not in {i["data"]["camera"] for i in body["items"]}


def test_filter_on_a_number(api, gallery):
    body = listed(api, filter_query({"data.score": 4}) + "&limit=50")
    assert sorted(files_of(body)) == ["cam1/img_04.jpg", "cam2/img_09.jpg"]


def test_filter_file_folder_and_label(api, gallery):
    document = {
        "$and": [
            {"file": {"$regex": "cam1/", "$options": "i"}},
            {"data.label": {"$regex": "ok", "$options": "i"}},
        ]
    }
    body = listed(api, filter_query(document) + "&limit=50")
    assert sorted(files_of(body)) == ["cam1/img_00.jpg", "cam1/img_02.jpg", "cam1/img_04.jpg"]


def test_from_date(api, gallery):
    body = listed(api, "from=2026-11-02T00:00:00.000Z&limit=50")
    assert sorted(files_of(body)) == sorted(g["file"] for g in gallery[7:])


# --- columns and value pickers -------------------------------------------------------------------
def test_fields_ignore_the_list_query(api, gallery):
    query = filter_query({"$and": [{"data.camera": "no such camera"}]})
    assert listed(api, query)["total"] == 0
    response = api.get(f"/fields?limit=10&skip=0&sort=time&order=-1&{query}")
    assert response.json() == ["camera", "label", "score"]


def test_field_values(api, gallery):
    assert sorted(api.get("/fields/camera").json()) == ["cam1", "cam2", "cam3"]


def test_field_values_filtered(api, gallery):
    assert sorted(api.get("/fields/label?camera=cam1").json()) == ["ng", "ok"]
    assert sorted(api.get("/fields/score?camera=cam3").json()) == [0, 1, 2]
    assert api.get("/fields/label?camera=nothing").json() == []


# --- edits -----------------------------------------------------------------------------------------
def test_put_replaces_the_whole_data(api, gallery):
    image = gallery[0]
    data = {"camera": "cam1", "label": "ng", "note": "edited in the GUI"}
    response = api.put(f"/images/{image['_id']}", data, format="json")
    assert response.status_code == 200
    assert response.json()["data"] == data
    assert api.get(f"/images/{image['_id']}").json()["data"] == data


def test_bulk_patch_sets_keys_and_objects(api, gallery):
    body = {"reviewed": "yes", "review": {"by": "gui"}}
    response = api.patch("/images?camera=cam2", body, format="json")
    assert response.json()["matchedCount"] == 4 and response.json()["modifiedCount"] == 4
    for item in listed(api, "camera=cam2")["items"]:
        assert item["data"]["reviewed"] == "yes" and item["data"]["review"] == {"by": "gui"}
        assert item["data"]["camera"] == "cam2"  # other keys kept
    assert "reviewed" not in listed(api, "camera=cam1")["items"][0]["data"]


def test_bulk_patch_unsets_a_key(api, gallery):
    api.patch("/images?camera=cam2", {"reviewed": "yes"}, format="json")
    response = api.patch("/images?camera=cam2", {"$unset": {"reviewed": ""}}, format="json")
    assert response.json()["matchedCount"] == 4
    assert all("reviewed" not in i["data"] for i in listed(api, "camera=cam2")["items"])


def test_bulk_patch_of_selected_ids(api, gallery):
    a, b = gallery[0]["_id"], gallery[7]["_id"]
    response = api.patch(f"/images?ids[]={a}&ids[]={b}", {"picked": "yes"}, format="json")
    assert response.json()["matchedCount"] == 2
    assert sorted(i["_id"] for i in listed(api, "picked=yes")["items"]) == sorted([a, b])


def test_bulk_delete_of_selected_ids(api, gallery, uploads):
    a, b = gallery[0]["_id"], gallery[7]["_id"]
    response = api.delete(f"/images?ids[]={a}&ids[]={b}")
    assert response.json() == {"acknowledged": True, "deletedCount": 2}
    assert listed(api, "limit=50")["total"] == 11
    assert not (uploads / gallery[0]["file"]).exists()


def test_bulk_delete_by_a_data_key(api, gallery, uploads):
    response = api.delete("/images?camera=cam3")
    assert response.json()["deletedCount"] == 3
    assert listed(api, "camera=cam3")["total"] == 0 and listed(api, "limit=50")["total"] == 10
    assert not (uploads / "cam3").exists() or not any((uploads / "cam3").iterdir())


def test_delete_one(api, gallery):
    image = gallery[5]
    assert api.delete(f"/images/{image['_id']}").json() == {"_id": image["_id"]}
    assert api.get(f"/images/{image['_id']}").status_code == 404


# --- uploads and imports ---------------------------------------------------------------------------
def test_upload_with_metadata(api):
    # The Metadata box holds JSON, or YAML the GUI converts to JSON before sending.
    response = upload(api, "new.jpg", data='{"camera": "cam9", "tags": ["a", "b"]}')
    assert response.status_code == 200
    assert response.json()["data"] == {"camera": "cam9", "tags": ["a", "b"]}


@pytest.mark.parametrize("field", ["data", "json"])
def test_upload_with_an_empty_metadata_box(api, field):
    response = upload(api, "new.jpg", **{field: "null"})
    assert response.status_code == 200, response.content
    assert response.json()["data"] == {}
    assert response.json()["file"] == "new.jpg"


def test_upload_with_null_metadata_keeps_the_system_fields(api):
    response = upload(api, "new.jpg", data="null", file="cam9/x.jpg", time="2026-01-02T03:04:05Z")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["file"], body["time"], body["data"]) == (
        "cam9/x.jpg",
        "2026-01-02T03:04:05.000Z",
        {},
    )


def archive() -> bytes:
    buffer = io.BytesIO()
    documents = [{"file": "imported/a.jpg", "data": {"camera": "cam7"}}]
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("imported/a.jpg", image_bytes())
        zipped.writestr("mongodb_data.json", json.dumps(documents))
    return buffer.getvalue()


def post_import(api, **fields):
    file = io.BytesIO(archive())
    file.name = "dataset.zip"
    return api.post("/import", {"archive": file, **fields}, format="multipart")


def test_import_with_metadata(api):
    response = post_import(api, data='{"batch": "b1"}')
    assert response.status_code == 200, response.content
    assert listed(api, "")["items"][0]["data"] == {"camera": "cam7", "batch": "b1"}


@pytest.mark.parametrize("field", ["data", "json"])
def test_import_with_an_empty_metadata_box(api, field):
    response = post_import(api, **{field: "null"})
    assert response.status_code == 200, response.content
    assert response.json()["imported"] == 1
    assert listed(api, "")["items"][0]["data"] == {"camera": "cam7"}


# --- exports, opened as pages ------------------------------------------------------------------
def exported_files(response) -> list[str]:
    assert response.status_code == 200, response.content
    assert response["Content-Disposition"].startswith("attachment")
    content = b"".join(response.streaming_content)
    with zipfile.ZipFile(io.BytesIO(content)) as zipped:
        return sorted(name for name in zipped.namelist() if name.endswith(".jpg"))


def test_export_of_selected_ids(api, gallery):
    a, b = gallery[1]["_id"], gallery[11]["_id"]
    files = exported_files(api.get(f"/export?ids={a}&ids={b}"))
    assert files == sorted([gallery[1]["file"], gallery[11]["file"]])


def test_export_with_a_filter_not_url_encoded(api, gallery):
    response = api.get('/export?filter={"$and":[{"data.camera":"cam3"}]}')
    assert exported_files(response) == [g["file"] for g in gallery[10:]]


def test_export_by_data_keys(api, gallery):
    files = exported_files(api.get("/export?camera=cam1&label=ok"))
    assert files == ["cam1/img_00.jpg", "cam1/img_02.jpg", "cam1/img_04.jpg"]
