"""Service routes: `GET /` (info), health checks, and JSON answers for unknown routes."""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.errors import error_response
from images.api.openapi import READY_RESPONSES
from images.api.redaction import redacted_mongodb_uri, redacted_url
from images.core.errors import RETRY_AFTER_SECONDS, MissingBucket
from images.limits.disk import is_full
from images.store.files import get_file_store
from images.store.repository import ping

logger = logging.getLogger(__name__)


def redacted_connection_string(uri: str) -> str:
    return redacted_mongodb_uri(uri, show_paths=settings.SHOW_STORAGE_PATHS)


def storage_info() -> dict:
    if settings.S3_BUCKET:
        return {
            "s3": {
                "bucket": settings.S3_BUCKET,
                "endpoint": redacted_url(settings.S3_ENDPOINT),
                "region": settings.S3_REGION or None,
            }
        }
    path = str(settings.UPLOADS_DIRECTORY) if settings.SHOW_STORAGE_PATHS else None
    return {"directories": {"uploadsDirectoryPath": path}}


class InfoView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(summary="Service information", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(
            {
                "application_name": settings.APPLICATION_NAME,
                "version": settings.VERSION,
                "timeZone": settings.DATES_TIME_ZONE,
                "mongodb": {
                    "connection_string": redacted_connection_string(
                        settings.MONGODB_CONNECTION_STRING
                    ),
                    "connected": ping(),
                },
                "auth": {
                    "enabled": bool(settings.OIDC_JWKS_URI),
                    "oidc_jwks_uri": redacted_url(settings.OIDC_JWKS_URI),
                },
                "storage": storage_info(),
                "image_scope": settings.IMAGE_SCOPE or None,
            }
        )


class LiveView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(summary="Liveness: the process answers", responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class ReadyView(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(summary="Readiness: MongoDB and storage reachable", responses=READY_RESPONSES)
    def get(self, request: Request) -> Response:
        storage, problem = _storage_state()
        checks = {"mongodb": ping(), "storage": storage == "ok"}
        ready = all(checks.values())
        body = {"status": "ok" if ready else "unavailable", **checks}
        if storage == "full":
            body["storageFull"] = True
        if problem:
            body["storageError"] = problem
        if ready:
            return Response(body)
        return Response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _storage_state() -> tuple[str, str | None]:
    """`ok`, `full` (less free than STORAGE_MIN_FREE_SPACE), `missing` (no such S3 bucket) or
    `unreachable`; with what the caller can act on (the missing bucket's name), if anything."""
    files = get_file_store()
    try:
        files.check()
    except MissingBucket as error:
        return "missing", error.detail
    except Exception as error:
        logger.warning("Storage check failed: %s", error)
        return "unreachable", None
    return ("full" if is_full(files) else "ok"), None


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, f"Route {request.method} {request.path} not found")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(400, "Bad request")


def server_error(request: HttpRequest) -> HttpResponse:
    return error_response(500, "Internal server error")
