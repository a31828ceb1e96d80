"""`manage.py check_integrity [--fix]`."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from images.store.files import get_file_store
from tests.helpers import image_bytes, upload


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("check_integrity", "--grace-seconds=0", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_consistent_store(api, backend):
    upload(api, "a.jpg")
    assert "0 documents with a missing file, 0 orphan files" in run()


def test_reports_missing_files_and_orphans_and_fixes_orphans_only(api, backend):
    upload(api, "a.jpg")
    upload(api, "b.jpg", file="sub/b.jpg")
    files = get_file_store()
    files.delete("a.jpg")
    files.save("orphan/c.jpg", io.BytesIO(image_bytes()))
    with pytest.raises(CommandError):
        output = run()
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("check_integrity", "--grace-seconds=0", stdout=out)
    output = out.getvalue()
    assert "1 documents with a missing file, 1 orphan files" in output
    assert "missing file: a.jpg" in output and "orphan file: orphan/c.jpg" in output
    assert files.stat("orphan/c.jpg") is not None  # nothing removed without --fix

    out = io.StringIO()
    with pytest.raises(CommandError):  # the missing file is still reported
        call_command("check_integrity", "--grace-seconds=0", "--fix", stdout=out)
    assert "1 removed" in out.getvalue()
    assert files.stat("orphan/c.jpg") is None
    assert files.stat("sub/b.jpg") is not None


def test_young_files_are_left_alone(api):
    get_file_store().save("in-flight.jpg", io.BytesIO(image_bytes()))
    out = io.StringIO()
    call_command("check_integrity", "--fix", stdout=out)
    assert "0 orphan files" in out.getvalue()
    assert get_file_store().stat("in-flight.jpg") is not None
