"""Prometheus gauges for what is stored: image count and bytes, from one cached aggregate.

The numbers are computed only when /metrics is scraped, at most once per CACHE_SECONDS, by a
single `$group` with a short time limit; a scrape never waits long on a slow database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from pymongo.errors import PyMongoError

from images.store.repository import get_collection

logger = logging.getLogger(__name__)

CACHE_SECONDS = 30.0
AGGREGATE_TIME_LIMIT_MS = 2000


@dataclass(frozen=True)
class StoredTotals:
    images: int
    bytes: int
    without_facts: int


def stored_totals() -> StoredTotals:
    pipeline = [
        {
            "$group": {
                "_id": None,
                "images": {"$sum": 1},
                "bytes": {"$sum": {"$ifNull": ["$size", 0]}},
                "with_facts": {"$sum": {"$cond": [{"$ifNull": ["$sha256", False]}, 1, 0]}},
            }
        }
    ]
    rows = list(get_collection().aggregate(pipeline, maxTimeMS=AGGREGATE_TIME_LIMIT_MS))
    if not rows:
        return StoredTotals(0, 0, 0)
    row = rows[0]
    return StoredTotals(
        int(row["images"]), int(row["bytes"]), int(row["images"]) - int(row["with_facts"])
    )


class StoredImagesCollector(Collector):
    """Yields the cached totals; after a failure, no gauges until the next successful query."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._totals: StoredTotals | None = None
        self._taken_at = float("-inf")

    def totals(self) -> StoredTotals | None:
        with self._lock:
            if time.monotonic() - self._taken_at >= self.cache_seconds:
                self._taken_at = time.monotonic()
                try:
                    self._totals = stored_totals()
                except (PyMongoError, RuntimeError) as error:
                    logger.warning("Image totals for /metrics unavailable: %s", error)
                    self._totals = None
            return self._totals

    def expire(self) -> None:
        """Forget the cached totals: the next scrape queries again."""
        with self._lock:
            self._taken_at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        totals = self.totals()
        if totals is None:
            return
        yield GaugeMetricFamily("imagestore_images", "Images stored (documents).", totals.images)
        yield GaugeMetricFamily(
            "imagestore_image_bytes",
            "Bytes of the stored image files (sum of `size`).",
            totals.bytes,
        )
        yield GaugeMetricFamily(
            "imagestore_images_without_facts",
            "Images without facts (run `manage.py backfill_facts`).",
            totals.without_facts,
        )

    def describe(self) -> list:
        # Registering must not query the database.
        return []


_registered: StoredImagesCollector | None = None


def register() -> StoredImagesCollector:
    """Add the collector to the default registry once per process."""
    global _registered
    if _registered is None:
        _registered = StoredImagesCollector()
        REGISTRY.register(_registered)
    return _registered
