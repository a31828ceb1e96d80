"""`mongodb_data.xlsx` of an export: one row per document, one column per `data` key.

Written with openpyxl in write-only mode (rows go to disk as they are appended, strings inline),
from the documents an export has already printed to a JSON-lines file.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from images.api.renderers import dumps
from images.runtime.offload import run_off_loop

# openpyxl's ILLEGAL_CHARACTERS_RE. openpyxl itself is imported on first export: importing it at
# start cost about 30 MiB of memory in every worker.
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")

FIXED_COLUMNS = ("_id", "file", "time")
# Excel's limits: 16,384 columns, 32,767 characters in a cell.
MAX_COLUMNS = 16384
MAX_CELL_TEXT = 32767


def write_documents_xlsx(documents_jsonl: Path, data_keys: Iterable[str], target: Path) -> None:
    """One sheet: `_id`, `file`, `time`, then the `data` keys; values as text, nested as JSON.

    Every cell but `time` (a date) is written as a string cell, so text starting with `=`
    stays text: no cell of the sheet is a formula.

    openpyxl builds every cell in Python (25,000 documents of 200 keys: over a minute), so the
    sheet is written on a native thread (`images.runtime.offload`), a slice of rows of about
    ROWS_SECONDS at a time: a gevent worker's loop serves its other requests meanwhile, and a
    request that is given up stops between slices.
    """
    with open(documents_jsonl, "rb") as lines:
        sheet = run_off_loop(_SheetWriter, list(data_keys))
        while run_off_loop(sheet.append_rows, lines, ROWS_SECONDS):
            pass
        run_off_loop(sheet.save, target)


# How long one slice of rows is written for, on a native thread.
ROWS_SECONDS = 0.25


class _SheetWriter:
    """A write-only workbook of one sheet, filled a slice of rows at a time."""

    def __init__(self, data_keys: list[str]) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell

        self.cell_class = WriteOnlyCell
        self.columns = data_keys[: MAX_COLUMNS - len(FIXED_COLUMNS)]
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet("Sheet1")
        self.sheet.append([self.text_cell(name) for name in (*FIXED_COLUMNS, *self.columns)])

    def text_cell(self, value: Any) -> Any:
        text = _text(value)
        if text is None:
            return None
        cell = self.cell_class(self.sheet, text)
        cell.data_type = "s"
        return cell

    def append_rows(self, lines: IO[bytes], seconds: float) -> bool:
        """Rows for the documents of `lines` (JSON lines) for about `seconds`; whether any
        remain."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            line = lines.readline()
            if not line:
                return False
            document = orjson.loads(line)
            data = document.get("data")
            data = data if isinstance(data, dict) else {}
            self.sheet.append(
                [
                    self.text_cell(document.get("_id")),
                    self.text_cell(document.get("file")),
                    _time(document.get("time"), self.text_cell),
                    *(self.text_cell(data.get(key)) for key in self.columns),
                ]
            )
        return True

    def save(self, target: Path) -> None:
        self.workbook.save(target)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else dumps(value).decode()
    return ILLEGAL_CHARACTERS_RE.sub("", text)[:MAX_CELL_TEXT]


def _time(value: Any, text_cell) -> Any:
    """A date cell (UTC, as Excel has no zones) when `time` is ISO 8601, else its text."""
    if not isinstance(value, str):
        return text_cell(value)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return text_cell(value)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed
