"""`GET /gallery/`: a page that browses the images through the API (see static/images/gallery.js).

The page is a shell: the form is filled from the query string here, and the grid, pages and
details are fetched by the browser from `GET /images` with the caller's token, so the page
itself holds no images and needs no authentication.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View

from images.thumbnails import SIZES

PAGE_SIZES = (12, 24, 48, 96)
DEFAULT_PAGE_SIZE = 24
SORT_FIELDS = ("time", "file", "_id", "size", "width", "height")
FORM_FIELDS = ("match", "file", "from", "to", "filter", "sort", "order", "limit", "skip")


class GalleryView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        form = {name: request.GET.get(name, "") for name in FORM_FIELDS}
        if form["limit"] not in {str(size) for size in PAGE_SIZES}:
            form["limit"] = str(DEFAULT_PAGE_SIZE)
        context = {
            "form": form,
            "regex": request.GET.get("regex", "") in {"1", "true", "on"},
            "page_sizes": [str(size) for size in PAGE_SIZES],
            "sort_fields": SORT_FIELDS,
            "auth_enabled": bool(settings.OIDC_JWKS_URI),
            "thumbnail_size": SIZES[2],
            "detail_size": SIZES[-1],
        }
        response = render(request, "images/gallery.html", context)
        response["Cache-Control"] = "no-store"
        return response
