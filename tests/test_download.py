"""GET/HEAD /images/<id>/image and /file on both backends: bytes, headers, Range, ETag."""

from __future__ import annotations

import pytest

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
    from images.storage import get_file_store

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
