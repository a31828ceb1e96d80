"""The service's errors: what went wrong, in a message for the caller, and the HTTP status it
answers with. Nothing here speaks HTTP: images.api.errors turns these into responses, the
management commands into one line and a non-zero exit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

# What a 503 asks the client to wait before retrying. Most causes (a held write lease, a
# database election, a storage blip) clear within a second or two; a longer wait would keep
# clients idle after the service is back.
RETRY_AFTER_SECONDS = 2


class ImageStoreError(Exception):
    """An error the caller can act on. `fields` are further members of the error body (the
    `_id` and `file` of a stored duplicate, say); `retry_after` is in seconds."""

    status: ClassVar[int] = 500
    default_detail: ClassVar[str] = "Internal server error"
    retry_after: ClassVar[int | None] = None

    def __init_subclass__(cls, status: int | None = None, **options) -> None:
        super().__init_subclass__(**options)
        if status is not None:
            cls.status = status

    def __init__(self, detail: str | None = None, fields: Mapping[str, Any] | None = None) -> None:
        self.detail = detail if detail is not None else self.default_detail
        self.fields = dict(fields or {})
        super().__init__(self.detail)


class InvalidInput(ImageStoreError, status=400): ...


class NotFound(ImageStoreError, status=404):
    default_detail = "Not found."


class ImageNotFound(NotFound):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"Image {image_id} not found")


class RequestTimeout(ImageStoreError, status=408):
    """The client sent its request body too slowly (images.runtime.serving.client_limits)."""


class Conflict(ImageStoreError, status=409): ...


class TooLarge(ImageStoreError, status=413): ...


class Gone(ImageStoreError, status=410): ...


class RangeNotSatisfiable(ImageStoreError, status=416):
    default_detail = "Requested range not satisfiable"


class Unprocessable(ImageStoreError, status=422): ...


class Unavailable(ImageStoreError, status=503):
    """A dependency (database, storage, identity provider) or a held resource (a write lease,
    the thumbnail gate) is unavailable for now: retry after `retry_after` seconds."""

    retry_after: ClassVar[int | None] = RETRY_AFTER_SECONDS


class MissingBucket(Unavailable):
    """S3_BUCKET names no bucket at the endpoint: nothing is retried, and no retry in seconds
    helps (no `Retry-After`) until someone creates it."""

    retry_after = None

    def __init__(self, bucket: str, endpoint: str) -> None:
        super().__init__(
            f"The S3 bucket {bucket!r} does not exist at {endpoint or 'AWS'}: create it, "
            "or set S3_BUCKET to one that exists"
        )


class InsufficientStorage(ImageStoreError, status=507): ...


class NotSupportedHere(ImageStoreError, status=501):
    """A capability this deployment cannot offer (retrying will not help)."""
