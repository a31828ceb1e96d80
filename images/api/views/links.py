"""`POST /images/<id>/url` and `POST /export/url`: signed links for browsers (see images.api.auth.signing).

An `<img src>` or a download link cannot send an Authorization header; these routes, called with
one, answer links that carry a short-lived signature bound to the path, its query and the user.
"""

from __future__ import annotations

from django.conf import settings
from django.http import QueryDict
from django.http.request import split_domain_port, validate_host
from django.urls import Resolver404, get_script_prefix, resolve
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from images.api.auth import signing
from images.api.export_parameters import EXPORT_PARAMETERS, export_request
from images.api.openapi import EXPORT_LINK_RESPONSES, ID_PARAMETER, IMAGE_LINKS_RESPONSES
from images.api.scope import repository_for
from images.core.errors import ImageNotFound
from images.core.query import parse_object_id

# Per-image GET routes a link is made for, when the service has them (`thumbnail` may not).
IMAGE_LINKS = ("image", "file", "thumbnail")


def signer_id(request: Request) -> str:
    return getattr(request.user, "user_id", None) or ""


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def absolute_link(request: Request, signed: signing.SignedUrl) -> str:
    """The link as a client follows it, never on a host the operator did not name.

    On PUBLIC_URL when it is set; else on this request's host if ALLOWED_HOSTS names it (a `*`
    names nothing) or it is a loopback name; else relative to the service's root, since a Host
    header alone would let anyone have links to their own server signed.
    """
    relative = signed.relative().lstrip("/")
    if settings.PUBLIC_URL:
        return f"{settings.PUBLIC_URL}/{relative}"
    path = get_script_prefix() + relative
    if _named_host(request):
        return request.build_absolute_uri(path)
    return path


def _named_host(request: Request) -> bool:
    host, _ = split_domain_port(request.get_host())
    named = [h for h in settings.ALLOWED_HOSTS if h != "*"]
    return validate_host(host, [*named, *LOOPBACK_HOSTS])


def route_exists(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True


class SignedImageUrlView(APIView):
    @extend_schema(
        summary="Signed links to one image's file routes (for <img src> and downloads)",
        description=(
            "Links for GET/HEAD without an Authorization header, valid SIGNED_URL_LIFETIME "
            "seconds. This request's query parameters (e.g. `size=256` for the thumbnail) are "
            "carried into every link and covered by its signature."
        ),
        request=None,
        parameters=[ID_PARAMETER],
        responses=IMAGE_LINKS_RESPONSES,
    )
    def post(self, request: Request, pk: str) -> Response:
        image_id = parse_object_id(pk)
        if repository_for(request).get(image_id) is None:
            raise ImageNotFound(pk)
        user = signer_id(request)
        body: dict[str, object] = {}
        expires = 0
        for name in IMAGE_LINKS:
            path = f"/images/{image_id}/{name}"
            if route_exists(path):
                signed = signing.sign(path, request.query_params, user)
                body[name] = absolute_link(request, signed)
                expires = signed.expires
        return Response({**body, "expires": expires})


class SignedExportUrlView(APIView):
    @extend_schema(
        summary="A signed link to GET /export with this request's query parameters",
        parameters=EXPORT_PARAMETERS,
        request=None,
        responses=EXPORT_LINK_RESPONSES,
    )
    def post(self, request: Request) -> Response:
        params: QueryDict = request.query_params
        export_request(params)  # a bad query is reported now, not when the link is followed
        signed = signing.sign("/export", params, signer_id(request))
        return Response({"export": absolute_link(request, signed), "expires": signed.expires})
