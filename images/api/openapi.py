"""OpenAPI descriptions of the routes: parameters, bodies, answers and examples (drf-spectacular).

The views name these in `extend_schema`; keeping them here leaves a view module to read as its
routes only. Parameters are not here: the serializers that validate them (images.api.filters,
images.api.export_parameters, images.api.duplicate_parameters) are what the schema publishes.
What a client generated from `/docs/schema` needs beyond them is said here: the fields a
`select` projection may drop are optional in list items, PATCH/PUT take JSON, file answers are
binary, and every status a route can answer is listed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers

from images.api.duplicate_parameters import Distance, OnDuplicateField

EXAMPLE_ID = "6564a1f0c2a4b1d2e3f40512"
EXAMPLE_IMAGE = {
    "_id": EXAMPLE_ID,
    "file": "cam1/frame_0001.jpg",
    "userId": None,
    "data": {"camera": "cam1", "label": "ok", "score": 4},
    "time": "2026-11-02T09:30:00.000Z",
    "size": 48213,
    "sha256": "9f2c1be0d3c1e0f3a1b7a9e2f8c4d5b6a7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2",
    "width": 640,
    "height": 480,
    "format": "JPEG",
    "mode": "RGB",
    "contentType": "image/jpeg",
}


ID_PARAMETER = OpenApiParameter(
    "id",
    str,
    OpenApiParameter.PATH,
    pattern="^[0-9a-fA-F]{24}$",
    description="The image's `_id` (24 hexadecimal characters).",
)


# --- documents ---------------------------------------------------------------------------------
def _image_fields(required: bool) -> dict[str, serializers.Field]:
    def kept(field: type[serializers.Field], **options) -> serializers.Field:
        return field(required=required, **options)

    return {
        "_id": kept(serializers.CharField),
        "file": kept(serializers.CharField, help_text="Relative storage path."),
        "userId": serializers.CharField(
            required=False, allow_null=True, help_text="Owner (null when auth is off)."
        ),
        "data": kept(serializers.DictField, help_text="The free-form metadata (a JSON object)."),
        "time": kept(serializers.DateTimeField),
        "size": serializers.IntegerField(required=False),
        "sha256": serializers.CharField(required=False),
        "width": serializers.IntegerField(required=False),
        "height": serializers.IntegerField(required=False),
        "format": serializers.CharField(required=False),
        "mode": serializers.CharField(required=False),
        "contentType": serializers.CharField(required=False),
        "phash": serializers.CharField(
            required=False,
            help_text="Perceptual hash (imagehash pHash, 16 hex digits) of a decodable picture: "
            "near-copies differ in few bits (`GET /images/{id}/similar`).",
        ),
        "integrity": _integrity_mark(),
    }


class IntegrityMarkSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["missing", "mismatched"])
    checked = serializers.DateTimeField()
    foundSha256 = serializers.CharField(required=False)


def _integrity_mark() -> serializers.Serializer:
    return IntegrityMarkSerializer(
        required=False,
        help_text="Only on an image whose file `check_integrity --fix` found lost (`missing`) "
        "or holding other bytes than `sha256` (`mismatched`); filter on `integrity.status`. "
        "Uploading the file again removes it.",
    )


IMAGE_SCHEMA = inline_serializer("Image", _image_fields(required=True))
# A list item: `select` may drop any field, `_id` included (`select=-_id`).
SELECTED_IMAGE_SCHEMA = inline_serializer("SelectedImage", _image_fields(required=False))
LIST_SCHEMA = inline_serializer(
    "ImageList",
    {
        "total": serializers.IntegerField(),
        "skip": serializers.IntegerField(),
        "limit": serializers.IntegerField(),
        "items": SELECTED_IMAGE_SCHEMA.__class__(many=True),
        "select": serializers.CharField(required=False),
    },
)
UPDATE_RESULT_SCHEMA = inline_serializer(
    "UpdateResult",
    {
        "acknowledged": serializers.BooleanField(),
        "matchedCount": serializers.IntegerField(),
        "modifiedCount": serializers.IntegerField(),
        "upsertedId": serializers.CharField(allow_null=True),
        "upsertedCount": serializers.IntegerField(),
    },
)
DELETE_RESULT_SCHEMA = inline_serializer(
    "DeleteResult",
    {"acknowledged": serializers.BooleanField(), "deletedCount": serializers.IntegerField()},
)
DELETED_SCHEMA = inline_serializer("Deleted", {"_id": serializers.CharField()})
_METADATA_HELP = (
    "Metadata as a JSON object; `null` (what the original's GUI sends for an empty Metadata "
    "box) means none."
)


def _text(example: str, help_text: str, format: str | None = None) -> serializers.CharField:
    """An optional text form field whose `example` Swagger UI's "Try it out" sends: a valid
    value, or "" for one the service reads as absent, never the placeholder `string`."""
    schema = {"type": "string", "example": example, **({"format": format} if format else {})}
    field_class = extend_schema_field(schema)(type("ExampleText", (serializers.CharField,), {}))
    blank = not example and not format  # a blank date-time would become a `oneOf`
    return field_class(required=False, allow_blank=blank, help_text=help_text)


UPLOAD_SCHEMA = inline_serializer(
    "ImageUpload",
    {
        "image": serializers.FileField(help_text="The image file."),
        "file": _text("cam1/frame_0001.jpg", "Relative storage path (default: the file's name)."),
        "time": _text("", "When the image was taken; empty: now.", format="date-time"),
        "_id": _text("", "An ObjectId chosen by the caller; empty: a new one."),
        "json": _text('{"label": "cat"}', _METADATA_HELP),
        "data": _text("null", "Same as `json` (read when `json` is absent)."),
    },
)
IMPORT_REQUEST_SCHEMA = inline_serializer(
    "ArchiveImport",
    {
        "archive": serializers.FileField(help_text="The zip archive."),
        "json": serializers.CharField(
            required=False,
            help_text="JSON object merged over every document's data; `null` merges nothing.",
        ),
        "data": serializers.CharField(required=False, help_text="Same as `json`."),
        "time": serializers.DateTimeField(
            required=False, help_text="Time of the images that `mongodb_data.json` lacks."
        ),
        "on_duplicate": OnDuplicateField(
            help_text="An entry whose bytes the caller already stores at another path (or an "
            "earlier entry brought) is not stored and is listed in `duplicates`; with `reject` "
            "it is listed in `skipped` too. Absent: stored anyway.",
        ),
        "similar": Distance(
            help_text="With `on_duplicate`: an entry within this perceptual distance of a "
            "stored picture or of an earlier entry counts as a copy too (listed with its "
            "`distance`)."
        ),
    },
)
IMPORT_RESULT_SCHEMA = inline_serializer(
    "ArchiveImportResult",
    {
        "file": serializers.CharField(help_text="The archive's name."),
        "imported": serializers.IntegerField(help_text="Documents written."),
        "skipped": serializers.ListField(
            child=serializers.DictField(child=serializers.CharField()),
            help_text="Entries not imported: `{entry, reason}`.",
        ),
        "skippedCount": serializers.IntegerField(
            required=False, help_text="Present when more were skipped than listed."
        ),
        "duplicates": serializers.ListField(
            child=serializers.DictField(),
            required=False,
            help_text="With `on_duplicate`: `{entry, _id, file}` of the image each entry "
            "repeats (`_id` null when it is an earlier entry of the same archive), with "
            "`distance` for a near-copy (`similar`).",
        ),
        "duplicatesCount": serializers.IntegerField(
            required=False, help_text="Present when more duplicates were found than listed."
        ),
    },
)
IMAGE_LINKS_SCHEMA = inline_serializer(
    "SignedImageUrls",
    {
        "image": serializers.URLField(help_text="GET/HEAD the image bytes without a header."),
        "file": serializers.URLField(),
        "thumbnail": serializers.URLField(required=False),
        "expires": serializers.IntegerField(help_text="Expiry, seconds since the epoch."),
    },
)
EXPORT_LINK_SCHEMA = inline_serializer(
    "SignedExportUrl",
    {"export": serializers.URLField(), "expires": serializers.IntegerField()},
)

# --- duplicates (images.duplicates) ------------------------------------------------------------
DUPLICATE_ITEM_SCHEMA = inline_serializer(
    "DuplicateItem",
    {
        "_id": serializers.CharField(),
        "file": serializers.CharField(),
        "distance": serializers.IntegerField(
            required=False, help_text="With `distance`: bits from the group's first image."
        ),
    },
)
DUPLICATE_GROUP_SCHEMA = inline_serializer(
    "DuplicateGroup",
    {
        "sha256": serializers.CharField(required=False, help_text="Without `distance`."),
        "phash": serializers.CharField(
            required=False, help_text="With `distance`: the first image's perceptual hash."
        ),
        "count": serializers.IntegerField(help_text="Images in the group."),
        "items": DUPLICATE_ITEM_SCHEMA.__class__(many=True, help_text="Oldest first, ≤ 1000."),
    },
)
DUPLICATE_PAGE_SCHEMA = inline_serializer(
    "DuplicatePage",
    {
        "limit": serializers.IntegerField(),
        "distance": serializers.IntegerField(
            required=False, help_text="Present when near-copies were asked for."
        ),
        "items": DUPLICATE_GROUP_SCHEMA.__class__(many=True),
        "next": serializers.CharField(
            allow_null=True, help_text="`after` for the next page; null on the last page."
        ),
    },
)
DUPLICATE_CONFLICT_SCHEMA = inline_serializer(
    "DuplicateConflict",
    {
        "detail": serializers.CharField(),
        "_id": serializers.CharField(help_text="The image already holding these bytes."),
        "file": serializers.CharField(),
        "distance": serializers.IntegerField(
            required=False, help_text="A near-copy (`similar`, `check_leak`): its distance."
        ),
        "field": serializers.CharField(required=False, help_text="`check_leak`: the field."),
        "value": serializers.JSONField(
            required=False, help_text="`check_leak`: the near-copy's value of that field."
        ),
    },
)
_NEAR_ITEM: dict[str, serializers.Field] = {
    "_id": serializers.CharField(),
    "file": serializers.CharField(),
    "distance": serializers.IntegerField(help_text="Bits in which the perceptual hashes differ."),
}
SIMILAR_PAGE_SCHEMA = inline_serializer(
    "SimilarImages",
    {
        "distance": serializers.IntegerField(),
        "items": inline_serializer(
            "SimilarImage", {**_image_fields(required=True), **_NEAR_ITEM}, many=True
        ),
    },
)
_NEXT = serializers.CharField(
    allow_null=True, help_text="`after` for the next page; null once every image was scanned."
)
_LEAK_SIDE: dict[str, serializers.Field] = {
    "_id": serializers.CharField(),
    "file": serializers.CharField(),
    "value": serializers.JSONField(help_text="Its value of the field."),
}
LEAK_PAGE_SCHEMA = inline_serializer(
    "LeakPage",
    {
        "limit": serializers.IntegerField(),
        "field": serializers.CharField(),
        "distance": serializers.IntegerField(),
        "items": inline_serializer(
            "Leak",
            {
                "a": inline_serializer("LeakOlder", _LEAK_SIDE),
                "b": inline_serializer("LeakNewer", _LEAK_SIDE),
                "distance": serializers.IntegerField(),
            },
            many=True,
        ),
        "next": _NEXT,
    },
)
# --- errors --------------------------------------------------------------------------------------
ERROR_SCHEMA = inline_serializer("Error", {"detail": serializers.CharField()})
_ERROR_MEANINGS = {
    400: "Bad input: `detail` names the parameter or field and the problem.",
    401: "Auth is on (OIDC_JWKS_URI) and the bearer token or signed link is missing or invalid.",
    404: "No such image (in the caller's scope), or its file is gone.",
    409: "The `_id` given is already stored for another file.",
    413: "Too large: the body (MAX_UPLOAD_SIZE, MAX_IMPORT_SIZE, JSON bodies) or the document "
    "it would make (MAX_DATA_SIZE, MongoDB's 16 MB).",
    415: "The body is not `application/json`.",
    410: "The cursor is older than the database's history of changes: do a full resync.",
    416: "The `Range` is outside the file (`Content-Range: bytes */size` says its size).",
    422: "The file is not a picture this service can decode (no thumbnail, no `phash`).",
    501: "The change feed needs MongoDB as a replica set (6.0 or newer under IMAGE_SCOPE=user).",
    503: "MongoDB, the storage or the identity provider cannot be reached.",
    507: "The storage is full: nothing was written.",
}
ERROR = OpenApiResponse(ERROR_SCHEMA)
ERRORS = {
    code: OpenApiResponse(ERROR_SCHEMA, description=meaning)
    for code, meaning in _ERROR_MEANINGS.items()
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The error answers of a route, each with what it means there."""
    return {code: ERRORS[code] for code in codes}


def _example(name: str, value, **options) -> OpenApiExample:
    return OpenApiExample(name, value=value, **options)


# --- requests ------------------------------------------------------------------------------------
PATCH_BODY = {
    "application/json": OpenApiTypes.OBJECT,
}
PATCH_EXAMPLES = [
    _example("Set keys", {"reviewed": "yes", "review": {"by": "gui"}}, request_only=True),
    _example("Remove a key", {"$unset": {"reviewed": ""}}, request_only=True),
]
PUT_EXAMPLES = [
    _example("Replace the data", {"camera": "cam1", "label": "ng"}, request_only=True),
]

# --- answers of each route -------------------------------------------------------------------------
_READ = (400, 401, 503)
_ONE = (400, 401, 404, 503)
LIST_RESPONSES = {
    200: OpenApiResponse(
        LIST_SCHEMA,
        examples=[
            _example(
                "A page",
                {"total": 1, "skip": 0, "limit": 10, "items": [EXAMPLE_IMAGE]},
                response_only=True,
            ),
            _example(
                "With select=file time",
                {
                    "total": 1,
                    "skip": 0,
                    "limit": 10,
                    "items": [
                        {
                            "_id": EXAMPLE_ID,
                            "file": EXAMPLE_IMAGE["file"],
                            "time": EXAMPLE_IMAGE["time"],
                        }
                    ],
                    "select": "file time",
                },
                response_only=True,
            ),
        ],
    ),
    **errors(*_READ),
}
_IMAGE = OpenApiResponse(
    IMAGE_SCHEMA, examples=[_example("An image", EXAMPLE_IMAGE, response_only=True)]
)
UPLOAD_RESPONSES = {
    200: _IMAGE,
    409: OpenApiResponse(
        DUPLICATE_CONFLICT_SCHEMA,
        description="`_id` taken by another file, or `on_duplicate=reject` and the same bytes "
        "are stored (then with `_id` and `file` of that image).",
    ),
    **errors(400, 401, 413, 503, 507),
}
IMAGE_RESPONSES = {200: _IMAGE, **errors(*_ONE)}
EDIT_RESPONSES = {200: _IMAGE, **errors(400, 401, 404, 413, 415, 503)}
BULK_UPDATE_RESPONSES = {
    200: OpenApiResponse(
        UPDATE_RESULT_SCHEMA,
        examples=[
            _example(
                "Updated",
                {
                    "acknowledged": True,
                    "matchedCount": 4,
                    "modifiedCount": 4,
                    "upsertedId": None,
                    "upsertedCount": 0,
                },
                response_only=True,
            )
        ],
    ),
    **errors(400, 401, 413, 415, 503),
}
BULK_DELETE_RESPONSES = {
    200: OpenApiResponse(
        DELETE_RESULT_SCHEMA,
        examples=[
            _example("Deleted", {"acknowledged": True, "deletedCount": 3}, response_only=True)
        ],
    ),
    **errors(*_READ),
}
DELETE_RESPONSES = {200: DELETED_SCHEMA, **errors(*_ONE)}
_BYTES = OpenApiTypes.BINARY
DOWNLOAD_RESPONSES: dict[Any, OpenApiResponse] = {
    (200, "application/octet-stream"): OpenApiResponse(
        _BYTES, description="The file, with `Content-Disposition`, `ETag` and `Accept-Ranges`."
    ),
    (206, "application/octet-stream"): OpenApiResponse(
        _BYTES, description="The bytes the `Range` asked for (`Content-Range` says which)."
    ),
    304: OpenApiResponse(description="`If-None-Match`/`If-Modified-Since` matched: no body."),
    307: OpenApiResponse(description="S3_PRESIGNED_DOWNLOADS: `Location` is a presigned URL."),
    **errors(400, 401, 404, 416, 503),
}
_THUMBNAIL = "WebP when `Accept` allows it, else JPEG."
THUMBNAIL_RESPONSES: dict[Any, OpenApiResponse] = {
    (200, "image/webp"): OpenApiResponse(_BYTES, description=_THUMBNAIL),
    (200, "image/jpeg"): OpenApiResponse(_BYTES, description=_THUMBNAIL),
    304: OpenApiResponse(description="`If-None-Match` matched: no body."),
    **errors(400, 401, 404, 422, 503),
}
FIELDS_RESPONSES = {
    200: OpenApiResponse(
        {"type": "array", "items": {"type": "string"}},
        examples=[_example("Keys", ["camera", "label", "score"], response_only=True)],
    ),
    **errors(401, 503),
}
FIELD_VALUES_RESPONSES = {
    200: OpenApiResponse(
        {"type": "array", "items": {}},
        examples=[_example("Values", ["cam1", "cam2"], response_only=True)],
    ),
    **errors(*_READ),
}
_EXPORT = (
    "Streamed as it is made, `Content-Disposition` naming it. `format=zip` (default) or "
    "`imagefolder`: a zip; `webdataset`: a tar; `jsonl`: one document per line."
)
EXPORT_RESPONSES: dict[Any, OpenApiResponse] = {
    (200, "application/zip"): OpenApiResponse(_BYTES, description=_EXPORT),
    (200, "application/x-tar"): OpenApiResponse(_BYTES, description=_EXPORT),
    (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description=_EXPORT),
    **errors(*_READ),
}
IMPORT_RESPONSES = {
    200: OpenApiResponse(
        IMPORT_RESULT_SCHEMA,
        examples=[
            _example(
                "Imported",
                {"file": "dataset.zip", "imported": 5, "skipped": []},
                response_only=True,
            )
        ],
    ),
    **errors(400, 401, 413, 503, 507),
}
IMAGE_LINKS_RESPONSES = {200: IMAGE_LINKS_SCHEMA, **errors(*_ONE)}
EXPORT_LINK_RESPONSES = {200: EXPORT_LINK_SCHEMA, **errors(*_READ)}
DUPLICATES_RESPONSES = {200: DUPLICATE_PAGE_SCHEMA, **errors(*_READ)}
SIMILAR_RESPONSES = {200: SIMILAR_PAGE_SCHEMA, **errors(*_ONE, 422)}
LEAKS_RESPONSES = {200: LEAK_PAGE_SCHEMA, **errors(*_READ)}
CHANGE_SCHEMA = inline_serializer(
    "Change",
    {
        "op": serializers.ChoiceField(["insert", "update", "delete"]),
        **_image_fields(required=False),
        "_id": serializers.CharField(),
        "file": serializers.CharField(
            allow_null=True, help_text="Relative storage path (as it was, for a delete)."
        ),
        "changedAt": serializers.DateTimeField(required=False, help_text="When it changed."),
    },
)
CHANGE_PAGE_SCHEMA = inline_serializer(
    "ChangePage",
    {
        "changes": CHANGE_SCHEMA.__class__(many=True),
        "next": serializers.CharField(help_text="The cursor to pass as `since` next time."),
    },
)
CHANGES_OPERATION: dict[str, Any] = {
    "summary": "Changes to the images after a cursor, in order (a change feed)",
    "description": (
        "`{changes: [{op, _id, file, time, ...}], next}`: inserts and updates carry the image as "
        "it is now, deletes its `_id`, `file` and `time` as they were. Pass `next` as `since` to "
        "go on. Without `since`: no changes, only the current cursor. `wait=S` holds an empty "
        "answer up to S seconds until a change arrives. 410: the cursor fell out of the "
        "database's history, do a full resync. 501: MongoDB is not a replica set."
    ),
    "responses": {200: CHANGE_PAGE_SCHEMA, **errors(*_READ, 410, 501)},
}
READINESS_SCHEMA = inline_serializer(
    "Readiness",
    {
        "status": serializers.ChoiceField(["ok", "unavailable"]),
        "mongodb": serializers.BooleanField(),
        "storage": serializers.BooleanField(),
        "storageFull": serializers.BooleanField(required=False),
        "storageError": serializers.CharField(
            required=False, help_text="What is wrong with the storage: the missing S3 bucket."
        ),
    },
)
READY_RESPONSES = {
    200: READINESS_SCHEMA,
    503: OpenApiResponse(READINESS_SCHEMA, description="MongoDB or the storage is unreachable."),
}
