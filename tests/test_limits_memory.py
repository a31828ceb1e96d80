"""Untrusted JSON nested without end cannot grow a worker's memory: measured from the worker
processes of a `manage.py serve` subprocess (/proc/<pid>/status), as an outsider sends it."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
import requests

from testing.harness import ServeProcess
from tests.helpers import image_bytes

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses

MiB = 1024 * 1024
# 20,000 nested arrays in a 230-byte archive took a worker from 75 to ~1,000 MiB.
BOMB_DEPTH = 20_000


def worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def memory(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} missing for {pid}")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def manifest_bomb(depth: int) -> bytes:
    manifest = '[{"file": "a.jpg", "data": {"x": ' + nested(depth) + "}}]"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.jpg", image_bytes())
        archive.writestr("mongodb_data.json", manifest)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory, mongodb_uri):
    workdir = tmp_path_factory.mktemp("served")
    env = {
        "MONGODB_CONNECTION_STRING": mongodb_uri,
        "UPLOADS_DIRECTORY": str(workdir / "uploads"),
        "DATA_DIRECTORY": str(workdir / "data"),
    }
    service = ServeProcess(env, workdir).start()
    base = service.url
    # Warm up: the first requests import what the routes need.
    created = requests.post(f"{base}/images", files={"image": ("w.jpg", image_bytes())}, timeout=30)
    requests.patch(f"{base}/images/{created.json()['_id']}", json={"a": 1}, timeout=30)
    requests.post(f"{base}/import", files={"archive": ("w.zip", manifest_bomb(2))}, timeout=30)
    requests.get(f"{base}/images", params={"filter": "{}"}, timeout=30)
    yield base, service.pid, created.json()["_id"]
    service.stop()


def _send(base: str, image_id: str, route: str) -> requests.Response:
    deep = nested(BOMB_DEPTH)
    if route == "manifest":
        archive = manifest_bomb(BOMB_DEPTH)
        assert len(archive) < 1024
        return requests.post(f"{base}/import", files={"archive": ("bomb.zip", archive)}, timeout=60)
    if route == "json field":
        files = {"image": ("b.jpg", image_bytes())}
        return requests.post(f"{base}/images", files=files, data={"json": deep}, timeout=60)
    if route == "PATCH body":
        return requests.patch(f"{base}/images/{image_id}", data=deep, timeout=60, headers=JSON)
    if route == "PUT body":
        body = json.dumps({"x": 1})[:-1] + ', "y": ' + deep + "}"
        return requests.put(f"{base}/images/{image_id}", data=body, timeout=60, headers=JSON)
    if route == "filter":
        # The request line holds at most 4 KiB: deep enough all the same.
        text = '{"a": ' + nested(300) + "}"
        return requests.get(f"{base}/images", params={"filter": text}, timeout=60)
    raise AssertionError(route)


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("route", ["manifest", "json field", "PATCH body", "PUT body", "filter"])
def test_deeply_nested_json_is_refused_in_bounded_memory(served, route):
    base, master, image_id = served
    workers = worker_pids(master)
    before = {pid: memory(pid, "VmHWM") for pid in workers}
    response = _send(base, image_id, route)
    assert response.status_code == 400, response.text
    assert "deeper" in response.json()["detail"]
    growth = max(memory(pid, "VmHWM") - before[pid] for pid in workers)
    print(f"{route}: peak worker growth {growth / MiB:.1f} MiB")
    assert growth < 50 * MiB, f"a worker grew by {growth / MiB:.0f} MiB"
    assert requests.get(f"{base}/health/live", timeout=10).status_code == 200
