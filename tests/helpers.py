"""Helpers shared by the tests: test images, uploads, S3 clients, a running service."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from PIL import Image
from rest_framework.test import APIClient

REPO_ROOT = Path(__file__).resolve().parent.parent
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


def s3_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def use_s3_storage(settings, bucket: str, endpoint: str) -> None:
    """Point the service's storage (pytest-django's `settings`) at `bucket` on `endpoint`."""
    settings.S3_BUCKET = bucket
    settings.S3_ENDPOINT = endpoint
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": endpoint,
                "file_overwrite": True,
                "addressing_style": "path",
                **S3_CREDENTIALS,
            },
        },
    }


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


def wait_for_http(port: int, timeout: float = 60.0, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listened on port {port}")


def project_copy(destination: Path) -> Path:
    """The service's files (manage.py, imagestore/, images/) copied as the Dockerfile does: a
    project whose default `data/` and `uploads/` are its own, not the checkout's."""
    ignored = shutil.ignore_patterns("__pycache__")
    destination.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "manage.py", destination / "manage.py")
    for package in ("imagestore", "images"):
        shutil.copytree(REPO_ROOT / package, destination / package, ignore=ignored)
    return destination


def command_environment(env: dict[str, str], cwd: Path, project: Path) -> dict[str, str]:
    """The test's environment without MONGODB_CONNECTION_STRING, plus `env`. The checkout's own
    `data/` and `uploads/` are never used: they default to the working directory's instead."""
    environment = {k: v for k, v in os.environ.items() if k != "MONGODB_CONNECTION_STRING"}
    if project == REPO_ROOT:
        environment.update(DATA_DIRECTORY=str(cwd / "data"), UPLOADS_DIRECTORY=str(cwd / "uploads"))
    return {**environment, **env}


def start_service(
    env: dict[str, str],
    cwd: Path,
    port: int,
    host: str | None = "127.0.0.1",
    output=None,
    project: Path = REPO_ROOT,
) -> subprocess.Popen:
    """`manage.py serve` of `project` (`host=None`: no --host, as `make run`); its output to a
    PIPE, or to `output` (an open file) for a service that logs more than a pipe holds."""
    environment = command_environment(
        {"APP_PORT": str(port), "WEB_CONCURRENCY": "1", **env}, cwd, project
    )
    process = subprocess.Popen(
        [
            sys.executable,
            str(project / "manage.py"),
            "serve",
            *(["--host", host] if host else []),
        ],
        cwd=cwd,
        env=environment,
        stdout=output or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a test can kill the whole group (master and workers)
    )
    wait_for_http(port, process=process)
    return process


@dataclass
class Server:
    """A `manage.py serve` started by the `start_server` fixture, on a database of its own."""

    url: str
    database_uri: str
