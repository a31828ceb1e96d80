"""One error envelope (`{"detail": ...}`) for every failure, through one DRF handler."""

from __future__ import annotations

import errno
import logging

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, UnreadablePostError
from pymongo.errors import (
    ConnectionFailure,
    DocumentTooLarge,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class BadRequest(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class RangeNotSatisfiable(APIException):
    status_code = status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE
    default_code = "range_not_satisfiable"


class InsufficientStorage(APIException):
    status_code = status.HTTP_507_INSUFFICIENT_STORAGE
    default_code = "insufficient_storage"


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "unavailable"


class ImageNotFound(NotFound):
    def __init__(self, image_id: str) -> None:
        super().__init__(f"Image {image_id} not found")


# MongoDB error codes that mean "your query is wrong", not "the database is broken".
_QUERY_ERROR_CODES = {2, 9, 14, 40, 51091, 51108, 31253, 31254, 17287, 28667, 6108304, 4}
# "Resulting document after update is larger than 16777216" and "object to insert too large".
_DOCUMENT_TOO_LARGE_CODES = {10334, 17419, 17420}
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _too_large_for_mongodb(exc: Exception) -> bool:
    if isinstance(exc, DocumentTooLarge):
        return True
    if not isinstance(exc, OperationFailure):
        return False
    details = exc.details or {}
    codes = {exc.code, *(e.get("code") for e in details.get("writeErrors", []))}
    return bool(codes & _DOCUMENT_TOO_LARGE_CODES)


def _translate_os_error(exc: OSError) -> APIException | None:
    """Storage errors that are the request's doing (or a full disk), not a server fault."""
    if exc.errno in _DISK_FULL:
        return InsufficientStorage("The storage is full: nothing was written")
    if exc.errno == errno.ENAMETOOLONG:
        return BadRequest("A name in the path is too long for the storage")
    if isinstance(exc, NotADirectoryError | IsADirectoryError | FileExistsError):
        return Conflict("The path conflicts with a stored file or folder of the same name")
    return None


def _translate(exc: Exception) -> APIException | None:
    """Map errors raised below the views to API errors; None when it is a server fault."""
    if isinstance(exc, Http404):
        return NotFound()
    if isinstance(exc, UnreadablePostError):
        return BadRequest("The request body stopped arriving before its end")
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge("Request body exceeds the size limit")
    if isinstance(exc, TooManyFieldsSent):
        return BadRequest("Too many form fields")
    if isinstance(exc, SuspiciousOperation):
        return BadRequest("Malformed request")
    if _too_large_for_mongodb(exc):
        return PayloadTooLarge("The document would exceed MongoDB's limit of 16 MB")
    if isinstance(exc, OSError):
        return _translate_os_error(exc)
    if isinstance(exc, OperationFailure) and exc.code == 11000:
        key = ", ".join((exc.details or {}).get("keyValue", {}) or ["key"])
        return Conflict(f"Another image already has this {key}")
    if isinstance(exc, ExecutionTimeout):
        return ServiceUnavailable("The query took too long and was stopped")
    if isinstance(exc, ConnectionFailure):
        return ServiceUnavailable("The database is unavailable")
    if isinstance(exc, OperationFailure) and exc.code in _QUERY_ERROR_CODES:
        message = (exc.details or {}).get("errmsg") or "invalid query"
        return BadRequest(f"The database rejected the query: {message}")
    if isinstance(exc, PyMongoError):
        return ServiceUnavailable("The database failed to answer")
    if isinstance(exc, BotoCoreError | ClientError):
        return ServiceUnavailable("The file storage is unavailable")
    return None


def handle_exception(exc: Exception, context: dict) -> Response:
    # Imported here: rest_framework.views loads the parser classes, which raise these errors.
    from rest_framework.views import exception_handler

    translated = exc if isinstance(exc, APIException) else _translate(exc)
    if translated is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return Response({"detail": "Internal server error"}, status=500)
    if isinstance(translated, ServiceUnavailable):
        logger.warning("%s: %s", translated.detail, exc)
    response = exception_handler(translated, context)
    assert response is not None
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="imagestore"'
    return response
