"""Thumbnails: `GET /images/<id>/thumbnail?size=256`, made with Pillow on first request.

A thumbnail is stored under the reserved prefix, named by the image's sha256, its size and
format (`.imagestore/thumbnails/<sha256>-256.jpg`): a re-upload with other bytes gets other
thumbnails, and the same bytes under two paths share theirs. Images stored before facts
existed (no sha256) are named by `_id` until `manage.py backfill_facts` runs.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from bson import ObjectId
from django.http import HttpResponse, StreamingHttpResponse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import content_disposition_header
from drf_spectacular.utils import OpenApiParameter
from PIL import Image, ImageOps, UnidentifiedImageError
from rest_framework import status
from rest_framework.exceptions import APIException, NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request

from images.exceptions import BadRequest, ImageNotFound
from images.paths import RESERVED_PREFIX
from images.query import ImageQuery
from images.repository import ImageRepository
from images.storage import FileStore, LocalFileStore, S3FileStore

THUMBNAIL_PREFIX = f"{RESERVED_PREFIX}/thumbnails"
SIZES = (64, 128, 256, 512)
DEFAULT_SIZE = 256
CACHE_CONTROL = "private, max-age=60"
# Sources from S3 are spooled to disk above this size before Pillow opens them.
SPOOL_IN_MEMORY = 8 * 1024 * 1024
S3_DELETE_BATCH = 1000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class OutputFormat:
    extension: str
    content_type: str
    pillow_format: str
    save_options: dict[str, Any]


JPEG = OutputFormat("jpg", "image/jpeg", "JPEG", {"quality": 85, "optimize": True})
WEBP = OutputFormat("webp", "image/webp", "WEBP", {"quality": 80, "method": 4})
FORMATS = (JPEG, WEBP)


SIZE_PARAMETER = OpenApiParameter(
    "size",
    int,
    description="Longest edge in pixels: " + ", ".join(str(size) for size in SIZES),
    default=DEFAULT_SIZE,
    enum=list(SIZES),
)


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """Image routes answer whatever `Accept` says (`image/webp` alone included): errors are JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


class NotAnImage(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "not_an_image"


# --- request parameters -----------------------------------------------------------------------
def parse_size(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_SIZE
    allowed = ", ".join(str(size) for size in SIZES)
    if raw not in {str(size) for size in SIZES}:
        raise BadRequest(f"Invalid size {raw!r}: allowed sizes are {allowed}")
    return int(raw)


def negotiate_format(accept: str | None) -> OutputFormat:
    """WebP when the client names it at least as willingly as JPEG; JPEG otherwise."""
    weights = _accept_weights(accept or "")
    webp = weights.get("image/webp", 0.0)
    jpeg = weights.get("image/jpeg", weights.get("image/*", weights.get("*/*", 0.0)))
    return WEBP if webp > 0 and webp >= jpeg else JPEG


def _accept_weights(accept: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        if not media_type:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        weights[media_type.lower()] = quality
    return weights


# --- storage keys -----------------------------------------------------------------------------
def _stem(document: dict[str, Any]) -> str:
    sha256 = document.get("sha256")
    if isinstance(sha256, str) and _SHA256.match(sha256):
        return sha256
    return f"id-{document['_id']}"


def thumbnail_key(document: dict[str, Any], size: int, output: OutputFormat) -> str:
    return f"{THUMBNAIL_PREFIX}/{_stem(document)}-{size}.{output.extension}"


def thumbnail_keys(document: dict[str, Any]) -> list[str]:
    """Every key a thumbnail of this document may have been stored at."""
    stems = {_stem(document), f"id-{document['_id']}"}
    return [
        f"{THUMBNAIL_PREFIX}/{stem}-{size}.{output.extension}"
        for stem in sorted(stems)
        for size in SIZES
        for output in FORMATS
    ]


# --- deletion ---------------------------------------------------------------------------------
def delete_thumbnails(files: FileStore, document: dict[str, Any]) -> None:
    """Remove the stored thumbnails of one image document (missing ones are fine)."""
    delete_keys(files, thumbnail_keys(document))


def thumbnail_keys_of_ids(repository: ImageRepository, image_ids: list[ObjectId]) -> list[str]:
    """The thumbnail keys of many images (ask before their documents are deleted)."""
    query = ImageQuery(filter={"_id": {"$in": image_ids}}, limit=0, projection={"sha256": 1})
    return [key for document in repository.find(query) for key in thumbnail_keys(document)]


def delete_keys(files: FileStore, keys: list[str]) -> None:
    if isinstance(files, S3FileStore):
        for start in range(0, len(keys), S3_DELETE_BATCH):
            objects = [{"Key": key} for key in keys[start : start + S3_DELETE_BATCH]]
            files.client.delete_objects(
                Bucket=files.bucket.name, Delete={"Objects": objects, "Quiet": True}
            )
        return
    for key in keys:
        files.delete(key)


# --- making one -------------------------------------------------------------------------------
def render_thumbnail(source: IO[bytes], size: int, output: OutputFormat) -> bytes:
    """The image in `source` scaled to fit a `size` by `size` square, encoded as `output`."""
    try:
        with Image.open(source) as image:
            image.draft("RGB", (size, size))
            picture = ImageOps.exif_transpose(_displayable(image))
            picture.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
            if output is JPEG:
                picture = _without_alpha(picture)
            buffer = io.BytesIO()
            picture.save(buffer, output.pillow_format, **output.save_options)
    except Image.DecompressionBombError:
        raise NotAnImage("The image is too large to make a thumbnail of") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        raise NotAnImage(
            f"The stored file is not a decodable image ({error.__class__.__name__})"
        ) from None
    return buffer.getvalue()


def _displayable(image: Image.Image) -> Image.Image:
    """8-bit RGB, RGBA or L: the modes thumbnails are scaled and encoded in."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode.startswith("I;16"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if mode in ("I", "F"):
        return _stretch(image)
    if mode in ("LA", "La", "PA", "RGBa") or (mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")


def _stretch(image: Image.Image) -> Image.Image:
    """32-bit integer or float pixels mapped linearly onto 0..255.

    Integers that fit 16 bits are scaled from 0..65535 (16-bit PNGs may open as "I"); other
    values are scaled from their own range.
    """
    low, high = image.getextrema()
    if image.mode == "I" and low >= 0 and high <= 65535:
        low, high = 0, 65535
    span = (high - low) or 1
    return image.convert("F").point(lambda value: (value - low) * 255.0 / span).convert("L")


def _without_alpha(image: Image.Image) -> Image.Image:
    """JPEG has no alpha: transparent pixels become white."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, image).convert("RGB")


# --- the response -----------------------------------------------------------------------------
def thumbnail_response(
    request: Request, repository: ImageRepository, files: FileStore, pk: str, image_id: ObjectId
) -> HttpResponse:
    size = parse_size(request.query_params.get("size"))
    output = negotiate_format(request.headers.get("Accept"))
    document = repository.get(image_id)
    if document is None:
        raise ImageNotFound(pk)
    stored = files.stat(document["file"])
    if stored is None:
        raise ImageNotFound(f"{pk} file")
    key = thumbnail_key(document, size, output)
    etag = _etag(document, stored.etag, size, output)
    headers = {
        "Content-Type": output.content_type,
        "ETag": etag,
        "Cache-Control": CACHE_CONTROL,
        "Content-Disposition": content_disposition_header(False, _download_name(document, key)),
    }
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return _with_headers(not_modified, headers)
    thumbnail = files.stat(key)
    if thumbnail is None:
        content = _make(files, document["file"], size, output)
        files.save(key, io.BytesIO(content))
        response = HttpResponse(b"" if request.method == "HEAD" else content)
        response["Content-Length"] = str(len(content))
        return _with_headers(response, headers)
    if request.method == "HEAD":
        response = HttpResponse()
    else:
        response = StreamingHttpResponse(files.read_chunks(key))
    response["Content-Length"] = str(thumbnail.size)
    return _with_headers(response, headers)


def _etag(document: dict[str, Any], file_etag: str, size: int, output: OutputFormat) -> str:
    """Content-derived for images with a sha256; else tied to the stored file's version."""
    stem = _stem(document)
    if stem.startswith("id-"):
        stem = f"{stem}-{file_etag.strip(chr(34))}"
    return f'"{stem}-{size}.{output.extension}"'


def _download_name(document: dict[str, Any], key: str) -> str:
    base = str(document["file"]).rsplit("/", 1)[-1].rsplit(".", 1)[0] or "thumbnail"
    return f"{base}-{key.rsplit('-', 1)[-1]}"


def _with_headers(response: HttpResponse, headers: dict[str, str]) -> HttpResponse:
    for name, value in headers.items():
        if response.status_code != 304 or name != "Content-Type":
            response[name] = value
    patch_vary_headers(response, ("Accept",))
    return response


def _make(files: FileStore, key: str, size: int, output: OutputFormat) -> bytes:
    if isinstance(files, LocalFileStore):
        with files.open(key) as source:
            return render_thumbnail(source, size, output)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spooled:
        _copy(files.read_chunks(key), spooled)
        spooled.seek(0)
        return render_thumbnail(spooled, size, output)


def _copy(chunks: Iterable[bytes], target: IO[bytes]) -> None:
    for chunk in chunks:
        target.write(chunk)
