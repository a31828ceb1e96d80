"""Cursor batches measured in bytes.

MongoDB answers a cursor in batches of at most 16 MiB; `batch_size` only says how many
documents a batch asks for, so 500 documents of 1 MiB come as batches of 16 MiB, each decoded
whole before the first of them is used. A read that must stay within DOCUMENT_BUFFER_SIZE
(ImageRepository.find_weighed) weighs each document as it takes it: by what its reader makes
of it (a list weighs the JSON it prints, so nothing is measured twice), else by its BSON size
(`as_stored`); after each batch the cursor asks for as many documents as fit the budget
(`fitting`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import bson

T = TypeVar("T")
# A document → what the read yields for it, and its size in bytes.
Weigh = Callable[[dict[str, Any]], tuple[T, int]]


def as_stored(document: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The document itself, weighed as MongoDB stores it (BSON)."""
    return document, len(bson.encode(document))


def fitting(budget: int, largest: int, most: int) -> int:
    """How many documents of about `largest` bytes a batch asks for to hold about `budget`:
    at least one, at most `most`."""
    return max(1, min(most, budget // max(largest, 1)))
