"""The parameters about stored copies: `on_duplicate` (uploads and imports) and the page of
`GET /images/duplicates`, as serializers that validate them and are what `/docs/schema`
publishes."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from images.api.parameters import Count, EnumChoice, ParameterText
from images.duplicates import OnDuplicate
from images.duplicates.groups import MAX_AFTER_LENGTH, MAX_LIMIT


class OnDuplicateField(EnumChoice):
    """`reject` or `skip`; absent, the original's behaviour: store anyway."""

    def __init__(self, **options: Any) -> None:
        super().__init__(OnDuplicate, **options)


class OnDuplicateParameters(serializers.Serializer):
    on_duplicate = OnDuplicateField(
        help_text="When the caller already stores the same bytes (sha256) at another path: "
        "`reject` answers 409 with that image's `_id` and `file`, `skip` answers 200 with its "
        "document; nothing is stored. Absent: stored anyway (the original's behaviour)."
    )


class DuplicatePageParameters(serializers.Serializer):
    after = ParameterText(
        help_text="The `next` of the previous page: groups with a greater sha256."
    )
    limit = Count(
        min_value=1,
        max_value=MAX_LIMIT,
        error_messages=dict.fromkeys(
            ("invalid", "max_string_length", "min_value", "max_value"),
            f"must be an integer from 1 to {MAX_LIMIT}",
        ),
        help_text=f"Groups per page, 1 to {MAX_LIMIT} (default 100).",
    )

    def validate_after(self, value: str) -> str:
        # Any hash a page answered as `next` is accepted back, even one another service wrote.
        if len(value) > MAX_AFTER_LENGTH or "\x00" in value:
            raise serializers.ValidationError(
                f"must be the 'next' of a page (a sha256), at most {MAX_AFTER_LENGTH} characters"
            )
        return value
