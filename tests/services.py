"""Two `manage.py serve` processes sharing one database and one storage, for concurrency tests."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from images.runtime import embedded_db
from tests.helpers import S3_CREDENTIALS, s3_client, start_service


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
