"""The parameter of `GET /images/<id>/thumbnail` (`size`), as a serializer that validates it and
is what `/docs/schema` publishes."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from images.api.parameters import Parameters, validated
from images.thumbnails.keys import DEFAULT_SIZE, SIZES

ALLOWED_SIZES = ", ".join(str(size) for size in SIZES)


class SizeChoice(serializers.ChoiceField):
    default_error_messages = {
        "invalid_choice": f"must be one of {ALLOWED_SIZES}, got {{input!r}}",
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(sorted(SIZES), required=False, default=DEFAULT_SIZE, **options)

    def to_internal_value(self, data: Any) -> int:  # type: ignore[override]
        if data == "":
            return DEFAULT_SIZE
        return int(super().to_internal_value(str(data)[:20]))


class ThumbnailParameters(Parameters):
    size = SizeChoice(help_text=f"Longest edge in pixels: {ALLOWED_SIZES}")


def thumbnail_size(params: QueryDict) -> int:
    """The requested size; 400 naming the parameter and the allowed sizes."""
    return validated(ThumbnailParameters, params)["size"]
