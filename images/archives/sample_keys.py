"""The keys every sample of a training export carries, so that loaders which infer a schema
from the first samples (Hugging Face `datasets`) see every key: the top-level keys of the
selected documents and the keys of their `data`, a key a document lacks written as null."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from images.core.documents import PHASH_BANDS, SYSTEM_FIELDS
from images.core.query import ImageQuery
from images.store.repository import ImageRepository

_TOP = "top:"
_DATA = "data:"
_KEYS_OF_EACH_DOCUMENT = {
    "$concatArrays": [
        {"$map": {"input": {"$objectToArray": "$$ROOT"}, "in": {"$concat": [_TOP, "$$this.k"]}}},
        {
            "$map": {
                "input": {
                    "$objectToArray": {
                        "$cond": [{"$eq": [{"$type": "$data"}, "object"]}, "$data", {}]
                    }
                },
                "in": {"$concat": [_DATA, "$$this.k"]},
            }
        },
    ]
}


@dataclass(frozen=True)
class SampleKeys:
    top: tuple[str, ...]
    data: tuple[str, ...]

    def fill(self, printed: dict[str, Any]) -> dict[str, Any]:
        """`printed` (a document as the API prints it) with every key, in one order."""
        data = printed.get("data")
        data = data if isinstance(data, dict) else {}
        filled = {key: printed.get(key) for key in self.top}
        filled["data"] = {key: data.get(key) for key in self.data}
        return filled


def survey_keys(repository: ImageRepository, query: ImageQuery) -> SampleKeys:
    """The keys found in the documents `query` selects."""
    stages: list[dict[str, Any]] = [
        {"$project": {"_id": 0, "keys": _KEYS_OF_EACH_DOCUMENT}},
        {"$unwind": "$keys"},
        {"$group": {"_id": "$keys"}},
    ]
    found = {row["_id"] for row in repository.aggregate_selection(query, stages)}
    top = {key.removeprefix(_TOP) for key in found if key.startswith(_TOP)} | {"data"}
    top.discard(PHASH_BANDS)  # never printed (images.core.documents.to_api)
    data = sorted(key.removeprefix(_DATA) for key in found if key.startswith(_DATA))
    ordered = [key for key in SYSTEM_FIELDS if key in top]
    ordered += sorted(top - set(SYSTEM_FIELDS))
    return SampleKeys(tuple(ordered), tuple(data))
