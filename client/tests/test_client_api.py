"""The Python API against a real service: documents, paging, files, samples, errors, retries."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile

import pytest
from conftest import FaultyProxy, image_bytes

from images.runtime.embedded_db import free_port
from imagestore_client import (
    BadRequest,
    Client,
    ConnectionFailed,
    IntegrityError,
    NotFound,
    RetryPolicy,
    ServiceUnavailable,
)
from imagestore_client.samples import prefetch_samples

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


@pytest.fixture
def thirty(client) -> list[dict]:
    return [
        client.upload(
            image_bytes(i), f"set/{i:02d}.png", {"n": i, "parity": "odd" if i % 2 else "even"}
        )
        for i in range(30)
    ]


def test_upload_from_a_path_bytes_and_a_file_object(client, tmp_path):
    path = tmp_path / "from-disk.png"
    path.write_bytes(image_bytes(1))
    from_path = client.upload(path, data={"k": "v"})
    assert from_path["file"] == "from-disk.png"
    assert from_path["data"] == {"k": "v"}
    when = dt.datetime(2025, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    from_bytes = client.upload(image_bytes(2), "b/two.png", {"nested": {"a": [1, 2]}}, time=when)
    assert from_bytes["time"] == "2025-05-06T07:08:09.000Z"
    assert from_bytes["data"] == {"nested": {"a": [1, 2]}}
    handle = io.BytesIO(image_bytes(3))
    handle.name = "three.png"
    assert client.upload(handle)["file"] == "three.png"
    assert from_bytes["sha256"] == hashlib.sha256(image_bytes(2)).hexdigest()


def test_find_pages_through_every_match(client, thirty):
    found = list(client.find(page_size=7, parity="odd"))
    assert sorted(d["data"]["n"] for d in found) == list(range(1, 30, 2))
    assert len({d["_id"] for d in found}) == 15
    by_file = [d["file"] for d in client.find(page_size=4, sort="file", order="desc")]
    assert by_file == sorted((d["file"] for d in thirty), reverse=True)
    limited = list(client.find(page_size=4, sort="file", skip=3, limit=9))
    assert [d["file"] for d in limited] == sorted(d["file"] for d in thirty)[3:12]
    filtered = list(client.find(page_size=5, filter={"data.n": {"$gte": 20}}, parity="even"))
    assert sorted(d["data"]["n"] for d in filtered) == [20, 22, 24, 26, 28]
    assert client.count(parity="even") == 15


def test_get_update_replace_and_delete(client, thirty):
    image_id = thirty[0]["_id"]
    assert client.get(image_id)["file"] == "set/00.png"
    updated = client.update(image_id, {"label": "cat", "deep.key": 1}, unset=["parity"])
    assert updated["data"] == {"n": 0, "label": "cat", "deep": {"key": 1}}
    assert client.replace(image_id, {"only": True})["data"] == {"only": True}
    client.delete(image_id)
    with pytest.raises(NotFound) as error:
        client.get(image_id)
    assert error.value.status == 404
    assert image_id in error.value.detail


def test_bulk_update_and_delete_need_a_query(client, thirty):
    result = client.update_many({"checked": "yes"}, parity="odd")
    assert result["matchedCount"] == 15
    assert client.count(checked="yes") == 15
    assert client.delete_many(parity="odd") == 15
    with pytest.raises(ValueError, match="all=True"):
        client.delete_many()
    assert client.count() == 15
    assert client.delete_many(all=True) == 15


def test_typed_errors_carry_the_service_detail(client):
    with pytest.raises(BadRequest) as error:
        list(client.find(filter={"$where": "1"}))
    assert error.value.status == 400
    assert "$where" in error.value.detail
    with pytest.raises(BadRequest, match="not a decodable image"):
        client.upload(b"not an image", "x.jpg")
    with pytest.raises(NotFound):
        client.get("0123456789abcdef01234567")


def test_download_verifies_the_sha256(client, tmp_path):
    document = client.upload(image_bytes(5), "five.png")
    assert client.download(document["_id"]) == image_bytes(5)
    written = client.download(document, tmp_path / "out" / "five.png")
    assert written.read_bytes() == image_bytes(5)
    tampered = {**document, "sha256": "0" * 64}
    with pytest.raises(IntegrityError):
        client.download(tampered, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary file left


def test_iter_samples_yields_documents_and_bytes_in_order(client, thirty):
    samples = list(client.iter_samples(prefetch=4, workers=3, sort="file"))
    assert [doc["file"] for doc, _ in samples] == sorted(d["file"] for d in thirty)
    for document, content in samples:
        assert content == image_bytes(document["data"]["n"])


def test_iter_samples_shards_are_disjoint_and_complete(client, thirty):
    parts = [
        [doc["file"] for doc, _ in client.iter_samples(shard=(index, 3), sort="file")]
        for index in range(3)
    ]
    assert [len(part) for part in parts] == [10, 10, 10]
    assert sorted(f for part in parts for f in part) == sorted(d["file"] for d in thirty)
    with pytest.raises(ValueError, match="shard"):
        client.iter_samples(shard=(3, 3))


def shuffled_files(client, seed: int, **query) -> list[str]:
    return [doc["file"] for doc, _ in client.iter_samples(shuffle=seed, **query)]


def test_iter_samples_shuffle_is_reproducible_and_differs_by_seed(client, thirty, monkeypatch):
    monkeypatch.setattr("imagestore_client.shuffle.FETCH_BATCH", 7)  # several fetches
    first = shuffled_files(client, 1)
    assert first == shuffled_files(client, 1)
    assert sorted(first) == sorted(d["file"] for d in thirty)
    orders = {tuple(shuffled_files(client, seed)) for seed in (1, 2, 3)}
    assert len(orders) == 3
    assert first != sorted(first)
    with pytest.raises(ValueError, match="shuffle"):
        client.iter_samples(shuffle=1, sort="file")


def test_iter_samples_shuffled_shards_split_the_shuffled_order(client, thirty):
    whole = shuffled_files(client, 42, parity="odd")
    parts = [
        [doc["file"] for doc, _ in client.iter_samples(shard=(index, 4), shuffle=42, parity="odd")]
        for index in range(4)
    ]
    assert parts == [whole[index::4] for index in range(4)]
    assert sorted(name for part in parts for name in part) == sorted(whole)
    assert len(set(whole)) == len(whole) == 15


def test_prefetch_holds_at_most_prefetch_files_ahead():
    fetched: list[int] = []

    def fetch(document):
        fetched.append(document["n"])
        return b""

    samples = prefetch_samples(({"n": i} for i in range(100)), fetch, 5, 2)
    for consumed, _ in enumerate(samples, start=1):
        assert len(fetched) <= consumed + 5
        if consumed == 10:
            break
    assert len(fetched) <= 16


def test_export_and_import_archive_round_trip(client, thirty, tmp_path):
    archive = tmp_path / "odd.zip"
    result = client.export(archive, parity="odd")
    assert result["bytes"] == archive.stat().st_size
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    assert {f"set/{i:02d}.png" for i in range(1, 30, 2)} <= names
    client.delete_many(all=True)
    imported = client.import_archive(archive, data={"batch": "again"})
    assert imported["imported"] == 15
    assert client.count(batch="again") == 15


def test_retries_503_and_dropped_connections_then_succeeds(client, service):
    faults = {1: "503", 2: "drop", 3: "503"}
    proxy = FaultyProxy(service.url, lambda method, path, n: faults.get(n))
    try:
        with Client(proxy.url, retry=RetryPolicy(attempts=4, base=0.01)) as flaky:
            document = flaky.upload(image_bytes(9), "retried.png")
    finally:
        proxy.stop()
    assert [kind for _, _, kind in proxy.faults] == ["503", "drop", "503"]
    assert client.get(document["_id"])["file"] == "retried.png"
    assert client.count() == 1


def test_gives_up_after_the_attempts_with_a_typed_error(service):
    proxy = FaultyProxy(service.url, lambda method, path, n: "503")
    try:
        busy = Client(proxy.url, retry=RetryPolicy(attempts=3, base=0.01))
        with busy, pytest.raises(ServiceUnavailable, match="busy"):
            busy.count()
    finally:
        proxy.stop()
    assert proxy.requests == 3
    with (
        Client(
            f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=2, base=0.01)
        ) as nowhere,
        pytest.raises(ConnectionFailed),
    ):
        nowhere.info()
