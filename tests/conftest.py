"""Fixtures: real servers for the whole session (MongoDB's mongod, moto's S3), and clients."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer
from playwright.sync_api import Browser, sync_playwright
from pymongo import MongoClient
from rest_framework.test import APIClient

from images.runtime import embedded_db
from images.store import repository
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    image_bytes,
    s3_client,
    start_service,
    use_s3_storage,
)
from tests.oidc import oidc  # noqa: F401  (the fixture, for every test module)
from tests.services import two_services  # noqa: F401  (two serve processes, one backend)


class DatabaseServer:
    """A standalone mongod on a free loopback port; it can be stopped and started again.
    With `replica_set`, a replica set of one member of that name (change streams need one)."""

    def __init__(
        self,
        storage: Path,
        replica_set: str | None = None,
        oplog_mb: int = 128,
        extra: list[str] = (),
    ) -> None:
        self.storage = storage
        self.extra = list(extra)
        self.port = embedded_db.free_port()
        self.process: subprocess.Popen | None = None
        self.replica_set = replica_set
        self.oplog_mb = oplog_mb

    @property
    def uri(self) -> str:
        options = f"?replicaSet={self.replica_set}" if self.replica_set else ""
        return f"mongodb://127.0.0.1:{self.port}/imagestore_test{options}"

    def start(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        self.process = embedded_db.start_process(
            self.storage / "data",
            self.port,
            self.storage / "log",
            replica_set=self.replica_set,
            oplog_mb=self.oplog_mb,
            extra=self.extra,
        )
        embedded_db.wait_until_listening(self.port, self.process, 60)
        if self.replica_set:
            embedded_db.become_primary(self.port, 60, self.replica_set)

    def stop(self) -> None:
        if self.process is not None:
            embedded_db.stop_pid(self.process.pid)
            self.process = None


@pytest.fixture
def own_database(tmp_path, settings) -> Iterator[DatabaseServer]:
    """A database server of this test's own, so that stopping or pausing it disturbs nothing
    else."""
    server = DatabaseServer(tmp_path / "db")
    server.start()
    settings.MONGODB_CONNECTION_STRING = server.uri
    settings.MONGODB_TIMEOUT_MS = 500
    repository.close_client()
    yield server
    if server.process is not None:  # a test may have paused it (SIGSTOP)
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()
    repository.close_client()


@pytest.fixture(scope="session")
def database_server(tmp_path_factory) -> Iterator[DatabaseServer | None]:
    if os.environ.get("MONGODB_CONNECTION_STRING"):
        yield None
        return
    server = DatabaseServer(tmp_path_factory.mktemp("mongod"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replica_set_server(tmp_path_factory) -> Iterator[DatabaseServer]:
    """A replica set of one member for the session (the change feed needs change streams)."""
    server = DatabaseServer(tmp_path_factory.mktemp("mongod-rs"), replica_set="rs0")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def on_replica_set(service, settings, replica_set_server) -> Iterator[DatabaseServer]:
    """This test's service on the session's replica set, its images emptied."""
    settings.MONGODB_CONNECTION_STRING = replica_set_server.uri
    repository.close_client()
    repository.get_collection().delete_many({})
    yield replica_set_server
    repository.close_client()


@pytest.fixture(scope="session")
def mongodb_uri(database_server) -> str:
    return database_server.uri if database_server else os.environ["MONGODB_CONNECTION_STRING"]


@pytest.fixture(autouse=True)
def service(settings, tmp_path, mongodb_uri) -> Path:
    """Every test: the session's database emptied, a fresh uploads directory, no scope."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.MONGODB_CONNECTION_STRING = mongodb_uri
    settings.UPLOADS_DIRECTORY = uploads
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(uploads), "allow_overwrite": True},
        },
    }
    settings.S3_BUCKET = ""
    settings.IMAGE_SCOPE = ""
    settings.OIDC_JWKS_URI = ""
    repository.get_collection().delete_many({})
    return uploads


@pytest.fixture
def uploads(service) -> Path:
    return service


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def collection():
    return repository.get_collection()


# --- S3 (moto in server mode, reached over HTTP like a real endpoint) --------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    port = embedded_db.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(settings, s3_endpoint, request) -> str:
    """Switch the service's storage to a new, empty bucket on the moto server."""
    bucket = f"images-{abs(hash(request.node.nodeid)) % 10**10}-{time.monotonic_ns() % 10**6}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    use_s3_storage(settings, bucket, s3_endpoint)
    return bucket


@pytest.fixture(params=["local", "s3"])
def backend(request) -> str:
    """Run a test against both storage backends."""
    if request.param == "s3":
        request.getfixturevalue("s3_bucket")
    return request.param


@pytest.fixture
def jpeg() -> bytes:
    return image_bytes()


# --- a served service, and a browser -------------------------------------------------------------
@pytest.fixture
def start_server(tmp_path, mongodb_uri) -> Iterator:
    """Starts `manage.py serve` on a database of its own; stops it and drops the database."""
    started: list = []

    def start(**env: str) -> Server:
        port = embedded_db.free_port()
        database_uri = f"{mongodb_uri.rsplit('/', 1)[0]}/served_{uuid.uuid4().hex[:10]}"
        process = start_service(
            {
                "MONGODB_CONNECTION_STRING": database_uri,
                "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
                "DATA_DIRECTORY": str(tmp_path / "data"),
                **env,
            },
            tmp_path,
            port,
        )
        started.append((process, database_uri))
        return Server(f"http://127.0.0.1:{port}", database_uri)

    yield start
    for process, database_uri in started:
        process.terminate()
        process.communicate(timeout=30)
        with MongoClient(database_uri) as client:
            client.drop_database(database_uri.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
