"""`Client`: the imagestore API in Python (documents, files, bulk edits, archives, samples)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import httpx

from imagestore_client.auth import BearerToken
from imagestore_client.errors import IntegrityError, NotFound
from imagestore_client.files import capped, write_verified
from imagestore_client.paging import every_match
from imagestore_client.query import Params, build_params, encode_value
from imagestore_client.samples import prefetch_samples
from imagestore_client.shuffle import documents_in_order, shuffled
from imagestore_client.transport import RetryPolicy, Transport

# Pages of `find` stay at or under the size the service renders at once (above it streams).
PAGE_SIZE = 1000
CHUNK = 1024 * 1024
Source = str | os.PathLike | bytes | IO[bytes]


class Client:
    """A connection to one imagestore service; safe to share between threads.

    `token` is a bearer token; `auth` any `httpx.Auth` (e.g. `ClientCredentials`) instead.
    Failures raise the typed errors of `imagestore_client.errors`; 503s, 502/504/429 and
    connection errors are retried with backoff first (`retry`).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        auth: httpx.Auth | None = None,
        timeout: float = 120.0,
        retry: RetryPolicy | None = None,
        pool_size: int = 16,
    ) -> None:
        if token and auth:
            raise ValueError("Give either token or auth, not both")
        self.url = url.rstrip("/")
        self.transport = Transport(
            self.url, auth or (BearerToken(token) if token else None), timeout,
            retry or RetryPolicy(), pool_size,
        )  # fmt: skip

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    # --- service ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self._json("GET", "/")

    # --- documents --------------------------------------------------------------------------
    def upload(
        self,
        source: Source,
        file: str | None = None,
        data: Mapping[str, Any] | None = None,
        time: dt.datetime | str | None = None,
        on_duplicate: str | None = None,
        metadata: str | None = None,
        similar: int | None = None,
        check_leak: str | None = None,
    ) -> dict[str, Any]:
        """Store one image (a path, bytes or a binary file) with its `data`; returns the document.

        `file` is the stored path (default: the file's name); an existing `file` is replaced,
        its `data` too unless `metadata="merge"` (the stored keys kept, `data`'s set over them).
        `on_duplicate="reject"|"skip"`: the same bytes stored at another path raise `Conflict`
        or answer that stored document; with `similar=N` a picture within pHash distance N
        counts too. `check_leak="split"` raises `Conflict` when a near-copy (within `similar`,
        default 10) is stored with another `data.split` than `data`'s.
        """
        name = file or _source_name(source)
        form = {"json": json.dumps(dict(data or {}), default=str), "file": name}
        if time is not None:
            form["time"] = encode_value(time)
        options = {
            "on_duplicate": on_duplicate,
            "metadata": metadata,
            "similar": similar,
            "check_leak": check_leak,
        }
        params = {option: value for option, value in options.items() if value not in (None, "")}

        def body() -> dict[str, Any]:
            content = _open_source(source)
            opened = [content] if isinstance(source, str | os.PathLike) else []
            files = {"image": (Path(name).name, content)}
            return {"files": files, "data": form, "opened": opened}

        return self._json("POST", "/images", body=body, params=params)

    def find(self, page_size: int = PAGE_SIZE, **query: Any) -> Iterator[dict[str, Any]]:
        """Every matching document, a page at a time (`limit` and `skip` bound the whole run)."""

        def get_page(params: Params) -> list[dict[str, Any]]:
            return self._json("GET", "/images", params=params)["items"]

        return every_match(get_page, build_params(query), page_size)

    def count(self, **query: Any) -> int:
        params = [(k, v) for k, v in build_params(query) if k not in ("limit", "select")]
        return self._json("GET", "/images", params=[*params, ("limit", "1"), ("select", "_id")])[
            "total"
        ]

    def fields(self) -> list[str]:
        """The top-level keys of `data` (of the newest images, as `GET /fields` samples them)."""
        return self._json("GET", "/fields")

    def changes(self, since: str | None = None, limit: int = 1000, wait: float = 0) -> dict:
        """`{changes, next}`: the changes after the cursor `since` (GET /changes); without it,
        only the current cursor. `wait` seconds (up to 30) hold an empty answer for a change."""
        params = {"limit": limit, "wait": wait, **({"since": since} if since else {})}
        return self._json("GET", "/changes", params=params)

    def get(self, image_id: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{image_id}")

    def update(
        self, image_id: str, changes: Mapping[str, Any] | None = None, unset: Iterable[str] = ()
    ) -> dict[str, Any]:
        """Set `changes` in the image's `data` (dotted keys reach nested values), remove `unset`."""
        return self._json("PATCH", f"/images/{image_id}", json=_patch_body(changes, unset))

    def replace(self, image_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the image's whole `data`."""
        return self._json("PUT", f"/images/{image_id}", json=dict(data))

    def delete(self, image_id: str) -> None:
        self._json("DELETE", f"/images/{image_id}")

    def update_many(
        self, changes: Mapping[str, Any] | None = None, unset: Iterable[str] = (), **query: Any
    ) -> dict[str, Any]:
        _require_query(query)
        params = build_params(_without_all(query))
        return self._json("PATCH", "/images", params=params, json=_patch_body(changes, unset))

    def delete_many(self, **query: Any) -> int:
        """Delete every match and its file; `all=True` is needed to delete without a query."""
        _require_query(query)
        params = build_params(_without_all(query))
        return self._json("DELETE", "/images", params=params)["deletedCount"]

    def duplicates(
        self, page_size: int = 100, distance: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Groups of the caller's images sharing bytes: `{sha256, count, items: [{_id, file}]}`.

        With `distance`, groups of near-copies instead: `{phash, count, items: [{_id, file,
        distance}]}`, the first item the group's anchor, the others within `distance` of it.
        """
        return self._pages("/images/duplicates", {"distance": distance}, page_size)

    def similar(
        self, image_id: str, distance: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The documents of the pictures within pHash `distance` (service default 10) of the
        image's, each with its `distance`, nearest first; the image itself is not listed."""
        params = {"distance": distance, "limit": limit}
        sent = {name: value for name, value in params.items() if value is not None}
        return self._json("GET", f"/images/{image_id}/similar", params=sent)["items"]

    def leaks(
        self, field: str, distance: int | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Pairs of near-copies whose `data.<field>` differ (a train/test leak), over every page:
        `{a: {_id, file, value}, b: {_id, file, value}, distance}`."""
        return self._pages("/images/leaks", {"field": field, "distance": distance}, page_size)

    def _pages(
        self, path: str, params: Mapping[str, Any], page_size: int
    ) -> Iterator[dict[str, Any]]:
        """The items of every page of a route paged by `after`, until its `next` is null (a
        page may be short, or empty, before the last)."""
        sent = {name: value for name, value in params.items() if value is not None}
        after: str | None = None
        while True:
            page_params = {**sent, "limit": page_size, **({"after": after} if after else {})}
            page = self._json("GET", path, params=page_params)
            yield from page["items"]
            after = page.get("next")
            if not after:
                return

    # --- files ------------------------------------------------------------------------------
    def download(self, image: str | Mapping[str, Any], dest: str | os.PathLike | None = None):
        """The image's bytes, or written to `dest` (returned as a Path), checked against sha256.

        Give the document instead of its id to check the hash without fetching it first.
        """
        document = self.get(image) if isinstance(image, str) else image
        sha256 = document.get("sha256")

        def consume(response: httpx.Response) -> bytes | Path:
            limit = _announced_size(document, response)
            chunks = capped(response.iter_bytes(CHUNK), limit, document["_id"])
            if dest is None:
                content = b"".join(chunks)
                _check_hash(content, sha256, document["_id"])
                return content
            write_verified(Path(dest), chunks, sha256)
            return Path(dest)

        return self.transport.read_body(f"/images/{document['_id']}/image", consume)

    def has_file(self, image_id: str) -> bool:
        """Whether the service serves the image's file (a one-byte ranged GET); False on 404."""
        path = f"/images/{image_id}/image"
        try:
            with self.transport.stream("GET", path, headers={"Range": "bytes=0-0"}):
                return True
        except NotFound:
            return False

    def iter_samples(
        self,
        prefetch: int = 32,
        workers: int = 8,
        shard: tuple[int, int] | None = None,
        shuffle: int | None = None,
        **query: Any,
    ) -> Iterator[tuple[dict[str, Any], bytes]]:
        """`(document, bytes)` of every match, in order, with up to `prefetch` fetched ahead.

        `shard=(index, count)` keeps every count-th match from the index-th on, so the
        workers of a data loader each read a disjoint part. `shuffle=seed` orders the matches
        by a keyed hash of their `_id` (the same seed, the same order; shards split that
        order), holding the selection's `_id`s in memory (about 150 bytes an image).
        """
        documents = self._ordered_documents(shuffle, query)
        if shard is not None:
            index, count = shard
            if not 0 <= index < count:
                raise ValueError("shard must be (index, count) with 0 <= index < count")
            documents = itertools.islice(documents, index, None, count)
        return prefetch_samples(documents, self.download, prefetch, workers)

    def _ordered_documents(
        self, seed: int | None, query: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        if seed is None:
            return self.find(**query)
        if query.get("sort") or query.get("order"):
            raise ValueError("shuffle replaces the order: give no sort or order with it")
        listed = self.find(**{**query, "select": "_id"})
        ids = shuffled((item["_id"] for item in listed), seed)
        return documents_in_order(
            ids, lambda batch: self.find(ids=batch, select=query.get("select"))
        )

    # --- archives ---------------------------------------------------------------------------
    def export(
        self, dest: str | os.PathLike, format: str | None = None, **query: Any
    ) -> dict[str, Any]:
        """Stream `GET /export` to `dest`; `format` zip (default), webdataset, imagefolder, jsonl."""
        params = build_params(query)
        if format:
            params.append(("format", format))
        with self.export_stream(params) as response:
            size = write_verified(Path(dest), response.iter_bytes(CHUNK), None)
        return {"path": str(dest), "bytes": size}

    def export_stream(self, params: Params):
        """The streamed response of `GET /export` (a context manager)."""
        return self.transport.stream("GET", "/export", params=params)

    def import_archive(
        self,
        archive: str | os.PathLike,
        data: Mapping[str, Any] | None = None,
        on_duplicate: str | None = None,
        similar: int | None = None,
    ) -> dict[str, Any]:
        """Upload a zip to `POST /import`; `data` is merged over every imported document.

        `on_duplicate` and `similar` as for `upload`, entry by entry."""
        form: dict[str, str] = {}
        if data:
            form["json"] = json.dumps(dict(data), default=str)
        if on_duplicate:
            form["on_duplicate"] = on_duplicate
        if similar is not None:
            form["similar"] = str(similar)
        path = Path(archive)

        def body() -> dict[str, Any]:
            handle = open(path, "rb")  # noqa: SIM115 (closed by the transport once sent)
            return {"files": {"archive": (path.name, handle)}, "data": form, "opened": [handle]}

        # Not retried: a failure midway may have imported part of the archive.
        with self.transport.stream("POST", "/import", body=body, retry=False) as response:
            return json.loads(response.read())

    # --- plumbing ---------------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.transport.request(method, path, **kwargs)
        return response.json()


def _source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    name = getattr(source, "name", None)
    if isinstance(name, str) and name:
        return Path(name).name
    raise ValueError("Give `file` when uploading bytes or an unnamed file")


def _open_source(source: Source) -> IO[bytes] | bytes:
    if isinstance(source, str | os.PathLike):
        return open(source, "rb")
    if isinstance(source, bytes):
        return source
    source.seek(0)
    return source


def _patch_body(changes: Mapping[str, Any] | None, unset: Iterable[str]) -> dict[str, Any]:
    body = dict(changes or {})
    if unset:
        body["$unset"] = {key: "" for key in unset}
    return body


def _require_query(query: Mapping[str, Any]) -> None:
    if not query.get("all") and not any(v is not None for k, v in query.items() if k != "all"):
        raise ValueError("No query given: pass all=True to act on every image")


def _without_all(query: Mapping[str, Any]) -> dict[str, Any]:
    """The query as sent: `all=True` becomes the service's `all=true`, else it is dropped."""
    sent = {k: v for k, v in query.items() if k != "all"}
    return {**sent, "all": "true"} if query.get("all") else sent


def _announced_size(document: Mapping[str, Any], response: httpx.Response) -> int | None:
    """The most bytes a download may bring: the document's `size`, the `Content-Length`."""
    sizes: list[Any] = [document.get("size")]
    if response.headers.get("Content-Encoding", "identity") == "identity":
        sizes.append(response.headers.get("Content-Length"))
    found = [int(size) for size in sizes if isinstance(size, int) or str(size).isdigit()]
    return min(found, default=None)


def _check_hash(content: bytes, sha256: str | None, image_id: str) -> None:
    if sha256 and hashlib.sha256(content).hexdigest() != sha256:
        raise IntegrityError(f"{image_id}: downloaded bytes do not match sha256 {sha256}")
