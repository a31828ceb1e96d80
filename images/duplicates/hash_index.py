"""Every stored perceptual hash of the images collection in this process's memory.

A `similar` lookup through the `phashBands` index asks the database for thousands of band
values (images.duplicates.perceptual.band_keys) and takes 80-300 ms at a million images. Here
the hashes of every image sit in arrays (ids 12 bytes, hash 8, owner 4: about 25 MB a million
images), so a lookup compares all of them at once (XOR and popcount, a few milliseconds) and
the database is asked only for the documents found.

The arrays are kept current by a change stream on the collection, so the index needs a
replica set (or a sharded cluster); on a standalone server `index_for` gives None and lookups
use the band index. The stream is read at the start of every lookup, under the index's lock,
so a lookup sees every write acknowledged before it began, and every FOLLOW_SECONDS in the
background, so that after a bulk write no lookup has thousands of changes to apply. Building the arrays (a scan of
the collection) runs in the background after the first lookup asks for it; until it ends,
lookups use the band index too. A gap in the stream (history lost, the collection dropped or
renamed, any other failure) drops the arrays and starts a new build.

Entries are sorted by id (`ids`, numpy `S12`); images added since the last build or merge wait
in `recent` (a dict) until MERGE_AFTER of them are merged in. A deleted image's entry is marked
dead until then. The documents found are read from the database in the caller's scope, and
their hashes compared again, so an entry the stream has not yet caught up with cannot leak an
image or place a changed one wrongly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from bson import ObjectId
from django.conf import settings
from pymongo.change_stream import CollectionChangeStream
from pymongo.collection import Collection
from pymongo.errors import InvalidOperation, PyMongoError

from images.changes.stream import END_OPERATIONS, NOT_A_REPLICA_SET
from images.runtime.offload import cooperate, run_off_loop

logger = logging.getLogger(__name__)

MERGE_AFTER = 1024
# The scan of a build reads this many documents into Python objects before making arrays.
SCAN_SLICE = 10_000
# Between lookups the stream is read this often, in the background.
FOLLOW_SECONDS = 1.0
# A lookup's read of the stream waits at most this long for changes not yet there.
STREAM_WAIT_MS = 1
NO_OWNER = -1  # an image without `userId`
UNKNOWN_OWNER = -2  # an owner with no image here: matches no entry
_FIELDS = {"phash": 1, "userId": 1}
# Inserts, replacements and deletes, updates that set or remove a hash, and the collection's end.
_PIPELINE: list[dict[str, Any]] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace", "delete", *END_OPERATIONS]}},
                {"updateDescription.updatedFields.phash": {"$exists": True}},
                {"updateDescription.removedFields": "phash"},
            ]
        }
    },
    {
        "$project": {
            "operationType": 1,
            "documentKey": 1,
            "fullDocument.phash": 1,
            "fullDocument.userId": 1,
        }
    },
]


@dataclass(frozen=True)
class Match:
    id: ObjectId
    distance: int


class Matches(list[Match]):
    """The nearest matches, nearest first then oldest, and how many there were (`total`)."""

    total = 0


@dataclass(frozen=True)
class Entries:
    """Ids (`S12`), hashes and owner codes, entry by entry."""

    ids: np.ndarray
    hashes: np.ndarray
    codes: np.ndarray

    @classmethod
    def of(cls, ids: list[bytes], hashes: list[int], codes: list[int]) -> Entries:
        return cls(
            np.array(ids, dtype="S12"),
            np.array(hashes, dtype=np.uint64),
            np.array(codes, dtype=np.int32),
        )

    @classmethod
    def joined(cls, slices: list[Entries]) -> Entries:
        whole = cls(
            np.concatenate([part.ids for part in slices]),
            np.concatenate([part.hashes for part in slices]),
            np.concatenate([part.codes for part in slices]),
        )
        return whole.sorted()

    def sorted(self) -> Entries:
        if len(self.ids) < 2 or bool(np.all(self.ids[:-1] <= self.ids[1:])):
            return self
        order = np.argsort(self.ids, kind="stable")
        return Entries(self.ids[order], self.hashes[order], self.codes[order])


class HashIndex:
    """The perceptual hashes of one collection; `nearest` answers lookups once it is built."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.lock = threading.Lock()
        self.ready = False
        self.building = False
        self.supported = True
        self.stream: CollectionChangeStream | None = None
        self.owners: dict[Any, int] = {}
        self.ids = np.empty(0, dtype="S12")
        self.hashes = np.empty(0, dtype=np.uint64)
        self.owner_codes = np.empty(0, dtype=np.int32)
        self.alive = np.empty(0, dtype=bool)
        self.recent: dict[bytes, tuple[int, int]] = {}

    # --- lookups ----------------------------------------------------------------------------
    def nearest(
        self,
        phash: str,
        within: int,
        limit: int,
        *,
        owner: str | None = None,
        after: ObjectId | None = None,
        exclude: ObjectId | None = None,
    ) -> Matches | None:
        """The `limit` entries nearest to `phash` within `within` (of `owner`; None: of every
        owner, as ImageRepository's scope), nearest first then oldest; None while the index
        cannot answer."""
        with self.lock:
            if not self.ready:
                self._start_build()
                return None
            try:
                self._catch_up()
            except _Restarted:
                return None
            except PyMongoError as error:
                self._reset(f"the change stream failed ({error})")
                return None
            return self._nearest(int(phash, 16), within, limit, owner, after, exclude)

    def _nearest(
        self,
        value: int,
        within: int,
        limit: int,
        owner: str | None,
        after: ObjectId | None,
        exclude: ObjectId | None,
    ) -> Matches:
        distances = np.bitwise_count(self.hashes ^ np.uint64(value))
        chosen = self.alive & (distances <= within)
        if owner is not None:
            chosen &= self.owner_codes == self.owners.get(_owner_key(owner), UNKNOWN_OWNER)
        if after is not None:
            chosen[: self._position(after.binary, "right")] = False
        if exclude is not None:
            position = self._position(exclude.binary, "left")
            if position < len(self.ids) and self.ids[position] == _raw(exclude.binary):
                chosen[position] = False
        positions = np.flatnonzero(chosen)
        # Entries are in id order: a stable sort by distance leaves the oldest first among equals.
        nearest = positions[np.argsort(distances[positions], kind="stable")[:limit]]
        found = [
            (distance, bytes(raw).ljust(12, b"\0"))
            for distance, raw in zip(distances[nearest].tolist(), self.ids[nearest], strict=True)
        ]
        recent = self._recent_matches(value, within, owner, after, exclude)
        found = sorted(found + recent)[:limit]
        matches = Matches(Match(ObjectId(raw), distance) for distance, raw in found)
        matches.total = len(positions) + len(recent)
        return matches

    def _position(self, raw: bytes, side: Literal["left", "right"]) -> int:
        return int(np.searchsorted(self.ids, _raw(raw), side=side))

    def _recent_matches(
        self,
        value: int,
        within: int,
        owner: str | None,
        after: ObjectId | None,
        exclude: ObjectId | None,
    ) -> list[tuple[int, bytes]]:
        wanted = self.owners.get(_owner_key(owner), UNKNOWN_OWNER)
        found = []
        for raw, (hashed, code) in self.recent.items():
            found_distance = (hashed ^ value).bit_count()
            if found_distance > within or (owner is not None and code != wanted):
                continue
            if (after is not None and raw <= after.binary) or (exclude and raw == exclude.binary):
                continue
            found.append((found_distance, raw))
        return found

    # --- building ---------------------------------------------------------------------------
    def _start_build(self) -> None:
        if self.building or not self.supported:
            return
        self.building = True
        threading.Thread(target=self._build_and_follow, name="hash-index", daemon=True).start()

    def _build_and_follow(self) -> None:
        stream = self.build()
        if stream is not None:
            self._follow(stream)

    def build(self) -> CollectionChangeStream | None:
        """Build the arrays in this thread and open the stream that keeps them current (None:
        the build failed, or the server has no change streams)."""
        self.building = True
        try:
            stream = self.collection.watch(_PIPELINE, max_await_time_ms=STREAM_WAIT_MS)
        except PyMongoError as error:
            # A standalone server never will; any other failure is retried at the next lookup.
            self.supported = getattr(error, "code", None) not in NOT_A_REPLICA_SET
            self.building = False
            logger.info("similar lookups use the band index: %s", error)
            return None
        try:
            entries = self._scan()
        except PyMongoError as error:
            stream.close()
            self.building = False
            logger.warning("building the hash index failed: %s", error)
            return None
        with self.lock:
            if not self.supported:  # closed meanwhile
                stream.close()
                return None
            self.stream = stream
            self._use(entries)
            self.recent = {}
            self.ready = True
            self.building = False
        logger.info("hash index built: %d images", len(entries.ids))
        return stream

    def _follow(self, stream: CollectionChangeStream) -> None:
        """Catch up every FOLLOW_SECONDS, so a lookup after a bulk write finds little to do,
        until the index is closed or rebuilt (a new build follows its own stream)."""
        while True:
            time.sleep(FOLLOW_SECONDS)
            with self.lock:
                if self.stream is not stream or not self.ready:
                    return
                try:
                    self._catch_up()
                except _Restarted:
                    return
                except InvalidOperation:  # the client was closed: the process is ending
                    self.ready = self.supported = False
                    return
                except PyMongoError as error:
                    self._reset(f"the change stream failed ({error})")
                    return

    def _scan(self) -> Entries:
        """Every hash in the collection, sorted by id; the arrays are made a slice at a time
        (a million hashes as Python objects would weigh four times the arrays)."""
        slices: list[Entries] = []
        ids: list[bytes] = []
        hashes: list[int] = []
        codes: list[int] = []
        query = {"phash": {"$type": "string"}}
        with self.collection.find(query, _FIELDS, batch_size=SCAN_SLICE) as cursor:
            for document in cursor:
                cooperate()
                ids.append(document["_id"].binary)
                hashes.append(int(document["phash"], 16))
                codes.append(self._code(document.get("userId")))
                if len(ids) == SCAN_SLICE:
                    slices.append(Entries.of(ids, hashes, codes))
                    ids, hashes, codes = [], [], []
        slices.append(Entries.of(ids, hashes, codes))
        return run_off_loop(Entries.joined, slices)  # a sort of a million ids: 0.1-0.3 s

    def _use(self, entries: Entries) -> None:
        self.ids, self.hashes, self.owner_codes = entries.ids, entries.hashes, entries.codes
        self.alive = np.ones(len(entries.ids), dtype=bool)

    def _reset(self, reason: str) -> None:
        logger.warning("the hash index is rebuilt: %s", reason)
        if self.stream is not None:
            with contextlib.suppress(PyMongoError):
                self.stream.close()
        self.stream = None
        self.ready = False
        self._start_build()

    # --- following the stream ---------------------------------------------------------------
    def _catch_up(self) -> None:
        """Apply every change the stream has, in order (a later change of an id wins)."""
        assert self.stream is not None
        pending: dict[bytes, tuple[int, int] | None] = {}
        unknown_owner: list[ObjectId] = []
        while (event := self.stream.try_next()) is not None:
            cooperate()  # after a bulk write, thousands of changes wait here
            operation = event["operationType"]
            if operation in END_OPERATIONS:
                self._reset(f"the collection's stream ended ({operation})")
                raise _Restarted
            image_id = event["documentKey"]["_id"]
            document = event.get("fullDocument")
            if operation == "delete" or (document is not None and "phash" not in document):
                pending[image_id.binary] = None
            elif document is not None:
                pending[image_id.binary] = _entry(document, self._code(document.get("userId")))
            else:  # an update of the hash: the owner and the hash as they are now
                unknown_owner.append(image_id)
        pending.update(self._current(unknown_owner))
        if pending:
            self._apply(pending)

    def _current(self, image_ids: list[ObjectId]) -> dict[bytes, tuple[int, int] | None]:
        current: dict[bytes, tuple[int, int] | None] = {oid.binary: None for oid in image_ids}
        if not image_ids:
            return current
        for document in self.collection.find({"_id": {"$in": image_ids}}, _FIELDS):
            if isinstance(document.get("phash"), str):
                code = self._code(document.get("userId"))
                current[document["_id"].binary] = _entry(document, code)
        return current

    def _apply(self, pending: dict[bytes, tuple[int, int] | None]) -> None:
        keys = np.array(list(pending), dtype="S12")
        positions = np.searchsorted(self.ids, keys)
        inside = positions < len(self.ids)
        inside[inside] = self.ids[positions[inside]] == keys[inside]
        for raw, position, present in zip(
            pending, positions.tolist(), inside.tolist(), strict=True
        ):
            entry = pending[raw]
            if present:
                self.alive[position] = entry is not None
                if entry is not None:
                    self.hashes[position], self.owner_codes[position] = entry
            elif entry is None:
                self.recent.pop(raw, None)
            else:
                self.recent[raw] = entry
        if len(self.recent) >= MERGE_AFTER:
            self._merge()

    def _merge(self) -> None:
        """The recent entries into the sorted arrays, without the dead ones: one copy of the
        arrays, entries inserted where they sort."""
        raws = list(self.recent)
        recent = Entries.of(
            raws, [self.recent[raw][0] for raw in raws], [self.recent[raw][1] for raw in raws]
        )
        recent = recent.sorted()
        kept = self.alive
        ids = self.ids[kept]
        at = np.searchsorted(ids, recent.ids)
        self._use(
            Entries(
                np.insert(ids, at, recent.ids),
                np.insert(self.hashes[kept], at, recent.hashes),
                np.insert(self.owner_codes[kept], at, recent.codes),
            )
        )
        self.recent = {}

    def _code(self, owner: Any) -> int:
        if owner is None:
            return NO_OWNER
        return self.owners.setdefault(_owner_key(owner), len(self.owners))

    def start(self) -> None:
        """Start building now rather than at the first lookup."""
        with self.lock:
            if not self.ready:
                self._start_build()

    def close(self) -> None:
        with self.lock:
            self.ready = False
            self.supported = False
            if self.stream is not None:
                with contextlib.suppress(PyMongoError):
                    self.stream.close()
            self.stream = None

    @property
    def size(self) -> int:
        return int(self.alive.sum()) + len(self.recent)


class _Restarted(Exception):
    """The index was dropped while catching up; the lookup uses the band index."""


def _raw(raw: bytes) -> np.ndarray:
    """An id as numpy compares it with the entries (trailing zero bytes kept)."""
    return np.array(raw, dtype="S12")


def _entry(document: dict[str, Any], code: int) -> tuple[int, int]:
    return int(document["phash"], 16), code


def _owner_key(owner: Any) -> Any:
    return owner if isinstance(owner, str | int | ObjectId) else repr(owner)


_indexes: dict[tuple[int, str], HashIndex] = {}
_registry_lock = threading.Lock()


def index_for(collection: Collection) -> HashIndex | None:
    """This process's index of `collection`, or None when lookups use the band index."""
    if not settings.SIMILAR_MEMORY_INDEX:
        return None
    key = (os.getpid(), collection.full_name)
    with _registry_lock:
        index = _indexes.get(key)
        if index is None or index.collection.database.client is not collection.database.client:
            if index is not None:
                index.close()
            index = _indexes[key] = HashIndex(collection)
    return index if index.supported else None
