"""What `push` sends: the images under a folder, their stored paths and their metadata."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".gif",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".webp",
        ".ico",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".jp2",
        ".j2k",
        ".pcx",
        ".dds",
        ".avif",
        ".heic",
        ".heif",
    ]
)
# Metadata that belongs to the push, never to a sidecar: the stored path and the id.
RESERVED_KEYS = ("file", "_id")
CSV_KEY_COLUMNS = ("file", "path", "filename", "file_name")


class PlanError(ValueError):
    """The push cannot start: a bad folder, CSV or option."""


@dataclass
class PushItem:
    path: Path
    relative: str  # posix path below the pushed folder
    target: str  # the stored `file`
    data: dict[str, Any] = field(default_factory=dict)
    time: str | None = None
    sha256: str | None = None
    error: str | None = None


@dataclass
class PushPlan:
    root: Path
    prefix: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    folders_as: Sequence[str] = ()
    csv_rows: Mapping[str, dict[str, str]] = field(default_factory=dict)
    all_files: bool = False

    def __post_init__(self) -> None:
        self.left_out: list[tuple[str, str]] = []  # (relative path, why), filled by files()
        self.not_images = 0

    def files(self) -> list[tuple[Path, str]]:
        """Every image below the root as (path, relative posix path), sorted, hidden ones left out.

        Links are not followed out of the root: a link to a file outside it, a broken link and
        a link to a folder are left out, each recorded in `left_out` with the reason.
        """
        if not self.root.is_dir():
            raise PlanError(f"{self.root} is not a folder")
        root = self.root.resolve()
        found: list[tuple[Path, str]] = []
        for folder, subfolders, names in os.walk(self.root):
            base = Path(folder)
            subfolders[:] = [
                name for name in sorted(subfolders) if self._walk_into(base / name, root)
            ]
            for name in sorted(names):
                path = base / name
                if name.startswith(".") or not self._followed(path, root):
                    continue
                if self._is_image(base, name):
                    found.append((path, path.relative_to(self.root).as_posix()))
                elif path.suffix.lower() != ".json":
                    self.not_images += 1
        return found

    def _walk_into(self, folder: Path, root: Path) -> bool:
        if folder.name.startswith("."):
            return False
        if folder.is_symlink():
            where = "inside" if inside(folder, root) else "outside"
            self._leave_out(folder, f"link to a folder {where} the pushed folder, not followed")
            return False
        return True

    def _followed(self, path: Path, root: Path) -> bool:
        """False, the reason recorded, for a link that is broken or leads out of the root."""
        if not path.is_symlink():
            return True
        if not path.exists():
            self._leave_out(path, "broken link")
            return False
        if not inside(path, root):
            self._leave_out(path, "link to a file outside the pushed folder, not followed")
            return False
        return True

    def _leave_out(self, path: Path, reason: str) -> None:
        self.left_out.append((path.relative_to(self.root).as_posix(), reason))

    def item(self, path: Path, relative: str) -> PushItem:
        """The item for one file, its metadata read now (a bad sidecar fails only this item)."""
        item = PushItem(path=path, relative=relative, target=self.target(relative))
        if not relative.isprintable() or _surrogates(relative):
            item.error = "the file name is not printable UTF-8 text"
            return item
        try:
            data = {**self.meta, **self._folder_fields(relative)}
            data.update(self.csv_rows.get(relative, {}))
            data.update(read_sidecar(path, self.root))
        except (OSError, ValueError) as error:
            item.error = str(error)
            return item
        time = data.pop("time", None)
        item.time = str(time) if time is not None else None
        for key in RESERVED_KEYS:
            data.pop(key, None)
        item.data = data
        return item

    def target(self, relative: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{relative}" if prefix else relative

    def _folder_fields(self, relative: str) -> dict[str, str]:
        folders = relative.split("/")[:-1]
        return dict(zip(self.folders_as, folders, strict=False))

    def _is_image(self, folder: Path, name: str) -> bool:
        if name.startswith(".") or not (folder / name).is_file():
            return False
        suffix = Path(name).suffix.lower()
        if suffix == ".json":
            return False
        return self.all_files or suffix in IMAGE_EXTENSIONS


def _surrogates(text: str) -> bool:
    """True for names the file system gave as undecodable bytes (surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, its links followed, is below `root` (itself resolved)."""
    return path.resolve().is_relative_to(root.resolve())


def read_sidecar(image: Path, root: Path | None = None) -> dict[str, Any]:
    """The JSON object in `x.jpg.json`, else `x.json`, beside `x.jpg`; {} when neither exists.

    A sidecar that is a link out of `root` is refused, as a linked image would be.
    """
    for sidecar in (image.with_name(image.name + ".json"), image.with_suffix(".json")):
        if sidecar.is_file():
            if root is not None and not inside(sidecar, root):
                raise ValueError(f"sidecar {sidecar.name} is a link outside the pushed folder")
            try:
                value = json.loads(sidecar.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as error:
                raise ValueError(f"sidecar {sidecar.name} is not valid JSON: {error}") from None
            if not isinstance(value, dict):
                raise ValueError(f"sidecar {sidecar.name} is not a JSON object")
            return value
    return {}


def read_metadata_csv(path: Path) -> dict[str, dict[str, str]]:
    """Rows keyed by their relative path (column `file`, `path`, `filename` or the first one)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as source:
            reader = csv.DictReader(source)
            columns = reader.fieldnames or []
            key = next((c for c in columns if c.strip().lower() in CSV_KEY_COLUMNS), None)
            key = key or (columns[0] if columns else None)
            if key is None:
                raise PlanError(f"{path}: no header row")
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                relative = (row.pop(key) or "").strip().replace("\\", "/").removeprefix("./")
                if relative:
                    rows[relative] = {k: v for k, v in row.items() if k and v not in (None, "")}
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise PlanError(f"{path}: {error}") from None
