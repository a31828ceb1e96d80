"""File responses: conditional requests (ETag/304), `Range` (206/416) and `HEAD`.

Django's `FileResponse` serves whole local files through `wsgi.file_wrapper` (sendfile) but
answers no `Range`; this module adds that, and streams S3 objects from the boto3 body.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from typing import IO, Any, cast

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date

from images.api.errors import error_response
from images.core.errors import RangeNotSatisfiable
from images.store.files import FileStore, StoredFile, handle_chunks

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
OCTET_STREAM = "application/octet-stream"
# Image types a browser could run script from, whatever the detected format says.
_ACTIVE_IMAGE_TYPES = frozenset({"image/svg+xml"})


def served_content_type(document: dict[str, Any]) -> str:
    """The type detected from the bytes at upload (`contentType` of a decoded image).

    Never the client's extension: a verified PNG named `.html` is `image/png`, and a file that
    is not a decoded image (ALLOW_NON_IMAGES, older documents) is `application/octet-stream`.
    """
    content_type = document.get("contentType")
    if (
        document.get("format")
        and isinstance(content_type, str)
        and content_type.startswith("image/")
        and content_type not in _ACTIVE_IMAGE_TYPES
    ):
        return content_type
    return OCTET_STREAM


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for, or None for the whole file.

    Multiple ranges and malformed headers are ignored (the whole file is sent, as RFC 9110
    allows); a range that starts past the end raises 416.
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable(f"Range {header!r} is empty")
        return max(0, size - length), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"Range {header!r} is outside the file of {size} bytes")
    return start, end


def stored_file_response(
    request: HttpRequest, files: FileStore, key: str, content_type: str
) -> HttpResponseBase | None:
    """The answer for the file at `key` (see `file_response`), or None when there is none.

    Where the storage keeps files (local disk) the file is opened first and described by its
    open handle, so that its headers (length, ETag, Last-Modified) are those of the bytes sent
    even when an upload replaces it meanwhile; one path lookup instead of two.
    """
    opened = files.open_read(key)
    if opened is None:
        return None
    handle, stored = opened
    try:
        return file_response(request, files, key, stored, content_type, handle)
    except BaseException:
        if handle is not None:
            handle.close()
        raise


def file_response(
    request: HttpRequest,
    files: FileStore,
    key: str,
    stored: StoredFile,
    content_type: str,
    handle: IO[bytes] | None = None,
) -> HttpResponseBase:
    """200, 206, 304, 416 or HEAD for a stored file; `handle`, the open local file, is sent
    (or closed when no body is)."""
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": cast(str, content_disposition_header(True, posixpath.basename(key))),
        "Accept-Ranges": "bytes",
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.modified.timestamp()),
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    not_modified = get_conditional_response(
        request, etag=stored.etag, last_modified=int(stored.modified.timestamp())
    )
    if not_modified is not None:
        for name in ("ETag", "Last-Modified", "Cache-Control"):
            not_modified[name] = headers[name]
        return _without_body(not_modified, handle)
    byte_range = None
    # META, not `request.headers`: building that mapping costs more than the rest of this.
    if request.META.get("HTTP_IF_RANGE") in (None, stored.etag):
        try:
            byte_range = parse_range(request.META.get("HTTP_RANGE"), stored.size)
        except RangeNotSatisfiable:
            response: HttpResponseBase = error_response(
                RangeNotSatisfiable.status,
                RangeNotSatisfiable.default_detail,
                headers={"Content-Range": f"bytes */{stored.size}"},
            )
            return _without_body(response, handle)
    if request.method == "HEAD":
        response = HttpResponse(headers=headers)
        response["Content-Length"] = str(stored.size)
        return _without_body(response, handle)
    if byte_range is None:
        return _whole_file(files, key, stored, headers, handle)
    start, end = byte_range
    chunks = files.read_chunks(key, start, end) if handle is None else _Chunks(handle, start, end)
    response = StreamingHttpResponse(chunks, status=206, headers=headers)
    response["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
    response["Content-Length"] = str(end - start + 1)
    return response


def _without_body(response: HttpResponseBase, handle: IO[bytes] | None) -> HttpResponseBase:
    if handle is not None:
        handle.close()
    return response


class _Chunks:
    """A range of an open file as a response body; closed with the response, read or not."""

    def __init__(self, handle: IO[bytes], start: int, end: int) -> None:
        self.handle = handle
        self.chunks = handle_chunks(handle, start, end)

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks

    def close(self) -> None:
        self.handle.close()


def _whole_file(files, key, stored, headers, handle) -> HttpResponseBase:
    """A file the storage keeps is sent as it is (sendfile); else a redirect to where the
    client fetches it itself, when the storage gives one; else its bytes, streamed."""
    if handle is None:
        handle = files.open_file(key)
    if handle is not None:
        name = posixpath.basename(key)
        # FileResponse guesses the type from the name unless it is given as `content_type`.
        others = {k: v for k, v in headers.items() if k != "Content-Type"}
        response: HttpResponseBase = FileResponse(
            handle,
            as_attachment=True,
            filename=name,
            content_type=headers["Content-Type"],
            headers=others,
        )
    elif url := files.redirect_url(key, headers["Content-Disposition"], headers["Content-Type"]):
        return HttpResponse(status=307, headers={"Location": url, "Cache-Control": "no-store"})
    else:
        response = StreamingHttpResponse(files.read_chunks(key), headers=headers)
    response["Content-Length"] = str(stored.size)
    return response
