"""`imagestore push` against a real service: metadata sources, resuming, skipping, failures."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import FaultyProxy, cli, cli_environment, image_bytes, image_tree, start_cli

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts

TREE_SIZE = 200


def outcome(stdout: str) -> dict[str, int]:
    """The counts of a push summary line."""
    found = re.findall(r"(\d+) (uploaded|metadata updated|skipped|duplicates|failed)", stdout)
    return {name: int(number) for number, name in found}


def stored(client) -> dict[str, dict]:
    return {doc["file"]: doc for doc in client.find()}


def test_interrupted_push_resumes_and_stores_each_image_once(client, service, tmp_path):
    tree = tmp_path / "tree"
    expected = image_tree(tree, TREE_SIZE)
    arguments = ["--no-progress", "push", str(tree), "--prefix", "site1/"]
    arguments += ["--folders-as", "camera,label"]
    command = [sys.executable, "-m", "imagestore_client", "--url", service.url, *arguments]
    # The first push goes through a proxy that holds every upload after the 40th, so it is
    # still running, whatever the machine's speed, when it is interrupted.
    uploads = itertools.count(1)

    def hold_late_uploads(method: str, path: str, number: int) -> str | None:
        if method == "POST" and path.startswith("/images") and next(uploads) > 40:
            return "hold"
        return None

    proxy = FaultyProxy(service.url, hold_late_uploads)
    try:
        first = start_cli(proxy.url, *arguments, "--jobs", "1")
        deadline = time.monotonic() + 120
        while client.count() < 30 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=120)
    finally:
        proxy.stop()
    assert first.returncode == 130, (out, err)
    assert "interrupted" in err
    after_interrupt = client.count()
    assert 30 <= after_interrupt < TREE_SIZE

    second = subprocess.run(command, env=cli_environment(), capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    counts = outcome(second.stdout)
    assert counts["uploaded"] == TREE_SIZE - after_interrupt  # nothing uploaded twice
    assert counts["skipped"] == after_interrupt
    assert counts["failed"] == 0

    documents = stored(client)
    assert sorted(documents) == sorted(f"site1/{path}" for path in expected)
    assert client.count() == TREE_SIZE
    for relative, data in expected.items():
        document = documents[f"site1/{relative}"]
        assert document["data"] == data
        local = (tree / relative).read_bytes()
        assert document["sha256"] == hashlib.sha256(local).hexdigest()

    third = subprocess.run(command, env=cli_environment(), capture_output=True, text=True)
    assert third.returncode == 0
    assert outcome(third.stdout) == {
        "uploaded": 0,
        "metadata updated": 0,
        "skipped": TREE_SIZE,
        "duplicates": 0,
        "failed": 0,
    }


def test_metadata_from_meta_csv_folders_and_sidecars_in_that_order(client, service, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "x.png").write_bytes(image_bytes(1))
    (tree / "a" / "y.png").write_bytes(image_bytes(2))
    (tree / "z.png").write_bytes(image_bytes(3))
    (tree / "a" / "b" / "x.png.json").write_text(json.dumps({"label": "sidecar", "file": "evil"}))
    (tree / "z.json").write_text(json.dumps({"time": "2026-01-02T03:04:05Z", "n": 1}))
    (tree / ".hidden.png").write_bytes(image_bytes(4))
    (tree / "notes.txt").write_text("not an image")
    csv_file = tmp_path / "meta.csv"
    csv_file.write_text("file,label,split\na/b/x.png,csv,train\n./a/y.png,csv,\nz.png,,test\n")

    result = cli(
        service.url, "push", str(tree), "--prefix", "p", "--meta", "site=osaka",
        "--meta", "fps:=30", "--folders-as", "camera,label", "--metadata-csv", str(csv_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout)["uploaded"] == 3
    documents = stored(client)
    assert set(documents) == {"p/a/b/x.png", "p/a/y.png", "p/z.png"}
    assert documents["p/a/b/x.png"]["data"] == {
        "site": "osaka", "fps": 30, "camera": "a", "label": "sidecar", "split": "train",
    }  # fmt: skip
    assert documents["p/a/y.png"]["data"] == {
        "site": "osaka", "fps": 30, "camera": "a", "label": "csv",
    }  # fmt: skip
    assert documents["p/z.png"]["data"] == {"site": "osaka", "fps": 30, "split": "test", "n": 1}
    assert documents["p/z.png"]["time"] == "2026-01-02T03:04:05.000Z"


def test_changed_sidecar_patches_the_stored_metadata(client, service, tmp_path):
    tree = tmp_path / "tree"
    image_tree(tree, 6)
    assert cli(service.url, "push", str(tree)).returncode == 0
    sidecar = tree / "cam1" / "dog" / "img0001.png.json"
    sidecar.write_text(json.dumps({"label": "wolf"}))
    client.update(client.find(file="cam2/bird/img0002.png").__next__()["_id"], {"extra": 1})

    result = cli(service.url, "push", str(tree))
    assert result.returncode == 0
    assert outcome(result.stdout) == {
        "uploaded": 0, "metadata updated": 1, "skipped": 5, "duplicates": 0, "failed": 0,
    }  # fmt: skip
    assert next(client.find(file="cam1/dog/img0001.png"))["data"]["label"] == "wolf"
    # Keys set on the service since are kept: a push only sets what it brings.
    assert next(client.find(file="cam2/bird/img0002.png"))["data"]["extra"] == 1


# A re-push bringing {"label": "dog", "n": 1} over {"label": "cat", "n": 2, "reviewed": True}.
MERGED_OR_REPLACED = [
    ((), {"label": "dog", "n": 1, "reviewed": True}),
    (("--replace-metadata",), {"label": "dog", "n": 1}),
]


def pushed_once_then_curated(client, service, tmp_path):
    """A tree of one image pushed, then a key set on the service; the tree's folder."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "x.png").write_bytes(image_bytes(1))
    (tree / "x.png.json").write_text(json.dumps({"label": "cat", "n": 1}))
    assert cli(service.url, "push", str(tree)).returncode == 0
    client.update(next(client.find(file="x.png"))["_id"], {"reviewed": True, "n": 2})
    return tree


@pytest.mark.parametrize(("options", "data"), MERGED_OR_REPLACED)
def test_repush_of_a_changed_file_keeps_metadata_set_on_the_service(
    client, service, tmp_path, options, data
):
    tree = pushed_once_then_curated(client, service, tmp_path)
    (tree / "x.png").write_bytes(image_bytes(2))
    (tree / "x.png.json").write_text(json.dumps({"label": "dog", "n": 1}))

    result = cli(service.url, "push", str(tree), *options)
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout)["uploaded"] == 1
    document = next(client.find(file="x.png"))
    assert document["data"] == data  # merged by default: the sidecar's keys over the stored
    assert document["sha256"] == hashlib.sha256(image_bytes(2)).hexdigest()


@pytest.mark.parametrize(("options", "data"), MERGED_OR_REPLACED)
def test_repush_of_an_unchanged_file_updates_metadata_as_a_changed_one_would(
    client, service, tmp_path, options, data
):
    tree = pushed_once_then_curated(client, service, tmp_path)
    (tree / "x.png.json").write_text(json.dumps({"label": "dog", "n": 1}))

    result = cli(service.url, "push", str(tree), *options)
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout)["metadata updated"] == 1
    assert next(client.find(file="x.png"))["data"] == data
    again = cli(service.url, "push", str(tree), *options)
    assert outcome(again.stdout)["skipped"] == 1


def test_failures_are_reported_with_the_reason_and_exit_non_zero(client, service, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "good.png").write_bytes(image_bytes(1))
    (tree / "broken.jpg").write_bytes(b"\xff\xd8 this is no jpeg")
    (tree / "bad-sidecar.png").write_bytes(image_bytes(2))
    (tree / "bad-sidecar.png.json").write_text("{not json")
    (tree / "dotted.png").write_bytes(image_bytes(3))
    (tree / "dotted.json").write_text(json.dumps({"a.b": 1}))
    (tree / "new\nline.png").write_bytes(image_bytes(4))
    with open(bytes(tree) + b"/\xff\xfe.png", "wb") as undecodable:
        undecodable.write(image_bytes(5))
    (tree / "ü.png").write_bytes(image_bytes(6))

    result = cli(service.url, "push", str(tree))
    assert result.returncode == 1
    assert outcome(result.stdout)["uploaded"] == 2
    assert outcome(result.stdout)["failed"] == 5
    assert "failed 'new\\nline.png': the file name is not printable UTF-8 text" in result.stderr
    assert "failed '\\udcff\\udcfe.png': the file name is not printable" in result.stderr
    assert "failed broken.jpg: 400: The uploaded file is not a decodable image" in result.stderr
    assert "failed bad-sidecar.png: sidecar bad-sidecar.png.json is not valid JSON" in result.stderr
    assert "failed dotted.png: 400: Invalid key 'a.b'" in result.stderr
    assert set(stored(client)) == {"good.png", "ü.png"}


def test_same_bytes_elsewhere_skipped_or_refused_on_request(client, service, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "copy.png").write_bytes(image_bytes(7))
    (tree / "new.png").write_bytes(image_bytes(8))
    client.upload(image_bytes(7), "original/seven.png")

    refused = cli(service.url, "push", str(tree), "--on-duplicate", "reject")
    assert refused.returncode == 1
    assert "failed copy.png: same bytes already stored as original/seven.png" in refused.stderr
    skipped = cli(service.url, "push", str(tree), "--on-duplicate", "skip")
    assert skipped.returncode == 0
    assert outcome(skipped.stdout)["duplicates"] == 1
    assert set(stored(client)) == {"original/seven.png", "new.png"}
    assert (
        "duplicate copy.png: not stored, same bytes as original/seven.png (kept)" in skipped.stderr
    )
    uploaded = cli(service.url, "push", str(tree))
    assert outcome(uploaded.stdout)["uploaded"] == 1
    assert set(stored(client)) == {"original/seven.png", "new.png", "copy.png"}


def test_push_retries_503_and_dropped_connections(client, service, tmp_path):
    tree = tmp_path / "tree"
    expected = image_tree(tree, 24)

    def fault(method: str, path: str, number: int) -> str | None:
        if method == "POST" and number % 3 == 0:
            return "503"
        if method == "POST" and number % 5 == 0:
            return "drop"
        return "503" if method == "GET" and number == 2 else None

    proxy = FaultyProxy(service.url, fault)
    try:
        result = cli(proxy.url, "push", str(tree), "--jobs", "4")
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout)["uploaded"] == 24
    kinds = {kind for _, _, kind in proxy.faults}
    assert kinds == {"503", "drop"}
    assert set(stored(client)) == set(expected)


def test_push_of_a_missing_folder_is_a_usage_error(service, tmp_path):
    result = cli(service.url, "push", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "is not a folder" in result.stderr


def test_push_says_what_it_left_out_and_never_follows_a_link_out(client, service, tmp_path):
    root, outside = tmp_path / "tree", tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.png").write_bytes(image_bytes(9))
    (outside / "folder" / "x.png").write_bytes(image_bytes(8))
    (outside / "meta.json").write_text('{"secret": "yes"}')
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    (root / "cat" / "a.png").write_bytes(image_bytes(1))
    (root / "cat" / "b.png").write_bytes(image_bytes(2))
    (root / "cat" / "b.png.json").symlink_to(outside / "meta.json")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / "evil.png").symlink_to(outside / "secret.png")
    (root / "dog" / "same.png").symlink_to("../cat/a.png")  # inside the tree: pushed
    (root / "linked").symlink_to(outside / "folder")
    (root / "alias").symlink_to("cat")
    (root / "broken.png").symlink_to(tmp_path / "nowhere.png")

    result = cli(service.url, "push", str(root))
    assert result.returncode == 1  # the sidecar out of the tree fails its image
    assert outcome(result.stdout) == {
        "uploaded": 2, "metadata updated": 0, "skipped": 0, "duplicates": 0, "failed": 1,
    }  # fmt: skip
    assert sorted(stored(client)) == ["cat/a.png", "dog/same.png"]
    err = result.stderr
    assert "left out 5 links and 1 files that are not images (--all-files pushes them)" in err
    assert "left out alias: link to a folder inside the pushed folder, not followed" in err
    assert "left out linked: link to a folder outside the pushed folder, not followed" in err
    assert "left out cat/evil.png: link to a file outside the pushed folder, not followed" in err
    assert "left out broken.png: broken link" in err
    assert "failed cat/b.png: sidecar b.png.json is a link outside the pushed folder" in err


def test_skipped_duplicates_within_one_push_name_the_copy_kept(client, service, tmp_path):
    tree = tmp_path / "tree"
    for folder in ("a", "b"):
        (tree / folder).mkdir(parents=True)
        (tree / folder / "twin.png").write_bytes(image_bytes(5))
    result = cli(service.url, "push", str(tree), "--prefix", "p/", "--on-duplicate", "skip")
    assert result.returncode == 0, result.stderr
    assert outcome(result.stdout)["duplicates"] == 1
    [kept] = stored(client)
    dropped = "b/twin.png" if kept == "p/a/twin.png" else "a/twin.png"
    assert f"duplicate {dropped}: not stored, same bytes as {kept} (kept)" in result.stderr


def test_push_verify_restores_files_the_service_lost(client, service, tmp_path):
    tree = tmp_path / "tree"
    image_tree(tree, 12)
    arguments = ["--no-progress", "push", str(tree), "--prefix", "lost/"]
    assert outcome(cli(service.url, *arguments).stdout)["uploaded"] == 12
    documents = sorted(stored(client).values(), key=lambda doc: doc["file"])
    lost = documents[:3]
    for document in lost:
        (service.uploads / document["file"]).unlink()
        assert not client.has_file(document["_id"])

    unverified = cli(service.url, *arguments)
    assert outcome(unverified.stdout)["skipped"] == 12, unverified.stdout
    assert "restored" not in unverified.stdout

    verified = cli(service.url, *arguments, "--verify")
    assert verified.returncode == 0, verified.stderr
    assert "restored 3 lost files" in verified.stdout
    assert outcome(verified.stdout)["skipped"] == 9
    for document in lost:
        assert client.has_file(document["_id"])
        assert client.download(document["_id"]) == (tree / document["file"][5:]).read_bytes()
    assert {doc["_id"] for doc in stored(client).values()} == {doc["_id"] for doc in documents}
    again = cli(service.url, *arguments, "--verify")
    assert "restored 0 lost files" in again.stdout
