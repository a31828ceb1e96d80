"""Typed errors: one class per kind of failure, each carrying the server's `detail`."""

from __future__ import annotations

import httpx


class ImagestoreError(Exception):
    """Any failure talking to imagestore; `detail` is the server's message when it sent one."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.detail = detail
        self.status = status


class BadRequest(ImagestoreError):
    """400: the request was refused (a bad filter, a bad file, bad metadata)."""


class Unauthorized(ImagestoreError):
    """401: no token, or one the service does not accept."""


class Forbidden(ImagestoreError):
    """403."""


class NotFound(ImagestoreError):
    """404: no such image (or one outside the caller's scope)."""


class Conflict(ImagestoreError):
    """409: e.g. the same bytes (or, with `similar`, a near-copy) already stored elsewhere,
    refused by `on_duplicate=reject`, or a near-copy in another split (`check_leak`); `body`
    holds the service's answer (`_id`, `file`, `distance`, `field`, `value`)."""

    def __init__(self, detail: str, status: int | None = None, body: dict | None = None) -> None:
        super().__init__(detail, status)
        self.body = body or {}


class Unprocessable(ImagestoreError):
    """422: e.g. similar pictures asked of an image that is not a decodable picture (no `phash`)."""


class Gone(ImagestoreError):
    """410: a change feed cursor older than the service's history; a full resync is needed."""


class PayloadTooLarge(ImagestoreError):
    """413: the file or archive is over the service's limit."""


class ServiceUnavailable(ImagestoreError):
    """503: the service's database or storage cannot be reached (retried before raised)."""


class ConnectionFailed(ImagestoreError):
    """The service could not be reached at all (retried before raised)."""


class IntegrityError(ImagestoreError):
    """A downloaded file's bytes do not match the document's sha256."""


STATUS_ERRORS: dict[int, type[ImagestoreError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: Unprocessable,
    503: ServiceUnavailable,
}


def error_for(response: httpx.Response) -> ImagestoreError:
    """The typed error for a failed response, with the `detail` (or `error`) of its JSON body."""
    body: dict = {}
    try:
        parsed = response.json()
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    detail = body.get("detail", body.get("error"))
    if not isinstance(detail, str):
        detail = response.reason_phrase or f"HTTP {response.status_code}"
    kind = STATUS_ERRORS.get(response.status_code, ImagestoreError)
    if kind is Conflict:
        return Conflict(detail, response.status_code, body)
    return kind(detail, response.status_code)
