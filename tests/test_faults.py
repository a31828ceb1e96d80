"""Faults: MongoDB down at start or mid-run, S3 unreachable, a process killed mid-work."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
import uuid
import zipfile

import pytest
import requests
from django.core.management import CommandError, call_command
from pymongo.read_concern import ReadConcern

from images.core.errors import RETRY_AFTER_SECONDS
from images.runtime import embedded_db
from images.store import repository
from testing.harness import ServeProcess
from tests.helpers import image_bytes, storage_settings, upload


def test_database_going_away_gives_503_and_recovers(api, own_database):
    assert upload(api, "a.jpg").status_code == 200
    own_database.stop()
    response = api.get("/images")
    assert response.status_code == 503
    assert "database" in response.json()["detail"].lower()
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    refused = upload(api, "b.jpg")
    assert refused.status_code == 503 and refused["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert api.get("/").json()["mongodb"]["connected"] is False
    not_ready = api.get("/health/ready")
    assert not_ready.status_code == 503 and not_ready["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert api.get("/health/live").status_code == 200
    own_database.start()
    deadline = time.monotonic() + 30
    while api.get("/images").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert api.get("/images").json()["total"] == 1
    assert api.get("/health/ready").status_code == 200


@pytest.mark.slow
def test_service_starts_with_the_database_down(tmp_path):
    closed = embedded_db.free_port()
    env = {
        "MONGODB_CONNECTION_STRING": f"mongodb://127.0.0.1:{closed}/x",
        "MONGODB_TIMEOUT_MS": "300",
        "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
    }
    service = ServeProcess(env, tmp_path).start()
    try:
        base = service.url
        assert requests.get(f"{base}/", timeout=10).json()["mongodb"]["connected"] is False
        response = requests.get(f"{base}/images", timeout=10)
        assert response.status_code == 503 and response.json()["detail"]
        assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    finally:
        service.stop()


def test_s3_unreachable_gives_503_and_no_document(api, s3_bucket, settings, collection):
    options = settings.STORAGES["default"]["OPTIONS"]
    closed = f"http://127.0.0.1:{embedded_db.free_port()}"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {**options, "endpoint_url": closed}},
    }
    response = upload(api, "a.jpg")
    assert response.status_code == 503
    assert "storage" in response.json()["detail"].lower()
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert collection.count_documents({}) == 0


def wait_until_settled(collection, timeout: float = 30) -> None:
    """Until the database runs no operation on `collection`."""
    admin = collection.database.client.get_database("admin", read_concern=ReadConcern("local"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = list(
            admin.aggregate([{"$currentOp": {}}, {"$match": {"ns": collection.full_name}}])
        )
        if not running:
            return
        time.sleep(0.05)
    raise AssertionError(f"still running after {timeout} s: {running}")


@pytest.mark.slow
def test_killed_bulk_delete_leaves_only_what_check_integrity_repairs(
    tmp_path, mongodb_uri, settings
):
    uri = mongodb_uri.rsplit("/", 1)[0] + f"/killed_{uuid.uuid4().hex[:8]}"
    uploads = tmp_path / "uploads"
    settings.MONGODB_CONNECTION_STRING = uri
    settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
    collection = repository.get_collection()
    content = image_bytes()
    documents = []
    for i in range(3000):
        path = uploads / f"d{i % 10}" / f"{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        documents.append({"file": f"d{i % 10}/{i}.jpg", "userId": None, "data": {"n": i}})
    collection.insert_many(documents)

    env = {"MONGODB_CONNECTION_STRING": uri, "UPLOADS_DIRECTORY": str(uploads)}
    service = ServeProcess({**env, "WRITE_LEASE_SECONDS": "1"}, tmp_path).start()

    def delete_all() -> None:
        with contextlib.suppress(requests.ConnectionError):  # the server dies mid-request
            requests.delete(f"{service.url}/images", params={"all": "true"}, timeout=60)

    worker = threading.Thread(target=delete_all, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while collection.count_documents({}) == 3000 and time.monotonic() < deadline:
        time.sleep(0.005)
    service.stop(signal.SIGKILL, timeout=30)
    wait_until_settled(collection)  # a delete_many the database began goes on without its client

    out = io.StringIO()
    remaining = collection.count_documents({})
    files = sum(1 for p in uploads.rglob("*.jpg"))
    with contextlib.suppress(CommandError):
        call_command("check_integrity", "--grace-seconds=0", stdout=out)
    report = out.getvalue()
    assert "0 documents with a missing file" in report  # documents go first: never a dangling one
    assert f"{files - remaining} orphan files" in report
    time.sleep(1.5)  # the dead process's leases expire; --fix recovers what they record
    call_command("check_integrity", "--grace-seconds=0", "--fix", stdout=io.StringIO())
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
    assert sum(1 for p in uploads.rglob("*.jpg")) == remaining


@pytest.mark.slow
def test_killed_import_leaves_only_what_check_integrity_repairs(tmp_path, mongodb_uri, settings):
    """A worker killed mid-import leaves staged files (the batch being filled, the batch whose
    leases it held) and files without documents; `check_integrity --fix` removes or finishes
    every one of them once the leases expired."""
    uri = mongodb_uri.rsplit("/", 1)[0] + f"/killed_{uuid.uuid4().hex[:8]}"
    uploads = tmp_path / "uploads"
    staging = uploads / ".imagestore" / "staging"
    settings.MONGODB_CONNECTION_STRING = uri
    settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
    settings.ALLOW_NON_IMAGES = True
    settings.WRITE_LEASE_SECONDS = 1  # staged files unrecorded this long are a dead writer's
    collection = repository.get_collection()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3000):
            archive.writestr(f"i{i % 10}/{i}.bin", os.urandom(8 * 1024))
    env = {
        "MONGODB_CONNECTION_STRING": uri,
        "UPLOADS_DIRECTORY": str(uploads),
        "ALLOW_NON_IMAGES": "true",
        "WRITE_LEASE_SECONDS": "1",
    }
    service = ServeProcess(env, tmp_path).start()

    def staged() -> int:
        return len(os.listdir(staging)) if staging.exists() else 0

    def import_all() -> None:
        with contextlib.suppress(requests.ConnectionError):  # the server dies mid-request
            files = {"archive": ("a.zip", buffer.getvalue())}
            requests.post(f"{service.url}/import", files=files, timeout=120)

    worker = threading.Thread(target=import_all, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    # Killed once a batch is written and the next one is being staged.
    while time.monotonic() < deadline and not (
        collection.count_documents({}) >= 500 and staged() >= 50
    ):
        time.sleep(0.005)
    service.stop(signal.SIGKILL, timeout=30)
    wait_until_settled(collection)
    assert 0 < collection.count_documents({}) < 3000
    assert staged() >= 50

    time.sleep(1.5)  # the dead process's leases expire, its staged files pass their grace
    out = io.StringIO()
    with contextlib.suppress(CommandError):
        call_command("check_integrity", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file" in out.getvalue()  # documents go last
    call_command("check_integrity", "--grace-seconds=0", "--fix", stdout=io.StringIO())
    assert staged() == 0
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
    stored = {str(p.relative_to(uploads)) for p in uploads.rglob("*.bin")}
    assert stored == {d["file"] for d in collection.find({}, {"file": 1})}
