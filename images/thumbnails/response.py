"""`GET`/`HEAD /images/<id>/thumbnail`: a stored thumbnail, or one made, stored and answered.

Made once per key: concurrent requests for it wait for the first (images.thumbnails.gate) and
are then served what it stored. A thumbnail is stored only when the bytes it was made from hash
to the document's sha256 (images.thumbnails.source); otherwise (the file changed under its
document) it is answered, not stored, with `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, cast

from bson import ObjectId
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.cache import get_conditional_response, patch_vary_headers
from django.utils.http import content_disposition_header
from rest_framework.request import Request

from images.core.errors import ImageNotFound
from images.runtime.offload import run_off_loop
from images.store.files import FileStore
from images.store.repository import ImageRepository
from images.thumbnails.gate import GATE
from images.thumbnails.keys import OutputFormat, document_sha256, stem, thumbnail_key
from images.thumbnails.render import plan_decoding, render_thumbnail
from images.thumbnails.request import negotiate_format
from images.thumbnails.source import open_verified

CACHE_CONTROL = "private, max-age=60"


def thumbnail_response(
    request: Request,
    repository: ImageRepository,
    files: FileStore,
    pk: str,
    image_id: ObjectId,
    size: int,
) -> HttpResponseBase:
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
        "Content-Disposition": cast(
            str, content_disposition_header(False, _download_name(document, key))
        ),
    }
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return _with_headers(not_modified, headers)
    cached = _stored(request, files, key)
    if cached is not None:
        return _with_headers(cached, headers)
    with GATE.key(key):
        cached = _stored(request, files, key)  # made while this request waited for the key
        if cached is not None:
            return _with_headers(cached, headers)
        content, verified = _make(files, document, size, output)
        if verified:
            files.save(key, io.BytesIO(content))
        else:
            headers.update({"Cache-Control": "no-store", "ETag": _unverified_etag(content)})
    response = HttpResponse(b"" if request.method == "HEAD" else content)
    response["Content-Length"] = str(len(content))
    return _with_headers(response, headers)


def _unverified_etag(content: bytes) -> str:
    return f'"unverified-{hashlib.sha256(content).hexdigest()[:32]}"'


def _stored(request: Request, files: FileStore, key: str) -> HttpResponseBase | None:
    thumbnail = files.stat(key)
    if thumbnail is None:
        return None
    if request.method == "HEAD":
        response: HttpResponseBase = HttpResponse()
    else:
        response = StreamingHttpResponse(files.read_chunks(key))
    response["Content-Length"] = str(thumbnail.size)
    return response


def _make(
    files: FileStore, document: dict[str, Any], size: int, output: OutputFormat
) -> tuple[bytes, bool]:
    """The thumbnail, and whether its source bytes hash to the document's sha256.

    Documents without a sha256 (stored before facts existed) are keyed by their `_id` and the
    stored file's version, so nothing is shared and there is nothing to verify.
    """
    expected = document_sha256(document)
    with open_verified(files, document["file"], expected) as source:
        # A header may take seconds to read (libvips walks a TIFF's every page): off the loop.
        decoding = run_off_loop(plan_decoding, source.file)
        with GATE.slot(decoding.memory):
            content = run_off_loop(render_thumbnail, source.file, decoding, size, output)
        return content, source.matches or expected is None


def _etag(document: dict[str, Any], file_etag: str, size: int, output: OutputFormat) -> str:
    """Content-derived for images with a sha256; else tied to the stored file's version."""
    name = stem(document)
    if name.startswith("id-"):
        name = f"{name}-{file_etag.strip(chr(34))}"
    return f'"{name}-{size}.{output.extension}"'


def _download_name(document: dict[str, Any], key: str) -> str:
    base = str(document["file"]).rsplit("/", 1)[-1].rsplit(".", 1)[0] or "thumbnail"
    return f"{base}-{key.rsplit('-', 1)[-1]}"


def _with_headers(response: HttpResponseBase, headers: dict[str, str]) -> HttpResponseBase:
    for name, value in headers.items():
        if response.status_code != 304 or name != "Content-Type":
            response[name] = value
    patch_vary_headers(response, ("Accept",))
    return response
