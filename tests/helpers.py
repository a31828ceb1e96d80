"""Helpers shared by the tests: test images, uploads, storage settings, S3 clients."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import boto3
from PIL import Image
from rest_framework.test import APIClient

from testing.harness import REPO_ROOT  # noqa: F401  (for the tests that run files of the tree)
from tests.oidc import IdentityProvider

# Debian's Chromium, driven by Playwright in the browser tests.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
S3_CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}


LOCAL_OPTIONS = {"allow_overwrite": True}
S3_OPTIONS = {"file_overwrite": True, "addressing_style": "path", **S3_CREDENTIALS}
STORAGE_BACKENDS = {
    "local": ("django.core.files.storage.FileSystemStorage", LOCAL_OPTIONS),
    "s3": ("storages.backends.s3.S3Storage", S3_OPTIONS),
}


def storage_settings(kind: str, storages: dict, **options: object) -> dict:
    """`storages` (settings.STORAGES) with its default storage of `kind`: "local" takes
    `location`, "s3" takes `bucket_name` and `endpoint_url`."""
    backend, defaults = STORAGE_BACKENDS[kind]
    if "location" in options:
        options["location"] = str(options["location"])
    return {**storages, "default": {"BACKEND": backend, "OPTIONS": {**defaults, **options}}}


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["access_key"],
        aws_secret_access_key=S3_CREDENTIALS["secret_key"],
        region_name=S3_CREDENTIALS["region_name"],
    )


def use_s3_storage(settings, bucket: str, endpoint: str) -> None:
    """Point the service's storage (pytest-django's `settings`) at `bucket` on `endpoint`."""
    settings.S3_BUCKET = bucket
    settings.S3_ENDPOINT = endpoint
    settings.STORAGES = storage_settings(
        "s3", settings.STORAGES, bucket_name=bucket, endpoint_url=endpoint
    )


def image_bytes(fmt: str = "JPEG", size=(32, 24), color="red", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def noise_image(width: int, height: int, fmt: str = "PNG") -> bytes:
    """An image that does not compress: its file is about width*height*3 bytes."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, fmt)
    return buffer.getvalue()


def upload(api: APIClient, name: str = "photo.jpg", content: bytes | None = None, **fields):
    """POST /images with one image and the given form fields."""
    file = io.BytesIO(image_bytes() if content is None else content)
    file.name = name
    return api.post("/images", {"image": file, **fields}, format="multipart")


def client_for(oidc: IdentityProvider, user: str) -> APIClient:
    """An API client sending a bearer token of `user` from the test identity provider."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {oidc.token(preferred_username=user)}")
    return client


@dataclass
class Server:
    """A `manage.py serve` started by the `start_server` fixture, on a database of its own."""

    url: str
    database_uri: str


def batch_sizes_asked(monkeypatch) -> list[int]:
    """The `batch_size` of every cursor ImageRepository opens from now on, in order."""
    from images.store.repository import ImageRepository

    asked: list[int] = []
    original = ImageRepository.open_cursor

    def spy(self, query, batch_size):
        asked.append(batch_size)
        return original(self, query, batch_size)

    monkeypatch.setattr(ImageRepository, "open_cursor", spy)
    return asked
