"""Names inside an ImageFolder export: a folder per label value, and file names that never
collide.

A label becomes one path component that is safe on every common file system. Characters that
are unsafe somewhere (`/`, `\\`, `:`, `*`, `?`, `"`, `<`, `>`, `|`, control characters) and `%`
itself are written as `%XX` (UTF-8 bytes), so two different labels never share a folder;
other characters, accents and scripts included, stay as they are. Folders already taken by the
export's own names and the device names Windows reserves (`CON`, `NUL`, ...) have their first
character escaped the same way, and over-long labels are cut and suffixed with a hash of the
full value.

Hugging Face's `imagefolder` loader reads a folder or file name as a split when a split word
(`train`, `validation`, `valid`, `dev`, `val`, `test`, `testing`, `eval`, `evaluation`,
`training`) stands in it between separators (`-._ `, digits) or the ends, at any depth. Inside
a label folder such a word has its first letter escaped (`test` → `%74est`, `img_val.jpg` →
`img_%76al.jpg`), so only the split folders name splits.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from images.core.errors import InvalidInput
from images.runtime.scratch import scratch_database

UNLABELLED = "_unlabelled"
METADATA_JSONL = "metadata.jsonl"
MISSING_JSON = "missing_files.json"
RESERVED_FOLDERS = frozenset({UNLABELLED, METADATA_JSONL, MISSING_JSON})
MAX_COMPONENT_BYTES = 255
# Names Windows keeps for devices, whatever their extension.
WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)]
)
MAX_FIELD_LENGTH = 256
MAX_SUFFIX_LENGTH = 16
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|%]')
# The split names of Hugging Face `datasets` (data_files.SPLIT_KEYWORDS) and its separators.
SPLIT_NAMES = (
    "train", "training", "validation", "valid", "dev", "val", "test", "testing", "eval",
    "evaluation",
)  # fmt: skip
_SPLIT_WORD = re.compile(
    rf"(?<![^-._ 0-9])(?:{'|'.join(SPLIT_NAMES)})(?![^-._ 0-9])", re.IGNORECASE
)


def parse_label_field(raw: str, name: str = "by") -> str:
    """The `by` (or `split`) parameter: a `data` key, dotted for nested values."""
    if not raw or len(raw) > MAX_FIELD_LENGTH:
        raise InvalidInput(
            f"Parameter '{name}' must be a data key of 1 to {MAX_FIELD_LENGTH} characters"
        )
    if "$" in raw or "\x00" in raw or any(part == "" for part in raw.split(".")):
        raise InvalidInput(f"Parameter '{name}' {raw!r} is not a data key (no '$', no empty part)")
    return raw


def label_value(data: Any, field: str) -> Any:
    """The value at a dotted path inside `data`; None when any step is missing."""
    value = data
    for part in field.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def label_text(value: Any) -> str | None:
    """A label value as text (numbers, booleans, lists as JSON); None for none or ""."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def label_folder(value: Any) -> str:
    """The folder of a label value; `_unlabelled` for none, null or an empty string."""
    text = label_text(value)
    if text is None:
        return UNLABELLED
    folder = without_split_words(_UNSAFE.sub(_escape, text))
    if _taken_name(folder):
        folder = _escape_char(folder[0]) + folder[1:]
    if folder[-1] in " .":  # Windows drops trailing dots and spaces
        folder = folder[:-1] + _escape_char(folder[-1])
    return _fit(folder, text)


def without_split_words(name: str) -> str:
    """`name` with the first letter of each split word escaped."""
    return _SPLIT_WORD.sub(lambda word: _escape_char(word[0][0]) + word[0][1:], name)


def _taken_name(folder: str) -> bool:
    """Names that mean something else: `.`/`..`, the export's own names, hidden names (a
    leading dot, or a leading space some tools drop) and Windows device names."""
    return (
        folder.strip(".") == ""
        or folder in RESERVED_FOLDERS
        or folder[0] in " ."
        or folder.split(".")[0].upper() in WINDOWS_DEVICES
    )


def _escape(match: re.Match) -> str:
    return _escape_char(match.group())


def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _fit(folder: str, text: str) -> str:
    if len(folder.encode("utf-8")) <= MAX_COMPONENT_BYTES:
        return folder
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    cut = _cut(folder, MAX_COMPONENT_BYTES - 17)
    percent = cut.rfind("%", len(cut) - 2)  # never end inside an escape
    return (cut[:percent] if percent >= 0 else cut) + "~" + digest


def _cut(text: str, max_bytes: int) -> str:
    """The longest prefix of `text` within `max_bytes` of UTF-8."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


class FolderNames:
    """The paths given out so far, on disk (SQLite) so memory does not grow with the export.

    Paths are compared case-folded: an archive unpacked on a case-insensitive file system
    loses nothing either.
    """

    def __init__(self, path: Path) -> None:
        self.connection = scratch_database(path, "CREATE TABLE taken (path TEXT PRIMARY KEY)")

    def close(self) -> None:
        self.connection.close()

    def claim(self, folder: str, file: str, image_id: str) -> str:
        """A free path for `file` (a storage path) in `folder`: its own name, or, when that is
        taken, the name with the image's id before the extension."""
        name = without_split_words(posixpath.basename(file))
        stem, suffix = posixpath.splitext(name)
        if len(suffix) > MAX_SUFFIX_LENGTH:
            stem, suffix = name, ""
        candidates = [name, _with_tag(stem, suffix, image_id)]
        attempt = 1
        while True:
            for candidate in candidates:
                path = f"{folder}/{candidate}"
                if self._take(path):
                    return path
            attempt += 1
            candidates = [_with_tag(stem, suffix, f"{image_id}-{attempt}")]

    def _take(self, path: str) -> bool:
        try:
            self.connection.execute("INSERT INTO taken VALUES (?)", (path.casefold(),))
        except sqlite3.IntegrityError:
            return False
        return True


def _with_tag(stem: str, suffix: str, tag: str) -> str:
    room = MAX_COMPONENT_BYTES - len(f"-{tag}{suffix}".encode())
    return f"{_cut(stem, max(room, 1))}-{tag}{suffix}"
