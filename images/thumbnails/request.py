"""What a thumbnail request asks for, from `Accept`: its format."""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation

from images.thumbnails.keys import JPEG, WEBP, OutputFormat


class AnyAcceptNegotiation(DefaultContentNegotiation):
    """Image routes answer whatever `Accept` says (`image/webp` alone included): errors are JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


def negotiate_format(accept: str | None) -> OutputFormat:
    """WebP when the client names it at least as willingly as JPEG; JPEG otherwise."""
    weights = _accept_weights(accept or "")
    webp = weights.get("image/webp", 0.0)
    jpeg = weights.get("image/jpeg", weights.get("image/*", weights.get("*/*", 0.0)))
    return WEBP if webp > 0 and webp >= jpeg else JPEG


def _accept_weights(accept: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in accept.split(","):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        if not media_type:
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    quality = 0.0
        weights[media_type.lower()] = quality
    return weights
