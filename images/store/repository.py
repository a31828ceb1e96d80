"""All MongoDB access: the `images` collection behind one class.

`ImageRepository(owner)` is the single place where the per-user scope is applied: with an
owner, every read and write is restricted to that owner's documents.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from bson import ObjectId
from django.conf import settings
from pymongo import ASCENDING, MongoClient, ReturnDocument, UpdateOne
from pymongo.collection import Collection
from pymongo.cursor import Cursor
from pymongo.errors import (
    BulkWriteError,
    CursorNotFound,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
)
from pymongo.uri_parser import parse_uri

from images.core.documents import FACT_FIELDS, INTEGRITY, PHASH_BANDS
from images.core.errors import Conflict
from images.core.query import ImageQuery
from images.limits.documents import refuse_growth
from images.store.batches import Weigh, as_stored, fitting
from images.store.data_merge import merge_pipeline, merged_document, room_for

logger = logging.getLogger(__name__)
T = TypeVar("T")

DUPLICATE_KEY = 11000
LEASE_COLLECTION = "image_write_leases"
# Leases nobody recovered are dropped by MongoDB after this long (check_integrity runs first).
FORGET_LEASES_AFTER_SECONDS = 7 * 24 * 3600
MINTED_ID_ATTEMPTS = 5
# A merging re-upload: update, else insert; again when another request created the path between.
MERGE_ATTEMPTS = 2
# A read reopens its cursor at most this many times to ask for batches that fit its budget.
MAX_RESIZES = 8

_client_lock = threading.Lock()
_client: MongoClient | None = None
_client_uri: str | None = None
_collection: Collection | None = None
_indexes_ready = False


def get_client() -> MongoClient:
    """One MongoClient per process (it is thread-safe and pools its connections)."""
    global _client, _client_uri
    uri = settings.MONGODB_CONNECTION_STRING
    if not uri:
        raise RuntimeError("MONGODB_CONNECTION_STRING is not set")
    with _client_lock:
        if _client is None or _client_uri != uri:
            if _client is not None:
                _client.close()
            timeout = settings.MONGODB_TIMEOUT_MS
            _client = MongoClient(
                uri,
                **durability_defaults(uri),
                tz_aware=True,
                serverSelectionTimeoutMS=timeout,
                connectTimeoutMS=timeout,
                # A database that stops answering (paused, partitioned) fails the request
                # instead of hanging it; every query's own limit is shorter.
                socketTimeoutMS=settings.MONGODB_QUERY_TIMEOUT_MS + timeout,
                maxPoolSize=50,
                appname="imagestore",
            )
            _client_uri = uri
        return _client


# An acknowledged write survives the loss of the primary and a crash of every member: it is
# journaled on a majority. Reads come from the primary and see only majority-committed data,
# so nothing read can be rolled back, and a write acknowledged to a client is visible to its
# next read. A connection string that sets any of these options keeps its own.
DURABILITY = {
    "w": "majority",
    "journal": True,
    "readconcernlevel": "majority",
    "readpreference": "primary",
}


def durability_defaults(uri: str) -> dict[str, Any]:
    stated = {name.lower() for name in parse_uri(uri)["options"]}
    return {name: value for name, value in DURABILITY.items() if name not in stated}


def image_fields(data: dict[str, Any], time: dt.datetime, facts: dict[str, Any]) -> dict[str, Any]:
    """What an upload writes into an image's document besides its path, owner and id."""
    return {"data": data, "time": time, **facts}


def close_client() -> None:
    """Close the process's client (before forking workers: a client must not cross a fork)."""
    global _client, _client_uri, _collection, _indexes_ready
    with _client_lock:
        if _client is not None:
            _client.close()
        _client, _client_uri, _collection = None, None, None
    _indexes_ready = False


@functools.lru_cache(maxsize=8)
def database_name(uri: str) -> str:
    # Cached: parsing the URI on every request cost about 4% of a download's CPU.
    return parse_uri(uri).get("database") or settings.MONGODB_DEFAULT_DATABASE


def get_collection() -> Collection:
    """The `images` collection of the current client (kept: making the Database and
    Collection objects again cost about 3% of a small request's CPU)."""
    global _collection
    client = get_client()
    collection = _collection
    if collection is None or collection.database.client is not client:
        collection = client[database_name(settings.MONGODB_CONNECTION_STRING)]["images"]
        _collection = collection
    if not _indexes_ready:
        ensure_indexes(collection)
    return collection


def ensure_indexes(
    collection: Collection | None = None, data_fields: Sequence[str] = ()
) -> list[str]:
    """Indexes the API relies on, plus any requested `data.<field>` ones. Idempotent."""
    global _indexes_ready
    collection = collection if collection is not None else get_collection()
    names = [
        collection.create_index([("userId", ASCENDING), ("file", ASCENDING)], unique=True),
        collection.create_index([("time", ASCENDING)]),
        collection.create_index([("userId", ASCENDING)]),
        collection.create_index([("sha256", ASCENDING)]),
        # Duplicates of one owner, read in hash order (images.duplicates).
        collection.create_index([("userId", ASCENDING), ("sha256", ASCENDING)]),
        collection.create_index([("file", ASCENDING)]),
        # Near-copies: every band of the perceptual hash (images.duplicates.near_copies).
        collection.create_index([(PHASH_BANDS, ASCENDING), ("userId", ASCENDING)]),
    ]
    names += [collection.create_index([(f"data.{name}", ASCENDING)]) for name in data_fields]
    names.append(
        collection.database[LEASE_COLLECTION].create_index(
            [("expires", ASCENDING)], expireAfterSeconds=FORGET_LEASES_AFTER_SECONDS
        )
    )
    _indexes_ready = True
    return names


_minted_lock = threading.Lock()
_last_minted = 0


def new_object_id() -> ObjectId:
    """A server-minted id: the creation second and microsecond (ids of one process increase),
    then 5 random bytes. ObjectId's own per-process part and counter would let a client predict
    the ids of other users' next images."""
    global _last_minted
    with _minted_lock:
        stamp = max(time.time_ns() // 1000, _last_minted + 1)
        _last_minted = stamp
    seconds, micros = divmod(stamp, 1_000_000)
    return ObjectId(seconds.to_bytes(4, "big") + micros.to_bytes(3, "big") + os.urandom(5))


def _id_taken(error: OperationFailure) -> bool:
    return error.code == DUPLICATE_KEY and "_id" in (error.details or {}).get("keyPattern", {})


def _reading_id(query: ImageQuery) -> tuple[ImageQuery, bool]:
    """`query` with `_id` always read (a cursor reopens after the last one), and whether the
    documents should then leave it out."""
    projection = query.projection
    if not projection or projection.get("_id", 1):
        return query, False
    rest = {name: include for name, include in projection.items() if name != "_id"}
    return replace(query, projection=rest or None), True


def ping() -> bool:
    try:
        get_client().admin.command("ping")
        return True
    except (PyMongoError, RuntimeError):
        return False


class ImageRepository:
    """The images of one owner (`owner=None`: unscoped, every image)."""

    def __init__(self, owner: str | None = None) -> None:
        self.owner = owner
        self.collection = get_collection()
        self.max_time_ms = settings.MONGODB_QUERY_TIMEOUT_MS

    # --- scope ------------------------------------------------------------------------------
    def scoped(self, query_filter: dict[str, Any]) -> dict[str, Any]:
        if self.owner is None:
            return query_filter
        if not query_filter:
            return {"userId": self.owner}
        return {"$and": [{"userId": self.owner}, query_filter]}

    # --- reads ------------------------------------------------------------------------------
    def count(self, query_filter: dict[str, Any]) -> int:
        return self.collection.count_documents(
            self.scoped(query_filter), maxTimeMS=self.max_time_ms
        )

    def find(self, query: ImageQuery, batch_size: int = 500) -> Iterator[dict[str, Any]]:
        with self.open_cursor(query, batch_size) as cursor:
            yield from cursor

    def open_cursor(self, query: ImageQuery, batch_size: int) -> Cursor:
        """A cursor over `query` whose batches ask for `batch_size` documents."""
        return self.collection.find(
            self.scoped(query.filter),
            projection=query.projection,
            sort=query.sort,
            skip=query.skip,
            limit=query.limit,
            batch_size=batch_size,
            max_time_ms=self.max_time_ms,
        )

    def find_resumable(
        self, query: ImageQuery, batch_size: int = 500
    ) -> Generator[tuple[dict[str, Any], int], None, None]:
        """The documents of `query`, each with its BSON size (see `find_weighed`)."""
        return self.find_weighed(query, batch_size, as_stored)

    def find_weighed(
        self, query: ImageQuery, batch_size: int, weigh: Weigh[T]
    ) -> Generator[tuple[T, int], None, None]:
        """The documents of `query`, each through `weigh` (what to yield for it, and its size in
        bytes), read within DOCUMENT_BUFFER_SIZE.

        One query (one scan and sort, where pages each scan again on a server without index
        range scans), whose cursor is reopened where it stopped: when the server drops it (timed
        out while a slow client read), and when its documents turn out large or small. A batch
        asks for `batch_size` documents and MongoDB caps it at 16 MiB, whatever they weigh; once
        a batch shows (by the sizes `weigh` gave) that half or twice as many documents as it
        asked for would fill DOCUMENT_BUFFER_SIZE, and more are to come, the cursor is reopened
        asking for as many as fit (at most MAX_RESIZES times). It reopens after the last `_id`
        when the order is by `_id` (read even when the projection leaves it out), else by
        skipping what was already delivered.
        """
        budget = settings.DOCUMENT_BUFFER_SIZE
        wanted, drop_id = _reading_id(query)
        delivered = 0
        last_id: ObjectId | None = None
        asked, resizes = max(1, batch_size), 0
        while True:
            resumed = self._resume(wanted, delivered, last_id)
            if resumed is None:
                return
            fresh = True
            try:
                with self.open_cursor(resumed, asked) as cursor:
                    taken = largest = 0
                    for document in cursor:
                        fresh = False
                        delivered += 1
                        taken += 1
                        last_id = document.get("_id")
                        if drop_id:
                            document.pop("_id", None)
                        item, size = weigh(document)
                        del document
                        largest = max(largest, size)
                        yield item, size
                        if taken < cursor.retrieved or not cursor.alive:
                            continue  # within a batch, or the last one
                        sized = fitting(budget, largest, batch_size)
                        if resizes < MAX_RESIZES and not asked // 2 < sized < asked * 2:
                            asked, resizes = sized, resizes + 1
                            break  # reopened asking for `sized` documents a batch
                        largest = 0
                    else:
                        return
            except (CursorNotFound, ExecutionTimeout):
                if fresh:
                    raise
                logger.info("Cursor lost after %d documents; resuming", delivered)

    def _resume(
        self, query: ImageQuery, delivered: int, last_id: ObjectId | None
    ) -> ImageQuery | None:
        if query.limit and delivered >= query.limit:
            return None
        limit = query.limit - delivered if query.limit else 0
        by_id = query.sort in ([("_id", 1)], [("_id", -1)])
        if not delivered or not by_id:
            return replace(query, skip=query.skip + delivered, limit=limit)
        bound = {"_id": {"$gt" if query.sort[0][1] == 1 else "$lt": last_id}}
        resumed_filter = {"$and": [query.filter, bound]} if query.filter else bound
        return replace(query, filter=resumed_filter, skip=0, limit=limit)

    def find_in_pages(self, query: ImageQuery, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Like `find`, but each page is its own short query, so no cursor can time out.

        Pages are taken by `_id` when the order is by `_id`; otherwise by skip within the
        requested window (the sort then needs an index to stay cheap).
        """
        remaining = query.limit or None
        if query.sort in ([("_id", 1)], [("_id", -1)]):
            yield from self._pages_by_id(query, page_size, remaining)
            return
        skip = query.skip
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page = list(
                self.collection.find(
                    self.scoped(query.filter),
                    query.projection,
                    sort=query.sort,
                    skip=skip,
                    limit=size,
                    max_time_ms=self.max_time_ms,
                )
            )
            yield from page
            if len(page) < size:
                return
            skip += size
            if remaining is not None:
                remaining -= size

    def _pages_by_id(self, query: ImageQuery, page_size: int, remaining: int | None):
        direction = query.sort[0][1]
        last_id: ObjectId | None = None
        skip = query.skip
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page_filter = query.filter
            if last_id is not None:
                bound = {"_id": {"$gt" if direction == 1 else "$lt": last_id}}
                page_filter = {"$and": [query.filter, bound]} if query.filter else bound
            page = list(
                self.collection.find(
                    self.scoped(page_filter),
                    query.projection,
                    sort=[("_id", direction)],
                    skip=skip,
                    limit=size,
                    max_time_ms=self.max_time_ms,
                )
            )
            skip = 0
            yield from page
            if len(page) < size:
                return
            last_id = page[-1]["_id"]
            if remaining is not None:
                remaining -= size

    def get(self, image_id: ObjectId) -> dict[str, Any] | None:
        return self.collection.find_one(self.scoped({"_id": image_id}))

    def first_id_where(
        self, query_filter: dict[str, Any], condition: dict[str, Any]
    ) -> ObjectId | None:
        """The `_id` of one document matching the filter and then `condition` (an `$expr`),
        or None. Two stages, so the filter alone picks the index (the embedded server scans
        the whole collection for a query holding `$expr`)."""
        pipeline: list[dict[str, Any]] = [
            {"$match": self.scoped(query_filter)},
            {"$match": condition},
            {"$limit": 1},
            {"$project": {"_id": 1}},
        ]
        found = list(self.collection.aggregate(pipeline, maxTimeMS=self.max_time_ms))
        return found[0]["_id"] if found else None

    def get_many(self, image_ids: list[ObjectId]) -> list[dict[str, Any]]:
        if not image_ids:
            return []
        found = self.collection.find(
            self.scoped({"_id": {"$in": image_ids}}), max_time_ms=self.max_time_ms
        )
        return list(found)

    def get_by_file(self, file: str) -> dict[str, Any] | None:
        return self.collection.find_one({"userId": self.owner, "file": file})

    # --- duplicates (images.duplicates) -----------------------------------------------------
    def oldest_with_sha256(self, sha256: str, exclude_file: str) -> dict[str, Any] | None:
        found = self.collection.find(
            self.scoped({"sha256": sha256, "file": {"$ne": exclude_file}}),
            sort=[("_id", ASCENDING)],
            limit=1,
            max_time_ms=self.max_time_ms,
        )
        return next(iter(found), None)

    def iter_sha256(self, after: str = "") -> Generator[str, None, None]:
        """Every hash in scope greater than `after`, in order, one per document (read from
        the index: nothing else is projected)."""
        cursor = self.collection.find(
            self.scoped({"sha256": {"$gt": after}}),
            {"sha256": 1, "_id": 0},
            sort=[("sha256", ASCENDING)],
            batch_size=1000,
            max_time_ms=self.max_time_ms,
        )
        with cursor:
            for document in cursor:
                yield document["sha256"]

    def files_with_sha256(self, sha256: str, limit: int) -> list[dict[str, str]]:
        found = self.collection.find(
            self.scoped({"sha256": sha256}),
            {"_id": 1, "file": 1},
            sort=[("_id", ASCENDING)],
            limit=limit,
            max_time_ms=self.max_time_ms,
        )
        return [{"_id": str(doc["_id"]), "file": doc.get("file")} for doc in found]

    def files_with_sha256_in(self, hashes: list[str]) -> dict[str, list[dict[str, str]]]:
        """`{_id, file}` of every document with one of these hashes, by hash, oldest first."""
        if not hashes:
            return {}
        found = self.collection.find(
            self.scoped({"sha256": {"$in": hashes}}),
            {"_id": 1, "file": 1, "sha256": 1},
            sort=[("_id", ASCENDING)],
            max_time_ms=self.max_time_ms,
        )
        listed: dict[str, list[dict[str, str]]] = {}
        for doc in found:
            listed.setdefault(doc["sha256"], []).append(
                {"_id": str(doc["_id"]), "file": doc.get("file")}
            )
        return listed

    def phash_candidates(
        self, keys: list[int], projection: dict[str, Any], after: ObjectId | None = None
    ) -> Iterator[dict[str, Any]]:
        """Documents in scope with one of these perceptual-hash band values, through their
        index (images.duplicates.near_copies compares the hashes); after `after` when given."""
        query: dict[str, Any] = {PHASH_BANDS: {"$in": keys}}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.collection.find(
            self.scoped(query), projection, batch_size=1000, max_time_ms=self.max_time_ms
        )
        with cursor:
            yield from cursor

    def with_ids(
        self, image_ids: list[ObjectId], projection: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The documents in scope with these ids, in no particular order."""
        if not image_ids:
            return []
        query = self.scoped({"_id": {"$in": image_ids}})
        return list(self.collection.find(query, projection, max_time_ms=self.max_time_ms))

    def iter_hashed(
        self, after: ObjectId | None, projection: dict[str, Any]
    ) -> Generator[dict[str, Any], None, None]:
        """Documents in scope with a perceptual hash, in `_id` order after `after`."""
        query: dict[str, Any] = {"phash": {"$type": "string"}}
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = self.collection.find(
            self.scoped(query),
            projection,
            sort=[("_id", ASCENDING)],
            batch_size=200,
            max_time_ms=self.max_time_ms,
        )
        with cursor:
            yield from cursor

    def take_claim(self, name: str, token: str, stale_seconds: int) -> bool:
        """Hold the claim `name` (see images.duplicates.claims); False while another holds it."""
        claims = self.collection.database["claims"]
        moment = dt.datetime.now(dt.UTC)
        stale = moment - dt.timedelta(seconds=stale_seconds)
        claims.delete_one({"_id": name, "at": {"$lt": stale}})
        try:
            claims.insert_one({"_id": name, "token": token, "at": moment})
        except DuplicateKeyError:
            return claims.count_documents({"_id": name, "token": token}) > 0  # already ours
        return True

    def release_claims(self, token: str) -> None:
        """Give back every claim taken with `token`. Failing to is not the request's failure:
        a claim left behind is taken over once it is stale."""
        try:
            self.collection.database["claims"].delete_many({"token": token})
        except PyMongoError:
            logger.warning("Claims %s not given back; they expire on their own", token)

    def field_names(self, sample_size: int) -> list[str]:
        """Top-level `data` keys of the newest `sample_size` images in scope.

        Bounded as the original's `$sample` of 100,000 is, but over the `_id` index: the same
        answer every time, and no whole-collection scan and random sort on a large store.
        """
        scope = self.scoped({})
        pipeline: list[dict[str, Any]] = [
            *([{"$match": scope}] if scope else []),
            {"$sort": {"_id": -1}},
            {"$limit": sample_size},
            {"$project": {"keys": {"$objectToArray": {"$ifNull": ["$data", {}]}}}},
            {"$unwind": "$keys"},
            {"$group": {"_id": "$keys.k"}},
            {"$sort": {"_id": 1}},
        ]
        rows = self.collection.aggregate(pipeline, maxTimeMS=self.max_time_ms)
        return [row["_id"] for row in rows]

    def distinct_values(self, path: str, query_filter: dict[str, Any]) -> list[Any]:
        return self.collection.distinct(
            f"data.{path}", self.scoped(query_filter), maxTimeMS=self.max_time_ms
        )

    def aggregate_selection(
        self, query: ImageQuery, stages: list[dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        """`stages` run over the documents `query` selects (its sort, skip and limit too)."""
        window: list[dict[str, Any]] = []
        if query.skip or query.limit:
            window = [{"$sort": dict(query.sort)}, {"$skip": query.skip}]
            window += [{"$limit": query.limit}] if query.limit else []
        pipeline = [{"$match": self.scoped(query.filter)}, *window, *stages]
        with self.collection.aggregate(
            pipeline, allowDiskUse=True, maxTimeMS=self.max_time_ms
        ) as cursor:
            yield from cursor

    # --- writes -----------------------------------------------------------------------------
    def upsert(
        self,
        file: str,
        data: dict[str, Any],
        time: dt.datetime,
        facts: dict[str, Any],
        image_id: ObjectId | None = None,
        expect_new: bool = False,
        merge_data: bool = False,
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Insert or replace the document at `(owner, file)`; its `_id` is kept on replace.
        `expect_new` (no bytes were at the path): a plain insert is tried first, which costs
        the database less than an upsert. `merge_data`: a replaced document keeps its `data`,
        `data` merged over it (`images.store.data_merge`).

        Returns the document before the write (None when it is new) and after it.
        """
        changes = image_fields(data, time, facts)
        if expect_new:
            created = self._insert_new(file, changes, image_id)
            if created is not None:
                return None, created
        # A non-image replacing an image keeps no width, height...; new bytes clear the mark
        # of a broken image.
        stale = [name for name in FACT_FIELDS if name not in facts] + [INTEGRITY]
        if merge_data:
            return self._merge(file, changes, stale, image_id)
        selector = {"userId": self.owner, "file": file}
        for attempt in range(1, MINTED_ID_ATTEMPTS + 1):
            new_id = image_id or new_object_id()
            update = {
                "$set": changes,
                "$setOnInsert": {"_id": new_id, "file": file, "userId": self.owner},
                "$unset": dict.fromkeys(stale, ""),
            }
            try:
                before = self._upsert_retrying_path(selector, update)
                break
            except OperationFailure as error:
                # A minted id someone chose for their own image: mint another.
                if image_id is not None or not _id_taken(error) or attempt == MINTED_ID_ATTEMPTS:
                    raise
        original = before or {"_id": new_id, "file": file, "userId": self.owner}
        after = {k: v for k, v in original.items() if k not in stale}
        return before, {**after, **changes}

    def insert_image(
        self, file: str, fields: dict[str, Any], image_id: ObjectId | None = None
    ) -> dict[str, Any] | None:
        """Insert the document of a new image at `(owner, file)` with these `fields` (see
        `image_fields`); None, writing nothing, when a document has that path (or the id the
        client chose)."""
        return self._insert_new(file, fields, image_id)

    def _merge(
        self, file: str, changes: dict[str, Any], stale: list[str], image_id: ObjectId | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """`upsert` with `data` merged over the stored one, in the update itself; 413 when the
        merged `data` would exceed MAX_DATA_SIZE."""
        selector = {"userId": self.owner, "file": file}
        update = merge_pipeline(changes, stale)
        for _attempt in range(MERGE_ATTEMPTS):
            before = self.collection.find_one_and_update(
                {**selector, **room_for(changes["data"])},
                update,
                return_document=ReturnDocument.BEFORE,
            )
            if before is not None:
                return before, merged_document(before, changes, stale)
            if self.collection.count_documents(selector, limit=1):
                raise refuse_growth(file)
            created = self._insert_new(file, changes, image_id)
            if created is not None:
                return None, created
        raise Conflict(f"'file' {file!r} was written by another request meanwhile: try again")

    def _insert_new(
        self, file: str, changes: dict[str, Any], image_id: ObjectId | None
    ) -> dict[str, Any] | None:
        """The inserted document, or None when the path (or the id the client chose) is
        taken, for `upsert` to settle."""
        for attempt in range(1, MINTED_ID_ATTEMPTS + 1):
            document = {
                "_id": image_id or new_object_id(),
                "userId": self.owner,
                "file": file,
                **changes,
            }
            try:
                self.collection.insert_one(document)
                return document
            except DuplicateKeyError as error:
                if image_id is not None or not _id_taken(error):
                    return None
                if attempt == MINTED_ID_ATTEMPTS:
                    raise
                # A minted id someone chose for their own image: mint another.
        return None

    def _upsert_retrying_path(self, selector: dict[str, Any], update: dict[str, Any]):
        try:
            return self._upsert_once(selector, update)
        except OperationFailure as error:
            if error.code != DUPLICATE_KEY or _id_taken(error):
                raise
            # Two concurrent upserts of a new path: the loser retries as an update.
            return self._upsert_once(selector, update)

    def _upsert_once(self, selector: dict[str, Any], update: dict[str, Any]) -> dict | None:
        return self.collection.find_one_and_update(
            selector, update, upsert=True, return_document=ReturnDocument.BEFORE
        )

    def upsert_many(self, documents: list[dict[str, Any]]) -> int:
        """Bulk upsert by `(owner, file)` keeping each document's `_id`, `time` and `data`."""
        operations = []
        for doc in documents:
            set_fields = {k: v for k, v in doc.items() if k not in ("_id", "file", "userId")}
            on_insert = {"_id": doc.get("_id") or new_object_id(), "file": doc["file"]}
            on_insert["userId"] = self.owner
            operations.append(
                UpdateOne(
                    {"userId": self.owner, "file": doc["file"]},
                    {"$set": set_fields, "$setOnInsert": on_insert, "$unset": {INTEGRITY: ""}},
                    upsert=True,
                )
            )
        if not operations:
            return 0
        result = self.collection.bulk_write(operations, ordered=False)
        return result.upserted_count + result.matched_count

    def insert_new(self, documents: list[dict[str, Any]]) -> list[int]:
        """Insert documents as new images of the owner, in one round trip (much cheaper than
        upserts); return the positions of those not inserted because their `(owner, file)` or
        `_id` is taken. Used by imports, which upsert those afterwards."""
        rows = [
            {"_id": doc.get("_id") or new_object_id(), "file": doc["file"], "userId": self.owner}
            | {k: v for k, v in doc.items() if k not in ("_id", "file", "userId")}
            for doc in documents
        ]
        if not rows:
            return []
        try:
            self.collection.insert_many(rows, ordered=False)
        except BulkWriteError as error:
            errors = (error.details or {}).get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            return sorted(e["index"] for e in errors)
        return []

    def update_existing(self, documents: list[dict[str, Any]]) -> int:
        """Set `time` and `data` of the owner's documents at these paths (none is created);
        how many matched."""
        operations = [
            UpdateOne(
                {"userId": self.owner, "file": doc["file"]},
                {"$set": {"time": doc["time"], "data": doc["data"]}},
            )
            for doc in documents
        ]
        if not operations:
            return 0
        return self.collection.bulk_write(operations, ordered=False).matched_count

    def update_many(self, query_filter: dict[str, Any], update: dict[str, Any]):
        return self.collection.update_many(self.scoped(query_filter), update)

    def update_one(
        self, image_id: ObjectId, update: dict[str, Any], query_filter: dict | None = None
    ) -> dict[str, Any] | None:
        """Update one image (`query_filter` narrows it further) and return it as updated."""
        return self.collection.find_one_and_update(
            self.scoped(query_filter or {"_id": image_id}),
            update,
            return_document=ReturnDocument.AFTER,
        )

    def set_facts(self, image_id: ObjectId, facts: dict[str, Any]) -> bool:
        """Store the facts of one image (top-level system fields); False when it is gone."""
        result = self.collection.update_one(self.scoped({"_id": image_id}), {"$set": facts})
        return result.matched_count > 0

    def delete_one(self, image_id: ObjectId) -> dict[str, Any] | None:
        return self.collection.find_one_and_delete(self.scoped({"_id": image_id}))

    def delete_ids(self, image_ids: list[ObjectId]) -> int:
        result = self.collection.delete_many(self.scoped({"_id": {"$in": image_ids}}))
        return result.deleted_count

    def delete_by_file(self, file: str) -> int:
        return self.collection.delete_one({"userId": self.owner, "file": file}).deleted_count

    def iter_all_files(self) -> Iterator[str]:
        """Every document's `file` in scope, in pages (no cursor is held for long)."""
        query = ImageQuery(filter={}, limit=0, projection={"file": 1})
        for doc in self.find_in_pages(query, page_size=1000):
            if doc.get("file"):
                yield doc["file"]

    def iter_file_facts(self) -> Iterator[dict[str, Any]]:
        """Every document's `file`, `sha256` and integrity mark in scope, in pages."""
        query = ImageQuery(filter={}, limit=0, projection={"file": 1, "sha256": 1, INTEGRITY: 1})
        yield from self.find_in_pages(query, page_size=1000)

    def known_files(self, files: list[str]) -> set[str]:
        """Which of these storage paths a document points to."""
        cursor = self.collection.find(self.scoped({"file": {"$in": files}}), {"file": 1, "_id": 0})
        return {doc["file"] for doc in cursor}

    def iter_files(self, query_filter: dict[str, Any]) -> Iterator[tuple[ObjectId, str]]:
        projection = {"_id": 1, "file": 1}
        for doc in self.collection.find(self.scoped(query_filter), projection, batch_size=1000):
            yield doc["_id"], doc.get("file")
