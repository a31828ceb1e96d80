"""Two `manage.py serve` processes sharing one database and one storage, for concurrency tests."""

from __future__ import annotations

import uuid

import pytest

from testing.harness import ServeProcess
from tests.helpers import S3_CREDENTIALS, s3_client, storage_settings


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
        settings.STORAGES = storage_settings(
            "s3", settings.STORAGES, bucket_name=bucket, endpoint_url=endpoint
        )
    else:
        uploads = tmp_path / "shared-uploads"
        env["UPLOADS_DIRECTORY"] = str(uploads)
        settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
    settings.MONGODB_CONNECTION_STRING = uri
    services = [  # their logs stay beside the test's files: a 500's traceback is there
        ServeProcess(env, tmp_path, workers=2, log_path=tmp_path / f"serve-{index}.log").start()
        for index in range(2)
    ]
    yield [service.url for service in services]
    for service in services:
        service.stop()
