"""Validation of storage paths (`file`): relative POSIX paths that stay inside the root."""

from __future__ import annotations

import posixpath
import re

from images.core.errors import InvalidInput

# Service-owned files (thumbnails, temporary uploads) live under this first component.
RESERVED_PREFIX = ".imagestore"
MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_file_path(path: object, field: str = "file") -> str:
    """Return `path` if it is a safe relative storage path, else raise a 400 naming the problem."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"'{field}' must be a non-empty string")
    problem = _path_problem(path)
    if problem:
        raise InvalidInput(f"Invalid '{field}' {path!r}: {problem}")
    return path


def _path_problem(path: str) -> str | None:
    if "\x00" in path:
        return "contains a NUL byte"
    if _CONTROL.search(path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is an absolute path"
    if _DRIVE.match(path):
        return "starts with a drive letter"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' component"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for part in parts):
        return f"has a component longer than {MAX_COMPONENT_BYTES} bytes"
    if parts[0].casefold() == RESERVED_PREFIX:  # case-folding volumes would merge them
        return f"'{RESERVED_PREFIX}/' is reserved (in any letter case)"
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def is_safe_file_path(path: object) -> bool:
    return isinstance(path, str) and bool(path) and _path_problem(path) is None


def upload_file_name(name: str | None) -> str:
    """The default `file` of an upload: the base name the client sent (never its folders)."""
    base = posixpath.basename((name or "").replace("\\", "/")).strip()
    if not base or base in (".", ".."):
        raise InvalidInput("The uploaded file has no usable file name; send a 'file' field")
    return validate_file_path(base, "filename")


def scoped_path(path: str, user_id: str | None) -> str:
    """Under IMAGE_SCOPE=user, every stored path is `<userId>/<path>`."""
    return f"{user_id}/{path}" if user_id else path


def storage_key(path: str, user_id: str | None, field: str = "file") -> str:
    """The final storage key of a user path (prefix included), checked against every limit
    before anything is written: a 400 names the problem."""
    key = scoped_path(path, user_id)
    problem = _path_problem(key)
    if problem:
        if key == path:
            raise InvalidInput(f"Invalid '{field}' {path!r}: {problem}")
        raise InvalidInput(
            f"Invalid '{field}' {path!r}: with the '{user_id}/' prefix, its storage key {problem}"
        )
    return key
