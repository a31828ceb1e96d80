"""`push`: upload a planned tree concurrently, skipping what is stored, resumable by design.

Each batch of files is hashed, then looked up by sha256 in one `GET /images` (`filter` with
`$in`): a file already stored at its path with the same bytes is skipped (its metadata patched
if the push brings new values), the rest is uploaded by `jobs` threads. Uploads upsert on the
stored path, so re-running an interrupted push stores nothing twice.

Metadata is merged by default: the keys the push brings are set over the stored `data`, whether
the bytes changed (an upload with `metadata=merge`) or not (a PATCH of the keys that differ), so
keys curated on the service are kept. `replace_metadata`: the stored `data` becomes what the
push brings, in both cases (a plain upload, a PUT).

`verify`: a file skipped because its bytes are stored is checked to be really there (a one-byte
ranged GET of its file); one the service has lost is uploaded again (`restored`), which the
service stores under the same `_id`.

`similar` (with `on_duplicate` skip or reject): a picture within that pHash distance of one
stored at another path is a duplicate too; the service decides at each upload, since only it
knows the pHashes. `check_leak` (a data field such as `split`): the service refuses a file
whose near-copy is stored with another value of that field, and the file fails with the
reason, as a rejected duplicate does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from imagestore_client.client import Client
from imagestore_client.errors import Conflict, ImagestoreError
from imagestore_client.files import sha256_of
from imagestore_client.push_plan import PushItem
from imagestore_client.tally import RunSummary, Tally

# sha256 values per lookup: the query string stays under gunicorn's 4 KB request line.
LOOKUP_BATCH = 40


@dataclass
class PushSummary(RunSummary):
    uploaded: int = 0
    updated: int = 0
    skipped: int = 0
    duplicates: int = 0
    restored: int = 0  # skipped files the service had lost, uploaded again (`verify`)
    # (file not stored, what it duplicates: "same bytes as <kept>", "a near-copy of <kept>")
    kept: list[tuple[str, str]] = field(default_factory=list)

    @property
    def done(self) -> int:
        counted = self.uploaded + self.updated + self.skipped + self.duplicates + self.restored
        return counted + len(self.failed)


class Pusher:
    def __init__(
        self,
        client: Client,
        jobs: int = 8,
        on_duplicate: str = "upload",
        scoped: bool = False,
        progress: Callable[[int], None] = lambda n: None,
        replace_metadata: bool = False,
        verify: bool = False,
        similar: int | None = None,
        check_leak: str | None = None,
    ) -> None:
        self.client = client
        self.similar = similar
        self.check_leak = check_leak
        self.jobs = jobs
        self.on_duplicate = on_duplicate
        self.replace_metadata = replace_metadata
        self.verify = verify
        self.scoped = scoped  # under per-user scope stored paths start with the owner's folder
        self.summary = PushSummary()
        self.tally = Tally(self.summary, progress)

    def run(self, items: Iterable[PushItem]) -> PushSummary:
        started = time.monotonic()
        with ThreadPoolExecutor(self.jobs, thread_name_prefix="imagestore-push") as pool:
            in_flight: set[Future] = set()
            try:
                for batch in _batches(items, LOOKUP_BATCH):
                    for task in self._tasks(batch, pool):
                        in_flight.add(pool.submit(task))
                        while len(in_flight) >= self.jobs * 2:
                            _, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                wait(in_flight)
            except KeyboardInterrupt:
                self.summary.interrupted = True
                for future in in_flight:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _tasks(self, batch: list[PushItem], pool: ThreadPoolExecutor) -> list[Callable[[], None]]:
        """Uploads and metadata patches `batch` needs; the rest is recorded as skipped or failed."""
        list(pool.map(_hash, batch))
        ready = [item for item in batch if item.error is None]
        for item in batch:
            if item.error is not None:
                self._failed(item, item.error)
        if not ready:
            return []
        try:
            stored = self._stored_by_hash(
                {item.sha256 for item in ready if item.sha256 is not None}
            )
        except ImagestoreError as error:
            for item in ready:
                self._failed(item, f"lookup failed: {error}")
            return []
        tasks = (self._task(item, stored.get(item.sha256 or "", [])) for item in ready)
        return [task for task in tasks if task is not None]

    def _stored_by_hash(self, hashes: set[str]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        query: dict[str, Any] = {
            "filter": {"sha256": {"$in": sorted(hashes)}},
            "select": "file sha256 data",
        }
        for document in self.client.find(**query):
            found.setdefault(document["sha256"], []).append(document)
        return found

    def _task(self, item: PushItem, same_bytes: list[dict[str, Any]]) -> Callable[[], None] | None:
        """What is left to do for `item` given the stored images with its bytes (None: nothing)."""
        at_target = next((d for d in same_bytes if self._stored_path(d) == item.target), None)
        if at_target is not None and self.verify:
            return lambda: self._verify(item, at_target)
        if at_target is not None:
            return self._metadata_task(item, at_target)
        if same_bytes and self.on_duplicate != "upload":
            elsewhere = same_bytes[0]["file"]
            if self.on_duplicate == "skip":
                self._duplicate(item, f"same bytes as {elsewhere}")
            else:
                self._failed(item, f"same bytes already stored as {elsewhere}")
            return None
        return lambda: self._upload(item)

    def _metadata_task(self, item: PushItem, stored: dict[str, Any]) -> Callable[[], None] | None:
        """For bytes stored at the item's path: the metadata update it needs (None: nothing)."""
        send = self._metadata_update(item, stored)
        if send is None:
            self._count("skipped")
            return None
        return lambda: self._update(item, send)

    def _verify(self, item: PushItem, stored: dict[str, Any]) -> None:
        """Upload `item` again if the service lost the file of `stored`, else as unverified."""
        try:
            present = self.client.has_file(stored["_id"])
        except ImagestoreError as error:
            self._failed(item, f"verify failed: {error}")
            return
        if not present:
            self._upload(item, outcome="restored")
        elif (task := self._metadata_task(item, stored)) is not None:
            task()

    def _metadata_update(self, item: PushItem, stored: dict[str, Any]) -> Callable[[], Any] | None:
        """The call bringing the stored `data` to what the push means; None when it is there."""
        data = stored.get("data") or {}
        if self.replace_metadata:
            unchanged = data == item.data
            return None if unchanged else partial(self.client.replace, stored["_id"], item.data)
        changes = {k: v for k, v in item.data.items() if data.get(k) != v}
        return partial(self.client.update, stored["_id"], changes) if changes else None

    def _stored_path(self, document: dict[str, Any]) -> str:
        """The path as the push names it: under per-user scope the owner's folder is dropped."""
        file = document["file"]
        return file.split("/", 1)[-1] if self.scoped else file

    def _update(self, item: PushItem, send: Callable[[], Any]) -> None:
        """Send the metadata update of a file whose bytes are stored."""
        try:
            send()
        except Exception as error:  # fails this file, never the whole push
            self._failed(item, f"metadata update failed: {error}")
            return
        self._count("updated")

    def _upload(self, item: PushItem, outcome: str = "uploaded") -> None:
        try:
            on_duplicate = None if self.on_duplicate == "upload" else self.on_duplicate
            metadata = None if self.replace_metadata else "merge"
            document = self.client.upload(
                item.path,
                item.target,
                item.data,
                item.time,
                on_duplicate,
                metadata,
                similar=self.similar,
                check_leak=self.check_leak,
            )
        except Conflict as error:
            self._failed(item, _refusal(error))
        except ImagestoreError as error:
            self._failed(item, str(error))
        except OSError as error:
            self._failed(item, f"cannot read: {error}")
        except Exception as error:  # anything else fails this file, never the whole push
            self._failed(item, f"{type(error).__name__}: {error}")
        else:
            # With on_duplicate=skip the service answers the copy it already holds.
            if self._stored_path(document) == item.target:
                self._count(outcome)
            elif document.get("sha256") == item.sha256:
                self._duplicate(item, f"same bytes as {document['file']}")
            else:
                self._duplicate(item, f"a near-copy of {document['file']}{_at(document)}")

    def _count(self, outcome: str) -> None:
        self.tally.add(**{outcome: 1})

    def _duplicate(self, item: PushItem, kept: str) -> None:
        """`item` was not stored: `kept` says which stored copy stands for it."""
        with self.tally.lock:
            self.summary.kept.append((item.relative, kept))
        self._count("duplicates")

    def _failed(self, item: PushItem, reason: str) -> None:
        self.tally.fail(item.relative, reason)


def _refusal(error: Conflict) -> str:
    """Why the service refused an upload (409), from its answer: a near-copy in another split
    (`check_leak`), a near-copy or the same bytes stored elsewhere (`on_duplicate=reject`)."""
    body = error.body
    file = body.get("file")
    if file is None:
        return str(error)
    if body.get("field") is not None:
        field, value = body["field"], body.get("value")
        return f"409: a near-copy is stored as {file}{_at(body)} with {field}={shown(value)}"
    if "distance" in body:
        return f"409: a near-copy is already stored as {file}{_at(body)}"
    return str(error)


def _at(answer: dict[str, Any]) -> str:
    distance = answer.get("distance")
    return f" (distance {distance})" if isinstance(distance, int) else ""


def shown(value: Any) -> str:
    """A data value in a message: text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _hash(item: PushItem) -> None:
    if item.error is None:
        try:
            item.sha256 = sha256_of(item.path)
        except OSError as error:
            item.error = f"cannot read: {error}"


def _batches(items: Iterable[PushItem], size: int) -> Iterator[list[PushItem]]:
    batch: list[PushItem] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
