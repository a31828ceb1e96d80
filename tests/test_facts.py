"""Image facts: computed at upload for each format, filterable, and backfilled by a command."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import call_command

from images.core.facts import MAX_HEADER_BYTES, facts_of_chunks
from tests.helpers import image_bytes, s3_client, upload
from tests.samples import SAMPLES, samples

FACTS = ("size", "sha256", "width", "height", "format", "mode", "contentType")


@pytest.mark.parametrize("sample", samples(), ids=lambda sample: sample.name)
def test_upload_stores_and_returns_the_facts(api, collection, sample):
    body = upload(api, sample.name, sample.content).json()
    expected = {
        "size": len(sample.content),
        "sha256": hashlib.sha256(sample.content).hexdigest(),
        "width": sample.width,
        "height": sample.height,
        "format": sample.format,
        "mode": sample.mode,
        "contentType": sample.content_type,
    }
    assert {name: body[name] for name in FACTS} == expected
    stored = collection.find_one({"file": sample.name})
    assert {name: stored[name] for name in FACTS} == expected
    assert not set(FACTS) & set(stored["data"])


def test_facts_are_system_fields_not_data(api):
    body = upload(api, "x.jpg", json='{"width": "user value", "camera": "c1"}').json()
    assert body["data"] == {"width": "user value", "camera": "c1"}
    assert body["width"] == 32


def test_filter_by_sha256_finds_duplicates(api):
    twin = image_bytes(color="navy")
    first = upload(api, "one.jpg", twin, file="a/one.jpg").json()
    upload(api, "two.jpg", twin, file="b/two.jpg")
    upload(api, "other.jpg", image_bytes(color="olive"), file="c/other.jpg")
    found = api.get("/images", {"filter": f'{{"sha256": "{first["sha256"]}"}}'}).json()
    assert found["total"] == 2
    assert sorted(item["file"] for item in found["items"]) == ["a/one.jpg", "b/two.jpg"]


def test_filter_by_width_range(api):
    for name, size in (("small.png", (40, 10)), ("mid.png", (1024, 4)), ("big.png", (1500, 2))):
        upload(api, name, image_bytes("PNG", size))
    wide = api.get("/images", {"filter": '{"width": {"$gte": 1024}}', "sort": "width"}).json()
    assert [item["file"] for item in wide["items"]] == ["mid.png", "big.png"]
    narrow = api.get("/images", {"filter": '{"width": {"$lt": 1024}, "format": "PNG"}'}).json()
    assert [item["file"] for item in narrow["items"]] == ["small.png"]


def test_facts_of_chunks_reads_headers_across_chunk_boundaries():
    sample = SAMPLES["photo.jpg"]
    chunks = [sample.content[i : i + 7] for i in range(0, len(sample.content), 7)]
    facts, is_image = facts_of_chunks(chunks, "photo.jpg")
    assert is_image
    assert facts["width"] == 640 and facts["format"] == "JPEG"
    assert facts["sha256"] == hashlib.sha256(sample.content).hexdigest()
    assert facts["size"] == len(sample.content)


def test_facts_of_a_file_that_is_not_an_image_keeps_no_more_than_the_header_limit():
    content = b"x" * (MAX_HEADER_BYTES + 300_000)
    chunks = (content[i : i + 256 * 1024] for i in range(0, len(content), 256 * 1024))
    facts, is_image = facts_of_chunks(chunks, "notes.txt")
    assert not is_image
    assert facts == {
        "contentType": "text/plain",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


# --- backfill_facts ---------------------------------------------------------------------------
def strip_facts(collection) -> None:
    collection.update_many({}, {"$unset": {name: "" for name in FACTS}})


def run_backfill(*arguments: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("backfill_facts", *arguments, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_backfill_fills_missing_facts(api, collection, uploads, backend, settings):
    expected = {}
    for sample in samples():
        body = upload(api, sample.name, sample.content).json()
        expected[sample.name] = {name: body[name] for name in FACTS}
    upload(api, "gone.jpg")
    strip_facts(collection)
    if backend == "s3":
        s3_client(settings.S3_ENDPOINT).delete_object(Bucket=settings.S3_BUCKET, Key="gone.jpg")
    else:
        (uploads / "gone.jpg").unlink()
    out, err = run_backfill("--page-size", "2")
    assert "5 of 6 documents updated; 5 images" in out
    assert "1 with a missing or unsafe file" in out
    assert "6/6" in err  # the progress bar's last state
    for name, facts in expected.items():
        stored = collection.find_one({"file": name})
        assert {key: stored[key] for key in FACTS} == facts
    assert "sha256" not in collection.find_one({"file": "gone.jpg"})


def test_backfill_leaves_documents_with_facts_alone_unless_all(api, collection):
    upload(api, "a.jpg")
    upload(api, "b.jpg", image_bytes(color="blue"))
    collection.update_one({"file": "a.jpg"}, {"$unset": {name: "" for name in FACTS}})
    collection.update_one({"file": "b.jpg"}, {"$set": {"width": 999}})
    out, _ = run_backfill("--no-progress")
    assert out.startswith("1 of 1 documents updated")
    assert collection.find_one({"file": "a.jpg"})["width"] == 32
    assert collection.find_one({"file": "b.jpg"})["width"] == 999
    out, _ = run_backfill("--all", "--no-progress")
    assert out.startswith("2 of 2 documents updated")
    assert collection.find_one({"file": "b.jpg"})["width"] == 32


def test_backfill_records_size_and_hash_of_non_images(api, collection, uploads, settings):
    settings.ALLOW_NON_IMAGES = True
    upload(api, "notes.txt", b"not an image at all")
    strip_facts(collection)
    out, _ = run_backfill("--no-progress")
    assert "1 files that are not readable images" in out
    stored = collection.find_one({"file": "notes.txt"})
    assert stored["size"] == 19
    assert stored["sha256"] == hashlib.sha256(b"not an image at all").hexdigest()
    assert stored["contentType"] == "text/plain"
    assert "width" not in stored


def test_backfill_never_reads_unsafe_paths(collection, uploads, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(image_bytes())
    collection.insert_one({"file": "../secret.jpg", "data": {}, "userId": None})
    out, _ = run_backfill("--no-progress")
    assert "1 with a missing or unsafe file" in out
    assert "sha256" not in collection.find_one({"file": "../secret.jpg"})


def test_backfill_moves_thumbnails_to_content_keys(api, collection, uploads):
    body = upload(api, "photo.jpg", SAMPLES["photo.jpg"].content).json()
    strip_facts(collection)
    route = f"/images/{body['_id']}/thumbnail?size=64"
    assert api.get(route).status_code == 200
    folder = uploads / ".imagestore" / "thumbnails"
    assert [p.name for p in folder.iterdir()] == [f"id-{body['_id']}-64.jpg"]
    run_backfill("--no-progress")
    assert not folder.exists() or list(folder.iterdir()) == []
    assert api.get(route)["ETag"] == f'"{body["sha256"]}-64.jpg"'
    assert [p.name for p in folder.iterdir()] == [f"{body['sha256']}-64.jpg"]
