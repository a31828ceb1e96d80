"""The parameters about stored copies: `on_duplicate` (uploads and imports) and the page of
`GET /images/duplicates`, as serializers that validate them and are what `/docs/schema`
publishes."""

from __future__ import annotations

from typing import Any

from bson import ObjectId
from rest_framework import serializers

from images.api.parameters import Count, EnumChoice, Parameters, ParameterText
from images.duplicates import OnDuplicate
from images.duplicates.groups import MAX_AFTER_LENGTH, MAX_LIMIT
from images.duplicates.near_copies import MAX_LIMIT as NEAR_MAX_LIMIT
from images.duplicates.perceptual import DEFAULT_DISTANCE, MAX_DISTANCE


class OnDuplicateField(EnumChoice):
    """`reject` or `skip`; absent, the original's behaviour: store anyway."""

    def __init__(self, **options: Any) -> None:
        super().__init__(OnDuplicate, **options)


class OnDuplicateParameters(Parameters):
    on_duplicate = OnDuplicateField(
        help_text="When the caller already stores the same bytes (sha256) at another path: "
        "`reject` answers 409 with that image's `_id` and `file`, `skip` answers 200 with its "
        "document; nothing is stored. Absent: stored anyway (the original's behaviour)."
    )


class Distance(Count):
    """A Hamming distance between perceptual hashes, 0 to MAX_DISTANCE."""

    def __init__(self, **options: Any) -> None:
        message = f"must be an integer from 0 to {MAX_DISTANCE} (bits of the perceptual hash)"
        super().__init__(
            min_value=0,
            max_value=MAX_DISTANCE,
            error_messages=dict.fromkeys(
                ("invalid", "max_string_length", "min_value", "max_value"), message
            ),
            **options,
        )


class DataField(ParameterText):
    """A path under `data` (dotted for nested values), such as `split`."""

    def to_internal_value(self, data: Any) -> str:
        path = super().to_internal_value(data)
        parts = path.split(".")
        if len(path) > 200 or any(
            not part or part.startswith("$") or "\x00" in part for part in parts
        ):
            raise serializers.ValidationError(
                "must name a field of `data` (dotted for nested ones), such as 'split'"
            )
        return path


SIMILAR_HELP = (
    "With `on_duplicate`: a stored picture whose perceptual hash (`phash`) is within this many "
    f"bits (0 to {MAX_DISTANCE}) counts as a copy too, the nearest one is named."
)
LEAK_HELP = (
    "A field of `data` that splits the dataset (e.g. `split`): 409 when a near-copy of the "
    "picture (within `similar`, default "
    f"{DEFAULT_DISTANCE}) is stored with another value of it, naming that image."
)


class CopyCheckParameters(OnDuplicateParameters):
    similar = Distance(help_text=SIMILAR_HELP)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "similar" in attrs and "on_duplicate" not in attrs and not attrs.get("check_leak"):
            raise serializers.ValidationError(
                {"similar": ["needs 'on_duplicate' (reject or skip) to say what a near-copy does"]}
            )
        return attrs


def page_limit(maximum: int, help_text: str) -> Count:
    return Count(
        min_value=1,
        max_value=maximum,
        error_messages=dict.fromkeys(
            ("invalid", "max_string_length", "min_value", "max_value"),
            f"must be an integer from 1 to {maximum}",
        ),
        help_text=help_text,
    )


class DuplicatePageParameters(Parameters):
    after = ParameterText(
        help_text="The `next` of the previous page: groups with a greater sha256."
    )
    limit = page_limit(MAX_LIMIT, f"Groups per page, 1 to {MAX_LIMIT} (default 100).")

    def validate_after(self, value: str) -> str:
        # Any hash a page answered as `next` is accepted back, even one another service wrote.
        if len(value) > MAX_AFTER_LENGTH or "\x00" in value:
            raise serializers.ValidationError(
                f"must be the 'next' of a page (a sha256), at most {MAX_AFTER_LENGTH} characters"
            )
        return value


class ImageCursor(ParameterText):
    """The `next` of the previous page: an image `_id`."""

    def to_internal_value(self, data: Any) -> ObjectId | None:  # type: ignore[override]
        text = super().to_internal_value(data)
        if not text:
            return None
        if not ObjectId.is_valid(text):
            raise serializers.ValidationError("must be the 'next' of a page (an image _id)")
        return ObjectId(text)


NEAR_LIMIT_HELP = f"At most this many items (1 to {NEAR_MAX_LIMIT}, default 100)."


DISTANCE_HELP = (
    f"Largest Hamming distance between perceptual hashes, 0 to {MAX_DISTANCE} "
    f"(default {DEFAULT_DISTANCE}; see docs/near-duplicates.md for what each catches)."
)


class SimilarParameters(Parameters):
    distance = Distance(help_text=DISTANCE_HELP)
    limit = page_limit(NEAR_MAX_LIMIT, NEAR_LIMIT_HELP)


class NearPageParameters(Parameters):
    distance = Distance(help_text=DISTANCE_HELP)
    after = ImageCursor(help_text="The `next` of the previous page.")
    limit = page_limit(NEAR_MAX_LIMIT, NEAR_LIMIT_HELP)


class LeakParameters(NearPageParameters):
    field = DataField(help_text="Required: the field of `data` that splits the dataset.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("field"):
            raise serializers.ValidationError(
                {"field": ["is required: the field of `data` that splits the dataset, e.g. split"]}
            )
        return attrs
