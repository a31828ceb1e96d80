"""`mongodb_data.xlsx` of an export: one row per document, one column per `data` key.

Written with openpyxl in write-only mode (rows go to disk as they are appended, strings inline),
from the documents an export has already printed to a JSON-lines file.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from images.api.renderers import dumps

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
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    columns = list(data_keys)[: MAX_COLUMNS - len(FIXED_COLUMNS)]
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Sheet1")

    def text_cell(value: Any) -> Any:
        text = _text(value)
        if text is None:
            return None
        cell = WriteOnlyCell(sheet, text)
        cell.data_type = "s"
        return cell

    sheet.append([text_cell(name) for name in (*FIXED_COLUMNS, *columns)])
    with open(documents_jsonl, "rb") as lines:
        for line in lines:
            document = orjson.loads(line)
            data = document.get("data")
            data = data if isinstance(data, dict) else {}
            sheet.append(
                [
                    text_cell(document.get("_id")),
                    text_cell(document.get("file")),
                    _time(document.get("time"), text_cell),
                    *(text_cell(data.get(key)) for key in columns),
                ]
            )
    workbook.save(target)


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
