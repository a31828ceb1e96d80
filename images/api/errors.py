"""One error answer (`error_response`) for every failure, through one DRF handler: the domain's
errors (images.core.errors), DRF's own, and backend errors (PyMongo, botocore, OS) mapped here."""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from http import HTTPStatus

from botocore.exceptions import BotoCoreError, ClientError
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.http import Http404, HttpResponse, UnreadablePostError
from pymongo.errors import (
    ConnectionFailure,
    DocumentTooLarge,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)
from rest_framework.exceptions import APIException

from images.api.error_body import JSON, error_body
from images.core.errors import (
    Conflict,
    ImageStoreError,
    InsufficientStorage,
    InvalidInput,
    NotFound,
    TooLarge,
    Unavailable,
)
from images.store.files.s3 import is_missing_bucket, missing_bucket

logger = logging.getLogger(__name__)


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


def _translate_os_error(exc: OSError) -> ImageStoreError | None:
    """Storage errors that are the request's doing (or a full disk), not a server fault."""
    if exc.errno in _DISK_FULL:
        return InsufficientStorage("The storage is full: nothing was written")
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInput("A name in the path is too long for the storage")
    if isinstance(exc, NotADirectoryError | IsADirectoryError | FileExistsError):
        return Conflict("The path conflicts with a stored file or folder of the same name")
    return None


def _translate(exc: Exception) -> ImageStoreError | None:
    """Map errors raised below the views to the domain's; None when it is a server fault."""
    if isinstance(exc, ImageStoreError):
        return exc
    if isinstance(exc, Http404):
        return NotFound()
    if isinstance(exc, UnreadablePostError):
        return InvalidInput("The request body stopped arriving before its end")
    if isinstance(exc, RequestDataTooBig):
        return TooLarge("Request body exceeds the size limit")
    if isinstance(exc, TooManyFieldsSent):
        return InvalidInput("Too many form fields")
    if isinstance(exc, SuspiciousOperation):
        return InvalidInput("Malformed request")
    if _too_large_for_mongodb(exc):
        return TooLarge("The document would exceed MongoDB's limit of 16 MB")
    if isinstance(exc, OSError):
        return _translate_os_error(exc)
    if isinstance(exc, OperationFailure) and exc.code == 11000:
        key = ", ".join((exc.details or {}).get("keyValue", {}) or ["key"])
        return Conflict(f"Another image already has this {key}")
    if isinstance(exc, ExecutionTimeout):
        return Unavailable("The query took too long and was stopped")
    if isinstance(exc, ConnectionFailure):
        return Unavailable("The database is unavailable")
    if isinstance(exc, OperationFailure) and exc.code in _QUERY_ERROR_CODES:
        message = (exc.details or {}).get("errmsg") or "invalid query"
        return InvalidInput(f"The database rejected the query: {message}")
    if isinstance(exc, PyMongoError):
        return Unavailable("The database failed to answer")
    if is_missing_bucket(exc):
        return missing_bucket()
    if isinstance(exc, BotoCoreError | ClientError):
        return Unavailable("The file storage is unavailable")
    return None


def error_response(
    status: int,
    detail: str,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    return HttpResponse(
        error_body(detail, fields), status=status, content_type=JSON, headers=headers
    )


def handle_exception(exc: Exception, context: dict) -> HttpResponse:
    if isinstance(exc, APIException):
        return _framework_error(exc)
    error = _translate(exc)
    if error is None:
        logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
        return error_response(500, "Internal server error")
    if isinstance(error, Unavailable):
        logger.warning("%s: %s", error.detail, exc)
    return _domain_error(error)


def _domain_error(error: ImageStoreError) -> HttpResponse:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return error_response(error.status, error.detail, error.fields, headers)


def _framework_error(exc: APIException) -> HttpResponse:
    """DRF's own errors: authentication, parsing, negotiation, method."""
    headers = {}
    if exc.status_code == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="imagestore"'
    return error_response(exc.status_code, str(exc.detail), headers=headers)
