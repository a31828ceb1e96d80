"""The write path's guarantees one at a time: failed writes, ids, storage keys, symbolic links,
the reserved prefix, durability. (Races between writers: `test_races.py`.)"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import io
import json
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from bson import ObjectId
from django.core.management import call_command

from images.core.errors import RETRY_AFTER_SECONDS
from images.store import files as storage_module
from images.store import repository as repository_module
from images.store.files import get_file_store
from images.store.repository import ImageRepository
from images.writes import leases as leases_module
from images.writes.integrity import IntegrityChecker
from images.writes.recovery import recover
from tests.archives_helpers import make_zip, post_archive
from tests.helpers import image_bytes, s3_client, storage_settings, upload

OLD = image_bytes(color="red")
NEW = image_bytes(color="blue")
NO_GRACE = dt.timedelta(0)


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def stored(key: str) -> bytes:
    return b"".join(get_file_store().read_chunks(key))


def as_user(api, settings, user_id: str):
    settings.IMAGE_SCOPE = "user"
    api.force_authenticate(SimpleNamespace(user_id=user_id, is_authenticated=True))
    return api


def integrity(fix: bool = False) -> str:
    out = io.StringIO()
    call_command(
        "check_integrity", "--grace-seconds=0", "--verify", *(["--fix"] if fix else []), stdout=out
    )
    return out.getvalue()


# --- a failed write leaves the previous version whole ---------------------------------------------
@pytest.fixture
def own_database(own_database, settings):
    """This test's own database, with short query and lease limits."""
    settings.MONGODB_QUERY_TIMEOUT_MS = 1000
    settings.WRITE_LEASE_SECONDS = 1
    return own_database


def test_reupload_while_the_database_is_unreachable_keeps_the_old_version(
    api, own_database, collection, backend
):
    image_id = upload(api, "a.jpg", OLD).json()["_id"]
    original = repository_module.get_collection().find_one()
    calls = []
    real_upsert = ImageRepository.upsert

    def database_gone(self, *args, **kwargs):
        calls.append(1)
        own_database.stop()  # after the bytes were staged and the lease taken
        return real_upsert(self, *args, **kwargs)

    ImageRepository.upsert = database_gone
    try:
        response = upload(api, "a.jpg", NEW)
    finally:
        ImageRepository.upsert = real_upsert
    assert calls and response.status_code == 503
    own_database.start()
    repository_module.close_client()
    document = repository_module.get_collection().find_one()
    assert document == original and str(document["_id"]) == image_id
    assert stored("a.jpg") == OLD
    time.sleep(1.2)  # the lease the failed write left expires; recovery drops its staged bytes
    assert "0 documents with a missing file, 0 orphan files, 0 unaccounted" in integrity(fix=True)
    assert stored("a.jpg") == OLD


def test_database_stopped_mid_reupload_leaves_one_whole_version(api, own_database, backend):
    upload(api, "a.jpg", OLD)
    real_upsert = ImageRepository.upsert

    def database_frozen(self, *args, **kwargs):
        os.kill(own_database.process.pid, signal.SIGSTOP)  # the document write hangs
        wait_until_stopped(own_database.process.pid)
        return real_upsert(self, *args, **kwargs)

    ImageRepository.upsert = database_frozen
    try:
        response = upload(api, "a.jpg", NEW)
    finally:
        ImageRepository.upsert = real_upsert
    assert response.status_code == 503
    assert stored("a.jpg") == OLD  # the bytes a document may still name are never replaced
    os.kill(own_database.process.pid, signal.SIGCONT)
    repository_module.close_client()
    time.sleep(1.2)
    integrity(fix=True)  # recovery: the write that landed late is finished, else undone
    document = repository_module.get_collection().find_one()
    assert document["sha256"] == sha(stored("a.jpg"))
    assert stored("a.jpg") in (OLD, NEW)
    assert "0 files not matching their sha256" in integrity()


def wait_until_stopped(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_storage_failing_after_the_document_is_finished_by_recovery(api, settings, monkeypatch):
    settings.WRITE_LEASE_SECONDS = 1
    upload(api, "a.jpg", OLD)
    monkeypatch.setattr(
        storage_module.LocalFileStore, "promote", lambda *a: (_ for _ in ()).throw(OSError(5, "io"))
    )
    assert upload(api, "a.jpg", NEW).status_code == 500
    monkeypatch.undo()
    time.sleep(1.2)
    assert "1 interrupted writes" in integrity(fix=True)
    assert stored("a.jpg") == NEW  # the document said NEW: the staged bytes were promoted
    assert "0 files not matching their sha256" in integrity()


# --- ids ------------------------------------------------------------------------------------------
def test_a_server_minted_id_that_is_taken_is_minted_again(api, collection, monkeypatch):
    taken = ObjectId()
    collection.insert_one({"_id": taken, "file": "squatter.jpg", "userId": None, "data": {}})
    fresh = repository_module.new_object_id()
    minted = iter([taken, fresh])
    monkeypatch.setattr(repository_module, "new_object_id", lambda: next(minted))
    response = upload(api, "mine.jpg")
    assert response.status_code == 200
    assert response.json()["_id"] == str(fresh)


def test_minted_ids_increase_and_are_not_predictable_from_the_previous_one():
    ids = [repository_module.new_object_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    tails = {bytes(i.binary[7:]) for i in ids}
    assert len(tails) == 1000  # random, not a counter


def test_import_under_scope_answers_alike_for_another_users_id_and_a_free_one(
    api, settings, collection
):
    bob = as_user(api, settings, "bob")
    bob_id = upload(bob, "b.jpg").json()["_id"]
    before = collection.find_one({"userId": "bob"})
    alice = as_user(api, settings, "alice")
    answers = []
    for name, image_id in (("one.jpg", bob_id), ("two.jpg", str(ObjectId()))):
        manifest = json.dumps([{"_id": image_id, "file": name}]).encode()
        body = post_archive(alice, make_zip({name: OLD, "mongodb_data.json": manifest})).json()
        answers.append({**body, "file": None})
    assert answers[0] == answers[1] == {"file": None, "imported": 1, "skipped": []}
    assert collection.find_one({"userId": "bob"}) == before
    assert collection.count_documents({"userId": "alice"}) == 2
    assert collection.count_documents({"_id": ObjectId(bob_id)}) == 1


# --- storage keys ---------------------------------------------------------------------------------
def test_the_final_key_with_the_users_prefix_is_checked_before_anything_is_written(
    api, settings, collection, backend
):
    alice = as_user(api, settings, "alice")
    name = "/".join(["d" * 250] * 4) + "/" + "d" * 16  # 1,020 bytes; 1,026 with "alice/"
    response = upload(alice, "x.jpg", OLD, file=name)
    assert response.status_code == 400
    assert "prefix" in response.json()["detail"] and "1024" in response.json()["detail"]
    assert collection.count_documents({}) == 0
    assert list(get_file_store().iter_all_keys()) == []
    body = post_archive(alice, make_zip({name: OLD}))
    assert body.status_code == 400 and collection.count_documents({}) == 0


def test_check_integrity_reports_and_removes_objects_it_cannot_account_for(
    api, s3_bucket, s3_endpoint
):
    upload(api, "a.jpg", OLD)
    client = s3_client(s3_endpoint)
    for key in ("bad\\name.jpg", "../escape.jpg", ".imagestore/unexpected", "x//y.jpg"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"junk")
    checker = IntegrityChecker(ImageRepository(), get_file_store(), grace=NO_GRACE)
    report = checker.run()
    assert sorted(report.unaccounted) == sorted(
        ["bad\\name.jpg", "../escape.jpg", ".imagestore/unexpected", "x//y.jpg"]
    )
    assert not report.consistent
    checker.run(fix=True)
    remaining = [item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert remaining == ["a.jpg"]
    assert checker.run().consistent


# --- symbolic links -------------------------------------------------------------------------------
@pytest.fixture
def planted(uploads, tmp_path):
    """An operator-made link inside the uploads tree to a folder outside it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(b"root:x:0:0")
    (uploads / "planted").symlink_to(outside, target_is_directory=True)
    return outside


def test_uploads_through_a_symbolic_link_are_refused(api, planted, collection):
    response = upload(api, "x.jpg", OLD, file="planted/x.jpg")
    assert response.status_code == 400
    assert "outside the uploads directory" in response.json()["detail"]
    assert sorted(p.name for p in planted.iterdir()) == ["passwd"]
    assert collection.count_documents({}) == 0


def test_a_document_behind_a_link_is_never_read_or_deleted(api, planted, collection):
    collection.insert_one({"file": "planted/passwd", "userId": None, "data": {}})
    image_id = str(collection.find_one()["_id"])
    assert api.get(f"/images/{image_id}/image").status_code == 404
    assert api.delete(f"/images/{image_id}").status_code == 200
    assert (planted / "passwd").read_bytes() == b"root:x:0:0"


def test_a_file_link_and_a_folder_linked_after_a_read_are_refused(api, uploads, tmp_path):
    """The links below the root are looked at on every access, never remembered."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.jpg").write_bytes(b"secret")
    first = upload(api, "x.jpg", OLD, file="album/x.jpg").json()["_id"]
    assert api.get(f"/images/{first}/image").status_code == 200
    (uploads / "album" / "x.jpg").unlink()
    (uploads / "album").rmdir()
    (uploads / "album").symlink_to(outside, target_is_directory=True)
    assert api.get(f"/images/{first}/image").status_code == 404
    second = upload(api, "y.jpg", OLD, file="y.jpg").json()["_id"]
    (uploads / "y.jpg").unlink()
    (uploads / "y.jpg").symlink_to(outside / "x.jpg")
    assert api.get(f"/images/{second}/image").status_code == 404
    assert (outside / "x.jpg").read_bytes() == b"secret"


def test_an_uploads_directory_reached_through_a_link_serves(api, settings, tmp_path):
    """The root's own links are the administrator's: a root behind a link stores and serves."""
    real = tmp_path / "real-uploads"
    real.mkdir()
    linked = tmp_path / "linked-uploads"
    linked.symlink_to(real, target_is_directory=True)
    settings.STORAGES = storage_settings("local", settings.STORAGES, location=linked)
    image_id = upload(api, "z.jpg", OLD, file="in/z.jpg").json()["_id"]
    assert (real / "in" / "z.jpg").read_bytes() == OLD
    response = api.get(f"/images/{image_id}/image")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == OLD


def test_a_manifest_cannot_claim_a_file_it_did_not_bring(api, planted, collection):
    manifest = json.dumps([{"file": "planted/passwd"}]).encode()
    body = post_archive(api, make_zip({"mongodb_data.json": manifest})).json()
    assert body["imported"] == 0 and collection.count_documents({}) == 0
    body = post_archive(api, make_zip({"planted/evil.jpg": OLD})).json()
    assert body["imported"] == 0
    assert "outside the uploads directory" in body["skipped"][0]["reason"]
    assert sorted(p.name for p in planted.iterdir()) == ["passwd"]


def test_check_integrity_reports_links_and_never_follows_them(api, planted, uploads):
    upload(api, "a.jpg", OLD)
    report = IntegrityChecker(ImageRepository(), get_file_store(), NO_GRACE).run(fix=True)
    assert report.unaccounted == ["planted"]
    assert (uploads / "planted").is_symlink() and (planted / "passwd").exists()


# --- reserved prefix, durability ------------------------------------------------------------------
@pytest.mark.parametrize("path", [".IMAGESTORE/x.jpg", ".ImageStore/thumbnails/x.jpg"])
def test_the_reserved_prefix_is_refused_in_any_letter_case(api, path, collection):
    response = upload(api, "x.jpg", OLD, file=path)
    assert response.status_code == 400 and "reserved" in response.json()["detail"]
    assert collection.count_documents({}) == 0


def test_bytes_and_folders_are_fsynced_before_the_document_points_at_them(
    api, monkeypatch, uploads
):
    synced: list[str] = []
    real_fsync = os.fsync

    def record(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    seen_at_write: list[list[str]] = []

    def recording(write):
        def document_write(self, *args, **kwargs):
            seen_at_write.append(list(synced))
            return write(self, *args, **kwargs)

        return document_write

    monkeypatch.setattr(os, "fsync", record)
    for write in ("insert_image", "upsert"):  # a new path's insert, a re-upload's upsert
        monkeypatch.setattr(ImageRepository, write, recording(getattr(ImageRepository, write)))
    assert upload(api, "x.jpg", OLD, file="new/folder/x.jpg").status_code == 200
    assert upload(api, "x.jpg", NEW, file="new/folder/x.jpg").status_code == 200
    first, again = seen_at_write
    root = os.path.realpath(uploads)
    # A new path: the bytes at their key (and every folder made for them).
    for path in (f"{root}/new/folder/x.jpg", root, f"{root}/new", f"{root}/new/folder"):
        assert path in first
    # A re-upload: the document goes first, so the staged bytes and their folder are durable.
    since = again[len(first) :]
    assert any(path.startswith(f"{root}/.imagestore/staging/") for path in since)
    assert f"{root}/.imagestore/staging" in since


def hold_lease(key: str) -> None:
    """Another writer's live lease on `key`."""
    leases_module.lease_collection().insert_one(
        {
            "_id": key,
            "token": "someone",
            "expires": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        }
    )


def test_a_busy_path_answers_503_after_the_wait(api, settings, collection, uploads):
    settings.WRITE_LEASE_WAIT_SECONDS = 0
    assert upload(api, "x.jpg", OLD, file="busy.jpg").status_code == 200
    hold_lease("busy.jpg")
    response = upload(api, "x.jpg", NEW, file="busy.jpg")
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert collection.find_one({"file": "busy.jpg"})["sha256"] == hashlib.sha256(OLD).hexdigest()
    assert (uploads / "busy.jpg").read_bytes() == OLD
    assert [k for k in get_file_store().iter_all_keys() if "staging" in k] == []


def test_a_new_path_is_stored_without_waiting_for_a_lease(api, settings, collection, uploads):
    """A key that holds no bytes is linked and its document inserted without a lease: a holder
    of the lease (a deleter of a document whose file is gone) cannot make it wait."""
    settings.WRITE_LEASE_WAIT_SECONDS = 0
    hold_lease("free.jpg")
    assert upload(api, "x.jpg", NEW, file="free.jpg").status_code == 200
    assert collection.find_one({"file": "free.jpg"})["sha256"] == hashlib.sha256(NEW).hexdigest()
    assert (uploads / "free.jpg").read_bytes() == NEW
    assert [k for k in get_file_store().iter_all_keys() if "staging" in k] == []


def test_leases_let_one_writer_through_at_a_time(settings):
    settings.WRITE_LEASE_WAIT_SECONDS = 5
    leases = leases_module.Leases(lambda key, lease: None)
    inside = []
    overlaps = []

    def writer() -> None:
        for held in leases.rounds({"same": leases_module.Intent()}):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.01)
            inside.pop()
            leases.release(held)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [1] * 8


def test_storage_fsync_off_skips_every_fsync(api, monkeypatch, settings):
    settings.STORAGE_FSYNC = False
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    assert upload(api, "x.jpg", OLD, file="a/b/x.jpg").status_code == 200
    assert synced == []


def test_without_hard_links_the_documents_decide_the_order(api, monkeypatch, uploads, collection):
    """On a filesystem that has no hard links (FAT, some network mounts) a new key's bytes are
    renamed in, after the documents say no image uses the key."""

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    assert upload(api, "x.jpg", OLD, file="a/x.jpg").status_code == 200
    assert upload(api, "x.jpg", NEW, file="a/x.jpg").status_code == 200
    assert (uploads / "a" / "x.jpg").read_bytes() == NEW
    assert collection.find_one({"file": "a/x.jpg"})["sha256"] == hashlib.sha256(NEW).hexdigest()
    report = IntegrityChecker(ImageRepository(), get_file_store(), NO_GRACE).run(verify=True)
    assert report.consistent and report.files == 1


def test_a_file_no_document_names_is_replaced_by_an_upload_at_its_path(api, uploads, collection):
    (uploads / "left").mkdir(parents=True)
    (uploads / "left" / "x.jpg").write_bytes(b"bytes of an interrupted write")
    assert upload(api, "x.jpg", NEW, file="left/x.jpg").status_code == 200
    assert (uploads / "left" / "x.jpg").read_bytes() == NEW
    assert collection.find_one({"file": "left/x.jpg"})["sha256"] == hashlib.sha256(NEW).hexdigest()
    assert [k for k in get_file_store().iter_all_keys() if "staging" in k] == []


def test_a_document_whose_file_was_lost_is_replaced_keeping_its_id(api, uploads, collection):
    first = upload(api, "x.jpg", OLD, file="lost/x.jpg").json()
    (uploads / "lost" / "x.jpg").unlink()
    again = upload(api, "x.jpg", NEW, file="lost/x.jpg", _id=first["_id"])
    assert again.status_code == 200, again.json()
    assert again.json()["_id"] == first["_id"]
    assert collection.count_documents({"file": "lost/x.jpg"}) == 1
    assert (uploads / "lost" / "x.jpg").read_bytes() == NEW
    (uploads / "lost" / "x.jpg").unlink()
    third = upload(api, "x.jpg", OLD, file="lost/x.jpg")
    assert third.status_code == 200 and third.json()["_id"] == first["_id"]


def test_a_new_document_is_stored_alike_by_an_insert_or_an_upsert(collection):
    """New paths are inserted (cheaper), re-uploads upserted: the stored documents agree."""
    facts = {"width": 1, "height": 2, "format": "JPEG", "size": 3, "sha256": "0" * 64}
    when = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    repository = ImageRepository()
    none, created = repository.upsert("by/insert.jpg", {"k": "v"}, when, facts, expect_new=True)
    _, upserted = repository.upsert("by/upsert.jpg", {"k": "v"}, when, facts)
    assert none is None
    stored = [collection.find_one({"_id": doc["_id"]}) for doc in (created, upserted)]
    assert sorted(stored[0]) == sorted(stored[1])
    assert [{k: v for k, v in doc.items() if k not in ("_id", "file")} for doc in stored] == [
        {k: v for k, v in stored[0].items() if k not in ("_id", "file")}
    ] * 2
    before, after = repository.upsert("by/insert.jpg", {}, when, facts, expect_new=True)
    assert before["_id"] == after["_id"] == created["_id"] and after["data"] == {}
    assert collection.count_documents({"file": "by/insert.jpg"}) == 1


# --- a new path without a lease (FileWriter.create) ------------------------------------------------
def staged_keys() -> list[str]:
    return [key for key in get_file_store().iter_all_keys() if "staging" in key]


def test_a_new_file_moved_aside_before_its_document_is_checked_is_put_back(
    api, uploads, collection, monkeypatch
):
    """A deleter of an older document at the key moved the file aside just after the insert
    (and removed it, seeing no document yet): the writer's check finds it gone and puts it
    back under the key's lease."""
    real_insert = ImageRepository.insert_image

    def insert_then_moved_aside(self, *args, **kwargs):
        created = real_insert(self, *args, **kwargs)
        (uploads / "moved" / "x.jpg").unlink()
        return created

    monkeypatch.setattr(ImageRepository, "insert_image", insert_then_moved_aside)
    response = upload(api, "x.jpg", NEW, file="moved/x.jpg")
    assert response.status_code == 200
    assert (uploads / "moved" / "x.jpg").read_bytes() == NEW
    assert collection.find_one({"file": "moved/x.jpg"})["sha256"] == sha(NEW)
    assert staged_keys() == []
    assert leases_module.lease_collection().count_documents({"_id": "moved/x.jpg"}) == 0


def test_a_deleter_puts_back_a_file_whose_document_appeared_after_it_moved_it(uploads):
    (uploads / "kept.jpg").write_bytes(NEW)
    (uploads / "gone.jpg").write_bytes(OLD)
    files = get_file_store()
    asked: list[list[str]] = []

    def referenced(keys: list[str]) -> dict[str, str | None]:
        asked.append(list(keys))
        assert not (uploads / "kept.jpg").exists()  # asked only once the files are aside
        return {"kept.jpg": sha(NEW)}

    assert files.remove_unreferenced(["kept.jpg", "gone.jpg", "absent.jpg"], referenced) == [
        "gone.jpg"
    ]
    assert asked == [["kept.jpg", "gone.jpg"]]
    assert (uploads / "kept.jpg").read_bytes() == NEW and not (uploads / "gone.jpg").exists()
    assert staged_keys() == []


JUNK = b"bytes of a writer whose insert will fail: the key has a document"


@pytest.mark.parametrize(
    ("moved", "linked_meanwhile"),
    [(NEW, JUNK), (OLD, NEW)],
    ids=["the-moved-file-is-the-documents", "the-linked-file-is-the-documents"],
)
def test_while_a_file_is_aside_the_documents_bytes_win(uploads, moved, linked_meanwhile):
    """While a deleter has the file aside, another writer may link bytes to the free key.
    Whichever of the two holds the bytes of the document the deleter then sees stays."""
    (uploads / "k.jpg").write_bytes(moved)

    def referenced(keys: list[str]) -> dict[str, str | None]:
        (uploads / "k.jpg").write_bytes(linked_meanwhile)
        return {"k.jpg": sha(NEW)}

    assert get_file_store().remove_unreferenced(["k.jpg"], referenced) == []
    assert (uploads / "k.jpg").read_bytes() == NEW
    assert staged_keys() == []


def link_over_a_lost_file(api, uploads: Path, staging_key: str) -> None:
    """`lost.jpg` stored with OLD, its file lost, then NEW staged at `staging_key` and linked
    to it: what a writer that stopped before its document write leaves."""
    upload(api, "x.jpg", OLD, file="lost.jpg")
    (uploads / "lost.jpg").unlink()
    staging = get_file_store().path(staging_key)
    staging.parent.mkdir(parents=True, exist_ok=True)
    staging.write_bytes(NEW)
    os.link(staging, uploads / "lost.jpg")


def test_recovery_removes_a_linked_file_that_no_document_describes(api, uploads, collection):
    """A writer that linked its bytes over a document whose file was lost, and stopped before
    its document landed: the key goes back to missing, not to bytes of another picture."""
    link_over_a_lost_file(api, uploads, ".imagestore/staging/interrupted")
    lease = {"staging": ".imagestore/staging/interrupted", "sha256": sha(NEW)}
    recover(get_file_store(), "lost.jpg", lease)
    assert not (uploads / "lost.jpg").exists() and staged_keys() == []
    assert collection.find_one({"file": "lost.jpg"})["sha256"] == sha(OLD)


def test_a_new_upload_whose_database_freezes_mid_insert_is_settled_either_way(
    api, own_database, uploads
):
    real_insert = ImageRepository.insert_image

    def database_frozen(self, *args, **kwargs):
        os.kill(own_database.process.pid, signal.SIGSTOP)  # the insert hangs
        wait_until_stopped(own_database.process.pid)
        return real_insert(self, *args, **kwargs)

    ImageRepository.insert_image = database_frozen
    try:
        response = upload(api, "x.jpg", NEW, file="frozen.jpg")
    finally:
        ImageRepository.insert_image = real_insert
    assert response.status_code == 503
    os.kill(own_database.process.pid, signal.SIGCONT)
    repository_module.close_client()
    leases = leases_module.lease_collection()
    deadline = time.monotonic() + 15  # settled in the background once the database answers
    while (staged_keys() or leases.count_documents({})) and time.monotonic() < deadline:
        time.sleep(0.1)
    document = repository_module.get_collection().find_one({"file": "frozen.jpg"})
    if document is None:  # the insert did not land: the bytes are gone too
        assert not (uploads / "frozen.jpg").exists()
    else:
        assert document["sha256"] == sha(stored("frozen.jpg"))
    assert staged_keys() == [] and leases.count_documents({}) == 0
    assert "0 files not matching their sha256" in integrity()


def test_check_integrity_takes_back_bytes_a_stopped_writer_linked_over_a_lost_file(
    api, uploads, collection
):
    """A writer linked its bytes to the key of a document whose file was lost, and stopped
    before it could replace the document (no lease names it): `--verify --fix` finds the key
    is its staged file, removes it and marks the document missing, not mismatched."""
    link_over_a_lost_file(api, uploads, ".imagestore/staging/stopped")
    report = integrity(fix=True)
    assert not (uploads / "lost.jpg").exists()
    document = collection.find_one({"file": "lost.jpg"})
    assert document["sha256"] == sha(OLD) and document["integrity"]["status"] == "missing"
    assert "1 removed" in report and "marked broken: lost.jpg (missing" in report
    assert staged_keys() == [".imagestore/staging/stopped"]  # a writer's, until the lease time
