"""The parameters of `GET /export` beyond the image query: `format`, `by` and `split`, as a serializer
that validates them and is what `/docs/schema` publishes."""

from __future__ import annotations

from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from images.api.filters import ImageQueryFilter
from images.api.parameters import Parameters, ParameterText, validated
from images.archives.folder_names import parse_label_field
from images.archives.formats import (
    DEFAULT_FORMAT,
    DEFAULT_LABEL_FIELD,
    EXPORT_OPTIONS,
    FORMATS,
    ExportRequest,
)

# An export takes every image unless `limit` says otherwise.
EXPORT_QUERY = ImageQueryFilter(default_limit=0, options=EXPORT_OPTIONS)


class FormatChoice(serializers.ChoiceField):
    default_error_messages = {
        "invalid_choice": f"must be one of {', '.join(FORMATS)}, got {{input!r}}"
    }

    def __init__(self, **options: Any) -> None:
        super().__init__(list(FORMATS), required=False, **options)

    def to_internal_value(self, data: Any) -> str:
        # Only so much of a wrong value is echoed back; no format name is that long.
        return super().to_internal_value(str(data)[:40])


class ExportParameters(Parameters):
    format = FormatChoice(
        help_text="`zip` (default, the original's archive), `webdataset`, `imagefolder` or "
        "`jsonl`. Not a data filter here: filter on `data.format` with `filter`."
    )
    by = ParameterText(
        help_text="With `format=imagefolder`: the data key (dotted for nested values) whose "
        "value names each image's folder. Default `label`."
    )
    split = ParameterText(
        help_text="With `format=imagefolder`: the data key whose value (`train`, `validation`, "
        "`test`, ...) names each image's top folder."
    )

    def to_internal_value(self, data: QueryDict) -> dict[str, Any]:
        # djangorestframework-stubs types iterating `fields` as giving Fields; it gives names.
        for name in self.fields:
            if len(data.getlist(name)) > 1:  # type: ignore[arg-type]
                raise serializers.ValidationError({name: ["may be given once"]})  # type: ignore[dict-item]
        return super().to_internal_value(data)

    def validate_by(self, value: str) -> str:
        return parse_label_field(value)

    def validate_split(self, value: str) -> str:
        return parse_label_field(value, "split")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for name in ("by", "split"):
            if name in attrs and attrs.get("format") != "imagefolder":
                raise serializers.ValidationError({name: ["applies to format=imagefolder only"]})
        return attrs


# For `extend_schema(parameters=...)` of the export routes.
EXPORT_PARAMETERS: list[type[serializers.Serializer] | OpenApiParameter] = [
    ExportParameters,
    *EXPORT_QUERY.parameters,
]


def export_request(params: QueryDict) -> ExportRequest:
    """The format, its options and the query of an export; 400 naming a bad parameter."""
    options = validated(ExportParameters, params)
    export_format = FORMATS[options.get("format", DEFAULT_FORMAT)]
    by = options.get("by", DEFAULT_LABEL_FIELD)
    split = options.get("split")
    return ExportRequest(export_format, EXPORT_QUERY.query(params), by, split)
