"""GET/HEAD /images/<id>/image and /file on both backends: bytes, headers, Range, ETag."""

from __future__ import annotations

import os

import pytest

from images.store.files import LocalFileStore
from tests.helpers import noise_image, upload


@pytest.fixture
def stored(api, backend):
    content = noise_image(64, 64)
    body = upload(api, "x.png", content, file="myFolder/sub/myImage.png").json()
    return body["_id"], content


def read(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


@pytest.mark.parametrize("route", ["image", "file"])
def test_download_whole_file(api, stored, route):
    image_id, content = stored
    response = api.get(f"/images/{image_id}/{route}")
    assert response.status_code == 200
    assert read(response) == content
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="myImage.png"'
    assert response["Content-Length"] == str(len(content))
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] and response["Last-Modified"]


def test_head_has_headers_and_no_body(api, stored):
    image_id, content = stored
    response = api.head(f"/images/{image_id}/image")
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(content))
    assert read(response) == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, None),
        ("bytes=-5", -5, None),
        ("bytes=5-100000000", 5, None),
    ],
)
def test_range_gives_206(api, stored, header, start, end):
    image_id, content = stored
    response = api.get(f"/images/{image_id}/image", HTTP_RANGE=header)
    assert response.status_code == 206
    expected = content[start:] if end is None else content[start : end + 1]
    assert read(response) == expected
    first = start if start >= 0 else len(content) + start
    assert response["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(content)}"


def test_range_past_the_end_is_416(api, stored):
    image_id, content = stored
    response = api.get(f"/images/{image_id}/image", HTTP_RANGE=f"bytes={len(content)}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(content)}"


def test_malformed_range_sends_the_whole_file(api, stored):
    image_id, content = stored
    response = api.get(f"/images/{image_id}/image", HTTP_RANGE="bytes=0-1,5-6")
    assert response.status_code == 200
    assert read(response) == content


def test_etag_revalidation_gives_304(api, stored):
    image_id, _ = stored
    etag = api.get(f"/images/{image_id}/image")["ETag"]
    response = api.get(f"/images/{image_id}/image", HTTP_IF_NONE_MATCH=etag)
    assert response.status_code == 304
    assert read(response) == b""
    assert api.get(f"/images/{image_id}/image", HTTP_IF_NONE_MATCH='"other"').status_code == 200


def test_unknown_invalid_and_missing_file(api, stored, uploads, backend):
    image_id, _ = stored
    assert api.get("/images/64b0000000000000000000aa/image").status_code == 404
    assert api.get("/images/zzz/image").status_code == 400
    from images.store.files import get_file_store

    get_file_store().delete("myFolder/sub/myImage.png")
    response = api.get(f"/images/{image_id}/image")
    assert response.status_code == 404
    assert response.json()["detail"]


def test_s3_download_is_streamed_not_buffered(api, s3_bucket):
    content = noise_image(64, 64)
    image_id = upload(api, "x.png", content).json()["_id"]
    response = api.get(f"/images/{image_id}/image")
    assert response.streaming
    assert read(response) == content


def test_s3_presigned_redirect(api, s3_bucket, settings):
    import requests

    settings.S3_PRESIGNED_DOWNLOADS = True
    content = noise_image(16, 16)
    image_id = upload(api, "x.png", content).json()["_id"]
    response = api.get(f"/images/{image_id}/image")
    assert response.status_code == 307
    assert requests.get(response["Location"], timeout=10).content == content


# --- a file replaced while it is read, and no file left open -------------------------------------
@pytest.fixture
def replaced_after_lookup(api, uploads, monkeypatch):
    """An image whose file is replaced (as an upload does, by rename) right after the service
    first looks it up: its stat, or its open."""
    first, second = noise_image(64, 64), noise_image(96, 96)
    image_id = upload(api, "r.png", first, file="r.png").json()["_id"]
    swapped: list[bool] = []

    def after(method):
        def looked_up(store, key, *arguments, **options):
            result = method(store, key, *arguments, **options)
            if key == "r.png" and not swapped:
                swapped.append(True)
                (uploads / ".swap").write_bytes(second)
                os.replace(uploads / ".swap", uploads / "r.png")
            return result

        return looked_up

    monkeypatch.setattr(LocalFileStore, "stat", after(LocalFileStore.stat))
    monkeypatch.setattr(LocalFileStore, "open", after(LocalFileStore.open))
    return image_id, first, second


def test_headers_describe_the_bytes_sent_when_the_file_is_replaced_meanwhile(
    api, replaced_after_lookup
):
    image_id, first, second = replaced_after_lookup
    response = api.get(f"/images/{image_id}/image")
    body = b"".join(response.streaming_content)
    assert int(response["Content-Length"]) == len(body)
    assert body in (first, second)
    assert response["ETag"].startswith(f'"{len(body):x}-')  # the ETag names the size sent


def test_a_range_is_of_the_file_its_total_describes_when_replaced_meanwhile(
    api, replaced_after_lookup
):
    image_id, first, second = replaced_after_lookup
    response = api.get(f"/images/{image_id}/image", HTTP_RANGE="bytes=-10")
    body = b"".join(response.streaming_content)
    total = int(response["Content-Range"].rsplit("/", 1)[1])
    assert body == (first if total == len(first) else second)[-10:]


def test_no_file_is_left_open_by_any_answer(api, stored, monkeypatch):
    image_id, _ = stored
    etag = api.head(f"/images/{image_id}/image")["ETag"]
    opened = []
    real_open = LocalFileStore.open

    def recorded(store, key):
        handle = real_open(store, key)
        opened.append(handle)
        return handle

    monkeypatch.setattr(LocalFileStore, "open", recorded)
    for headers in (
        {"HTTP_IF_NONE_MATCH": etag},
        {"HTTP_RANGE": "bytes=999999-"},
        {"HTTP_RANGE": "bytes=0-3"},
        {},
    ):
        response = api.get(f"/images/{image_id}/image", **headers)
        assert response.status_code in (200, 206, 304, 416)
        response.close()
    api.head(f"/images/{image_id}/image").close()
    assert all(handle.closed for handle in opened)
