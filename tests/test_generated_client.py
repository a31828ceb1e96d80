"""A Python client generated from the served `/docs/schema` by openapi-python-client works.

The client is generated into a temporary directory with the config docs/api.md gives
(docs/openapi-python-client.yaml), imported, and used against a running `manage.py serve`:
everything a user of the schema does first, each answer parsed into the schema's types.
"""

from __future__ import annotations

import importlib
import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from tests.helpers import REPO_ROOT, image_bytes

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses

CONFIG = REPO_ROOT / "docs" / "openapi-python-client.yaml"
PACKAGE = "imagestore_openapi"  # as the config names it
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


def generate(schema_url: str, into: Path) -> None:
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--url",
            schema_url,
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(into / PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The generator reports what it could not turn into code; nothing may be left out.
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.fixture
def generated(start_server, tmp_path, monkeypatch) -> Iterator[tuple[ModuleType, str]]:
    """The generated package, imported, and the served API's URL."""
    api = start_server().url
    generate(f"{api}/docs/schema", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_generated()
    yield importlib.import_module(PACKAGE), api
    forget_generated()


def forget_generated() -> None:
    """Unimport the generated package: each test generates its own."""
    for name in [n for n in sys.modules if n.split(".")[0] == PACKAGE]:
        del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_generated_client_uploads_lists_edits_downloads_and_exports(generated):
    package, api = generated
    client = package.Client(base_url=api, raise_on_unexpected_status=True)
    images = "api.images"
    models = module("models")
    types = module("types")

    # Upload, with metadata and with an empty Metadata box.
    create = module(f"{images}.images_create")
    jpeg = image_bytes(size=(64, 48))
    uploaded = []
    for name, data in (("cam1/a.jpg", '{"camera": "cam1"}'), ("cam2/b.jpg", "null")):
        body = models.ImageUploadRequest(
            image=types.File(payload=io.BytesIO(jpeg), file_name="x.jpg", mime_type="image/jpeg"),
            file=name,
            data=data,
        )
        image = create.sync(client=client, body=body)
        assert isinstance(image, models.Image), image
        uploaded.append(image)
    first, second = uploaded
    assert first.file == "cam1/a.jpg" and first.data.to_dict() == {"camera": "cam1"}
    assert second.data.to_dict() == {} and first.width == 64

    # List: with a filter, with data keys, and with a projection that drops fields.
    listing = module(f"{images}.images_list")
    page = listing.sync(client=client, filter_=json.dumps({"data.camera": "cam1"}))
    assert [item.file for item in page.items] == ["cam1/a.jpg"] and page.total == 1
    by_key = listing.sync(client=client, data=models.ImagesListData.from_dict({"camera": "cam1"}))
    assert [item.field_id for item in by_key.items] == [first.field_id]
    selected = listing.sync(client=client, select="file", sort="file")
    assert [item.file for item in selected.items] == ["cam1/a.jpg", "cam2/b.jpg"]
    assert isinstance(selected.items[0].time, types.Unset) and selected.select == "file"
    plain = listing.sync(client=client)
    assert plain.total == 2

    # Get, PATCH, PUT.
    got = module(f"{images}.images_retrieve").sync(first.field_id, client=client)
    assert got.field_id == first.field_id and got.sha256 == first.sha256
    patch = module(f"{images}.images_partial_update")
    patched = patch.sync(
        first.field_id,
        client=client,
        body=models.ImagesPartialUpdateBody.from_dict({"label": "ok", "review": {"by": "me"}}),
    )
    assert patched.data.to_dict() == {"camera": "cam1", "label": "ok", "review": {"by": "me"}}
    put = module(f"{images}.images_update")
    replaced = put.sync(
        first.field_id, client=client, body=models.ImagesUpdateBody.from_dict({"camera": "cam9"})
    )
    assert replaced.data.to_dict() == {"camera": "cam9"}

    # Download, thumbnail, export: bytes.
    downloaded = module(f"{images}.images_image_retrieve").sync(first.field_id, client=client)
    assert downloaded.payload.read() == jpeg
    thumbnail = module(f"{images}.images_thumbnail_retrieve").sync(
        first.field_id, client=client, size=models.ImagesThumbnailRetrieveSize.VALUE_64
    )
    assert max(Image.open(io.BytesIO(thumbnail.payload.read())).size) == 64
    exported = module("api.export.export_retrieve").sync(client=client, ids=[first.field_id])
    with zipfile.ZipFile(io.BytesIO(exported.payload.read())) as archive:
        assert "cam1/a.jpg" in archive.namelist()
        documents = json.loads(archive.read("mongodb_data.json"))
    assert [d["data"] for d in documents] == [{"camera": "cam9"}]

    # Errors are typed too; delete.
    missing = module(f"{images}.images_retrieve").sync("0" * 24, client=client)
    assert isinstance(missing, models.Error) and missing.detail
    deleted = module(f"{images}.images_destroy").sync(first.field_id, client=client)
    assert deleted.field_id == first.field_id
    assert listing.sync(client=client).total == 1
