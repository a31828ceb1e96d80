"""Race harness: each interleaving of writers to one path, run for a bounded number of rounds, in
threads of one service and across two `serve` processes, on local disk and S3.

After every round `check_integrity --verify` must find no document without its file, no file
without its document and every file's bytes hashing to its document's sha256; no request may
fail with a 500. `RACE_ROUNDS` sets the rounds per interleaving (`make stress` runs many).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from rest_framework.test import APIClient

from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes.integrity import IntegrityChecker
from tests.helpers import image_bytes

pytestmark = pytest.mark.slow  # every interleaving, seconds each, in threads and across serves
ROUNDS = int(os.environ.get("RACE_ROUNDS", "4"))
PICTURES = [image_bytes(size=(24 + i, 16), color=(40 * i, 255 - 40 * i, 90)) for i in range(4)]


class Service:
    """One way to reach the service: `(status, body)` for each request."""

    def upload(self, file: str, content: bytes, **fields: str) -> tuple[int, Any]:
        raise NotImplementedError

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        raise NotImplementedError

    def import_archive(self, content: bytes) -> tuple[int, Any]:
        raise NotImplementedError


class InProcess(Service):
    def __init__(self) -> None:
        self.local = threading.local()

    @property
    def api(self) -> APIClient:
        if not hasattr(self.local, "api"):
            self.local.api = APIClient()
        return self.local.api

    def upload(self, file: str, content: bytes, **fields: str) -> tuple[int, Any]:
        image = io.BytesIO(content)
        image.name = "x.jpg"
        response = self.api.post("/images", {"image": image, "file": file, **fields})
        return response.status_code, response.json()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        call = getattr(self.api, method.lower())
        response = call(path, body, format="json") if body is not None else call(path)
        return response.status_code, response.json()

    def import_archive(self, content: bytes) -> tuple[int, Any]:
        archive = io.BytesIO(content)
        archive.name = "race.zip"
        response = self.api.post("/import", {"archive": archive}, format="multipart")
        return response.status_code, response.json()


class OverHttp(Service):
    def __init__(self, base: str) -> None:
        self.base = base

    def upload(self, file: str, content: bytes, **fields: str) -> tuple[int, Any]:
        response = requests.post(
            f"{self.base}/images",
            files={"image": ("x.jpg", content)},
            data={"file": file, **fields},
            timeout=60,
        )
        return response.status_code, response.json()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        response = requests.request(method, f"{self.base}{path}", json=body, timeout=60)
        return response.status_code, response.json()

    def import_archive(self, content: bytes) -> tuple[int, Any]:
        files = {"archive": ("race.zip", content)}
        response = requests.post(f"{self.base}/import", files=files, timeout=60)
        return response.status_code, response.json()


@dataclass
class Round:
    path: str
    image_id: str


Step = Callable[[Service, Round], tuple[int, Any]]


def archive_of(path: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(path, content)
        archive.writestr("mongodb_data.json", json.dumps([{"file": path, "data": {"from": "zip"}}]))
    return buffer.getvalue()


INTERLEAVINGS: dict[str, list[Step]] = {
    "delete vs re-upload": [
        lambda s, r: s.request("DELETE", f"/images/{r.image_id}"),
        lambda s, r: s.upload(r.path, PICTURES[1]),
    ],
    "re-upload vs re-upload": [
        lambda s, r: s.upload(r.path, PICTURES[1]),
        lambda s, r: s.upload(r.path, PICTURES[2]),
    ],
    "new path vs new path": [
        lambda s, r: s.upload(f"{r.path}.fresh", PICTURES[1]),
        lambda s, r: s.upload(f"{r.path}.fresh", PICTURES[2]),
        lambda s, r: s.upload(f"{r.path}.fresh", PICTURES[3]),
    ],
    "bulk delete vs uploads": [
        lambda s, r: s.request("DELETE", f"/images?round={r.path}"),
        lambda s, r: s.upload(r.path, PICTURES[1], round=r.path),
        lambda s, r: s.upload(f"{r.path}.b", PICTURES[2], round=r.path),
    ],
    "patch and put vs re-upload": [
        lambda s, r: s.request("PATCH", f"/images/{r.image_id}", {"seen": 1}),
        lambda s, r: s.request("PUT", f"/images/{r.image_id}", {"replaced": True}),
        lambda s, r: s.upload(r.path, PICTURES[1]),
    ],
    "import vs delete and re-upload": [
        lambda s, r: s.import_archive(archive_of(r.path, PICTURES[1])),
        lambda s, r: s.request("DELETE", f"/images/{r.image_id}"),
        lambda s, r: s.upload(r.path, PICTURES[2]),
    ],
    "check_integrity --fix vs upload and delete": [
        lambda s, r: (200, IntegrityChecker(ImageRepository(), get_file_store(), GRACE).run(True)),
        lambda s, r: s.upload(f"{r.path}.new", PICTURES[1]),
        lambda s, r: s.request("DELETE", f"/images/{r.image_id}"),
    ],
}
GRACE = dt.timedelta(0)


def run_rounds(services: list[Service], name: str, steps: list[Step]) -> None:
    for number in range(ROUNDS):
        path = f"{name.replace(' ', '-')}/{number}.jpg"
        status, body = services[0].upload(path, PICTURES[0], round=path)
        assert status == 200, body
        race = Round(path, body["_id"])
        answers = run_together(services, race, steps)
        assert all(status < 500 for status, _ in answers), (name, number, answers)
        report = IntegrityChecker(ImageRepository(), get_file_store(), GRACE).run(verify=True)
        assert report.consistent and not report.interrupted_writes, (name, number, report)
        staged = [key for key in get_file_store().iter_all_keys() if "/staging/" in key]
        assert staged == [], (name, number)


def run_together(services: list[Service], race: Round, steps: list[Step]) -> list:
    barrier = threading.Barrier(len(steps))
    answers: list = [None] * len(steps)

    def run(index: int) -> None:
        barrier.wait()
        try:
            answers[index] = steps[index](services[index % len(services)], race)
        except Exception as error:  # reported with the round, not lost in a thread
            answers[index] = (599, repr(error))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(steps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


@pytest.mark.parametrize("name", list(INTERLEAVINGS))
def test_interleavings_in_threads_of_one_service(backend, name):
    run_rounds([InProcess()], name, INTERLEAVINGS[name])


@pytest.mark.timeout(max(300, ROUNDS * len(INTERLEAVINGS) * 5))  # long runs by `make stress`
@pytest.mark.parametrize("two_services", ["local", "s3"], indirect=True)
def test_interleavings_across_two_service_processes(two_services):
    services = [OverHttp(base) for base in two_services]
    for name, steps in INTERLEAVINGS.items():
        run_rounds(services, name, steps)
