"""OpenAPI descriptions of the routes' bodies and answers (drf-spectacular components).

The views name these in `extend_schema`; keeping them here leaves a view module to read as its
routes only. Nothing here validates input: parsing lives in images.query, images.uploads and
images.updates.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from images.query import QUERY_PARAMETERS

IMAGE_SCHEMA = inline_serializer(
    "Image",
    {
        "_id": serializers.CharField(),
        "file": serializers.CharField(),
        "time": serializers.DateTimeField(),
        "data": serializers.JSONField(),
        "userId": serializers.CharField(allow_null=True),
        "size": serializers.IntegerField(required=False),
        "sha256": serializers.CharField(required=False),
        "width": serializers.IntegerField(required=False),
        "height": serializers.IntegerField(required=False),
        "format": serializers.CharField(required=False),
        "mode": serializers.CharField(required=False),
        "contentType": serializers.CharField(required=False),
    },
)
LIST_SCHEMA = inline_serializer(
    "ImageList",
    {
        "total": serializers.IntegerField(),
        "skip": serializers.IntegerField(),
        "limit": serializers.IntegerField(),
        "items": IMAGE_SCHEMA.__class__(many=True),
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
UPLOAD_SCHEMA = inline_serializer(
    "ImageUpload",
    {
        "image": serializers.FileField(help_text="The image file."),
        "file": serializers.CharField(required=False, help_text="Relative storage path."),
        "time": serializers.DateTimeField(required=False),
        "_id": serializers.CharField(required=False),
        "json": serializers.CharField(required=False, help_text="Metadata as a JSON object."),
        "data": serializers.CharField(required=False, help_text="Same as `json`."),
    },
)
IMPORT_REQUEST_SCHEMA = inline_serializer(
    "ArchiveImport",
    {
        "archive": serializers.FileField(help_text="The zip archive."),
        "json": serializers.CharField(
            required=False, help_text="JSON object merged over every document's data."
        ),
        "data": serializers.CharField(required=False, help_text="Same as `json`."),
        "time": serializers.DateTimeField(
            required=False, help_text="Time of the images that `mongodb_data.json` lacks."
        ),
        "on_duplicate": serializers.ChoiceField(
            ["reject", "skip"],
            required=False,
            help_text="An entry whose bytes the caller already stores at another path (or an "
            "earlier entry brought) is not stored and is listed in `duplicates`; with `reject` "
            "it is listed in `skipped` too. Absent: stored anyway.",
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
            "repeats (`_id` null when it is an earlier entry of the same archive).",
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
EXPORT_PARAMETERS = [
    OpenApiParameter(
        "format",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=False,
        enum=["zip", "webdataset", "imagefolder", "jsonl"],
        description="`zip` (default, the original's archive), `webdataset`, `imagefolder` "
        "or `jsonl`. Not a data filter here: filter on `data.format` with `filter`.",
    ),
    OpenApiParameter(
        "by",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=False,
        description="With `format=imagefolder`: the data key (dotted for nested values) whose "
        "value names each image's folder. Default `label`.",
    ),
    *QUERY_PARAMETERS,
]
EXPORT_RESPONSES = {
    (200, "application/zip"): OpenApiResponse(
        OpenApiTypes.BINARY, description="`format=zip` or `format=imagefolder`."
    ),
    (200, "application/x-tar"): OpenApiResponse(
        OpenApiTypes.BINARY, description="`format=webdataset`."
    ),
    (200, "application/x-ndjson"): OpenApiResponse(
        OpenApiTypes.STR, description="`format=jsonl`: one document per line."
    ),
}
EXPORT_LINK_SCHEMA = inline_serializer(
    "SignedExportUrl",
    {"export": serializers.URLField(), "expires": serializers.IntegerField()},
)

DUPLICATE_PAGE_PARAMETERS = [
    OpenApiParameter(
        "after",
        OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=False,
        description="The `next` of the previous page: groups with a greater sha256.",
    ),
    OpenApiParameter(
        "limit",
        OpenApiTypes.INT,
        OpenApiParameter.QUERY,
        required=False,
        description="Groups per page, 1 to 1000 (default 100).",
    ),
]
DUPLICATE_ITEM_SCHEMA = inline_serializer(
    "DuplicateItem", {"_id": serializers.CharField(), "file": serializers.CharField()}
)
DUPLICATE_GROUP_SCHEMA = inline_serializer(
    "DuplicateGroup",
    {
        "sha256": serializers.CharField(),
        "count": serializers.IntegerField(help_text="Images with these bytes."),
        "items": DUPLICATE_ITEM_SCHEMA.__class__(many=True, help_text="Oldest first, ≤ 1000."),
    },
)
DUPLICATE_PAGE_SCHEMA = inline_serializer(
    "DuplicatePage",
    {
        "limit": serializers.IntegerField(),
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
    },
)
ON_DUPLICATE_PARAMETER = OpenApiParameter(
    "on_duplicate",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=False,
    enum=["reject", "skip"],
    description="When the caller already stores the same bytes (sha256) at another path: "
    "`reject` answers 409 with that image's `_id` and `file`, `skip` answers 200 with its "
    "document; nothing is stored. Absent: stored anyway (the original's behaviour).",
)

ERROR_SCHEMA = inline_serializer("Error", {"detail": serializers.CharField()})
ERROR = OpenApiResponse(ERROR_SCHEMA)
ERRORS = {400: ERROR, 404: ERROR, 503: ERROR}
