"""`imagestore pull` against a real service: filters, verification, skipping, layouts."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import signal
import time

import pytest
from conftest import FaultyProxy, cli, image_bytes, image_tree, start_cli

from imagestore_client.errors import ImagestoreError
from imagestore_client.pull import Layout

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


def outcome(stdout: str) -> dict[str, int]:
    found = re.findall(r"(\d+) (downloaded|skipped|failed)", stdout)
    return {name: int(number) for number, name in found}


@pytest.fixture
def pushed(client, service, tmp_path) -> dict[str, dict]:
    expected = image_tree(tmp_path / "tree", 200)
    result = cli(service.url, "push", str(tmp_path / "tree"), "--folders-as", "camera,label")
    assert result.returncode == 0, result.stderr
    return expected


def test_pull_with_a_filter_into_an_empty_folder_then_again(client, service, pushed, tmp_path):
    dest = tmp_path / "subset"
    cats = {path: data for path, data in pushed.items() if data["label"] == "cat"}
    dogs_of_cam1 = {
        path: data
        for path, data in pushed.items()
        if data["label"] == "dog" and data["camera"] == "cam1"
    }
    wanted = {**cats, **dogs_of_cam1}
    query = ["--filter", json.dumps({"$or": [{"data.label": "cat"}, {"data.camera": "cam1"}]})]
    query += ["label=cat", "label=dog"]

    first = cli(service.url, "pull", str(dest), *query, "--jobs", "4")
    assert first.returncode == 0, first.stderr
    assert outcome(first.stdout) == {"downloaded": len(wanted), "skipped": 0, "failed": 0}
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*.png")}
    assert files == set(wanted)
    for relative in wanted:
        source = (tmp_path / "tree" / relative).read_bytes()
        assert (dest / relative).read_bytes() == source
    lines = [json.loads(line) for line in (dest / "metadata.jsonl").read_text().splitlines()]
    assert {line["file_name"] for line in lines} == set(wanted)
    assert all(line["data"] == wanted[line["file"]] for line in lines)
    assert not [p for p in dest.rglob(".*")]  # no temporary files left

    second = cli(service.url, "pull", str(dest), *query)
    assert second.returncode == 0
    assert outcome(second.stdout) == {"downloaded": 0, "skipped": len(wanted), "failed": 0}

    damaged, removed = sorted(wanted)[:2]
    (dest / damaged).write_bytes(b"damaged")
    (dest / removed).unlink()
    third = cli(service.url, "pull", str(dest), *query)
    assert outcome(third.stdout) == {"downloaded": 2, "skipped": len(wanted) - 2, "failed": 0}
    assert (
        hashlib.sha256((dest / damaged).read_bytes()).hexdigest()
        == hashlib.sha256((tmp_path / "tree" / damaged).read_bytes()).hexdigest()
    )


def test_interrupted_pull_leaves_no_partial_file_and_resumes(client, service, pushed, tmp_path):
    # Downloads after the 40th are held, so the pull is still running when it is interrupted.
    downloads = itertools.count(1)

    def hold_late_downloads(method: str, path: str, number: int) -> str | None:
        if re.match(r"/images/[^/?]+/(image|file)", path):
            return "hold" if next(downloads) > 40 else "slow"
        return None

    proxy = FaultyProxy(service.url, hold_late_downloads)
    dest = tmp_path / "out"
    try:
        first = start_cli(proxy.url, "--no-progress", "pull", str(dest), "--jobs", "2")
        deadline = time.monotonic() + 120
        while len(list(dest.rglob("*.png"))) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    finally:
        proxy.stop()
    assert first.returncode == 130, err
    kept = list(dest.rglob("*.png"))
    assert 20 <= len(kept) < 200
    assert not (dest / "metadata.jsonl").exists()
    assert [p.name for p in dest.rglob(".*")] == []  # no temporary or partial file
    for path in kept:
        assert path.read_bytes() == (tmp_path / "tree" / path.relative_to(dest)).read_bytes()

    second = cli(service.url, "pull", str(dest))
    assert second.returncode == 0, second.stderr
    assert outcome(second.stdout) == {
        "downloaded": 200 - len(kept),
        "skipped": len(kept),
        "failed": 0,
    }
    assert len((dest / "metadata.jsonl").read_text().splitlines()) == 200


def test_pull_by_field_layout_is_an_image_folder(client, service, tmp_path):
    client.upload(image_bytes(1), "a/x.png", {"label": "cat"})
    client.upload(image_bytes(2), "b/x.png", {"label": "cat"})
    client.upload(image_bytes(3), "c/y.png", {"label": "../../etc"})
    client.upload(image_bytes(4), "d/z.png", {})
    dest = tmp_path / "folder"
    result = cli(service.url, "pull", str(dest), "--layout", "by-field:label")
    assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    second_cat = next(f for f in files if f.startswith("cat/x-"))
    assert files == sorted(["cat/x.png", second_cat, ".._.._etc/y.png", "_unlabelled/z.png"])
    lines = [json.loads(line) for line in (dest / "metadata.jsonl").read_text().splitlines()]
    assert sorted(line["file_name"] for line in lines) == files


def test_pull_with_limit_and_sort(client, service, tmp_path):
    for index in range(5):
        client.upload(image_bytes(index), f"img{index}.png", {"n": index})
    dest = tmp_path / "two"
    result = cli(
        service.url, "pull", str(dest), "--sort", "file", "--order", "desc", "--limit", "2"
    )
    assert result.returncode == 0
    assert sorted(p.name for p in dest.glob("*.png")) == ["img3.png", "img4.png"]


def test_downloads_cut_off_midway_are_fetched_again(client, service, tmp_path):
    for index in range(6):
        client.upload(image_bytes(index, size=(64, 64)), f"img{index}.png")
    cut = set(range(3, 9))  # the first downloads (requests 1 and 2 count and list)

    def fault(method: str, path: str, number: int) -> str | None:
        return "truncate" if path.endswith("/image") and number in cut else None

    proxy = FaultyProxy(service.url, fault)
    try:
        result = cli(proxy.url, "pull", str(tmp_path / "out"), "--jobs", "2")
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout) == {"downloaded": 6, "skipped": 0, "failed": 0}
    assert [kind for _, _, kind in proxy.faults].count("truncate") >= 3
    for index in range(6):
        assert (tmp_path / "out" / f"img{index}.png").read_bytes() == image_bytes(
            index, size=(64, 64)
        )


@pytest.mark.parametrize("file", ["../escape.png", "/etc/passwd", "a/../../b.png", ""])
def test_layout_refuses_paths_that_leave_the_destination(file):
    with pytest.raises(ImagestoreError, match="Unsafe file path"):
        Layout("keep").path_for({"_id": "x", "file": file})


def test_layout_names_are_checked():
    with pytest.raises(ValueError, match="Unknown layout"):
        Layout("by-field:")


def test_pulled_and_exported_files_get_the_umask_mode(client, service, tmp_path):
    document = client.upload(image_bytes(1), "a/one.png", {"label": "cat"})
    client.upload(image_bytes(2), "a/two.png", {"label": "dog"})
    written = {
        "pull": tmp_path / "pulled" / "a" / "one.png",
        "export": tmp_path / "all.zip",
        "shards": tmp_path / "shards" / "shard-000000.tar",
        "get": tmp_path / "got.png",
    }
    commands = {
        "pull": ["pull", str(tmp_path / "pulled")],
        "export": ["export", str(written["export"])],
        "shards": [
            "export",
            str(tmp_path / "shards"),
            "--format",
            "webdataset",
            "--shard-size",
            "5",
        ],
        "get": ["get", document["_id"], "-o", str(written["get"])],
    }
    for name, command in commands.items():
        result = cli(service.url, *command, umask=0o027)
        assert result.returncode == 0, result.stderr
        assert oct(written[name].stat().st_mode & 0o777) == oct(0o640), name
    assert oct((tmp_path / "pulled" / "metadata.jsonl").stat().st_mode & 0o777) == oct(0o640)
