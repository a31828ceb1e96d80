"""Repairing an image whose file is lost or holds other bytes than its `sha256` says.

No state the write path leaves looks like that (see `images.writes`): something outside the
service removed or changed the file. The right bytes may still be staged: recorded by a lease
(an interrupted write of the same picture, to this path or another) or left by a writer whose
lease was forgotten. A copy of them, hashed on the way and checked against the document, is
promoted to the key under its lease, as a re-upload would be (the lease records the copy, so
recovery finishes the promotion if this process dies). Without them the document is marked
(`integrity`, see `images.core.documents`): it is kept and served as it is, and says what is
wrong with it. Everything is decided again under the lease from what the document and the file
are then, so a writer that replaced, deleted or mended the image meanwhile wins.
"""

from __future__ import annotations

import enum
import hashlib
import io
import logging
from collections.abc import Iterator
from itertools import islice
from typing import Any

from pymongo.collection import Collection

from images.core.dates import now
from images.core.documents import INTEGRITY
from images.store.files import (
    CHUNK_SIZE,
    STAGING_PREFIX,
    FileStore,
    is_storable_key,
    new_staging_key,
)
from images.store.repository import get_collection
from images.writes.commit import StagedFile
from images.writes.leases import Intent, Leases

logger = logging.getLogger(__name__)

MISSING = "missing"
MISMATCHED = "mismatched"
# At most this many staged objects no lease records are hashed a run, in search of lost bytes.
STAGED_HASH_LIMIT = 1000
_MARK_FIELDS = ("_id", "file", "sha256", INTEGRITY)


class Outcome(enum.Enum):
    RESTORED = "restored"  # the right bytes are back at the key
    MARKED = "marked"  # nothing holds the right bytes: the document says so
    SETTLED = "settled"  # the image was replaced, deleted or mended meanwhile: nothing to do
    BUSY = "busy"  # a writer holds the key: left for the next run
    TAKEN_BACK = "taken back"  # the key held a stopped writer's bytes: removed, marked missing


def examine(files: FileStore, document: dict[str, Any], hashed: bool) -> dict[str, str] | None:
    """What is wrong with the file of `document`, as its mark says it (None: nothing seen).
    Its bytes are hashed only when `hashed`."""
    file, sha256 = document.get("file"), document.get("sha256")
    if not is_storable_key(file) or files.stat(file) is None:
        return {"status": MISSING}
    if hashed and sha256 and (found := files.sha256(file)) != sha256:
        return {"status": MISMATCHED, "foundSha256": found}
    return None


class _HashingReader(io.RawIOBase):
    """Chunks of a stored object as a stream, hashed and counted as they are read."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.pending = b""
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        taken, self.pending = self.pending[: len(buffer)], self.pending[len(buffer) :]
        buffer[: len(taken)] = taken
        self.digest.update(taken)
        self.size += len(taken)
        return len(taken)


class StagedBytes:
    """Staged objects found by their content: those leases record first, then the others,
    hashed one at a time as needed, each once a run and at most `STAGED_HASH_LIMIT` of them."""

    def __init__(self, files: FileStore, leases: Collection) -> None:
        self.files = files
        self.leases = leases
        self.hashed: dict[str, str] = {}
        self.unhashed: Iterator[str] | None = None

    def copy_of(self, key: str, sha256: str) -> StagedFile | None:
        """A new staged copy of bytes hashing to `sha256`, for `key`; None if none is left."""
        for source in self._candidates(sha256):
            copy = self._copy(source, key, sha256)
            if copy is not None:
                return copy
        return None

    def linked(self, key: str) -> bool:
        """Whether the file of `key` is a staged object itself (linked there by its writer)."""
        return any(self.files.same_file(staging, key) for staging in self._staged_objects())

    def _candidates(self, sha256: str) -> Iterator[str]:
        recorded = self.leases.find({"sha256": sha256, "staging": {"$ne": None}}, {"staging": 1})
        yield from (lease["staging"] for lease in recorded)
        if sha256 in self.hashed:
            yield self.hashed[sha256]
        if self.unhashed is None:
            self.unhashed = islice(self._staged_objects(), STAGED_HASH_LIMIT)
        for staging in self.unhashed:
            found = self._sha256(staging)
            if found is not None:
                self.hashed.setdefault(found, staging)
            if found == sha256:
                yield staging

    def _staged_objects(self) -> Iterator[str]:
        depth = STAGING_PREFIX.count("/") + 1
        for key in self.files.iter_keys_under(STAGING_PREFIX):
            if key.count("/") == depth and not self.files.is_symlink(key):
                yield key

    def _sha256(self, staging: str) -> str | None:
        try:
            return self.files.sha256(staging)
        except Exception:  # promoted or dropped by its writer meanwhile
            logger.info("Staged object %s could not be read", staging, exc_info=True)
            return None

    def _copy(self, source: str, key: str, sha256: str) -> StagedFile | None:
        """Copy `source` to a staging key of its own (its writer may promote or drop it at any
        time), keeping the copy only when it hashes to `sha256`."""
        staging = new_staging_key()
        reader = _HashingReader(self.files.read_chunks(source))
        try:
            self.files.stage(io.BufferedReader(reader, CHUNK_SIZE), staging)
        except Exception:  # promoted or dropped by its writer meanwhile
            logger.info("Staged object %s could not be copied", source, exc_info=True)
            self.files.delete(staging)
            return None
        if reader.digest.hexdigest() != sha256:
            self.files.delete(staging)
            return None
        return StagedFile(key, staging, sha256, reader.size)


class Repairer:
    def __init__(self, files: FileStore, leases: Leases) -> None:
        self.files = files
        self.leases = leases
        self.collection = get_collection()
        self.staged = StagedBytes(files, leases.collection)

    def repair(self, document: dict[str, Any], broken: bool) -> Outcome:
        """Restore the file of a `broken` image or mark its document; clear the mark of one
        whose file was found whole again."""
        if not is_storable_key(document.get("file")):  # nothing can be written there
            self._set_mark(document, {"status": MISSING})
            return Outcome.MARKED
        copy = None
        if broken and document.get("sha256"):
            copy = self.staged.copy_of(document["file"], document["sha256"])
        intent = Intent(copy.staging, copy.sha256) if copy else Intent()
        held = self.leases.take({document["file"]: intent})
        try:
            return self._repair_held(document, copy) if held.keys else Outcome.BUSY
        finally:
            self.leases.release(held)
            if copy is not None:
                self.files.delete(copy.staging)  # unused (a promoted copy is gone already)

    def _repair_held(self, document: dict[str, Any], copy: StagedFile | None) -> Outcome:
        selector = {name: document.get(name) for name in ("_id", "file", "sha256")}
        current = self.collection.find_one(selector, list(_MARK_FIELDS))
        if current is None:
            return Outcome.SETTLED
        mark = examine(self.files, current, hashed=True)
        restored = mark is not None and copy is not None
        if mark is not None and copy is not None:
            self.files.make_durable([copy.staging])
            self.files.promote(copy.staging, copy.key, copy.size)
            logger.info("Restored the bytes of %s from staging", copy.key)
            mark = None
        if (
            mark is not None
            and mark["status"] == MISMATCHED
            and self.staged.linked(current["file"])
        ):
            # Bytes a writer linked before it stopped, its document never inserted (the key had
            # one): no document describes them, so the key goes back to having no file.
            self.files.delete(current["file"])
            self._set_mark(current, {"status": MISSING})
            return Outcome.TAKEN_BACK
        self._set_mark(current, mark)
        if restored:
            return Outcome.RESTORED
        return Outcome.MARKED if mark is not None else Outcome.SETTLED

    def _set_mark(self, document: dict[str, Any], mark: dict[str, str] | None) -> None:
        """Write `mark` (None: remove it) unless the document already carries it."""
        current = dict(document.get(INTEGRITY) or {})
        current.pop("checked", None)
        if (current or None) == mark:
            return
        if mark is None:
            update: dict[str, Any] = {"$unset": {INTEGRITY: ""}}
        else:
            logger.warning("Marking %s: its file is %s", document["file"], mark["status"])
            update = {"$set": {INTEGRITY: {**mark, "checked": now()}}}
        self.collection.update_one({"_id": document["_id"]}, update)
