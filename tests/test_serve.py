"""`manage.py serve` with no MongoDB configured: the embedded server, reused and persistent."""

from __future__ import annotations

import json

import pytest
import requests

from images.runtime import embedded_db
from testing.harness import ServeProcess
from tests.helpers import image_bytes

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses


def stop_service(served: ServeProcess) -> str:
    served.stop()
    return served.output


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


def test_embedded_default_keeps_data_across_restarts(workdir):
    process = ServeProcess({}, workdir).start()
    base = process.url
    try:
        state = json.loads((workdir / "data" / "db.json").read_text())
        created = requests.post(
            f"{base}/images",
            files={"image": ("x.jpg", image_bytes())},
            data={"label": "cat"},
            timeout=10,
        ).json()
        listed = requests.get(f"{base}/images", params={"label": "cat"}, timeout=10).json()
        assert [i["_id"] for i in listed["items"]] == [created["_id"]]
        assert requests.get(f"{base}/", timeout=10).json()["mongodb"]["connected"] is True
    finally:
        output = stop_service(process)
    assert "Embedded MongoDB (started)" in output
    assert not embedded_db.is_alive(state["pid"])
    assert not (workdir / "data" / "db.json").exists()
    assert (workdir / "uploads" / "x.jpg").read_bytes() == image_bytes()

    process = ServeProcess({}, workdir, port=process.port).start()
    try:
        listed = requests.get(f"{base}/images", params={"label": "cat"}, timeout=10).json()
        assert [i["_id"] for i in listed["items"]] == [created["_id"]]
        file = requests.get(f"{base}/images/{created['_id']}/image", timeout=10)
        assert file.content == image_bytes()
    finally:
        stop_service(process)


def test_second_service_reuses_the_running_embedded_server(workdir):
    first = ServeProcess({}, workdir).start()
    try:
        second = ServeProcess({}, workdir).start()
        try:
            created = requests.post(
                f"{first.url}/images",
                files={"image": ("y.jpg", image_bytes())},
                timeout=10,
            ).json()
            seen = requests.get(f"{second.url}/images/{created['_id']}", timeout=10)
            assert seen.json()["file"] == "y.jpg"
        finally:
            assert "(reusing)" in stop_service(second)
        assert requests.get(f"{first.url}/images", timeout=10).json()["total"] == 1
    finally:
        stop_service(first)
