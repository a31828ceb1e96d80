"""The query parameters of the routes that select images, as one serializer: it validates a
request's query string and is what `/docs/schema` publishes for it.

The named parameters are its fields. Every other `key=value` is a data filter, which no field
can declare: images.core.query turns those into conditions, and the schema describes them as
one free-form object (`DATA_FILTER_PARAMETER`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema_field
from rest_framework import serializers

from images.api.parameters import Count, Parameters, ParameterText, validated
from images.core.query import (
    DEFAULT_LIMIT,
    EVERY_IMAGE_PARAM,
    ImageQuery,
    data_filters,
    image_query,
)

ORDERS = {"1": 1, "asc": 1, "ascending": 1, "-1": -1, "desc": -1, "descending": -1}
# What the original's clients send for `regex`: a checkbox, a boolean, or JavaScript's undefined.
TRUE_VALUES = frozenset({"true", "1", "yes", "on"})
FALSE_VALUES = frozenset({"false", "0", "no", "off", "undefined", ""})


@extend_schema_field(OpenApiTypes.BOOL)
class Flag(serializers.Field):
    default_error_messages = {"invalid": "must be true or false, got {input!r}"}

    def __init__(self, **options: Any) -> None:
        super().__init__(required=False, **options)

    def to_internal_value(self, data: Any) -> bool:
        value = str(data).strip().lower()
        if value not in TRUE_VALUES | FALSE_VALUES:
            self.fail("invalid", input=data)
        return value in TRUE_VALUES

    def to_representation(self, value: bool) -> bool:
        return value


class Order(serializers.ChoiceField):
    """`1`/`asc` or `-1`/`desc`, in any case: the direction as 1 or -1."""

    default_error_messages = {"invalid_choice": "must be 1, -1, asc or desc, got {input!r}"}

    def __init__(self, **options: Any) -> None:
        super().__init__(list(ORDERS), required=False, **options)

    def to_internal_value(self, data: Any) -> int:  # type: ignore[override]
        return ORDERS[super().to_internal_value(str(data).strip().lower())]


class ImageQueryParameters(Parameters):
    filter = ParameterText(
        source="filter_text",
        help_text="MongoDB query document (JSON) using query operators only, ANDed.",
    )
    ids = serializers.ListField(
        child=ParameterText(),
        required=False,
        help_text="Image id (repeatable, or comma-separated).",
    )
    file = serializers.ListField(
        child=ParameterText(),
        source="files",
        required=False,
        help_text="Exact `file` path (partial and case-insensitive with `regex=true`); "
        "repeat it to match any of them.",
    )
    regex = Flag(help_text="`true` makes `key=value` and `file` case-insensitive partial matches.")
    sort = ParameterText(help_text="Field to sort on (`time`, `file`, `data.camera`, ...).")
    order = Order(help_text="`1`/`asc` or `-1`/`desc`.")
    skip = Count(help_text="Number of images to skip.")
    limit = Count(help_text="Maximum number of images (0 = no limit).")
    select = ParameterText(help_text="Space-separated projection, e.g. `file time` or `-data`.")

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # `from` is a Python keyword, so it cannot be declared above.
        fields["from"] = ParameterText(
            source="start", help_text="Images with `time` at or after this ISO 8601 date."
        )
        fields["to"] = ParameterText(
            source="end", help_text="Images with `time` at or before this ISO 8601 date."
        )
        return fields


# The free-form `key=value` filters: one exploded object, empty by default, so that Swagger UI's
# "Try it out" sends a plain list request (a sampled object would send `additionalProp1=string`).
DATA_FILTER_PARAMETER = OpenApiParameter(
    "data",
    {"type": "object", "additionalProperties": {"type": "string"}},
    OpenApiParameter.QUERY,
    required=False,
    style="form",
    explode=True,
    description=(
        "Any other `key=value` matches `data.key`: `camera=cam1&label=ok` (dotted keys reach "
        "nested values; repeat a key to match any of its values). Empty by default."
    ),
    examples=[
        OpenApiExample("No data filter", value={}),
        OpenApiExample("By camera and label", value={"camera": "cam1", "label": "ok"}),
    ],
)


EVERY_IMAGE_PARAMETER = OpenApiParameter(
    EVERY_IMAGE_PARAM,
    OpenApiTypes.BOOL,
    OpenApiParameter.QUERY,
    required=False,
    description=(
        "`true` to act on every image when no filter is given; without a filter and without "
        "it, the request is refused (400)."
    ),
)


class ImageQueryFilter:
    """A request's query string → an ImageQuery; 400 naming the first bad parameter."""

    # For `extend_schema(parameters=...)` of every route that takes an image query.
    parameters: list[type[serializers.Serializer] | OpenApiParameter] = [
        ImageQueryParameters,
        DATA_FILTER_PARAMETER,
    ]
    # Bulk PATCH and DELETE also take the consent to act on every image.
    bulk_parameters: list[type[serializers.Serializer] | OpenApiParameter] = [
        *parameters,
        EVERY_IMAGE_PARAMETER,
    ]

    def __init__(self, default_limit: int = DEFAULT_LIMIT, options: Iterable[str] = ()) -> None:
        self.default_limit = default_limit
        # The route's own parameters, which select nothing.
        self.options = tuple(options)

    def query(self, params: QueryDict) -> ImageQuery:
        named = validated(ImageQueryParameters, _with_bracketed_ids(params))
        named.setdefault("limit", self.default_limit)
        return image_query(data_filters(dict(params.lists()), ignored=self.options), **named)


def _with_bracketed_ids(params: QueryDict) -> QueryDict:
    """`ids[]=a&ids[]=b`, as PHP-style clients repeat a name, read as `ids`."""
    if "ids[]" not in params:
        return params
    merged = params.copy()
    merged.setlist("ids", [*params.getlist("ids"), *params.getlist("ids[]")])
    return merged
