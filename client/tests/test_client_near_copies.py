"""Near-copies through the client: similar pictures, near-copy groups, train/test leaks, and
push and import that treat a near-copy as a duplicate, on real photos re-encoded and resized."""

from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from conftest import cli
from PIL import Image, ImageEnhance
from skimage import data as photos

from imagestore_client import Conflict, NotFound, Unprocessable
from imagestore_client.cli import parse_arguments
from imagestore_client.errors import error_for

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


def jpeg(picture: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@functools.cache
def pictures() -> dict[str, bytes]:
    """The astronaut as JPEG, three near-copies of it (other bytes each), two unrelated photos
    and a near-copy of one of them."""
    astronaut = Image.fromarray(photos.astronaut())
    coffee = Image.fromarray(photos.coffee())
    width, height = astronaut.size
    return {
        "astronaut": jpeg(astronaut),
        "astronaut_q50": jpeg(astronaut, 50),
        "astronaut_half": jpeg(astronaut.resize((width // 2, height // 2))),
        "astronaut_bright": jpeg(ImageEnhance.Brightness(astronaut).enhance(1.3)),
        "coffee": jpeg(coffee),
        "coffee_q50": jpeg(coffee, 50),
        "rocket": jpeg(Image.fromarray(photos.rocket())),
    }


def hamming(first: str, second: str) -> int:
    return (int(first, 16) ^ int(second, 16)).bit_count()


def store(client, names: dict[str, str], data: dict[str, dict] | None = None) -> dict[str, dict]:
    """Upload `pictures()[name]` at each stored path of `names`; their documents by name."""
    return {
        name: client.upload(pictures()[name], file, (data or {}).get(name))
        for name, file in names.items()
    }


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """`pictures()[name]` written at each relative path of `files`."""
    for relative, name in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(pictures()[name])
    return root


def outcome(stdout: str) -> dict[str, int]:
    found = re.findall(r"(\d+) (uploaded|metadata updated|skipped|duplicates|failed)", stdout)
    return {name: int(number) for number, name in found}


def test_similar_lists_the_near_copies_nearest_first_with_their_distance(client, service):
    stored = store(
        client,
        {
            "astronaut": "orig/astronaut.jpg",
            "astronaut_q50": "copies/astronaut_q50.jpg",
            "astronaut_half": "copies/astronaut_half.jpg",
            "astronaut_bright": "copies/astronaut_bright.jpg",
            "coffee": "other/coffee.jpg",
        },
    )
    assert all(re.fullmatch(r"[0-9a-f]{16}", doc["phash"]) for doc in stored.values())
    origin = stored["astronaut"]
    expected = {
        name: hamming(origin["phash"], doc["phash"])
        for name, doc in stored.items()
        if name.startswith("astronaut_")
    }
    assert hamming(origin["phash"], stored["coffee"]["phash"]) > 12  # really unrelated

    found = client.similar(origin["_id"])
    assert [doc["file"] for doc in found] == [
        stored[name]["file"]
        for name in sorted(expected, key=lambda name: (expected[name], stored[name]["_id"]))
    ]
    for doc in found:
        name = Path(doc["file"]).stem
        assert doc["distance"] == expected[name]
        assert doc["data"] == {} and doc["sha256"] == stored[name]["sha256"]  # whole documents
    assert client.similar(stored["coffee"]["_id"]) == []

    farthest = max(expected.values())
    assert farthest > 0  # the brightened copy's hash is not the original's
    nearer = client.similar(origin["_id"], distance=farthest - 1)
    assert {doc["file"] for doc in nearer} == {
        stored[name]["file"] for name, d in expected.items() if d < farthest
    }
    assert [doc["file"] for doc in client.similar(origin["_id"], limit=1)] == [found[0]["file"]]
    with pytest.raises(NotFound):
        client.similar("0123456789abcdef01234567")

    shown = cli(service.url, "similar", origin["_id"], "--distance", "12")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3
    distance, image_id, _time, file, data = lines[0].split("  ")
    assert (int(distance), image_id, file, data) == (
        found[0]["distance"],
        found[0]["_id"],
        found[0]["file"],
        "{}",
    )
    assert f"(3 similar to {origin['_id']} within distance 12)" in shown.stderr
    as_json = cli(service.url, "similar", origin["_id"], "--json", "--limit", "2")
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == found[:2]
    missing = cli(service.url, "similar", "0123456789abcdef01234567")
    assert missing.returncode == 1
    assert missing.stderr.startswith("imagestore: 404")


def test_near_copy_groups_are_paged_through_and_exact_groups_stay_apart(client, service):
    stored = store(
        client,
        {
            "astronaut": "a/astronaut.jpg",
            "astronaut_q50": "a/astronaut_q50.jpg",
            "astronaut_half": "b/astronaut_half.jpg",
            "coffee": "c/coffee.jpg",
            "coffee_q50": "c/coffee_q50.jpg",
            "rocket": "r/rocket.jpg",
        },
    )
    assert list(client.duplicates()) == []  # no two share their bytes

    groups = list(client.duplicates(page_size=1, distance=10))
    by_file = {doc["file"]: doc for doc in stored.values()}
    # Each image anchors a group of the later images near it: every near pair is listed once.
    first, second, third = sorted(
        ("astronaut", "astronaut_q50", "astronaut_half"), key=lambda name: stored[name]["_id"]
    )
    coffees = sorted(("coffee", "coffee_q50"), key=lambda name: stored[name]["_id"])
    assert sorted(
        [stored[name]["file"] for name in names]
        for names in ((first, second, third), (second, third), coffees)
    ) == sorted([item["file"] for item in group["items"]] for group in groups)
    for group in groups:
        anchor, *others = group["items"]
        assert group["count"] == len(group["items"])
        assert group["phash"] == by_file[anchor["file"]]["phash"]
        assert anchor["distance"] == 0
        assert [item["_id"] for item in others] == sorted(item["_id"] for item in others)
        for item in others:
            assert item["distance"] == hamming(group["phash"], by_file[item["file"]]["phash"])

    listed = cli(service.url, "duplicates", "--distance", "10")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    assert "3 groups of near-copies within distance 10" in listed.stderr
    astronauts = next(line for line in lines if line.split("  ")[1] == "3")
    assert astronauts.split("  ")[2] == stored[first]["file"]
    assert re.search(rf"{re.escape(stored[third]['file'])} \(\d+\)$", astronauts)
    exact = cli(service.url, "duplicates")
    assert exact.stdout == "" and "0 groups of images with the same bytes" in exact.stderr
    as_json = cli(service.url, "duplicates", "--distance", "10", "--json")
    assert sorted(json.loads(line)["count"] for line in as_json.stdout.splitlines()) == [2, 2, 3]


def test_leaks_pair_near_copies_in_different_splits_only(client, service):
    splits = {
        "astronaut": "train",
        "astronaut_half": "train",
        "astronaut_q50": "test",
        "coffee": "train",
        "rocket": "test",
    }
    stored = store(
        client,
        {name: f"{split}/{name}.jpg" for name, split in splits.items()},
        {name: {"split": split} for name, split in splits.items()},
    )
    pairs = list(client.leaks("split", page_size=1))
    found = {frozenset((pair["a"]["file"], pair["b"]["file"])): pair for pair in pairs}
    # The two train copies agree: only the test copy pairs with each of them.
    assert set(found) == {
        frozenset(("train/astronaut.jpg", "test/astronaut_q50.jpg")),
        frozenset(("train/astronaut_half.jpg", "test/astronaut_q50.jpg")),
    }
    for pair in pairs:
        a, b = (stored[Path(side["file"]).stem] for side in (pair["a"], pair["b"]))
        assert (pair["a"]["_id"], pair["b"]["_id"]) == (a["_id"], b["_id"])
        assert {pair["a"]["value"], pair["b"]["value"]} == {"train", "test"}
        assert pair["distance"] == hamming(a["phash"], b["phash"])

    listed = cli(service.url, "leaks", "--field", "split")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 2
    assert all("test/astronaut_q50.jpg (split=test)" in line for line in listed.stdout.splitlines())
    assert "2 pairs of near-copies with different split" in listed.stderr
    client.update(stored["astronaut_q50"]["_id"], {"split": "train"})
    assert list(client.leaks("split")) == []
    mistyped = cli(service.url, "leaks", "--field", "splt")
    assert mistyped.returncode == 1
    assert "no image has a field 'splt'" in mistyped.stderr


def test_push_with_similar_skips_or_refuses_near_copies(client, service, tmp_path):
    original = store(client, {"astronaut": "kept/astronaut.jpg"})["astronaut"]
    tree = write_tree(
        tmp_path / "tree",
        {
            "astronaut_q50.jpg": "astronaut_q50",
            "small/astronaut_half.jpg": "astronaut_half",
            "coffee.jpg": "coffee",
        },
    )
    push = ["--no-progress", "push", str(tree), "--jobs", "1"]

    refused = cli(service.url, *push, "--on-duplicate", "reject", "--similar", "10")
    assert refused.returncode == 1
    assert outcome(refused.stdout) == {
        "uploaded": 1, "metadata updated": 0, "skipped": 0, "duplicates": 0, "failed": 2,
    }  # fmt: skip
    assert re.search(
        r"failed astronaut_q50\.jpg: 409: a near-copy is already stored as "
        r"kept/astronaut\.jpg \(distance \d+\)",
        refused.stderr,
    )
    assert {doc["file"] for doc in client.find()} == {"kept/astronaut.jpg", "coffee.jpg"}

    skipped = cli(service.url, *push, "--on-duplicate", "skip", "--similar", "10")
    assert skipped.returncode == 0, skipped.stderr
    assert outcome(skipped.stdout) == {
        "uploaded": 0, "metadata updated": 0, "skipped": 1, "duplicates": 2, "failed": 0,
    }  # fmt: skip
    assert (
        "duplicate small/astronaut_half.jpg: not stored, a near-copy of kept/astronaut.jpg"
        in skipped.stderr
    )
    assert client.count() == 2
    assert client.get(original["_id"])["sha256"] == original["sha256"]

    # Without --similar, a near-copy is other bytes: stored.
    exact_only = cli(service.url, *push, "--on-duplicate", "skip")
    assert exact_only.returncode == 0, exact_only.stderr
    assert outcome(exact_only.stdout)["uploaded"] == 2
    assert client.count() == 4

    alone = cli(service.url, *push, "--similar", "10")
    assert alone.returncode == 2
    assert "--similar goes with --on-duplicate" in alone.stderr
    too_far = cli(service.url, *push, "--on-duplicate", "skip", "--similar", "13")
    assert too_far.returncode == 2
    assert "13 is not a distance from 0 to 12" in too_far.stderr


def test_upload_similar_reject_and_skip(client):
    original = store(client, {"astronaut": "a/astronaut.jpg"})["astronaut"]
    with pytest.raises(Conflict) as error:
        client.upload(pictures()["astronaut_half"], "b/half.jpg", on_duplicate="reject", similar=10)
    assert error.value.body["_id"] == original["_id"]
    assert error.value.body["file"] == "a/astronaut.jpg"
    assert isinstance(error.value.body["distance"], int)
    kept = client.upload(
        pictures()["astronaut_half"], "b/half.jpg", on_duplicate="skip", similar=10
    )
    assert kept["_id"] == original["_id"]
    unrelated = client.upload(pictures()["coffee"], "c.jpg", on_duplicate="reject", similar=10)
    assert unrelated["file"] == "c.jpg"
    assert client.count() == 2


def test_check_leak_refuses_a_near_copy_in_another_split(client, service, tmp_path):
    tree = write_tree(
        tmp_path / "photos",
        {"train/astronaut.jpg": "astronaut", "train/astronaut_half.jpg": "astronaut_half"},
    )
    push = ["--no-progress", "push", str(tree), "--folders-as", "split", "--jobs", "1"]
    first = cli(service.url, *push, "--check-leak", "split")
    assert first.returncode == 0, first.stderr  # near-copies within one split are no leak
    assert outcome(first.stdout)["uploaded"] == 2

    write_tree(tree, {"test/astronaut_q50.jpg": "astronaut_q50", "test/coffee.jpg": "coffee"})
    second = cli(service.url, *push, "--check-leak", "split")
    assert second.returncode == 1
    assert outcome(second.stdout) == {
        "uploaded": 1, "metadata updated": 0, "skipped": 2, "duplicates": 0, "failed": 1,
    }  # fmt: skip
    assert re.search(
        r"failed test/astronaut_q50\.jpg: 409: a near-copy is stored as "
        r"train/astronaut(_half)?\.jpg \(distance \d+\) with split=train",
        second.stderr,
    ), second.stderr
    assert "test/astronaut_q50.jpg" not in {doc["file"] for doc in client.find()}

    with pytest.raises(Conflict) as error:
        client.upload(
            pictures()["astronaut_q50"], "x.jpg", {"split": "validation"}, check_leak="split"
        )
    assert error.value.body["field"] == "split"
    assert error.value.body["value"] == "train"
    assert error.value.body["file"].startswith("train/astronaut")
    same_split = client.upload(
        pictures()["astronaut_q50"], "y.jpg", {"split": "train"}, check_leak="split"
    )
    assert same_split["file"] == "y.jpg"


def test_import_with_similar_leaves_near_copies_out(client, service, tmp_path):
    store(client, {"astronaut_q50": "q50.jpg", "coffee": "coffee.jpg"})
    archive = tmp_path / "all.zip"
    client.export(archive)
    client.delete_many(all=True)
    kept = store(client, {"astronaut": "elsewhere/astronaut.jpg"})["astronaut"]
    result = cli(service.url, "import", str(archive), "--on-duplicate", "skip", "--similar", "10")
    assert result.returncode == 0, result.stderr
    assert "1 imported, 0 skipped, 1 duplicates" in result.stdout
    assert f"duplicate q50.jpg: stored as {kept['file']}" in result.stderr
    assert sorted(doc["file"] for doc in client.find()) == ["coffee.jpg", "elsewhere/astronaut.jpg"]


def test_distances_are_checked_before_anything_is_sent(capsys):
    for argv in (["similar", "x", "--distance", "-1"], ["duplicates", "--distance", "13"]):
        with pytest.raises(SystemExit) as exit:
            parse_arguments(argv)
        assert exit.value.code == 2
        assert "is not a distance from 0 to 12" in capsys.readouterr().err
    assert parse_arguments(["leaks", "--field", "split", "--distance", "0"]).distance == 0


def test_a_picture_without_a_hash_is_unprocessable_and_either_error_key_is_read():
    error = error_for(httpx.Response(422, json={"detail": "Image x has no perceptual hash"}))
    assert isinstance(error, Unprocessable)
    assert error.detail == "Image x has no perceptual hash"
    assert error_for(httpx.Response(400, json={"error": "bad distance"})).detail == "bad distance"
