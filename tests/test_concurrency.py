"""Concurrent writers, in one service and across two service processes on the same backends."""

from __future__ import annotations

import io
import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import call_command

from images import embedded_db
from tests.helpers import S3_CREDENTIALS, image_bytes, s3_client, start_service


def stop(process) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.communicate(timeout=60)


@pytest.fixture
def two_services(tmp_path, mongodb_uri, settings, request):
    """Two `manage.py serve` processes sharing one database and one storage (local or S3)."""
    database = f"concurrency_{uuid.uuid4().hex[:8]}"
    uri = mongodb_uri.rsplit("/", 1)[0] + f"/{database}"
    env = {"MONGODB_CONNECTION_STRING": uri, "DATA_DIRECTORY": str(tmp_path / "data")}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"concurrency-{uuid.uuid4().hex[:8]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        env.update(
            S3_BUCKET=bucket,
            S3_ENDPOINT=endpoint,
            S3_ACCESS_KEY_ID=S3_CREDENTIALS["access_key"],
            S3_SECRET_ACCESS_KEY=S3_CREDENTIALS["secret_key"],
            S3_REGION=S3_CREDENTIALS["region_name"],
        )
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "storages.backends.s3.S3Storage",
                "OPTIONS": {"bucket_name": bucket, "endpoint_url": endpoint, **S3_CREDENTIALS},
            },
        }
    else:
        uploads = tmp_path / "shared-uploads"
        env["UPLOADS_DIRECTORY"] = str(uploads)
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(uploads), "allow_overwrite": True},
            },
        }
    settings.MONGODB_CONNECTION_STRING = uri
    ports = [embedded_db.free_port(), embedded_db.free_port()]
    processes = [start_service({**env, "WEB_CONCURRENCY": "2"}, tmp_path, port) for port in ports]
    yield [f"http://127.0.0.1:{port}" for port in ports]
    for process in processes:
        stop(process)


def download(base: str, image_id: str) -> bytes:
    return requests.get(f"{base}/images/{image_id}/image", timeout=30).content


@pytest.mark.parametrize("two_services", ["local", "s3"], indirect=True)
def test_sixteen_uploads_to_one_path_leave_one_document_and_one_whole_file(two_services):
    contents = [image_bytes(size=(40 + i, 30), color=(i * 10, 0, 0)) for i in range(16)]

    def send(i: int) -> requests.Response:
        base = two_services[i % 2]
        return requests.post(
            f"{base}/images",
            files={"image": (f"u{i}.jpg", contents[i])},
            data={"file": "same/name.jpg", "writer": str(i)},
            timeout=60,
        )

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(16)))
    assert all(r.status_code == 200 for r in responses), [r.content for r in responses]
    assert len({r.json()["_id"] for r in responses}) == 1
    listed = requests.get(f"{two_services[0]}/images", timeout=30).json()
    assert listed["total"] == 1
    stored = download(two_services[1], listed["items"][0]["_id"])
    assert stored in contents


@pytest.mark.parametrize("two_services", ["local"], indirect=True)
def test_concurrent_uploads_updates_and_deletes_stay_consistent(two_services):
    def writer(i: int) -> None:
        base = two_services[i % 2]
        name = f"batch{i % 4}/img{i}.jpg"
        requests.post(
            f"{base}/images",
            files={"image": ("x.jpg", image_bytes(color=(i, i, i)))},
            data={"file": name, "group": str(i % 4)},
            timeout=60,
        )
        requests.patch(f"{base}/images", params={"group": str(i % 4)}, json={"seen": i}, timeout=60)
        if i % 3 == 0:
            requests.delete(f"{base}/images", params={"group": str((i + 1) % 4)}, timeout=60)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(writer, range(36)))
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
