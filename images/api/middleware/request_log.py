"""One log line per request on the `imagestore.requests` logger (JSON with LOG_FORMAT=json).

Each record carries `method`, `route` (the URL pattern, not the path: ids stay out of it),
`path`, `status`, `duration_ms` and `user` (the caller's id when authenticated). For streamed
responses (downloads, exports) the duration is the time until the response started.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("imagestore.requests")


def route_of(request: HttpRequest) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    return "/" + match.route.lstrip("^").rstrip("$")


def user_of(request: HttpRequest) -> str | None:
    return getattr(getattr(request, "user", None), "user_id", None)


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        if not logger.isEnabledFor(logging.INFO):  # below LOG_LEVEL: not even the fields
            return response
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        fields = {
            "method": request.method,
            "route": route_of(request),
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "user": user_of(request),
        }
        logger.info(
            "%s %s %s %.1fms",
            fields["method"],
            fields["route"] or fields["path"],
            fields["status"],
            duration_ms,
            extra=fields,
        )
        return response
