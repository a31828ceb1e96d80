"""Objects in an S3 bucket (django-storages' `S3Storage`, through its boto3 client).

Promotion is a server-side copy, many keys are deleted in batched `DeleteObjects` requests, and
downloads may be redirected to a presigned URL (`S3_PRESIGNED_DOWNLOADS`). Objects are no files:
nothing is opened where it lies, and there is no free space to run out of.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import ClientError
from django.conf import settings
from typing_extensions import override

from images.core.errors import MissingBucket
from images.store.files.base import CHUNK_SIZE, FileStore, StoredFile, is_storable_key

if TYPE_CHECKING:
    from storages.backends.s3 import S3Storage

# A single S3 CopyObject copies at most 5 GiB; larger objects go through a multipart copy.
S3_SINGLE_COPY_LIMIT = 5 * 1024**3
# A single DeleteObjects request removes at most 1000 keys.
S3_DELETE_BATCH = 1000
# What S3 answers for a bucket that does not exist (HEAD has no body, only the status).
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket", "404", "NotFound"})


def is_missing_bucket(error: BaseException) -> bool:
    """True for S3's answer that S3_BUCKET does not exist."""
    return isinstance(error, ClientError) and (
        error.response.get("Error", {}).get("Code") in MISSING_BUCKET_CODES
    )


def endpoint_shown() -> str:
    """S3_ENDPOINT as scheme://host:port (no credentials, no path), or "" for AWS."""
    if not settings.S3_ENDPOINT:
        return ""
    parts = urlsplit(settings.S3_ENDPOINT)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def missing_bucket() -> MissingBucket:
    """The error naming S3_BUCKET and where it was looked for."""
    return MissingBucket(settings.S3_BUCKET, endpoint_shown())


class S3FileStore(FileStore):
    """Objects in one bucket: server-side copies, batched deletes, presigned downloads."""

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage
        self.bucket = storage.bucket
        self.client = storage.connection.meta.client

    @override
    def save(self, key: str, source: IO[bytes]) -> None:
        self.bucket.upload_fileobj(source, key, Config=self.storage.transfer_config)

    @override
    def stat(self, key: str) -> StoredFile | None:
        if not is_storable_key(key):
            return None
        try:
            head = self.client.head_object(Bucket=self.bucket.name, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return None
            raise
        return StoredFile(
            size=head["ContentLength"], modified=head["LastModified"], etag=head["ETag"]
        )

    @override
    def read_chunks(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        arguments = {"Bucket": self.bucket.name, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        body = self.client.get_object(**arguments)["Body"]
        try:
            yield from body.iter_chunks(CHUNK_SIZE)
        finally:
            body.close()

    @override
    def delete(self, key: str) -> None:
        if not is_storable_key(key):
            return
        self.client.delete_object(Bucket=self.bucket.name, Key=key)

    @override
    def delete_many(self, keys: Iterable[str]) -> None:
        """One `DeleteObjects` request a batch of keys (unsafe keys are skipped, as `delete`
        skips them)."""
        keys = [key for key in keys if is_storable_key(key)]
        for start in range(0, len(keys), S3_DELETE_BATCH):
            objects = [{"Key": key} for key in keys[start : start + S3_DELETE_BATCH]]
            self.client.delete_objects(
                Bucket=self.bucket.name, Delete={"Objects": objects, "Quiet": True}
            )

    @override
    def delete_raw(self, key: str) -> bool:
        self.client.delete_object(Bucket=self.bucket.name, Key=key)  # S3 keys name no folders
        return True

    @override
    def promote(self, staging: str, key: str, size: int) -> None:
        source = {"Bucket": self.bucket.name, "Key": staging}
        if size < S3_SINGLE_COPY_LIMIT:
            self.client.copy_object(Bucket=self.bucket.name, Key=key, CopySource=source)
        else:
            self.client.copy(source, self.bucket.name, key, Config=self.storage.transfer_config)
        self.client.delete_object(Bucket=self.bucket.name, Key=staging)

    @override
    def redirect_url(
        self, key: str, filename_header: str, content_type: str, expires: int = 300
    ) -> str | None:
        """A presigned GET of `key`, valid `expires` seconds, when S3_PRESIGNED_DOWNLOADS is
        on; else None (the service streams the object)."""
        if not settings.S3_PRESIGNED_DOWNLOADS:
            return None
        return self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket.name,
                "Key": key,
                "ResponseContentDisposition": filename_header,
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires,
        )

    @override
    def iter_all_keys(self) -> Iterator[str]:
        return self._list()

    @override
    def iter_keys_under(self, prefix: str) -> Iterator[str]:
        return self._list(f"{prefix}/")

    def _list(self, prefix: str = "") -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket.name, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]

    @override
    def check(self) -> None:
        """Raises MissingBucket when the bucket does not exist, ClientError or BotoCoreError
        when S3 cannot say."""
        try:
            self.client.head_bucket(Bucket=self.bucket.name)
        except ClientError as error:
            if is_missing_bucket(error):
                raise missing_bucket() from None
            raise
