"""GET /export?format=webdataset|imagefolder|jsonl: training-ready exports, read back as the
tools that use them read them."""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest
import requests
import webdataset
from django.core.management import call_command
from django.core.management.base import CommandError
from django.http import QueryDict
from PIL import Image
from rest_framework.test import APIClient

from images.api.export_parameters import export_request
from images.archives import folder_names
from images.archives import streams as archive_streams
from images.archives import webdataset as webdataset_export
from images.store.files import get_file_store
from images.store.repository import ImageRepository
from testing.harness import ServeProcess
from tests.helpers import image_bytes, upload
from tests.test_scope import relative
from tests.test_scope import world as scope_world

world = scope_world  # alice, bob and charlie, as in the scope tests

PNG = image_bytes("PNG", (20, 10), "blue")
JPEG = image_bytes()


def stored(api, file: str, content: bytes, **data) -> dict:
    name = file.rsplit("/", 1)[-1]
    response = upload(api, name, content, file=file, json=json.dumps(data))
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def dataset(api) -> list[dict]:
    return [
        stored(api, "cam1/a/0001.jpg", JPEG, label="cat", camera="cam1", n=1),
        stored(api, "cam1/b/0001.jpg", JPEG, label="cat", camera="cam1", n=2),
        stored(api, "cam2/0002.png", PNG, label="dog", camera="cam2", n=3),
        stored(api, "cam2/photo.jpeg", JPEG, camera="cam2", n=4),
    ]


def body(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def documents(api) -> dict[str, dict]:
    return {item["_id"]: item for item in api.get("/images", {"limit": 1000}).json()["items"]}


def read_webdataset(content: bytes, tmp_path: Path, decode: bool = False) -> list[dict]:
    shard = tmp_path / f"shard-{uuid.uuid4().hex[:6]}.tar"
    shard.write_bytes(content)
    samples = webdataset.WebDataset(str(shard), shardshuffle=False, empty_check=False)
    if decode:
        samples = samples.decode("pil")
    return list(samples)


# --- webdataset ------------------------------------------------------------------------------
def test_webdataset_is_read_back_by_webdataset_one_sample_per_image(api, dataset, tmp_path):
    response = api.get("/export?format=webdataset")
    assert response["Content-Type"] == "application/x-tar"
    assert response["Content-Disposition"].endswith('.tar"')
    samples = read_webdataset(body(response), tmp_path)
    stored_documents = documents(api)
    assert [s["__key__"] for s in samples] == [d["_id"] for d in dataset]
    for sample in samples:
        document = stored_documents[sample["__key__"]]
        printed = json.loads(sample["json"])
        assert set(printed["data"]) == {"label", "camera", "n"}  # every key, null if missing
        assert {k: v for k, v in printed.pop("data").items() if v is not None} == document.pop(
            "data"
        )
        assert printed == document
        assert set(sample) - {"__key__", "__url__", "__local_path__"} == {"jpg", "json"}
        assert sample["jpg"] == b"".join(get_file_store().read_chunks(document["file"]))


def test_webdataset_samples_decode_to_images_and_documents(api, dataset, tmp_path):
    samples = read_webdataset(body(api.get("/export?format=webdataset")), tmp_path, decode=True)
    first = samples[0]
    assert isinstance(first["jpg"], Image.Image) and first["jpg"].size == (32, 24)
    assert first["json"]["data"] == {"label": "cat", "camera": "cam1", "n": 1}
    assert samples[2]["jpg"].size == (20, 10)
    assert samples[3]["json"]["data"] == {"label": None, "camera": "cam2", "n": 4}


def test_webdataset_takes_the_query_and_keys_are_stable(api, dataset, tmp_path):
    query = "/export?format=webdataset&camera=cam2&sort=data.n&order=-1"
    first = read_webdataset(body(api.get(query)), tmp_path)
    again = read_webdataset(body(api.get(query)), tmp_path)
    assert [s["__key__"] for s in first] == [dataset[3]["_id"], dataset[2]["_id"]]
    assert [s["__key__"] for s in again] == [s["__key__"] for s in first]
    limited = read_webdataset(body(api.get("/export?format=webdataset&limit=1&skip=1")), tmp_path)
    assert [s["__key__"] for s in limited] == [dataset[1]["_id"]]


def test_webdataset_is_a_plain_tar_of_safe_names(api, dataset):
    content = body(api.get("/export?format=webdataset"))
    assert len(content) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        names = archive.getnames()
        member = archive.getmember(f"{dataset[0]['_id']}.jpg")
    assert names[:2] == [f"{dataset[0]['_id']}.jpg", f"{dataset[0]['_id']}.json"]
    assert all("/" not in name and name.count(".") == 1 for name in names)
    assert member.mode == 0o644 and member.mtime > 0


def test_webdataset_leaves_out_missing_files_and_lists_them(api, dataset, uploads, tmp_path):
    (uploads / dataset[1]["file"]).unlink()
    content = body(api.get("/export?format=webdataset"))
    samples = read_webdataset(content, tmp_path)
    assert [s["__key__"] for s in samples] == [d["_id"] for i, d in enumerate(dataset) if i != 1]
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        report = json.loads(archive.extractfile("__imagestore__/missing_files.json").read())
    assert report == [
        {
            "_id": dataset[1]["_id"],
            "file": dataset[1]["file"],
            "reason": "file not found in storage",
        }
    ]


def test_webdataset_from_s3(api, s3_bucket, tmp_path):
    document = stored(api, "s3/one.png", PNG, label="x")
    samples = read_webdataset(body(api.get("/export?format=webdataset")), tmp_path)
    assert [(s["__key__"], s["jpg"]) for s in samples] == [(document["_id"], PNG)]


def test_webdataset_spools_large_files_to_disk_and_cleans_up(api, dataset, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(webdataset_export, "SPOOL_IN_MEMORY", 16)
    samples = read_webdataset(body(api.get("/export?format=webdataset")), tmp_path)
    assert [s["jpg"] for s in samples] == [JPEG, JPEG, PNG, JPEG]
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("export_format", ["webdataset", "imagefolder", "jsonl"])
def test_stream_closed_early_leaves_no_temporary_files(
    api, dataset, tmp_path, monkeypatch, export_format
):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(archive_streams, "OUTPUT_CHUNK", 1)
    export = export_request(QueryDict(f"format={export_format}"))
    stream = export.exporter(ImageRepository(), get_file_store()).stream()
    next(stream)
    stream.close()
    assert list(scratch.iterdir()) == []


def test_ids_of_other_kinds_never_bring_unsafe_names(api, collection, uploads, tmp_path):
    (uploads / "other").mkdir()
    (uploads / "odd.jpg").write_bytes(JPEG)
    (uploads / "other/odd.jpg").write_bytes(JPEG)
    collection.insert_many(  # as a service other than this one may have written them
        [
            {"_id": 7, "file": "odd.jpg", "data": {"label": "a"}, "format": "JPEG"},
            {"_id": "../../x.y", "file": "other/odd.jpg", "data": {"label": "a"}, "format": "JPEG"},
        ]
    )
    content = body(api.get("/export?format=webdataset"))
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        names = archive.getnames()
    assert len(names) == 4
    assert all(re.fullmatch(r"id-[0-9a-f]{24}\.(jpg|json)", name) for name in names), names
    samples = read_webdataset(content, tmp_path)
    assert [json.loads(s["json"])["file"] for s in samples] == ["odd.jpg", "other/odd.jpg"]
    folder = open_zip(api.get("/export?format=imagefolder")).namelist()
    assert folder[0] == "a/odd.jpg" and re.fullmatch(r"a/odd-id-[0-9a-f]{24}\.jpg", folder[1])


def test_empty_webdataset_is_a_valid_empty_tar(api, tmp_path):
    content = body(api.get("/export?format=webdataset"))
    assert content == b"\0" * tarfile.RECORDSIZE
    assert read_webdataset(content, tmp_path) == []


def test_webdataset_image_key_is_jpg_for_every_image():
    from images.archives.webdataset import sample_extension

    assert sample_extension({"format": "JPEG", "file": "x.JPEG"}) == "jpg"
    assert sample_extension({"format": "PNG", "file": "x.png"}) == "jpg"
    assert sample_extension({"file": "notes.json"}) == "bin"
    assert sample_extension({"file": "evil.pyd"}) == "bin"
    assert sample_extension({"file": "scan.TIFF"}) == "jpg"
    assert sample_extension({"file": None}) == "bin"


# --- imagefolder -----------------------------------------------------------------------------
def open_zip(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(body(response)))


def metadata_lines(archive: zipfile.ZipFile) -> list[dict]:
    return [json.loads(line) for line in archive.read("metadata.jsonl").splitlines()]


def test_imagefolder_has_a_folder_per_label_and_metadata_jsonl(api, dataset):
    response = api.get("/export?format=imagefolder&by=label")
    assert response["Content-Type"] == "application/zip"
    archive = open_zip(response)
    ids = [d["_id"] for d in dataset]
    assert archive.namelist() == [
        "cat/0001.jpg",
        f"cat/0001-{ids[1]}.jpg",
        "dog/0002.png",
        "_unlabelled/photo.jpeg",
        "metadata.jsonl",
    ]
    stored_documents = documents(api)
    lines = metadata_lines(archive)
    assert [line["file_name"] for line in lines] == archive.namelist()[:4]
    assert [line["label"] for line in lines] == ["cat", "cat", "dog", None]
    for line in lines:
        expected = JPEG if line["format"] == "JPEG" else PNG
        assert archive.read(line.pop("file_name")) == expected
        del line["label"]
        line["data"] = json.loads(line["data"])  # as text: HF types it the same in every split
        assert line == stored_documents[line["_id"]]


def test_imagefolder_default_field_is_label_and_by_reaches_nested_values(api):
    stored(api, "a.jpg", JPEG, label="x", meta={"cls": 7})
    stored(api, "b.jpg", JPEG, meta={"cls": "seven"})
    assert open_zip(api.get("/export?format=imagefolder")).namelist()[:2] == [
        "x/a.jpg",
        "_unlabelled/b.jpg",
    ]
    by_nested = open_zip(api.get("/export?format=imagefolder&by=meta.cls"))
    assert by_nested.namelist()[:2] == ["7/a.jpg", "seven/b.jpg"]


@pytest.mark.parametrize(
    ("label", "folder"),
    [
        ("../../etc", "%2E.%2F..%2Fetc"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("..", "%2E%2E"),
        (".", "%2E"),
        (".hidden", "%2Ehidden"),
        ("trailing.", "trailing%2E"),
        (" padded ", "%20padded%20"),
        ("_unlabelled", "%5Funlabelled"),
        ("metadata.jsonl", "%6Detadata.jsonl"),
        ("50%", "50%25"),
        ("a%2Fb", "a%252Fb"),
        ("con:sole*?", "con%3Asole%2A%3F"),
        ("line\nbreak\x00", "line%0Abreak%00"),
        ("chat noir ✓", "chat noir ✓"),
        ("CON", "%43ON"),
        ("nul.txt", "%6Eul.txt"),
        ("console", "console"),
        ("", "_unlabelled"),
        (None, "_unlabelled"),
        (3, "3"),
        (True, "true"),
        (["a", "b"], "[%22a%22,%22b%22]"),
    ],
)
def test_label_values_become_one_safe_folder_each(label, folder):
    assert folder_names.label_folder(label) == folder


def test_distinct_labels_never_share_a_folder():
    labels = ["a/b", "a%2Fb", "a_b", "a%252Fb", "_unlabelled", "%5Funlabelled", ".", "%2E"]
    labels += ["CON", "%43ON", "con", "%63on"]
    folders = [folder_names.label_folder(label) for label in labels]
    assert len(set(folders)) == len(labels)
    assert all("/" not in f and "\\" not in f and f not in (".", "..") for f in folders)


def test_long_labels_are_cut_to_one_component_and_stay_distinct():
    first = folder_names.label_folder("x" * 300 + "1")
    second = folder_names.label_folder("x" * 300 + "2")
    escaped = folder_names.label_folder("/" * 200)
    assert first != second
    assert all(len(f.encode()) <= 255 for f in (first, second, escaped))
    assert not escaped.split("~")[0].endswith(("%", "%2"))


def test_hostile_labels_stay_inside_the_archive_and_names_never_collide(api):
    for index, label in enumerate(["../x", "a/b", "Cat", "dog", "../x"]):
        stored(api, f"d{index}/same.jpg", JPEG, label=label)
    stored(api, "e/SAME.jpg", JPEG, label="Cat")
    archive = open_zip(api.get("/export?format=imagefolder"))
    names = archive.namelist()[:-1]
    assert len({name.casefold() for name in names}) == len(names) == 6
    assert all(name.count("/") == 1 and not name.startswith(("/", ".")) for name in names)
    assert names[0] == "%2E.%2Fx/same.jpg" and names[1] == "a%2Fb/same.jpg"
    assert names[4].startswith("%2E.%2Fx/same-") and names[5].startswith("Cat/SAME-")
    stored(api, "f/other.jpg", JPEG, label="cat")  # a folder macOS and Windows merge with Cat
    clash = api.get("/export?format=imagefolder")
    assert clash.status_code == 400 and "'Cat' and 'cat'" in clash.json()["detail"]


def test_imagefolder_lists_missing_files(api, dataset, uploads):
    (uploads / dataset[2]["file"]).unlink()
    archive = open_zip(api.get("/export?format=imagefolder"))
    assert "dog/0002.png" not in archive.namelist()
    assert [line["_id"] for line in metadata_lines(archive)] == [
        dataset[0]["_id"],
        dataset[1]["_id"],
        dataset[3]["_id"],
    ]
    report = json.loads(archive.read("missing_files.json"))
    assert report == [
        {
            "_id": dataset[2]["_id"],
            "file": dataset[2]["file"],
            "reason": "file not found in storage",
        }
    ]


def test_name_collisions_with_tagged_names_get_another_tag(tmp_path):
    names = folder_names.FolderNames(tmp_path / "names.sqlite3")
    try:
        assert names.claim("a", "x/img.jpg", "id1") == "a/img.jpg"
        assert names.claim("a", "y/img-id2.jpg", "id9") == "a/img-id2.jpg"
        assert names.claim("a", "z/img.jpg", "id2") == "a/img-id2-2.jpg"
        long_name = "n" * 250 + ".jpg"
        assert names.claim("a", long_name, "id3") == f"a/{long_name}"
        tagged = names.claim("a", f"q/{long_name}", "id4")
        assert len(tagged.split("/")[1].encode()) <= 255 and tagged.endswith("-id4.jpg")
    finally:
        names.close()


# --- jsonl -----------------------------------------------------------------------------------
def jsonl(response) -> list[dict]:
    return [json.loads(line) for line in body(response).splitlines()]


def test_jsonl_is_the_documents_one_per_line(api, dataset):
    response = api.get("/export?format=jsonl&sort=data.n&order=-1")
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].endswith('.jsonl"')
    stored_documents = documents(api)
    lines = jsonl(response)
    assert lines == [stored_documents[d["_id"]] for d in reversed(dataset)]


def test_jsonl_honours_filters_and_select(api, dataset):
    lines = jsonl(api.get("/export?format=jsonl&label=cat&select=file data.n"))
    assert lines == [
        {"_id": dataset[0]["_id"], "file": "cam1/a/0001.jpg", "data": {"n": 1}},
        {"_id": dataset[1]["_id"], "file": "cam1/b/0001.jpg", "data": {"n": 2}},
    ]
    assert jsonl(api.get("/export?format=jsonl&camera=cam2&select=-_id file")) == [
        {"file": "cam2/0002.png"},
        {"file": "cam2/photo.jpeg"},
    ]
    assert body(api.get("/export?format=jsonl&camera=none")) == b""


# --- parameters, HEAD, scope, signed links ---------------------------------------------------
@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("format=tar", "must be one of zip, webdataset, imagefolder, jsonl"),
        ("format=jsonl&format=zip", "'format' may be given once"),
        ("format=webdataset&by=label", "'by' applies to format=imagefolder only"),
        ("by=label", "'by' applies to format=imagefolder only"),
        ("format=imagefolder&by=", "'by' must be a data key"),
        ("format=imagefolder&by=$where", "not a data key"),
        ("format=imagefolder&by=a..b", "not a data key"),
        ("format=webdataset&limit=-1", "'limit' must be a non-negative integer"),
        ('format=jsonl&filter={"$where":"1"}', "not allowed"),
    ],
)
def test_bad_export_parameters_are_400_naming_the_problem(api, query, message):
    for method in (api.get, api.head):
        response = method(f"/export?{query}")
        assert response.status_code == 400
    assert message in api.get(f"/export?{query}").json()["detail"]


def test_format_is_not_a_data_filter_on_export(api):
    stored(api, "a.jpg", JPEG, format="jsonl")
    stored(api, "b.jpg", JPEG, format="other")
    assert len(jsonl(api.get("/export?format=jsonl"))) == 2
    lines = jsonl(api.get('/export?format=jsonl&filter={"data.format":"other"}'))
    assert [line["file"] for line in lines] == ["b.jpg"]


@pytest.mark.parametrize(
    ("query", "media_type", "extension"),
    [
        ("", "application/zip", "zip"),
        ("?format=zip", "application/zip", "zip"),
        ("?format=webdataset", "application/x-tar", "tar"),
        ("?format=imagefolder&by=camera", "application/zip", "zip"),
        ("?format=jsonl", "application/x-ndjson", "jsonl"),
    ],
)
def test_head_answers_each_formats_headers(api, query, media_type, extension):
    response = api.head(f"/export{query}")
    assert response.status_code == 200
    assert response["Content-Type"] == media_type
    assert response["Content-Disposition"].endswith(f'.{extension}"')
    assert response.content == b""


def test_default_and_zip_format_are_the_original_archive(api, dataset):
    for query in ("", "?format=zip"):
        names = open_zip(api.get(f"/export{query}")).namelist()
        assert names == [d["file"] for d in dataset] + ["mongodb_data.json", "mongodb_data.xlsx"]


def test_formats_keep_to_the_callers_scope(world, tmp_path):
    alice = {
        s["__key__"]
        for s in read_webdataset(
            body(world.clients["alice"].get("/export?format=webdataset")), tmp_path
        )
    }
    assert alice == set(world.ids["alice"].values())
    bob = open_zip(world.clients["bob"].get("/export?format=imagefolder&by=owner"))
    assert sorted(bob.namelist()) == ["bob/b2.jpg", "bob/same.jpg", "metadata.jsonl"]
    charlie = world.clients["charlie"]
    assert body(charlie.get("/export?format=jsonl")) == b""
    assert read_webdataset(body(charlie.get("/export?format=webdataset")), tmp_path) == []


def test_signed_export_link_carries_the_format(world):
    response = world.clients["alice"].post("/export/url?format=jsonl&select=file")
    assert response.status_code == 200, response.content
    link = response.json()["export"]
    lines = jsonl(APIClient().get(relative(link)))
    assert sorted(line["file"] for line in lines) == ["alice/cam/a1.jpg", "alice/same.jpg"]
    tampered = relative(link).replace("format=jsonl", "format=webdataset")
    assert APIClient().get(tampered).status_code == 401
    bad = world.clients["alice"].post("/export/url?format=parquet")
    assert bad.status_code == 400


def test_export_command_writes_every_format(api, dataset, tmp_path):
    shard = tmp_path / "cam1.tar"
    output = io.StringIO()
    call_command(
        "export_images",
        str(shard),
        "--format",
        "webdataset",
        "--filter",
        '{"data.camera": "cam1"}',
        stdout=output,
    )
    assert "Exported 2 images" in output.getvalue()
    assert [s["__key__"] for s in read_webdataset(shard.read_bytes(), tmp_path)] == [
        dataset[0]["_id"],
        dataset[1]["_id"],
    ]
    folder = tmp_path / "by-camera.zip"
    call_command(
        "export_images",
        str(folder),
        "--format",
        "imagefolder",
        "--by",
        "camera",
        stdout=io.StringIO(),
    )
    assert zipfile.ZipFile(folder).namelist()[0] == "cam1/0001.jpg"
    with pytest.raises(CommandError, match="'by' applies to format=imagefolder only"):
        call_command("export_images", str(tmp_path / "x.tar"), "--by", "camera")


# --- a real server ---------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path, mongodb_uri):
    """`manage.py serve` on a database and an uploads folder of its own."""
    uri = mongodb_uri.rsplit("/", 1)[0] + f"/exports_{uuid.uuid4().hex[:8]}"
    uploads = tmp_path / "served-uploads"
    env = {"MONGODB_CONNECTION_STRING": uri, "UPLOADS_DIRECTORY": str(uploads)}
    service = ServeProcess(env, tmp_path).start()
    yield service.url
    service.stop()


@pytest.mark.slow
def test_served_exports_stream_and_read_back(served, tmp_path):
    contents = [image_bytes(size=(16 + i, 12), color=(i * 20, 0, 0)) for i in range(6)]
    for index, content in enumerate(contents):
        response = requests.post(
            f"{served}/images",
            files={"image": (f"{index}.png", content)},
            data={"json": json.dumps({"file": f"f/{index}.jpg", "label": f"c{index % 2}"})},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    with requests.get(f"{served}/export?format=webdataset", stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert "Content-Length" not in response.headers
        shard = tmp_path / "served.tar"
        with open(shard, "wb") as out:
            for chunk in response.iter_content(64 * 1024):
                out.write(chunk)
    samples = list(webdataset.WebDataset(str(shard), shardshuffle=False))
    assert [s["jpg"] for s in samples] == contents
    folder = requests.get(f"{served}/export?format=imagefolder&label=c1", timeout=60)
    assert zipfile.ZipFile(io.BytesIO(folder.content)).namelist() == [
        "c1/1.jpg",
        "c1/3.jpg",
        "c1/5.jpg",
        "metadata.jsonl",
    ]
    lines = requests.get(f"{served}/export?format=jsonl", timeout=60).text.splitlines()
    assert [json.loads(line)["file"] for line in lines] == [f"f/{i}.jpg" for i in range(6)]
