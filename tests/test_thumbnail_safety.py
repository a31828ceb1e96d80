"""Thumbnails are stored only from bytes that match their document, made once, in bounds.

The race of two uploads to one path can leave a document saying sha256(P) while its file holds
Q. Thumbnails are shared by sha256 across users, so a thumbnail of Q stored under sha256(P)
would show Q in every other user's image of P.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from rest_framework.test import APIClient

from images.thumbnails import gate as gate_module
from images.thumbnails import response as response_module
from images.thumbnails.gate import RenderBusy, RenderGate
from tests.helpers import client_for, image_bytes, s3_client, upload

THUMBNAILS = ".imagestore/thumbnails"
PICTURE_P = image_bytes("PNG", (120, 80), (220, 20, 20))  # red
PICTURE_Q = image_bytes("PNG", (120, 80), (20, 20, 220))  # blue


def body_of(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def colour(response) -> str:
    red, _, blue = Image.open(io.BytesIO(body_of(response))).convert("RGB").getpixel((30, 20))
    return "red" if red > blue else "blue"


def replace_stored_bytes(backend: str, uploads, settings, key: str, content: bytes) -> None:
    """What the race leaves: the file holds other bytes than its document describes."""
    if backend == "s3":
        s3_client(settings.S3_ENDPOINT).put_object(Bucket=settings.S3_BUCKET, Key=key, Body=content)
    else:
        (uploads / key).write_bytes(content)


def stored_thumbnails(backend: str, uploads, settings) -> list[str]:
    if backend == "s3":
        listing = s3_client(settings.S3_ENDPOINT).list_objects_v2(
            Bucket=settings.S3_BUCKET, Prefix=THUMBNAILS
        )
        return [item["Key"].rsplit("/", 1)[-1] for item in listing.get("Contents", [])]
    folder = uploads / THUMBNAILS
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_alice_cannot_change_what_bobs_thumbnail_shows(oidc, settings, uploads, backend):
    settings.IMAGE_SCOPE = "user"
    alice, bob = client_for(oidc, "alice"), client_for(oidc, "bob")
    bobs = upload(bob, "p.png", PICTURE_P).json()
    alices = upload(alice, "mine.png", PICTURE_P).json()
    assert alices["sha256"] == bobs["sha256"]
    replace_stored_bytes(backend, uploads, settings, alices["file"], PICTURE_Q)

    for size in (64, 128):
        seen_by_alice = alice.get(f"/images/{alices['_id']}/thumbnail?size={size}")
        assert seen_by_alice.status_code == 200
        assert colour(seen_by_alice) == "blue"  # what her file holds, answered...
        assert seen_by_alice["Cache-Control"] == "no-store"
        assert bobs["sha256"] not in seen_by_alice["ETag"]
    assert stored_thumbnails(backend, uploads, settings) == []  # ...but never stored

    for size in (64, 128):
        seen_by_bob = bob.get(f"/images/{bobs['_id']}/thumbnail?size={size}")
        assert colour(seen_by_bob) == "red"
    assert sorted(stored_thumbnails(backend, uploads, settings)) == [
        f"{bobs['sha256']}-128.jpg",
        f"{bobs['sha256']}-64.jpg",
    ]
    # Bob's verified thumbnail is now shared by hash: alice's document claims those bytes.
    assert colour(alice.get(f"/images/{alices['_id']}/thumbnail?size=64")) == "red"


def test_concurrent_requests_for_one_thumbnail_render_it_once(api, monkeypatch):
    body = upload(api, "p.png", PICTURE_P).json()
    renders: list[int] = []
    real = response_module.render_thumbnail

    def counted(*args, **kwargs):
        renders.append(1)
        time.sleep(0.2)  # long enough for every request to arrive while it renders
        return real(*args, **kwargs)

    monkeypatch.setattr(response_module, "render_thumbnail", counted)

    def fetch(_: int) -> tuple[int, bytes]:
        response = APIClient().get(f"/images/{body['_id']}/thumbnail?size=64")
        return response.status_code, body_of(response)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(fetch, range(6)))
    assert {status for status, _ in results} == {200}
    assert len({content for _, content in results}) == 1
    assert len(renders) == 1


def peak_overlap(gate: RenderGate, key_of, memory: int, renders: int = 8) -> int:
    """The most renders that held a slot at once, `renders` of them asked for by 4-8 threads."""
    lock, running, peak = threading.Lock(), [0], [0]

    def render(index: int) -> None:
        with gate.key(key_of(index)), gate.slot(memory):
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    with ThreadPoolExecutor(renders) as pool:
        list(pool.map(render, range(renders)))
    return peak[0]


def test_renders_per_process_are_bounded(settings):
    settings.THUMBNAIL_CONCURRENCY = 2
    gate = RenderGate()
    assert peak_overlap(gate, lambda index: f"k{index}", memory=0) == 2
    assert gate._keys == {}  # nothing kept per key once its requests are done


def test_one_render_per_key_at_a_time(settings):
    settings.THUMBNAIL_CONCURRENCY = 8
    assert peak_overlap(RenderGate(), lambda index: "same", memory=0, renders=4) == 1


def test_a_request_that_cannot_start_in_time_is_503(api, settings, monkeypatch):
    settings.THUMBNAIL_WAIT_SECONDS = 1
    settings.THUMBNAIL_CONCURRENCY = 1
    gate = RenderGate()
    monkeypatch.setattr(response_module, "GATE", gate)
    monkeypatch.setattr(gate_module, "GATE", gate)
    body = upload(api, "p.png", PICTURE_P).json()
    with gate.slot():
        response = api.get(f"/images/{body['_id']}/thumbnail?size=64")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "detail" in response.json()
    assert api.get(f"/images/{body['_id']}/thumbnail?size=64").status_code == 200
    with pytest.raises(RenderBusy), gate.slot(), gate.slot():
        pass


@pytest.mark.parametrize(("name", "fmt"), [("big.png", "PNG"), ("big.bmp", "BMP")])
def test_images_over_the_pixel_cap_are_422(api, settings, name, fmt):
    body = upload(api, name, image_bytes(fmt, (200, 100), "green")).json()
    settings.THUMBNAIL_MAX_PIXELS = 19_999
    response = api.get(f"/images/{body['_id']}/thumbnail?size=64")
    assert response.status_code == 422
    assert "THUMBNAIL_MAX_PIXELS" in response.json()["detail"]
    settings.THUMBNAIL_MAX_PIXELS = 20_000
    made = api.get(f"/images/{body['_id']}/thumbnail?size=64")
    assert made.status_code == 200
    assert Image.open(io.BytesIO(body_of(made))).size == (64, 32)


def test_racing_uploads_never_store_a_thumbnail_of_other_bytes(oidc, settings, uploads):
    """The race itself: alice re-uploads P and Q to one path while thumbnails are asked for."""
    settings.IMAGE_SCOPE = "user"
    bobs = upload(client_for(oidc, "bob"), "p.png", PICTURE_P).json()
    first = upload(client_for(oidc, "alice"), "race.png", PICTURE_P).json()
    expected = {
        bobs["sha256"]: "red",
        upload(client_for(oidc, "carol"), "q.png", PICTURE_Q).json()["sha256"]: "blue",
    }
    folder = uploads / THUMBNAILS
    done = threading.Event()
    wrong: list[str] = []

    def uploader(content: bytes) -> None:
        client = client_for(oidc, "alice")
        for _ in range(15):
            assert upload(client, "race.png", content).status_code == 200

    def viewer() -> None:
        client = client_for(oidc, "alice")
        while not done.is_set():
            for size in (64, 128, 256):
                client.get(f"/images/{first['_id']}/thumbnail?size={size}")
            for path in sorted(folder.glob("*")) if folder.exists() else []:
                try:
                    shown = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
                except (FileNotFoundError, OSError):
                    continue
                red, _, blue = shown.getpixel((10, 10))
                if expected.get(path.name.split("-")[0]) != ("red" if red > blue else "blue"):
                    wrong.append(path.name)
                path.unlink(missing_ok=True)

    with ThreadPoolExecutor(3) as pool:
        watching = pool.submit(viewer)
        writers = [pool.submit(uploader, PICTURE_P), pool.submit(uploader, PICTURE_Q)]
        for writer in writers:
            writer.result()
        done.set()
        watching.result()
    assert wrong == []
    assert colour(client_for(oidc, "bob").get(f"/images/{bobs['_id']}/thumbnail?size=64")) == "red"


def test_renders_share_the_memory_budget(settings):
    settings.THUMBNAIL_CONCURRENCY = 8
    settings.THUMBNAIL_MEMORY_MB = 100
    sixty_mib = 60 * 1024 * 1024
    assert peak_overlap(RenderGate(), lambda index: f"k{index}", sixty_mib, renders=4) == 1


def test_a_picture_that_needs_more_than_the_budget_is_422(api, settings):
    import pyvips

    interlaced = pyvips.Image.black(2000, 2000, bands=3).pngsave_buffer(interlace=True)
    body = upload(api, "interlaced.png", interlaced).json()
    settings.THUMBNAIL_MEMORY_MB = 16  # decoding it whole needs about 23 MiB
    response = api.get(f"/images/{body['_id']}/thumbnail?size=64")
    assert response.status_code == 422
    assert "THUMBNAIL_MEMORY_MB" in response.json()["detail"]
    settings.THUMBNAIL_MEMORY_MB = 64
    assert api.get(f"/images/{body['_id']}/thumbnail?size=64").status_code == 200


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg' width='9' height='9'><rect/></svg>"),
        ("x.csv", b"1,2,3\n4,5,6\n"),
        ("x.mat", b"2 2\n1 2\n3 4\n"),
    ],
)
def test_libvips_reads_only_the_image_formats_thumbnails_need(api, settings, name, content):
    settings.ALLOW_NON_IMAGES = True
    body = upload(api, name, content).json()
    response = api.get(f"/images/{body['_id']}/thumbnail?size=64")
    assert response.status_code == 422
    assert "not a decodable image" in response.json()["detail"]


def test_under_gevent_renders_run_on_a_native_thread():
    """A render must not hold a gevent worker's only OS thread (its other requests wait)."""
    import subprocess
    import sys

    script = (
        "from gevent import monkey; monkey.patch_all()\n"
        "native = monkey.get_original('threading', 'get_ident')\n"
        "from images.runtime.offload import run_off_loop\n"
        "print(run_off_loop(native) != native())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "True"
    assert response_module.run_off_loop(threading.get_ident) == threading.get_ident()
