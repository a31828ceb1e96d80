"""Bad input of every kind: a 4xx JSON error naming the problem, the service up, nothing touched."""

from __future__ import annotations

import io

import pytest
from django.test import Client

from tests.helpers import image_bytes, upload


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    """A raw multipart body (lets a test send what no well-behaved client library would)."""
    chunks = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename.encode("utf-8", "surrogateescape") + b'"'
        chunks.append(b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disposition)
        if filename is not None:
            chunks.append(b"\r\nContent-Type: application/octet-stream")
        chunks.append(b"\r\n\r\n" + content + b"\r\n")
    chunks.append(b"--" + boundary.encode() + b"--\r\n")
    return b"".join(chunks)


def post_raw(client: Client, body: bytes, boundary: str = "XyZ"):
    return client.generic(
        "POST", "/images", body, content_type=f"multipart/form-data; boundary={boundary}"
    )


@pytest.fixture
def client() -> Client:
    return Client()


def assert_json_4xx(response, status: int | None = None) -> str:
    assert 400 <= response.status_code < 500, response.status_code
    if status is not None:
        assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    detail = response.json()["detail"]
    assert detail and "Traceback" not in detail and "/work" not in detail
    return detail


@pytest.mark.parametrize("position", ["before", "after"])
@pytest.mark.parametrize("value", [b"{bad", b"5", b"[1,2]", b'"abc"', b"", b"nul"])
def test_malformed_json_field_before_or_after_the_file(client, uploads, position, value):
    fields = [("json", None, value)]
    file = [("image", "x.jpg", image_bytes())]
    body = multipart(fields + file if position == "before" else file + fields)
    assert "json" in assert_json_4xx(post_raw(client, body), 400)
    assert list(uploads.iterdir()) == []


def test_duplicate_image_parts(client, uploads):
    body = multipart([("image", "a.jpg", image_bytes()), ("image", "b.jpg", image_bytes())])
    assert_json_4xx(post_raw(client, body), 400)
    assert list(uploads.iterdir()) == []


def test_non_utf8_and_nul_file_names(client, uploads):
    # Django's parser drops a part whose file name is not UTF-8: the upload has no file.
    invalid = multipart([("image", "caf\udce9.jpg", image_bytes())])
    assert_json_4xx(post_raw(client, invalid), 400)
    assert list(uploads.iterdir()) == []
    # NUL bytes are removed from file names by the parser before they reach a path.
    nul = multipart([("image", "a\x00b.jpg", image_bytes())])
    assert post_raw(client, nul).json()["file"] == "ab.jpg"


def test_two_megabyte_form_field_is_refused(client, uploads):
    body = multipart([("big", None, b"x" * (3 * 1024 * 1024)), ("image", "x.jpg", image_bytes())])
    assert_json_4xx(post_raw(client, body), 413)
    assert list(uploads.iterdir()) == []


def test_ten_thousand_form_fields_are_refused(client, uploads):
    fields = [(f"f{i}", None, b"v") for i in range(10_000)]
    body = multipart([*fields, ("image", "x.jpg", image_bytes())])
    assert "fields" in assert_json_4xx(post_raw(client, body), 400)
    assert list(uploads.iterdir()) == []


def test_too_many_files_are_refused(client, uploads):
    files = [(f"image{i}", f"{i}.jpg", image_bytes()) for i in range(20)]
    assert_json_4xx(post_raw(client, multipart(files)), 400)


def test_field_names_with_dollar_or_dot_are_refused_not_run(api, collection):
    for fields in ({"$where": "1"}, {"a.b": "c"}, {"json": '{"$gt": 1}'}):
        response = upload(api, **fields)
        assert_json_4xx(response, 400)
    assert collection.count_documents({}) == 0


def test_decompression_bomb_is_refused(api, uploads):
    # A PNG header declaring 30000 x 30000 pixels, whatever its real content.
    bomb = io.BytesIO()
    from PIL import Image

    Image.new("1", (30000, 30000)).save(bomb, "PNG")
    response = upload(api, "bomb.png", bomb.getvalue())
    assert "too large" in assert_json_4xx(response, 400)
    assert list(uploads.iterdir()) == []


def test_json_body_over_the_size_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    response = api.patch("/images?all=true", {"x": "y" * 20_000}, format="json")
    assert_json_4xx(response, 413)


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND"])
def test_unknown_methods_are_405(client, method):
    response = client.generic(method, "/images")
    assert response.status_code == 405


def test_catastrophic_regex_is_bounded(api):
    upload(api, "a.jpg")
    response = api.get("/images", {"filter": '{"file": {"$regex": "' + "(a+)+" * 200 + '$"}}'})
    assert "512" in assert_json_4xx(response, 400)


@pytest.mark.parametrize(
    "body",
    ["[1, 2]", "3", '"text"', "true", "null"],
)
def test_json_bodies_that_are_not_objects(api, body):
    image = upload(api, "a.jpg").json()
    for method, url in (
        ("patch", "/images"),
        ("patch", f"/images/{image['_id']}"),
        ("put", f"/images/{image['_id']}"),
    ):
        response = getattr(api, method)(url, body, content_type="application/json")
        assert_json_4xx(response, 400)
    assert api.get(f"/images/{image['_id']}").json() == image


def test_service_still_answers_after_bad_input(api, client):
    post_raw(client, multipart([("json", None, b"{bad"), ("image", "x.jpg", image_bytes())]))
    assert upload(api, "fine.jpg").status_code == 200


def test_numbers_beyond_64_bits_are_refused(api):
    image = upload(api, "a.jpg").json()
    response = api.patch(
        f"/images/{image['_id']}", '{"n": 99999999999999999999999}', content_type="application/json"
    )
    assert "64 bits" in assert_json_4xx(response, 400)
