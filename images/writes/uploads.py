"""Uploads: the multipart fields of `POST /images`, image facts, and storing file + document."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import mimetypes
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any

from bson import ObjectId
from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import QueryDict
from PIL import Image, UnidentifiedImageError

from images.core.dates import now, parse_date
from images.core.errors import Conflict, InvalidInput, TooLarge
from images.core.paths import storage_key, upload_file_name, validate_file_path
from images.core.query import parse_object_id
from images.duplicates.claims import claimed
from images.duplicates.perceptual import perceptual_facts
from images.duplicates.policy import CopyChecks, OnDuplicate, check_leak, copy_of, rejection
from images.limits import bounded_json
from images.limits.disk import ensure_room
from images.limits.documents import check_data
from images.runtime.offload import cooperate, run_off_loop
from images.store.files import PATH_CONFLICTS, FileStore, UnsafeKey
from images.store.repository import ImageRepository, image_fields
from images.thumbnails import delete_thumbnails
from images.writes import FileWriter, StagedFile

logger = logging.getLogger(__name__)

METADATA_FIELDS = ("json", "data")
SYSTEM_METADATA = ("file", "time", "_id")
MAX_DATA_DEPTH = bounded_json.MAX_DATA_DEPTH
# Multipart framing and form fields on top of the file itself.
MULTIPART_OVERHEAD = 4 * 1024 * 1024


class DigestUploadHandler(FileUploadHandler):
    """Hashes and counts each uploaded file as its bytes arrive, and enforces MAX_UPLOAD_SIZE.

    It passes every chunk on to the next handler (memory or temporary file) untouched.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.MAX_UPLOAD_SIZE + MULTIPART_OVERHEAD:
            raise TooLarge(f"Upload exceeds the limit of {settings.MAX_UPLOAD_SIZE} bytes")

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.digest = hashlib.sha256()
        self.size = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.size += len(raw_data)
        if self.size > settings.MAX_UPLOAD_SIZE:
            raise TooLarge(f"Upload exceeds the limit of {settings.MAX_UPLOAD_SIZE} bytes")
        self.digest.update(raw_data)
        # A fast client's body is always there to read: without a turn now and then, parsing,
        # hashing and writing 100 MB would hold a gevent worker's loop the whole time.
        cooperate()
        return raw_data

    def file_complete(self, file_size: int) -> None:
        digests = self.request.__dict__.setdefault("upload_digests", {})
        digests.setdefault(self.field_name, []).append((self.digest.hexdigest(), self.size))
        return None


class MetadataMode(StrEnum):
    """What a re-upload to a stored path does with the stored `data`."""

    REPLACE = "replace"  # the upload's data replaces it (the original's behaviour)
    MERGE = "merge"  # it is kept, the upload's top-level keys set over it


@dataclass
class UploadMetadata:
    data: dict[str, Any]
    file: str | None = None
    time: dt.datetime | None = None
    image_id: ObjectId | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    mode: MetadataMode = MetadataMode.REPLACE


def parse_json_object(raw: str, name: str) -> dict[str, Any]:
    value = bounded_json.loads(raw, f"Field '{name}'", MAX_DATA_DEPTH + 1)
    if not isinstance(value, dict):
        raise InvalidInput(f"Field '{name}' must be a JSON object")
    return value


def parse_metadata_object(raw: str, name: str) -> dict[str, Any]:
    """A `json`/`data` field: a JSON object, or `null` for no metadata.

    The original's GUI sends the string `null` when its Metadata box is empty (its default).
    """
    if raw.strip() == "null":
        return {}
    return parse_json_object(raw, name)


def validate_data(value: Any, depth: int = 0, path: str = "data") -> None:
    """User data may hold anything JSON holds, but no key MongoDB would read as syntax."""
    if depth > MAX_DATA_DEPTH:
        raise InvalidInput(f"'{path}' is nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
                raise InvalidInput(
                    f"Invalid key {key!r} in {path}: keys must be non-empty and may not "
                    "start with '$' or contain '.'"
                )
            if "\x00" in key:
                raise InvalidInput(f"Invalid key in {path}: contains a NUL byte")
            validate_data(item, depth + 1, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            validate_data(item, depth + 1, f"{path}[{index}]")
    elif isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise InvalidInput(f"Number in {path} does not fit in 64 bits")


def parse_metadata(form: QueryDict, ignore: tuple[str, ...] = ()) -> UploadMetadata:
    """The metadata of a multipart request, as the original reads it.

    A `json` field (else a `data` field) is a JSON object and the plain fields are ignored;
    otherwise every plain field is a string property. `file`, `time` and `_id` are system
    fields wherever they come from; an empty `time` or `_id` is no time or id.
    """
    plain: dict[str, Any] = {k: form.get(k) for k in form if k not in ignore}
    source = next((name for name in METADATA_FIELDS if name in plain), None)
    if source is not None:
        data = parse_metadata_object(plain[source], source)
    else:
        data = dict(plain)
    system = {name: data.pop(name, None) for name in SYSTEM_METADATA}
    for name in SYSTEM_METADATA:
        if system[name] is None and source is not None:
            system[name] = plain.get(name)
    validate_data(data)
    check_data(data)
    return UploadMetadata(
        data=data,
        file=validate_file_path(system["file"]) if system["file"] is not None else None,
        time=parse_date(system["time"], "time") if is_given(system["time"]) else None,
        image_id=parse_object_id(system["_id"], "_id") if is_given(system["_id"]) else None,
    )


def is_given(value: Any) -> bool:
    """False for an absent field and for an empty one (what a form sends for an empty input)."""
    return value is not None and value != ""


def inspect_image(upload: IO[bytes], name: str) -> dict[str, Any]:
    """Facts read from the file's header; 400 when it is not a decodable image."""
    upload.seek(0)
    try:
        with Image.open(upload) as image:
            facts = {
                "width": image.width,
                "height": image.height,
                "format": image.format,
                "mode": image.mode,
                "contentType": Image.MIME.get(image.format or "", _guess_type(name)),
            }
            limit = Image.MAX_IMAGE_PIXELS  # None: Pillow's check is turned off
            if limit is not None and image.width * image.height > limit:
                raise InvalidInput(
                    f"Image is too large: {image.width}x{image.height} pixels exceeds "
                    f"{Image.MAX_IMAGE_PIXELS}"
                )
            image.verify()
    except Image.DecompressionBombError:
        raise InvalidInput("Image is too large to decode safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        upload.seek(0)
        if settings.ALLOW_NON_IMAGES:
            return {"contentType": _guess_type(name)}
        raise InvalidInput(
            f"The uploaded file is not a decodable image ({error.__class__.__name__})"
        ) from None
    if facts["format"] == "JPEG" and not _jpeg_complete(upload):
        upload.seek(0)
        raise InvalidInput("The uploaded JPEG image is truncated")
    upload.seek(0)
    return facts


def _jpeg_complete(upload: IO[bytes]) -> bool:
    upload.seek(0, 2)
    size = upload.tell()
    upload.seek(max(0, size - 4096))
    return b"\xff\xd9" in upload.read()


def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


NO_CHECKS = CopyChecks()


class UploadStore:
    """Stores one uploaded file and its document through the write path (`images.writes`)."""

    def __init__(self, repository: ImageRepository, files: FileStore) -> None:
        self.repository = repository
        self.files = files
        self.writer = FileWriter(files)

    def store(
        self,
        upload: UploadedFile,
        meta: UploadMetadata,
        digest: tuple[str, int] | None,
        checks: CopyChecks = NO_CHECKS,
    ) -> dict[str, Any]:
        """The stored document; with `on_duplicate`, bytes the owner already stores at another
        path (or, with `similar`, a near-copy) are not stored again: 409 (reject) or that
        image's document (skip); with `leak_field`, 409 for a near-copy in another split."""
        key = storage_key(meta.file or upload_file_name(upload.name), self.repository.owner)
        if upload.size == 0:
            raise InvalidInput("The uploaded file is empty")
        facts = run_off_loop(inspect_image, upload, key)  # verifying may read it all
        if "width" in facts:  # a picture: its perceptual hash, if it decodes
            facts.update(perceptual_facts(upload))
        sha256, size = digest or run_off_loop(_digest, upload)
        facts.update(size=size, sha256=sha256)
        ensure_room(self.files, size)
        if meta.image_id is not None:
            self._check_chosen_id(key, meta.image_id)
        phash = facts.get("phash")
        check_leak(self.repository, phash, meta.data, key, checks)
        if checks.on_duplicate is None:
            return self._write(key, upload, meta, facts)
        with claimed(self.repository, sha256):
            existing = copy_of(self.repository, sha256, phash, key, checks.similar)
            if existing is None:
                return self._write(key, upload, meta, facts)
        if checks.on_duplicate is OnDuplicate.REJECT:
            raise rejection(existing)
        return existing.document

    def _write(
        self, key: str, upload: UploadedFile, meta: UploadMetadata, facts: dict[str, Any]
    ) -> dict[str, Any]:
        sha256 = facts["sha256"]
        staged = self._stage(key, upload, sha256, facts["size"])
        outcome: dict[str, Any] = {}
        when = meta.time or now()

        def write_document(items: list[StagedFile], new_keys: Collection[str]) -> list[str]:
            outcome["before"], outcome["after"] = self.repository.upsert(
                key,
                meta.data,
                when,
                facts,
                meta.image_id,
                expect_new=key in new_keys,
                merge_data=meta.mode is MetadataMode.MERGE,
            )
            return [key]

        def insert_document() -> bool:
            fields = image_fields(meta.data, when, facts)
            created = self.repository.insert_image(key, fields, meta.image_id)
            outcome["before"], outcome["after"] = None, created
            return created is not None

        if self.writer.create(staged, insert_document):
            return outcome["after"]
        if key not in self.writer.commit([staged], write_document):
            raise Conflict(f"'file' {key!r} conflicts with a stored file or folder of that name")
        before = outcome["before"]
        if before is not None and before.get("sha256") != sha256:
            delete_thumbnails(self.files, before)  # made from bytes that are gone
        return outcome["after"]

    def _check_chosen_id(self, key: str, image_id: ObjectId) -> None:
        """A client-chosen `_id`. Shared images: it may not name another path's image (409).
        Per-user scope: it is accepted only as the id of the caller's image at this very path,
        and refused alike whether another user holds it or nobody does (no 409 tells them)."""
        existing = self.repository.get_by_file(key)
        if existing is not None and existing["_id"] == image_id:
            return
        if self.repository.owner is not None:
            raise InvalidInput(
                "'_id' can only be sent to re-upload an image at the same 'file': "
                "new images get their id from the server"
            )
        if existing is not None:
            raise Conflict(f"'{key}' is already stored with _id {existing['_id']}")

    def _stage(self, key: str, upload: UploadedFile, sha256: str, size: int) -> StagedFile:
        upload.seek(0)
        try:
            if self.files.adopts_local_files and isinstance(upload, TemporaryUploadedFile):
                upload.flush()
                return self.writer.stage_path(key, upload.temporary_file_path(), sha256, size)
            return self.writer.stage(key, upload, sha256, size)
        except UnsafeKey:
            raise InvalidInput(
                f"Invalid 'file' {key!r}: it reaches outside the uploads directory"
            ) from None
        except PATH_CONFLICTS:
            raise Conflict(
                f"'file' {key!r} conflicts with a stored file or folder of that name"
            ) from None


def _digest(upload: IO[bytes]) -> tuple[str, int]:
    upload.seek(0)
    digest = hashlib.sha256()
    size = 0
    while chunk := upload.read(256 * 1024):
        digest.update(chunk)
        size += len(chunk)
    upload.seek(0)
    return digest.hexdigest(), size
