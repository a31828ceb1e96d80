"""Failover is a non-event: a replica set of three members on loopback loses its primary twice
(a step-down, then SIGKILL) while uploads, deletes, a bulk delete and an import run.

Nothing acknowledged is lost, no answer is a 500, every 503 says when to retry, no staged bytes
or leases are left behind, and every path is writable again soon after the election.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import random
import signal
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from images.runtime import embedded_db
from images.store import repository
from images.store.files import STAGING_PREFIX
from testing.harness import ServeProcess
from tests.helpers import image_bytes, storage_settings

pytestmark = [pytest.mark.replica_set, pytest.mark.slow]

SET_NAME = "failover"
# Elections within about two seconds of a primary's loss (MongoDB's default waits ten).
SET_SETTINGS = {"electionTimeoutMillis": 2000, "heartbeatIntervalMillis": 500}
WRITABLE_AGAIN_WITHIN = 15.0


class ReplicaSet:
    """Three mongod processes on loopback, one replica set."""

    def __init__(self, root: Path, members: int = 3) -> None:
        self.root = root
        self.ports = [embedded_db.free_port() for _ in range(members)]
        self.processes: list = [None] * members

    @property
    def hosts(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def uri(self, database: str) -> str:
        return f"mongodb://{self.hosts}/{database}?replicaSet={SET_NAME}"

    def start_member(self, index: int) -> None:
        self.processes[index] = embedded_db.start_process(
            self.root / f"member{index}",
            self.ports[index],
            self.root / f"member{index}.log",
            replica_set=SET_NAME,
        )
        embedded_db.wait_until_listening(self.ports[index], self.processes[index], 60)

    def start(self) -> None:
        for index in range(len(self.ports)):
            self.start_member(index)
        members = [{"_id": i, "host": f"127.0.0.1:{port}"} for i, port in enumerate(self.ports)]
        config = {"_id": SET_NAME, "members": members, "settings": SET_SETTINGS}
        with MongoClient(f"127.0.0.1:{self.ports[0]}", directConnection=True) as client:
            client.admin.command("replSetInitiate", config)
        self.wait_for_primary()

    def primary(self) -> int | None:
        client = MongoClient(self.uri("admin"), serverSelectionTimeoutMS=500)
        with client, contextlib.suppress(PyMongoError):
            host = client.admin.command("hello").get("primary")
            return self.ports.index(int(host.rsplit(":", 1)[1])) if host else None
        return None

    def wait_for_primary(self, other_than: int | None = None, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            primary = self.primary()
            if primary is not None and primary != other_than:
                return primary
            time.sleep(0.1)
        raise AssertionError(f"no primary within {timeout} s")

    def step_down(self, index: int) -> None:
        host = f"127.0.0.1:{self.ports[index]}"
        client = MongoClient(host, directConnection=True)
        with client, contextlib.suppress(PyMongoError):  # the primary drops its connections
            client.admin.command("replSetStepDown", 30)

    def kill(self, index: int) -> None:
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait()

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                embedded_db.stop_pid(process.pid)


@pytest.fixture
def replica_set(tmp_path) -> Iterator[ReplicaSet]:
    members = ReplicaSet(tmp_path / "set")
    members.start()
    yield members
    members.stop()


@dataclass
class Journal:
    """What the clients were told."""

    statuses: list[tuple[int, str, str | None]] = field(
        default_factory=list
    )  # (status, what, Retry-After)
    # path -> the sha256 values it may hold: the last acknowledged, plus any attempted since
    # whose answer left the outcome open.
    possible: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    deleted: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answered(self, response: requests.Response | None, what: str) -> None:
        with self.lock:
            if response is None:
                self.statuses.append((0, what, None))
            else:
                self.statuses.append(
                    (response.status_code, what, response.headers.get("Retry-After"))
                )


def post_image(base: str, path: str, content: bytes, **fields) -> requests.Response | None:
    try:
        return requests.post(
            f"{base}/images",
            files={"image": (Path(path).name, content)},
            data={"file": path, **fields},
            timeout=30,
        )
    except requests.ConnectionError:
        return None


def distinct_image() -> bytes:
    return image_bytes(color=tuple(random.randrange(256) for _ in range(3)), size=(24, 16))


def uploader(base: str, prefix: str, journal: Journal, stop: threading.Event) -> None:
    """Uploads and re-uploads its own paths; each path is written by this thread only."""
    paths = [f"{prefix}/{n}.jpg" for n in range(8)]
    while not stop.is_set():
        path = random.choice(paths)
        content = distinct_image()
        digest = hashlib.sha256(content).hexdigest()
        response = post_image(base, path, content)
        journal.answered(response, f"upload {path}")
        with journal.lock:
            if response is not None and response.status_code == 200:
                journal.possible[path] = {digest}
            else:
                journal.possible[path].add(digest)  # it may have landed all the same


def deleter(base: str, journal: Journal, stop: threading.Event) -> None:
    """Stores an image, then deletes it."""
    while not stop.is_set():
        path = f"deleted/{uuid.uuid4().hex[:8]}.jpg"
        created = post_image(base, path, distinct_image())
        journal.answered(created, f"upload {path}")
        if created is None or created.status_code != 200:
            continue
        try:
            response = requests.delete(f"{base}/images/{created.json()['_id']}", timeout=30)
        except requests.ConnectionError:
            response = None
        journal.answered(response, f"delete {path}")
        if response is not None and response.status_code == 200:
            with journal.lock:
                journal.deleted.add(path)


def archive_of(count: int, folder: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(count):
            archive.writestr(f"{folder}/{n}.jpg", distinct_image())
    return buffer.getvalue()


def sha256_of(base: str, image_id: str) -> str:
    response = requests.get(f"{base}/images/{image_id}/image", timeout=30)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def test_losing_the_primary_loses_nothing_acknowledged(replica_set, tmp_path, settings):
    database = f"failover_{uuid.uuid4().hex[:8]}"
    uri = replica_set.uri(database)
    uploads = tmp_path / "uploads"
    env = {
        "MONGODB_CONNECTION_STRING": uri,
        "UPLOADS_DIRECTORY": str(uploads),
        "DATA_DIRECTORY": str(tmp_path / "data"),
    }
    service = ServeProcess(env, tmp_path, workers=2).start()
    base = service.url
    journal, stop = Journal(), threading.Event()
    try:
        for n in range(40):  # what the bulk delete will remove
            assert (
                post_image(base, f"bulk/{n}.jpg", distinct_image(), group="bulk").status_code == 200
            )
        workers = [
            threading.Thread(target=uploader, args=(base, f"up{i}", journal, stop))
            for i in range(4)
        ]
        workers.append(threading.Thread(target=deleter, args=(base, journal, stop)))
        for worker in workers:
            worker.start()

        time.sleep(2)
        first = replica_set.wait_for_primary()
        replica_set.step_down(first)
        second = replica_set.wait_for_primary(other_than=first)

        def bulk_delete() -> None:
            with contextlib.suppress(requests.ConnectionError):
                response = requests.delete(f"{base}/images", params={"group": "bulk"}, timeout=60)
                journal.answered(response, "bulk delete")
                if response.status_code == 200:
                    with journal.lock:
                        journal.deleted.update(f"bulk/{n}.jpg" for n in range(40))

        def run_import() -> None:
            with contextlib.suppress(requests.ConnectionError):
                response = requests.post(
                    f"{base}/import",
                    files={"archive": ("a.zip", archive_of(60, "imported"))},
                    data={"group": "imported"},
                    timeout=120,
                )
                journal.answered(response, "import")
                imported.append(response)

        imported: list = []
        background = [threading.Thread(target=bulk_delete), threading.Thread(target=run_import)]
        for worker in background:
            worker.start()
        time.sleep(1.5)
        replica_set.kill(second)
        replica_set.wait_for_primary(other_than=second)
        elected = time.monotonic()
        time.sleep(3)
        replica_set.start_member(second)
        time.sleep(2)
        stop.set()
        for worker in workers + background:
            worker.join(timeout=120)

        # Every path is writable again soon after the election.
        for path in sorted(journal.possible):
            content = distinct_image()
            while True:
                response = post_image(base, path, content)
                if response is not None and response.status_code == 200:
                    journal.possible[path] = {hashlib.sha256(content).hexdigest()}
                    break
                assert time.monotonic() - elected < WRITABLE_AGAIN_WITHIN, (path, response.text)
                time.sleep(0.2)
    finally:
        stop.set()
        service.stop()

    # No 500, and every 503 says when to retry.
    assert [s for s in journal.statuses if s[0] >= 500 and s[0] != 503] == []
    assert [s for s in journal.statuses if s[0] == 503 and not s[2]] == []
    print("STATUSES", collections.Counter(s[0] for s in journal.statuses))
    assert sum(1 for s in journal.statuses if s[0] == 200) > 50

    settings.MONGODB_CONNECTION_STRING = uri
    settings.UPLOADS_DIRECTORY = uploads
    settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
    repository.close_client()
    collection = repository.get_collection()
    documents = {d["file"]: d for d in collection.find({}, {"file": 1, "sha256": 1})}
    for path, digests in journal.possible.items():
        assert path in documents, path
        assert documents[path]["sha256"] in digests, path
        stored = hashlib.sha256((uploads / path).read_bytes()).hexdigest()
        assert stored == documents[path]["sha256"], path
    assert not journal.deleted & set(documents)
    if imported and imported[0].status_code == 200:
        assert collection.count_documents({"data.group": "imported"}) == 60

    # Nothing left behind: no staged bytes, no leases, a clean integrity check.
    staging = uploads / STAGING_PREFIX
    assert not staging.exists() or list(staging.iterdir()) == []
    assert collection.database["image_write_leases"].count_documents({}) == 0
    out = io.StringIO()
    call_command("check_integrity", "--verify", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
    repository.close_client()
