"""`imagestore pull --sync` and `watch` against a service on a replica set of one: what another
client changes between two syncs is reflected, interrupted syncs resume, 410 resyncs fully."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest
from conftest import cli, image_bytes, start_cli

from imagestore_client import Client
from imagestore_client.errors import Gone
from imagestore_client.sync import STATE_FILE, Syncer

pytestmark = pytest.mark.slow  # talks to the `serve` conftest starts


@pytest.fixture
def feed(feed_service) -> Client:
    with Client(feed_service.url) as api:
        api.delete_many(all=True)
        yield api


def local_state(dest: Path) -> dict[str, str]:
    """Every image file below dest (relative path -> sha256)."""
    return {
        path.relative_to(dest).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in dest.rglob("*")
        if path.is_file() and not path.name.startswith(".") and path.name != "metadata.jsonl"
    }


def served_state(api: Client) -> dict[str, str]:
    return {document["file"]: document["sha256"] for document in api.find()}


def metadata(dest: Path) -> dict[str, dict]:
    lines = (dest / "metadata.jsonl").read_text().splitlines()
    return {line["file"]: line for line in map(json.loads, lines)}


def sync(service, dest: Path) -> str:
    result = cli(service.url, "--no-progress", "pull", str(dest), "--sync")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_changes_by_another_client_between_two_syncs(feed, feed_service, tmp_path):
    dest = tmp_path / "mirror"
    stored = [feed.upload(image_bytes(n), f"cam{n % 2}/{n}.png", {"n": n}) for n in range(8)]
    assert "full resync; 8 downloaded" in sync(feed_service, dest)
    assert (dest / STATE_FILE).is_file()

    feed.upload(image_bytes(100), "cam0/new.png", {"n": 100})  # insert
    feed.update(stored[1]["_id"], {"label": "cat"})  # metadata PATCH
    feed.upload(image_bytes(200), stored[2]["file"], {"n": 2})  # re-upload, new bytes
    feed.delete(stored[3]["_id"])  # delete
    assert feed.delete_many(filter={"data.n": {"$in": [4, 5]}}) == 2  # bulk delete

    output = sync(feed_service, dest)

    assert "6 changes; 2 downloaded" in output and "3 removed" in output
    assert local_state(dest) == served_state(feed)
    lines = metadata(dest)
    assert set(lines) == set(served_state(feed))
    assert lines[stored[1]["file"]]["data"] == {"n": 1, "label": "cat"}
    assert all(line["file_name"] == line["file"] for line in lines.values())
    assert "0 changes; 0 downloaded" in sync(feed_service, dest)


def test_an_interrupted_sync_resumes_from_the_last_page(feed, feed_service, tmp_path):
    dest = tmp_path / "mirror"
    Syncer(feed, dest).run()
    for n in range(6):
        feed.upload(image_bytes(n), f"{n}.png")
    failing = FailingDownloads(feed, fail_on="4.png")

    first = Syncer(failing, dest, page_size=3).run()

    assert first.changes == 6 and first.failed  # page 1 done and saved, page 2 failed
    assert set(metadata(dest)) == {"0.png", "1.png", "2.png"}
    second = Syncer(feed, dest, page_size=3).run()
    assert second.changes == 3 and not second.failed
    assert local_state(dest) == served_state(feed)


def test_a_sync_goes_on_after_a_page_the_service_ended_early(feed, feed_service, tmp_path):
    dest = tmp_path / "mirror"
    Syncer(feed, dest).run()
    for n in range(5):
        feed.upload(image_bytes(n), f"{n}.png")

    summary = Syncer(ShortPages(feed, most=2), dest, page_size=100).run()

    assert summary.changes == 5 and not summary.failed
    assert local_state(dest) == served_state(feed)


def test_an_expired_cursor_falls_back_to_a_full_resync(feed, feed_service, tmp_path):
    dest = tmp_path / "mirror"
    kept = feed.upload(image_bytes(1), "kept.png")
    gone = feed.upload(image_bytes(2), "gone.png")
    Syncer(feed, dest).run()
    (dest / "kept.png").write_bytes(b"damaged")
    feed.delete(gone["_id"])

    summary = Syncer(ExpiredCursor(feed), dest).run()

    assert summary.full and summary.removed == 1 and summary.downloaded == 1
    assert local_state(dest) == {"kept.png": kept["sha256"]}


def test_watch_follows_changes_until_ctrl_c(feed, feed_service, tmp_path):
    dest = tmp_path / "mirror"
    watcher = start_cli(feed_service.url, "watch", str(dest))
    try:
        wait_for(lambda: (dest / STATE_FILE).is_file())
        image = feed.upload(image_bytes(7), "seen.png")
        wait_for(lambda: local_state(dest) == {"seen.png": image["sha256"]})
        feed.delete(image["_id"])
        wait_for(lambda: local_state(dest) == {})
    finally:
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    assert "stopped watching" in out


def test_sync_refuses_a_query(feed_service, tmp_path):
    result = cli(feed_service.url, "pull", str(tmp_path), "--sync", "label=cat")
    assert result.returncode == 2 and "--sync" in result.stderr


class ShortPages:
    """A service whose change pages end early, as they do once their changes pass
    DOCUMENT_BUFFER_SIZE bytes."""

    def __init__(self, client: Client, most: int) -> None:
        self.client, self.most = client, most

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def changes(self, since=None, limit=1000, wait=0):
        return self.client.changes(since, min(limit, self.most), wait)


class FailingDownloads:
    """A client whose downloads of one path fail (a network drop mid-sync)."""

    def __init__(self, client: Client, fail_on: str) -> None:
        self.client, self.fail_on = client, fail_on

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    def download(self, document, local):
        if document["file"] == self.fail_on:
            raise OSError("connection dropped")
        return self.client.download(document, local)


class ExpiredCursor(FailingDownloads):
    """A client whose saved cursor the service no longer has: 410 for any `since`."""

    def __init__(self, client: Client) -> None:
        super().__init__(client, fail_on="")

    def changes(self, since=None, *args, **kwargs):
        if since is not None:
            raise Gone("do a full resync", 410)
        return self.client.changes(since, *args, **kwargs)


def wait_for(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
