"""Duplicates through the client: on_duplicate on uploads, pushes and imports; duplicate groups."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from conftest import cli, cli_environment, image_bytes, image_tree

from imagestore_client import Conflict

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


def test_upload_on_duplicate_reject_and_skip(client):
    first = client.upload(image_bytes(1), "cam0/a.png")
    with pytest.raises(Conflict) as error:
        client.upload(image_bytes(1), "cam1/a.png", on_duplicate="reject")
    assert error.value.status == 409
    assert error.value.body["_id"] == first["_id"]
    assert error.value.body["file"] == "cam0/a.png"
    assert "cam0/a.png" in error.value.detail
    assert client.upload(image_bytes(1), "cam1/a.png", on_duplicate="skip")["_id"] == first["_id"]
    assert client.count() == 1


def test_duplicate_groups_are_paged_through(client, service):
    for group in range(3):
        for copy in range(group + 2):
            client.upload(image_bytes(group), f"g{group}/copy{copy}.png")
    client.upload(image_bytes(9), "single.png")
    groups = list(client.duplicates(page_size=1))
    assert sorted(group["count"] for group in groups) == [2, 3, 4]
    assert all(len(group["items"]) == group["count"] for group in groups)
    listed = cli(service.url, "duplicates")
    assert listed.returncode == 0
    assert len(listed.stdout.splitlines()) == 3
    assert "3 groups" in listed.stderr
    assert "g2/copy3.png" in listed.stdout


def test_import_reports_duplicates(client, service, tmp_path):
    client.upload(image_bytes(1), "a.png")
    client.upload(image_bytes(2), "b.png")
    archive = tmp_path / "all.zip"
    client.export(archive)
    client.delete_many(all=True)
    moved = client.upload(image_bytes(1), "elsewhere/a.png")
    result = cli(service.url, "import", str(archive), "--on-duplicate", "skip")
    assert result.returncode == 0, result.stderr
    assert "1 imported, 0 skipped, 1 duplicates" in result.stdout
    assert f"duplicate a.png: stored as {moved['file']}" in result.stderr
    assert sorted(d["file"] for d in client.find()) == ["b.png", "elsewhere/a.png"]


def _push(url: str, tree, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "imagestore_client", "--url", url, "push", str(tree)]
    return subprocess.Popen(
        [*command, *options],
        env=cli_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_pushes_of_the_same_bytes_at_once_store_one_copy(client, service, tmp_path):
    image_tree(tmp_path / "tree", 40)
    pushes = [
        _push(service.url, tmp_path / "tree", "--prefix", prefix, "--on-duplicate", "skip")
        for prefix in ("a/", "b/")
    ]
    results = [(*push.communicate(timeout=300), push.returncode) for push in pushes]
    assert [code for _, _, code in results] == [0, 0], results
    hashes = Counter(document["sha256"] for document in client.find())
    assert len(hashes) == 40
    assert set(hashes.values()) == {1}


def test_two_identical_pushes_at_once_store_each_image_once(client, service, tmp_path):
    expected = image_tree(tmp_path / "tree", 60)
    pushes = [_push(service.url, tmp_path / "tree", "--jobs", "4") for _ in range(2)]
    results = [(*push.communicate(timeout=300), push.returncode) for push in pushes]
    assert [code for _, _, code in results] == [0, 0], results
    files = Counter(document["file"] for document in client.find())
    assert set(files) == set(expected)
    assert set(files.values()) == {1}
