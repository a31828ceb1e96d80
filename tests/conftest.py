"""Fixtures: real servers for the whole session (MongoDB's mongod, moto's S3), and clients."""

from __future__ import annotations

import os
import signal
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
from testing.harness import DatabaseServer, ServeProcess
from tests.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Server,
    image_bytes,
    s3_client,
    storage_settings,
    use_s3_storage,
)
from tests.oidc import oidc  # noqa: F401  (the fixture, for every test module)
from tests.services import two_services  # noqa: F401  (two serve processes, one backend)

TEST_DATABASE = "imagestore_test"


@pytest.fixture
def own_database(tmp_path, settings) -> Iterator[DatabaseServer]:
    """A database server of this test's own, so that stopping or pausing it disturbs nothing
    else."""
    server = DatabaseServer(tmp_path / "db")
    server.start()
    settings.MONGODB_CONNECTION_STRING = server.uri(TEST_DATABASE)
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
    settings.MONGODB_CONNECTION_STRING = replica_set_server.uri(TEST_DATABASE)
    repository.close_client()
    repository.get_collection().delete_many({})
    yield replica_set_server
    repository.close_client()


@pytest.fixture(scope="session")
def mongodb_uri(database_server) -> str:
    if database_server is None:
        return os.environ["MONGODB_CONNECTION_STRING"]
    return database_server.uri(TEST_DATABASE)


@pytest.fixture(autouse=True)
def service(settings, tmp_path, mongodb_uri) -> Path:
    """Every test: the session's database emptied, a fresh uploads directory, no scope."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings.MONGODB_CONNECTION_STRING = mongodb_uri
    settings.UPLOADS_DIRECTORY = uploads
    settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
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
    started: list[tuple[ServeProcess, str]] = []

    def start(**env: str) -> Server:
        database_uri = f"{mongodb_uri.rsplit('/', 1)[0]}/served_{uuid.uuid4().hex[:10]}"
        served = ServeProcess(
            {
                "MONGODB_CONNECTION_STRING": database_uri,
                "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
                "DATA_DIRECTORY": str(tmp_path / "data"),
                **env,
            },
            tmp_path,
        ).start()
        started.append((served, database_uri))
        return Server(served.url, database_uri)

    yield start
    for served, database_uri in started:
        served.stop(timeout=30)
        with MongoClient(database_uri) as client:
            client.drop_database(database_uri.rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: run `make browser` (as root) to install it")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
