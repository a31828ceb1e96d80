"""Python client for imagestore: documents, files, bulk edits, archives and training samples.

`Client(url, token=...)` speaks plain HTTP (httpx) to the service; `imagestore` (the command in
`cli.py`) is built on it. Failures raise the typed errors of `errors.py`.
"""

from imagestore_client.auth import BearerToken, ClientCredentials
from imagestore_client.client import Client
from imagestore_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    ImagestoreError,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
)
from imagestore_client.transport import RetryPolicy

__all__ = [
    "BadRequest",
    "BearerToken",
    "Client",
    "ClientCredentials",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "ImagestoreError",
    "IntegrityError",
    "NotFound",
    "PayloadTooLarge",
    "RetryPolicy",
    "ServiceUnavailable",
    "Unauthorized",
    "Unprocessable",
]
