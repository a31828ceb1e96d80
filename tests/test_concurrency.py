"""Concurrent writers, in one service and across two service processes on the same backends."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.core.management import call_command

from tests.helpers import image_bytes

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses


def download(base: str, image_id: str) -> bytes:
    return requests.get(f"{base}/images/{image_id}/image", timeout=30).content


@pytest.mark.parametrize("two_services", ["local", "s3"], indirect=True)
def test_sixteen_uploads_to_one_path_leave_one_document_and_one_whole_file(two_services):
    contents = [image_bytes(size=(40 + i, 30), color=(i * 10, 0, 0)) for i in range(16)]

    def send(i: int) -> requests.Response:
        base = two_services[i % 2]
        return requests.post(
            f"{base}/images",
            files={"image": (f"u{i}.jpg", contents[i])},
            data={"file": "same/name.jpg", "writer": str(i)},
            timeout=60,
        )

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, range(16)))
    assert all(r.status_code == 200 for r in responses), [r.content for r in responses]
    assert len({r.json()["_id"] for r in responses}) == 1
    listed = requests.get(f"{two_services[0]}/images", timeout=30).json()
    assert listed["total"] == 1
    stored = download(two_services[1], listed["items"][0]["_id"])
    assert stored in contents


@pytest.mark.parametrize("two_services", ["local"], indirect=True)
def test_concurrent_uploads_updates_and_deletes_stay_consistent(two_services):
    def writer(i: int) -> None:
        base = two_services[i % 2]
        name = f"batch{i % 4}/img{i}.jpg"
        requests.post(
            f"{base}/images",
            files={"image": ("x.jpg", image_bytes(color=(i, i, i)))},
            data={"file": name, "group": str(i % 4)},
            timeout=60,
        )
        requests.patch(f"{base}/images", params={"group": str(i % 4)}, json={"seen": i}, timeout=60)
        if i % 3 == 0:
            requests.delete(f"{base}/images", params={"group": str((i + 1) % 4)}, timeout=60)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(writer, range(36)))
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", stdout=out)
    assert "0 documents with a missing file, 0 orphan files" in out.getvalue()
