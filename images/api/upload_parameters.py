"""The query parameters of `POST /images`, as a serializer that validates them and is what
`/docs/schema` publishes.

They are query parameters, not form fields: the original reads every plain form field of an
upload without `json`/`data` as metadata, so a form field `metadata` already means `data.metadata`.
"""

from __future__ import annotations

from images.api.duplicate_parameters import OnDuplicateParameters
from images.api.parameters import EnumChoice
from images.writes.uploads import MetadataMode


class UploadParameters(OnDuplicateParameters):
    metadata = EnumChoice(
        MetadataMode,
        help_text="A re-upload to a stored `file`: `replace` (default, the original's "
        "behaviour) stores the upload's data instead of the stored `data`; `merge` keeps the "
        "stored `data` and sets the upload's top-level keys over it (a key's value, nested "
        "objects too, is replaced whole), in the same database write. A new image gets the "
        "upload's data either way.",
    )
