"""The embedded database killed (the OOM killer, a container kill) while uploads run: every
upload that was acknowledged is there afterwards with its bytes, and the store is consistent."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import threading
import time

import pytest
import requests
from django.core.management import call_command

from images.runtime import embedded_db
from images.store import repository
from testing.harness import ServeProcess
from tests.helpers import image_bytes, storage_settings

pytestmark = pytest.mark.slow


def uploads_until(
    base: str, prefix: str, stop: threading.Event, acknowledged: dict, refusals: list
) -> None:
    paths = [f"{prefix}/{n}.jpg" for n in range(10)]
    while not stop.is_set():
        path = random.choice(paths)
        content = image_bytes(color=tuple(random.randrange(256) for _ in range(3)))
        try:
            response = requests.post(
                f"{base}/images",
                files={"image": ("x.jpg", content)},
                data={"file": path},
                timeout=30,
            )
        except requests.ConnectionError:
            continue
        digest = hashlib.sha256(content).hexdigest()
        if response.status_code == 200:
            acknowledged[path] = {digest}
        else:
            refusals.append((response.status_code, response.headers.get("Retry-After")))
            acknowledged.setdefault(path, {None}).add(digest)  # it may have landed, or not


def test_killing_the_embedded_database_loses_no_acknowledged_upload(tmp_path, settings):
    data, uploads = tmp_path / "data", tmp_path / "uploads"
    env = {"DATA_DIRECTORY": str(data), "UPLOADS_DIRECTORY": str(uploads)}
    service = ServeProcess(env, tmp_path, workers=2).start()
    base = service.url
    stop = threading.Event()
    acknowledged: list[dict] = [{} for _ in range(3)]
    refusals: list[tuple[int, str | None]] = []
    workers = [
        threading.Thread(
            target=uploads_until, args=(base, f"cam{i}", stop, acknowledged[i], refusals)
        )
        for i in range(3)
    ]
    try:
        for worker in workers:
            worker.start()
        time.sleep(2)
        database = json.loads((data / "db.json").read_text())
        os.kill(database["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while requests.get(f"{base}/health/ready", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the database did not come back"
            time.sleep(0.2)
        time.sleep(2)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        assert [(code, retry) for code, retry in refusals if code != 503 or not retry] == []
        restarted = json.loads((data / "db.json").read_text())
        assert restarted["pid"] != database["pid"]

        settings.MONGODB_CONNECTION_STRING = embedded_db.EmbeddedServer(
            restarted["pid"], restarted["port"], started_here=False
        ).uri
        settings.UPLOADS_DIRECTORY = uploads
        settings.STORAGES = storage_settings("local", settings.STORAGES, location=uploads)
        repository.close_client()
        time.sleep(1)  # leases of writes cut off by the kill settle once the database is back
        stored = {
            d["file"]: d["sha256"]
            for d in repository.get_collection().find({}, {"sha256": 1, "file": 1})
        }
        expected = {path: digests for done in acknowledged for path, digests in done.items()}
        assert len(expected) >= 20
        for path, digests in expected.items():
            assert stored.get(path) in digests, path
            if path in stored:
                assert hashlib.sha256((uploads / path).read_bytes()).hexdigest() == stored[path]
        out = io.StringIO()
        call_command("check_integrity", "--verify", "--grace-seconds=0", stdout=out)
        assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
        assert "0 files not matching their sha256" in out.getvalue()
    finally:
        stop.set()
        service.stop()
        repository.close_client()
