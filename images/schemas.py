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

ERROR_SCHEMA = inline_serializer("Error", {"detail": serializers.CharField()})
ERROR = OpenApiResponse(ERROR_SCHEMA)
ERRORS = {400: ERROR, 404: ERROR, 503: ERROR}
