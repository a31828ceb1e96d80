"""Per-path write leases: one MongoDB document per storage key, held by one writer at a time.

A lease is `{_id: <key>, token, staging, sha256, expires}`. Taking it is an insert (the unique
`_id` makes exactly one of two writers win); giving it back deletes it by token. A lease whose
`expires` has passed belongs to a writer that died or lost its database mid-write: the next
writer takes it over with a compare-and-set on the old token and first lets `recover` finish or
undo what the lease records. Nobody waits on more than one lease at a time while holding others
(a batch works on the keys it got and asks again for the rest), so batches cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from pymongo import ASCENDING, DeleteOne
from pymongo.collection import Collection
from pymongo.errors import (
    BulkWriteError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from images.core.errors import Unavailable
from images.store.repository import DUPLICATE_KEY, get_collection

logger = logging.getLogger(__name__)

LEASES = "image_write_leases"
# Leases nobody recovered are dropped by MongoDB after this long (check_integrity runs first).
FORGET_AFTER_SECONDS = 7 * 24 * 3600
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.2
_LONGEST_SETTLE_PAUSE = 2.0

Recover = Callable[[str, dict[str, Any]], None]


def may_have_applied(error: BaseException) -> bool:
    """Whether a failed database write may still have landed (or land later): a timeout or a
    dropped connection after the request was sent."""
    if not isinstance(error, PyMongoError) or isinstance(error, ServerSelectionTimeoutError):
        return False
    return isinstance(error, BulkWriteError) or not isinstance(error, OperationFailure)


@dataclass(frozen=True)
class Intent:
    """What a holder is about to do to one key, kept in its lease so a successor can finish
    or undo it: new bytes staged at `staging` with this `sha256`, or (both None) a delete."""

    staging: str | None = None
    sha256: str | None = None


class PathBusy(Unavailable):
    default_detail = "Another write to this path is in progress; retry shortly"


@dataclass(frozen=True)
class Held:
    token: str
    keys: list[str]


def lease_collection() -> Collection:
    images = get_collection()
    return images.database[LEASES]


def ensure_lease_indexes(collection: Collection | None = None) -> list[str]:
    collection = collection if collection is not None else lease_collection()
    return [
        collection.create_index([("expires", ASCENDING)], expireAfterSeconds=FORGET_AFTER_SECONDS)
    ]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Leases:
    def __init__(self, recover: Recover) -> None:
        self._collection = lease_collection()
        self.recover = recover
        self.seconds = settings.WRITE_LEASE_SECONDS
        self.wait = settings.WRITE_LEASE_WAIT_SECONDS

    @property
    def collection(self) -> Collection:
        """The leases of the current client: a write settled in the background may outlive
        the client its writer used."""
        images = get_collection()
        if self._collection.database.client is not images.database.client:
            self._collection = images.database[LEASES]
        return self._collection

    def rounds(self, intents: dict[str, Intent]) -> Iterator[Held]:
        """Yield the keys as their leases are taken, a group at a time; 503 (`PathBusy`) for
        keys still held by others after the wait. The caller releases what it was given."""
        pending = dict(intents)
        deadline = time.monotonic() + self.wait
        pause = _FIRST_PAUSE
        while pending:
            held = self.take(pending)
            if held.keys:
                for key in held.keys:
                    del pending[key]
                yield held
                pause = _FIRST_PAUSE
                continue
            if time.monotonic() > deadline:
                raise PathBusy()
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, _LONGEST_PAUSE)

    def take(self, intents: dict[str, Intent]) -> Held:
        """Take every free or expired lease among `intents` at once (no waiting)."""
        token = uuid.uuid4().hex
        now = _now()
        records = [self._record(key, intent, token, now) for key, intent in intents.items()]
        busy: list[str] = []
        try:
            self.collection.insert_many(records, ordered=False)
        except BulkWriteError as error:
            errors = (error.details or {}).get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                self.settle_later(Held(token, list(intents)))
                raise
            busy = [records[e["index"]]["_id"] for e in errors]
        except BaseException as error:
            if may_have_applied(error):  # leases of this token may exist: give them back
                self.settle_later(Held(token, list(intents)))
            raise
        taken = [key for key in intents if key not in set(busy)]
        try:
            taken += [key for key in busy if self._take_over(key, intents[key], token, now)]
        except BaseException:  # a recovery failed (storage down): give back what was taken
            self.release_quietly(Held(token, taken), taken)  # not the failed one's
            raise
        return Held(token, taken)

    def _take_over(self, key: str, intent: Intent, token: str, now: dt.datetime) -> bool:
        stale = self.collection.find_one_and_update(
            {"_id": key, "expires": {"$lt": now}},
            {"$set": self._record(key, intent, token, now)},
        )
        if stale is None:
            return False
        self.recover(key, stale)
        return True

    def _record(self, key: str, intent: Intent, token: str, now: dt.datetime) -> dict[str, Any]:
        expires = now + dt.timedelta(seconds=self.seconds)
        return {"_id": key, "token": token, **asdict(intent), "expires": expires}

    def release(self, held: Held, keys: list[str] | None = None) -> None:
        """Give back the leases of `keys` (default: all of `held`). One delete per key, so
        that the driver retries the batch after a failover (a multi-document delete it would
        not)."""
        keys = held.keys if keys is None else keys
        if keys:
            removals = [DeleteOne({"_id": key, "token": held.token}) for key in keys]
            self.collection.bulk_write(removals, ordered=False)

    def release_quietly(self, held: Held, keys: list[str] | None = None) -> None:
        """Release after a write; when the database cannot be reached, settle the leases in the
        background as soon as it can (`settle_later`)."""
        try:
            self.release(held, keys)
        except Exception:  # the database may be what failed
            self.settle_later(Held(held.token, held.keys if keys is None else keys))

    def settle_later(self, held: Held) -> None:
        """Resolve leases whose write may or may not have landed, without waiting for them to
        expire: in the background, once the database answers, recover each key from what the
        database now holds (as a successor would) and release it."""
        if held.keys:
            threading.Thread(target=self._settle, args=(held,), daemon=True).start()

    def settle(self, key: str, intent: Intent) -> None:
        """Recover `key` now under its lease, recording `intent` (see `settle_unleased`); in
        the background if the lease or the database cannot be had."""
        try:
            for held in self.rounds({key: intent}):
                self.recover(key, asdict(intent))
                self.release_quietly(held)
        except Exception:
            logger.warning("Settling %s in the background", key, exc_info=True)
            self.settle_unleased(key, intent)

    def settle_unleased(self, key: str, intent: Intent) -> None:
        """Resolve, in the background, a write made without a lease (`FileWriter.create`) that
        cannot be finished now: take the key's lease recording `intent`, recover the key as a
        successor would, and release it."""
        threading.Thread(target=self._settle_unleased, args=(key, intent), daemon=True).start()

    def _settle_unleased(self, key: str, intent: Intent) -> None:
        deadline = time.monotonic() + self.seconds + self.wait
        pause, held = _FIRST_PAUSE, None
        while time.monotonic() < deadline:
            try:
                held = held or self.take({key: intent})
                if held.keys:
                    self.recover(key, asdict(intent))
                    self.release_quietly(held)
                    return
                held = None  # another writer holds the key: ask again
            except Exception:  # a lease taken and not recovered stays, naming the intent
                logger.debug("Settling %s: retrying", key, exc_info=True)
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(pause * 2, _LONGEST_SETTLE_PAUSE)
        logger.warning("Could not settle the write of %s: check_integrity --fix will", key)

    def _settle(self, held: Held) -> None:
        deadline = time.monotonic() + self.seconds  # then a successor recovers them
        pending, pause = list(held.keys), _FIRST_PAUSE
        while pending and time.monotonic() < deadline:
            try:
                while pending:
                    self._settle_one(held.token, pending[0])
                    pending.pop(0)
            except Exception:
                time.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, _LONGEST_SETTLE_PAUSE)
        if pending:
            logger.warning("%d leases left to expire and be recovered", len(pending))

    def _settle_one(self, token: str, key: str) -> None:
        # A majority-acknowledged write first: once it lands, every write the previous primary
        # had replicated is committed or gone for good, so the reads below see the outcome.
        lease = self.collection.find_one_and_update(
            {"_id": key, "token": token}, {"$set": {"settling": True}}
        )
        if lease is None:
            return  # never taken, or already released
        self.recover(key, lease)
        self.collection.delete_one({"_id": key, "token": token})

    def expired(self) -> Iterator[str]:
        for lease in self.collection.find({"expires": {"$lt": _now()}}, {"_id": 1}):
            yield lease["_id"]

    def staging_keys(self) -> set[str]:
        """Staging keys that a live or expired lease still records."""
        cursor = self.collection.find({"staging": {"$ne": None}}, {"staging": 1})
        return {lease["staging"] for lease in cursor}
