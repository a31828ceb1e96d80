"""The query parameters of `POST /images`, as a serializer that validates them and is what
`/docs/schema` publishes.

They are query parameters, not form fields: the original reads every plain form field of an
upload without `json`/`data` as metadata, so a form field `metadata` already means `data.metadata`.
"""

from __future__ import annotations

from typing import Any

from images.api.duplicate_parameters import LEAK_HELP, CopyCheckParameters, DataField
from images.api.parameters import EnumChoice
from images.duplicates.perceptual import DEFAULT_DISTANCE
from images.duplicates.policy import CopyChecks
from images.writes.uploads import MetadataMode


class UploadParameters(CopyCheckParameters):
    check_leak = DataField(help_text=LEAK_HELP)
    metadata = EnumChoice(
        MetadataMode,
        help_text="A re-upload to a stored `file`: `replace` (default, the original's "
        "behaviour) stores the upload's data instead of the stored `data`; `merge` keeps the "
        "stored `data` and sets the upload's top-level keys over it (a key's value, nested "
        "objects too, is replaced whole), in the same database write. A new image gets the "
        "upload's data either way.",
    )


def copy_checks(parameters: dict[str, Any]) -> CopyChecks:
    """What an upload's validated parameters ask it to check against stored pictures."""
    similar = parameters.get("similar")
    return CopyChecks(
        on_duplicate=parameters.get("on_duplicate"),
        similar=similar if parameters.get("on_duplicate") is not None else None,
        leak_field=parameters.get("check_leak") or None,
        leak_distance=DEFAULT_DISTANCE if similar is None else similar,
    )
