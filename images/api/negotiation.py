"""Content negotiation: views with one renderer use it without parsing `Accept`."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation


class SingleRendererNegotiation(DefaultContentNegotiation):
    """The API answers JSON (or a file) whatever `Accept` says.

    DRF's default parses `Accept` on every request (about 5% of a download's CPU) and answers
    406 when it names no JSON type, so `Accept: image/jpeg` on a download failed. Views with
    several renderers (the OpenAPI schema) still negotiate.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1:
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
