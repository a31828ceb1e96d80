"""CORS as the original answers it (the Express `cors` package, default options).

- A preflight (`OPTIONS` with `Access-Control-Request-Method`) answers 204 with the methods
  `GET,HEAD,PUT,PATCH,POST,DELETE` and `Access-Control-Allow-Headers` echoing the request's
  `Access-Control-Request-Headers`, whatever they are, plus `Vary: Access-Control-Request-Headers`.
- Every response carries `Access-Control-Allow-Origin` and
  `Access-Control-Expose-Headers: Content-Disposition`.

django-cors-headers answers a fixed `CORS_ALLOW_HEADERS` list and cannot echo (its maintainers
declined it), and `*` does not cover `Authorization` in browsers; the original's clients send
headers no fixed list foresees (the GUI sends `Access-Control-Allow-Origin` as a request header).

CORS_ALLOWED_ORIGINS `*` (the default) allows every origin, as the original; a list of origins
gives CORS headers only to requests from those, naming the origin and varying on `Origin`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

ALLOWED_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"
EXPOSED_HEADERS = "Content-Disposition"
ANY_ORIGIN = "*"
# Header names separated by commas: what a browser sends. Anything else (a value no header could
# carry back) gets no Allow-Headers, so the browser refuses the request, as for any unknown header.
_HEADER_LIST = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z, \t]*$")


def allowed_origin(request: HttpRequest) -> str | None:
    """The `Access-Control-Allow-Origin` value for this request, or None for no CORS headers."""
    origins: tuple[str, ...] = settings.CORS_ALLOWED_ORIGINS
    if ANY_ORIGIN in origins:
        return ANY_ORIGIN
    origin = request.headers.get("Origin", "")
    return origin if origin.lower() in origins else None


def is_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


class CorsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        origin = allowed_origin(request)
        if is_preflight(request) and origin is not None:
            return preflight_response(request, origin)
        response = self.get_response(request)
        if ANY_ORIGIN not in settings.CORS_ALLOWED_ORIGINS:
            patch_vary_headers(response, ("Origin",))
        if origin is not None:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response


def preflight_response(request: HttpRequest, origin: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    requested = request.headers.get("Access-Control-Request-Headers", "")
    if requested and _HEADER_LIST.match(requested):
        response["Access-Control-Allow-Headers"] = requested
    patch_vary_headers(response, ("Access-Control-Request-Headers",))
    if origin != ANY_ORIGIN:
        patch_vary_headers(response, ("Origin",))
    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    response["Content-Length"] = "0"
    return response
