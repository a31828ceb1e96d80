"""A missing S3 bucket: named at start-up, by `/health/ready`, and by a fast 503 on upload."""

from __future__ import annotations

import time

import pytest
import requests

from testing.harness import ServeProcess
from tests.helpers import S3_CREDENTIALS, s3_client, upload, use_s3_storage


@pytest.fixture
def missing_bucket(settings, s3_endpoint) -> str:
    """The service's storage pointed at a bucket nobody created."""
    bucket = f"missing-{time.monotonic_ns() % 10**9}"
    use_s3_storage(settings, bucket, s3_endpoint)
    return bucket


def test_an_upload_to_a_missing_bucket_is_a_503_naming_it_and_asking_no_retry(api, missing_bucket):
    upload(api, "warm-up.jpg")  # the first S3 client costs a second to build
    started = time.monotonic()
    response = upload(api, "cam1/a.jpg")
    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert f"bucket '{missing_bucket}' does not exist" in response.json()["detail"]
    assert "Retry-After" not in response.headers


def test_readiness_names_the_missing_bucket_until_it_exists(api, missing_bucket, s3_endpoint):
    ready = api.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["storage"] is False
    assert missing_bucket in ready.json()["storageError"]
    s3_client(s3_endpoint).create_bucket(Bucket=missing_bucket)
    ready = api.get("/health/ready")
    assert ready.status_code == 200 and "storageError" not in ready.json()


@pytest.mark.slow  # starts `manage.py serve`
def test_serve_names_the_missing_bucket_and_its_endpoint_at_start(
    tmp_path, mongodb_uri, s3_endpoint
):
    env = dict(
        MONGODB_CONNECTION_STRING=mongodb_uri,
        S3_BUCKET="nobody-made-it",
        S3_ENDPOINT=s3_endpoint,
        S3_ACCESS_KEY_ID=S3_CREDENTIALS["access_key"],
        S3_SECRET_ACCESS_KEY=S3_CREDENTIALS["secret_key"],
        S3_REGION=S3_CREDENTIALS["region_name"],
    )
    service = ServeProcess(env, tmp_path).start()
    try:
        ready = requests.get(f"{service.url}/health/ready", timeout=10)
    finally:
        service.stop()
    output = service.output
    assert ready.status_code == 503 and "nobody-made-it" in ready.json()["storageError"]
    lines = [line for line in output.splitlines() if "nobody-made-it" in line]
    assert len(lines) == 1 and s3_endpoint in lines[0] and "serving anyway" in lines[0]
