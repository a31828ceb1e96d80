"""Per-path write leases: one MongoDB document per storage key, held by one writer at a time.

A lease is `{_id: <key>, token, staging, sha256, expires}`. Taking it is an insert (the unique
`_id` makes exactly one of two writers win); giving it back deletes it by token. A lease whose
`expires` has passed belongs to a writer that died or lost its database mid-write: the next
writer takes it over with a compare-and-set on the old token and first lets `recover` finish or
undo what the lease records. Nobody waits on more than one lease at a time while holding others
(a batch works on the keys it got and asks again for the rest), so batches cannot deadlock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from pymongo import ASCENDING
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from images.core.errors import Unavailable
from images.store.repository import DUPLICATE_KEY, get_collection

LEASES = "image_write_leases"
# Leases nobody recovered are dropped by MongoDB after this long (check_integrity runs first).
FORGET_AFTER_SECONDS = 7 * 24 * 3600
_FIRST_PAUSE = 0.005
_LONGEST_PAUSE = 0.2

Recover = Callable[[str, dict[str, Any]], None]


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
        self.collection = lease_collection()
        self.recover = recover
        self.seconds = settings.WRITE_LEASE_SECONDS
        self.wait = settings.WRITE_LEASE_WAIT_SECONDS

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
                raise
            busy = [records[e["index"]]["_id"] for e in errors]
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
        if keys is None:
            # Every lease holding this token is one of `held.keys` (the token is new to each
            # `take`), so the token selects them: SecantusDB matches a long `$in` on `_id`
            # against every lease (0.6 s for a batch of 500), MongoDB scans only live leases.
            if held.keys:
                self.collection.delete_many({"token": held.token})
        elif keys:
            self.collection.delete_many({"_id": {"$in": keys}, "token": held.token})

    def release_quietly(self, held: Held, keys: list[str] | None = None) -> None:
        """Release after a failure; a lease left behind expires and is recovered."""
        with contextlib.suppress(Exception):  # the database may be what failed
            self.release(held, keys)

    def expired(self) -> Iterator[str]:
        for lease in self.collection.find({"expires": {"$lt": _now()}}, {"_id": 1}):
            yield lease["_id"]

    def staging_keys(self) -> set[str]:
        """Staging keys that a live or expired lease still records."""
        cursor = self.collection.find({"staging": {"$ne": None}}, {"staging": 1})
        return {lease["staging"] for lease in cursor}
