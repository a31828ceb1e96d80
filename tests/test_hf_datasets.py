"""The training exports read back by Hugging Face `datasets` (its `imagefolder` and
`webdataset` loaders) and by `webdataset`, on real photos (scikit-image's samples), offline."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import datasets
import pytest
import webdataset
from skimage import data as skimage_data

from tests.helpers import upload

PHOTOS = Path(skimage_data.__file__).parent
# (photo, data): labelled and unlabelled photos, PNG and JPEG, in three splits.
DATASET = [
    ("astronaut.png", {"label": "person", "split": "train", "camera": "nasa"}),
    ("camera.png", {"label": "person", "split": "train"}),
    ("chelsea.png", {"label": "cat", "split": "train", "breed": "tabby"}),
    ("coffee.png", {"split": "test", "camera": "kitchen"}),
    ("rocket.jpg", {"label": "vehicle", "split": "test", "note": "launch"}),
    ("retina.jpg", {"label": "eye", "split": "validation"}),
]
DATA_KEYS = {"label", "split", "camera", "breed", "note"}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture
def photos(api) -> dict[str, dict]:
    stored = {}
    for name, data in DATASET:
        response = upload(api, name, (PHOTOS / name).read_bytes(), json=json.dumps(data))
        assert response.status_code == 200, response.content
        stored[name] = response.json()
    return stored


def body(response) -> bytes:
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def unzipped(response, dest: Path) -> Path:
    zipfile.ZipFile(io.BytesIO(body(response))).extractall(dest)
    return dest


def load(tmp_path: Path, builder: str, **kwargs):
    return datasets.load_dataset(builder, cache_dir=str(tmp_path / "hf-cache"), **kwargs)


def test_imagefolder_by_split_and_label_loads_with_splits_and_labels(api, photos, tmp_path):
    folder = unzipped(api.get("/export?format=imagefolder&split=split&by=label"), tmp_path / "x")
    loaded = load(tmp_path, "imagefolder", data_dir=str(folder))
    assert sorted(loaded) == ["test", "train", "validation"]
    rows = {split: loaded[split].to_list() for split in loaded}
    for split, split_rows in rows.items():
        for row in split_rows:
            assert json.loads(row["data"]) == photos[row["file"]]["data"]
            assert row["data"] and json.loads(row["data"]).get("split") == split
    labels = {split: sorted(map(str, (r["label"] for r in rows[split]))) for split in rows}
    assert labels == {
        "train": ["cat", "person", "person"],
        "test": ["None", "vehicle"],
        "validation": ["eye"],
    }
    columns = {tuple(loaded[split].column_names) for split in loaded}
    assert len(columns) == 1
    assert {"image", "label", "_id", "file", "data", "format", "width"} <= set(columns.pop())
    astronaut = [r["file"] for r in rows["train"]].index("astronaut.png")
    assert loaded["train"][astronaut]["image"].size == (512, 512)


def test_imagefolder_by_label_loads_every_image_with_its_label(api, photos, tmp_path):
    folder = unzipped(api.get("/export?format=imagefolder&by=label"), tmp_path / "x")
    loaded = load(tmp_path, "imagefolder", data_dir=str(folder), split="train")
    assert loaded.num_rows == len(DATASET)
    assert {row["file"]: row["label"] for row in loaded.to_list()} == {
        name: data.get("label") for name, data in DATASET
    }


def test_label_values_of_different_types_are_refused_naming_them(api, tmp_path):
    for index, label in enumerate([3, "3", True, "true", 4]):
        response = upload(api, f"{index}.png", (PHOTOS / "camera.png").read_bytes(),
                          json=json.dumps({"label": label, "split": "train"}))  # fmt: skip
        assert response.status_code == 200
    response = api.get("/export?format=imagefolder&by=label")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(
        "Values of data.label would share a folder: '3' and 3; 'true' and true."
    )
    fine = api.get('/export?format=imagefolder&filter={"data.label": {"$type": "number"}}')
    assert fine.status_code == 200


def test_images_without_a_split_are_refused_with_their_count(api, photos):
    upload(api, "loose.png", (PHOTOS / "camera.png").read_bytes(), json='{"label": "x"}')
    upload(api, "odd.png", (PHOTOS / "camera.png").read_bytes(), json='{"split": "holdout"}')
    response = api.get("/export?format=imagefolder&split=split")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("1 selected images have no data.split")
    response = api.get('/export?format=imagefolder&split=split&filter={"data.label":"x"}')
    assert "have no data.split" in response.json()["detail"]
    response = api.get('/export?format=imagefolder&split=split&filter={"file":"odd.png"}')
    assert response.json()["detail"].endswith("got 'holdout'")


def test_webdataset_loads_in_datasets_with_one_image_key_and_every_json_key(api, photos, tmp_path):
    shard = tmp_path / "images.tar"
    shard.write_bytes(body(api.get("/export?format=webdataset")))
    loaded = load(tmp_path, "webdataset", data_files={"train": str(shard)}, split="train")
    assert loaded.num_rows == len(DATASET)
    assert set(loaded.column_names) == {"__key__", "__url__", "jpg", "json"}
    for row, (name, data) in zip(loaded, DATASET, strict=True):
        assert row["jpg"].size == (row["json"]["width"], row["json"]["height"])
        assert row["json"]["file"] == name
        assert set(row["json"]["data"]) == DATA_KEYS
        assert {k: v for k, v in row["json"]["data"].items() if v is not None} == data


def test_webdataset_reads_every_sample_with_jpg_and_json(api, photos, tmp_path):
    shard = tmp_path / "images.tar"
    shard.write_bytes(body(api.get("/export?format=webdataset")))
    samples = webdataset.WebDataset(str(shard), shardshuffle=False, empty_check=False)
    pairs = list(samples.decode("pil").to_tuple("jpg", "json"))
    assert [document["file"] for _, document in pairs] == [name for name, _ in DATASET]
    for image, document in pairs:
        assert image.size == (document["width"], document["height"])
