"""`imagestore export` and `import`: training formats, WebDataset shards read back by `webdataset`."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
import webdataset
from conftest import cli, image_bytes

from imagestore_client.shards import write_shards

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


@pytest.fixture
def twelve(client) -> dict[str, dict]:
    documents = {}
    for index in range(12):
        label = ("cat", "dog", None)[index % 3]
        data = {"n": index, **({"label": label} if label else {})}
        document = client.upload(image_bytes(index), f"cam/{index:02d}.png", data)
        documents[document["_id"]] = document
    return documents


def test_webdataset_shards_are_read_back_by_webdataset(client, service, twelve, tmp_path):
    out = tmp_path / "shards"
    (out).mkdir()
    (out / "shard-000009.tar").write_bytes(b"left by an earlier export")
    result = cli(service.url, "export", str(out), "--format", "webdataset", "--shard-size", "5")
    assert result.returncode == 0, result.stderr
    assert "12 samples in 3 shards" in result.stdout
    shards = sorted(p.name for p in out.iterdir())
    assert shards == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    per_shard = []
    seen = {}
    for shard in shards:
        samples = list(webdataset.WebDataset(str(out / shard), shardshuffle=False))
        per_shard.append(len(samples))
        for sample in samples:
            document = json.loads(sample["json"])
            seen[sample["__key__"]] = document
            assert sample["jpg"] == image_bytes(document["data"]["n"])
    assert per_shard == [5, 5, 2]
    assert set(seen) == set(twelve)
    assert all(seen[key]["file"] == twelve[key]["file"] for key in seen)


def test_webdataset_without_shards_and_other_formats(client, service, twelve, tmp_path):
    tar_path = tmp_path / "all.tar"
    assert cli(service.url, "export", str(tar_path), "--format", "webdataset").returncode == 0
    assert len(list(webdataset.WebDataset(str(tar_path), shardshuffle=False))) == 12

    folder = tmp_path / "folder.zip"
    result = cli(service.url, "export", str(folder), "--format", "imagefolder", "--by", "label")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(folder) as archive:
        names = set(archive.namelist())
    assert "cat/00.png" in names and "_unlabelled/02.png" in names and "metadata.jsonl" in names

    lines = tmp_path / "docs.jsonl"
    assert cli(service.url, "export", str(lines), "--format", "jsonl", "label=dog").returncode == 0
    assert sorted(json.loads(line)["data"]["n"] for line in lines.read_text().splitlines()) == [
        1, 4, 7, 10,
    ]  # fmt: skip


def test_export_zip_then_import_with_metadata(client, service, twelve, tmp_path):
    archive = tmp_path / "cats.zip"
    assert cli(service.url, "export", str(archive), "label=cat").returncode == 0
    client.delete_many(all=True)
    result = cli(service.url, "import", str(archive), "--meta", "batch=b2")
    assert result.returncode == 0, result.stderr
    assert "4 imported, 0 skipped, 0 duplicates" in result.stdout
    assert client.count(batch="b2", label="cat") == 4


def test_shard_size_needs_the_webdataset_format(service, tmp_path):
    result = cli(service.url, "export", str(tmp_path / "x"), "--format", "zip", "--shard-size", "3")
    assert result.returncode == 2


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_shards_keep_samples_whole_and_notes_uncounted(tmp_path):
    samples = [("a.jpg", b"1"), ("a.json", b"{}"), ("b.jpg", b"2"), ("b.json", b"{}")]
    samples += [("c.png", b"3"), ("c.json", b"{}")]
    raw = _tar([*samples, ("__imagestore__/missing_files.json", b"[]")])
    chunks = [raw[i : i + 700] for i in range(0, len(raw), 700)]  # odd chunk boundaries
    shards = write_shards(chunks, tmp_path, 2)
    assert [(p.name, n) for p, n in shards] == [("shard-000000.tar", 2), ("shard-000001.tar", 1)]
    with tarfile.open(shards[0][0]) as first, tarfile.open(shards[1][0]) as second:
        assert first.getnames() == ["a.jpg", "a.json", "b.jpg", "b.json"]
        assert second.getnames() == ["c.png", "c.json", "__imagestore__/missing_files.json"]
        assert second.extractfile("c.png").read() == b"3"


def test_a_broken_stream_leaves_no_partial_shard(tmp_path):
    raw = _tar([("a.jpg", b"1" * 5000), ("a.json", b"{}")])
    with pytest.raises(tarfile.TarError):
        write_shards([raw[:3000]], tmp_path, 1)
    assert list(tmp_path.iterdir()) == []
