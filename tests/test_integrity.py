"""`manage.py check_integrity [--fix]`."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import pytest
from django.core.management import CommandError, call_command

from images.store.files import get_file_store, new_staging_key
from images.writes.leases import lease_collection
from tests.helpers import image_bytes, upload

RIGHT = image_bytes(color="red")
OTHER = image_bytes(color="blue")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_consistent_store(api, backend):
    upload(api, "a.jpg")
    assert "0 documents with a missing file, 0 orphan files" in run()


def test_reports_missing_files_and_orphans_and_fixes_orphans_only(api, backend):
    upload(api, "a.jpg")
    upload(api, "b.jpg", file="sub/b.jpg")
    files = get_file_store()
    files.delete("a.jpg")
    files.save("orphan/c.jpg", io.BytesIO(image_bytes()))
    with pytest.raises(CommandError):
        output = run()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check_integrity", "--grace-seconds=0", stdout=out)
    output = out.getvalue()
    assert "1 documents with a missing file, 1 orphan files" in output
    assert "missing file: a.jpg" in output and "orphan file: orphan/c.jpg" in output
    assert files.stat("orphan/c.jpg") is not None  # nothing removed without --fix

    output = run("--fix")  # the missing file is marked on its document: nothing left unsaid
    assert "1 removed" in output and "marked broken: a.jpg (missing" in output
    assert files.stat("orphan/c.jpg") is None
    assert files.stat("sub/b.jpg") is not None


def test_young_files_are_left_alone(api):
    get_file_store().save("in-flight.jpg", io.BytesIO(image_bytes()))
    out = io.StringIO()
    call_command("check_integrity", "--fix", stdout=out)
    assert "0 orphan files" in out.getvalue()
    assert get_file_store().stat("in-flight.jpg") is not None


def stored(key: str) -> bytes:
    return b"".join(get_file_store().read_chunks(key))


def overwritten(api) -> dict:
    """An image whose file something outside the service replaced by other bytes."""
    document = upload(api, "a.jpg", RIGHT).json()
    get_file_store().save("a.jpg", io.BytesIO(OTHER))
    return document


def image(api, image_id: str) -> dict:
    response = api.get(f"/images/{image_id}")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("recorded", [True, False], ids=["lease", "no-lease"])
def test_an_overwritten_file_is_restored_from_staged_bytes(api, backend, recorded):
    document = overwritten(api)
    staging = new_staging_key()
    get_file_store().save(staging, io.BytesIO(RIGHT))
    if recorded:  # an upload of the same picture to another path, interrupted
        expired = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        lease = {"staging": staging, "sha256": document["sha256"], "expires": expired}
        lease_collection().insert_one({"_id": "b.jpg", "token": "dead", **lease})

    output = run("--fix", "--verify")
    assert "1 restored" in output and "restored file: a.jpg" in output
    assert "0 documents marked broken" in output
    assert stored("a.jpg") == RIGHT
    assert "integrity" not in image(api, document["_id"])
    output = run("--verify")
    assert "0 files not matching their sha256" in output
    assert get_file_store().stat("b.jpg") is None


def test_an_overwritten_file_without_the_right_bytes_is_marked(api, backend):
    document = overwritten(api)
    with pytest.raises(CommandError):
        run("--verify")

    output = run("--fix", "--verify")
    assert "1 files not matching their sha256" in output and "0 restored" in output
    assert f"marked broken: a.jpg (mismatched, _id {document['_id']})" in output
    marked = image(api, document["_id"])
    assert marked["sha256"] == document["sha256"] and marked["data"] == document["data"]
    assert marked["integrity"]["status"] == "mismatched"
    assert marked["integrity"]["foundSha256"] == hashlib.sha256(OTHER).hexdigest()
    assert marked["integrity"]["checked"].endswith("Z")
    assert stored("a.jpg") == OTHER  # nothing guessed, nothing deleted

    selected = api.get("/images", {"filter": json.dumps({"integrity.status": "mismatched"})})
    assert [item["_id"] for item in selected.json()["items"]] == [document["_id"]]
    for args in ((), ("--verify",)):  # known and said on every run, no new finding
        output = run(*args)
        assert "marked broken: a.jpg (mismatched" in output
        assert "0 documents with a missing file" in output


def test_a_missing_file_is_marked_until_it_is_uploaded_again(api, backend):
    document = upload(api, "a.jpg", RIGHT).json()
    get_file_store().delete("a.jpg")

    output = run("--fix")
    assert "1 documents with a missing file" in output
    assert "marked broken: a.jpg (missing" in output
    assert image(api, document["_id"])["integrity"]["status"] == "missing"
    output = run()
    assert "0 documents with a missing file" in output and "1 documents marked broken" in output

    again = upload(api, "a.jpg", OTHER)
    assert again.status_code == 200 and again.json()["_id"] == document["_id"]
    assert "integrity" not in again.json()
    assert "integrity" not in image(api, document["_id"])
    assert "0 documents marked broken" in run("--verify")


def test_a_mark_is_cleared_once_the_right_bytes_are_back(api):
    document = upload(api, "a.jpg", RIGHT).json()
    get_file_store().delete("a.jpg")
    run("--fix")
    get_file_store().save("a.jpg", io.BytesIO(OTHER))  # not the right bytes: still marked
    assert "marked broken: a.jpg (mismatched" in run("--fix")
    get_file_store().save("a.jpg", io.BytesIO(RIGHT))  # put back from a backup

    output = run("--fix")
    assert "cleared mark: a.jpg" in output and "0 documents marked broken" in output
    assert "integrity" not in image(api, document["_id"])
