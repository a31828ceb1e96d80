"""GET/HEAD /images/<id>/thumbnail: formats and modes, Accept, sizes, caching, deletion, scope."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from images.thumbnails import negotiate_format
from tests.helpers import image_bytes, s3_client, upload
from tests.samples import SAMPLES, rotated_jpeg

THUMBNAILS = ".imagestore/thumbnails"
BROWSER_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


def read(response) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return response.content


def decode(response) -> Image.Image:
    image = Image.open(io.BytesIO(read(response)))
    image.load()
    return image


def stored_thumbnails(uploads) -> list[str]:
    folder = uploads / THUMBNAILS
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    ("name", "size", "expected_size"),
    [
        ("photo.jpg", 256, (256, 192)),
        ("alpha.png", 128, (128, 85)),
        ("depth.png", 64, (64, 32)),
        ("scan.tiff", 256, (64, 256)),
        ("web.webp", 512, (512, 512)),
    ],
)
@pytest.mark.parametrize(("accept", "fmt"), [("", "JPEG"), ("image/webp", "WEBP")])
def test_each_format_gets_a_thumbnail(api, uploads, name, size, expected_size, accept, fmt):
    sample = SAMPLES[name]
    body = upload(api, name, sample.content).json()
    response = api.get(f"/images/{body['_id']}/thumbnail?size={size}", HTTP_ACCEPT=accept)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == f"image/{fmt.lower()}"
    thumbnail = decode(response)
    assert thumbnail.format == fmt
    assert thumbnail.size == expected_size
    extension = "jpg" if fmt == "JPEG" else "webp"
    assert stored_thumbnails(uploads) == [f"{body['sha256']}-{size}.{extension}"]


def test_thumbnail_never_enlarges(api):
    body = upload(api, "small.jpg", image_bytes(size=(32, 24))).json()
    assert decode(api.get(f"/images/{body['_id']}/thumbnail?size=512")).size == (32, 24)


def test_webp_keeps_alpha_and_jpeg_flattens_on_white(api):
    body = upload(api, "alpha.png", SAMPLES["alpha.png"].content).json()
    route = f"/images/{body['_id']}/thumbnail?size=128"
    webp = decode(api.get(route, HTTP_ACCEPT="image/webp"))
    assert webp.mode == "RGBA"
    assert webp.getpixel((5, 40))[3] == 0
    assert webp.getpixel((120, 40))[3] == 255
    jpeg = decode(api.get(route, HTTP_ACCEPT="image/jpeg"))
    assert jpeg.mode == "RGB"
    assert all(channel > 240 for channel in jpeg.getpixel((5, 40)))
    red, green, blue = jpeg.getpixel((120, 40))
    assert blue > 200 and red < 40 and green < 40


def test_16_bit_grayscale_is_scaled_not_clipped(api):
    body = upload(api, "depth.png", SAMPLES["depth.png"].content).json()
    thumbnail = decode(api.get(f"/images/{body['_id']}/thumbnail?size=64"))
    assert thumbnail.mode == "L"
    # 40000 of 65535 is 156 of 255; clipping would give 255.
    assert abs(thumbnail.getpixel((10, 10)) - 156) <= 2


def test_exif_orientation_is_applied(api):
    body = upload(api, "turned.jpg", rotated_jpeg()).json()
    assert (body["width"], body["height"]) == (64, 32)
    assert decode(api.get(f"/images/{body['_id']}/thumbnail?size=64")).size == (32, 64)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "jpg"),
        ("", "jpg"),
        ("*/*", "jpg"),
        ("image/png", "jpg"),
        ("image/webp", "webp"),
        (BROWSER_ACCEPT, "webp"),
        ("image/webp;q=0.5, image/jpeg", "jpg"),
        ("image/jpeg;q=0.4, image/webp;q=0.9", "webp"),
        ("image/webp;q=0", "jpg"),
        ("image/webp;q=oops", "jpg"),
    ],
)
def test_accept_negotiation(accept, expected):
    assert negotiate_format(accept).extension == expected


def test_vary_accept_and_cache_headers(api):
    body = upload(api, "photo.jpg", SAMPLES["photo.jpg"].content).json()
    response = api.get(f"/images/{body['_id']}/thumbnail")
    assert response.status_code == 200
    assert decode(response).size == (256, 192)  # the default size
    assert "Accept" in response["Vary"]
    assert response["Cache-Control"] == "private, max-age=60"
    assert response["ETag"] == f'"{body["sha256"]}-256.jpg"'
    assert response["Content-Disposition"] == 'inline; filename="photo-256.jpg"'


@pytest.mark.parametrize("size", ["100", "abc", "-1", "0", "256.0", "1024", "\uff12\uff15\uff16"])
def test_bad_sizes_are_400(api, uploads, size):
    body = upload(api).json()
    response = api.get(f"/images/{body['_id']}/thumbnail", {"size": size})
    assert response.status_code == 400
    assert "64, 128, 256, 512" in response.json()["detail"]
    assert stored_thumbnails(uploads) == []


def test_unknown_malformed_and_missing(api, uploads):
    assert api.get("/images/0123456789abcdef01234567/thumbnail").status_code == 404
    assert api.get("/images/nope/thumbnail").status_code == 400
    body = upload(api, "gone.jpg").json()
    (uploads / "gone.jpg").unlink()
    response = api.get(f"/images/{body['_id']}/thumbnail")
    assert response.status_code == 404
    assert "detail" in response.json()


def test_a_stored_file_that_is_not_an_image_is_422(api, settings):
    settings.ALLOW_NON_IMAGES = True
    body = upload(api, "notes.txt", b"plain text, not pixels").json()
    response = api.get(f"/images/{body['_id']}/thumbnail")
    assert response.status_code == 422
    assert "not a decodable image" in response.json()["detail"]


def test_second_request_is_served_from_storage_and_revalidates(api, uploads):
    body = upload(api, "photo.jpg", SAMPLES["photo.jpg"].content).json()
    route = f"/images/{body['_id']}/thumbnail?size=128"
    first = api.get(route)
    stored = uploads / THUMBNAILS / f"{body['sha256']}-128.jpg"
    modified = stored.stat().st_mtime_ns
    second = api.get(route)
    assert read(second) == read(first) == stored.read_bytes()
    assert stored.stat().st_mtime_ns == modified
    assert second["Content-Length"] == str(stored.stat().st_size)
    not_modified = api.get(route, HTTP_IF_NONE_MATCH=first["ETag"])
    assert not_modified.status_code == 304
    assert not_modified["ETag"] == first["ETag"]
    head = api.head(route)
    assert head.status_code == 200 and read(head) == b""
    assert head["Content-Length"] == str(stored.stat().st_size)


def test_deleted_with_the_image(api, uploads):
    body = upload(api, "photo.jpg", SAMPLES["photo.jpg"].content).json()
    for size, accept in ((64, "image/jpeg"), (256, "image/webp")):
        api.get(f"/images/{body['_id']}/thumbnail?size={size}", HTTP_ACCEPT=accept)
    assert len(stored_thumbnails(uploads)) == 2
    assert api.delete(f"/images/{body['_id']}").status_code == 200
    assert stored_thumbnails(uploads) == []


def test_deleted_with_a_bulk_delete(api, uploads):
    kept = upload(api, "keep.jpg", image_bytes(color="blue"), camera="b").json()
    for index in range(3):
        color = (index * 60, 10, 10)
        upload(api, f"drop{index}.jpg", image_bytes(color=color), camera="a")
    listed = api.get("/images").json()["items"]
    for item in listed:
        api.get(f"/images/{item['_id']}/thumbnail?size=64")
    assert len(stored_thumbnails(uploads)) == 4
    assert api.delete("/images?camera=a").json()["deletedCount"] == 3
    assert stored_thumbnails(uploads) == [f"{kept['sha256']}-64.jpg"]


def test_reupload_with_other_bytes_gets_a_fresh_thumbnail(api):
    first = upload(api, "same.png", image_bytes("PNG", (100, 100), "red")).json()
    route = f"/images/{first['_id']}/thumbnail?size=64"
    assert decode(api.get(route)).getpixel((50, 50))[0] > 200
    second = upload(api, "same.png", image_bytes("PNG", (100, 100), "blue")).json()
    assert second["_id"] == first["_id"] and second["sha256"] != first["sha256"]
    red, _, blue = decode(api.get(route)).getpixel((50, 50))
    assert blue > 200 and red < 40


def test_on_s3_made_stored_served_and_deleted(api, s3_bucket, settings):
    client = s3_client(settings.S3_ENDPOINT)
    body = upload(api, "alpha.png", SAMPLES["alpha.png"].content, file="a/alpha.png").json()
    route = f"/images/{body['_id']}/thumbnail?size=128"
    made = api.get(route, HTTP_ACCEPT="image/webp")
    assert made.status_code == 200 and decode(made).mode == "RGBA"
    key = f"{THUMBNAILS}/{body['sha256']}-128.webp"
    listing = client.list_objects_v2(Bucket=s3_bucket, Prefix=THUMBNAILS)
    assert [item["Key"] for item in listing["Contents"]] == [key]
    again = api.get(route, HTTP_ACCEPT="image/webp")
    assert read(again) == read(made)
    assert api.delete(f"/images/{body['_id']}").status_code == 200
    assert client.list_objects_v2(Bucket=s3_bucket, Prefix=THUMBNAILS)["KeyCount"] == 0


def test_no_path_reaches_the_thumbnails(api):
    response = upload(api, "x.jpg", file=f"{THUMBNAILS}/abc-256.jpg")
    assert response.status_code == 400


def test_same_scope_as_the_file_route(api, oidc, settings):
    settings.IMAGE_SCOPE = "user"
    api.credentials(**oidc.auth("alice"))
    body = upload(api, "mine.jpg").json()
    route = f"/images/{body['_id']}/thumbnail"
    assert api.get(route).status_code == 200
    api.credentials(**oidc.auth("bob"))
    assert api.get(route).status_code == 404
    api.credentials()
    assert api.get(route).status_code == 401


def test_reupload_with_new_bytes_removes_the_old_thumbnails(api, uploads):
    first = upload(api, "a.png", image_bytes("PNG", color="red")).json()
    assert api.get(f"/images/{first['_id']}/thumbnail?size=64").status_code == 200
    old = [p for p in (uploads / ".imagestore" / "thumbnails").iterdir()]
    assert [p.name.split("-")[0] for p in old] == [first["sha256"]]
    second = upload(api, "a.png", image_bytes("PNG", color="blue")).json()
    assert second["_id"] == first["_id"] and second["sha256"] != first["sha256"]
    assert not any(p.exists() for p in old)
    unchanged = upload(api, "a.png", image_bytes("PNG", color="blue")).json()
    api.get(f"/images/{unchanged['_id']}/thumbnail?size=64")
    upload(api, "a.png", image_bytes("PNG", color="blue"))
    assert len(list((uploads / ".imagestore" / "thumbnails").iterdir())) == 1
