"""The gallery in headless Chromium against a running server: filter, pages, detail, download.

Screenshots are saved under tests/artifacts/ (not committed).
"""

from __future__ import annotations

import colorsys
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from tests.helpers import REPO_ROOT, Server
from tests.oidc import IdentityProvider, rsa_key

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # drives Chromium against `serve`

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()
    assert page.errors == []  # no script errors


def picture(index: int, size=(160, 120)) -> bytes:
    """A colourful test picture: a hue per index, a circle, and its number."""
    red, green, blue = colorsys.hsv_to_rgb((index * 0.13) % 1.0, 0.65, 0.95)
    image = Image.new("RGB", size, (int(red * 255), int(green * 255), int(blue * 255)))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size[0] // 4, size[1] // 6, size[0] * 3 // 4, size[1] * 5 // 6), fill="white")
    draw.text((size[0] // 2 - 6, size[1] // 2 - 6), str(index), fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def seed(server: Server, headers: dict | None = None, owner: str = "") -> dict[str, bytes]:
    """14 images of cam1 and 3 of cam2; returns each stored path's bytes."""
    stored = {}
    for index in range(17):
        camera = "cam1" if index < 14 else "cam2"
        path = f"{camera}/{owner}frame_{index:04d}.png"
        content = picture(index)
        meta = {"camera": camera, "label": ["cat", "dog", "bird"][index % 3], "index": index}
        response = requests.post(
            f"{server.url}/images",
            files={"image": (path.rsplit("/", 1)[1], content, "image/png")},
            data={"file": path, "json": json.dumps(meta)},
            headers=headers or {},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        stored[path] = content
    return stored


def shown(first: int, last: int, total: int) -> str:
    """The pager's status text."""
    return f"{first}\u2013{last} of {total}"


def thumbnails_loaded(page: Page) -> None:
    page.wait_for_function(
        "[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )


def captions(page: Page) -> list[str]:
    return page.locator("#grid .caption").all_inner_texts()


def test_filter_paginate_detail_download(start_server, page):
    server = start_server()
    stored = seed(server)
    page.goto(f"{server.url}/gallery/?limit=12")
    expect(page.locator("#status")).to_have_text(shown(1, 12, 17))
    expect(page.locator("#grid .tile")).to_have_count(12)
    thumbnails_loaded(page)

    # Filter by a data key, newest name first.
    page.fill("input[name=match]", "camera=cam1")
    page.select_option("select[name=sort]", "file")
    page.select_option("select[name=order]", "-1")
    page.click("#filters button[type=submit]")
    expect(page.locator("#status")).to_have_text(shown(1, 12, 14))
    assert captions(page)[0] == "frame_0013.png"
    assert "match=camera%3Dcam1" in page.url

    # Next page, by button; back, by keyboard from the first tile.
    page.click("#next")
    expect(page.locator("#status")).to_have_text(shown(13, 14, 14))
    assert captions(page) == ["frame_0001.png", "frame_0000.png"]
    assert "skip=12" in page.url
    expect(page.locator("#next")).to_be_disabled()
    page.locator("#grid .tile").first.focus()
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#status")).to_have_text(shown(1, 12, 14))
    expect(page.locator("#grid .tile").last).to_be_focused()

    # Arrow keys move between tiles; Enter opens the detail view.
    page.locator("#grid .tile").first.focus()
    page.keyboard.press("ArrowRight")
    expect(page.locator("#grid .tile").nth(1)).to_be_focused()
    page.keyboard.press("Enter")
    dialog = page.locator("#detail")
    expect(dialog).to_be_visible()
    document = json.loads(page.locator("#detail-json").inner_text())
    assert document["file"] == "cam1/frame_0012.png"
    assert document["data"] == {"camera": "cam1", "label": "cat", "index": 12}
    assert document["width"] == 160 and len(document["sha256"]) == 64
    page.wait_for_function("document.getElementById('detail-image').naturalWidth === 160")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#detail-title")).to_have_text("cam1/frame_0011.png")

    with page.expect_download() as download_info:
        page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "frame_0011.png"
    assert Path(download.path()).read_bytes() == stored["cam1/frame_0011.png"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-detail.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#grid .tile").nth(2)).to_be_focused()

    # A partial match, and dates that exclude everything.
    page.fill("input[name=match]", "label=CA")
    page.check("input[name=regex]")
    page.click("#filters button[type=submit]")
    expect(page.locator("#status")).to_have_text(shown(1, 6, 6))
    page.fill("input[name=to]", "2000-01-01")
    page.click("#filters button[type=submit]")
    expect(page.locator("#status")).to_have_text("No images match")
    page.fill("input[name=filter]", "{not json")
    page.click("#filters button[type=submit]")
    expect(page.locator("#status")).to_contain_text("Error: ")

    # The whole set again, for the screenshot; a reload keeps the form.
    page.goto(f"{server.url}/gallery/?limit=24&sort=file")
    expect(page.locator("#status")).to_have_text(shown(1, 17, 17))
    thumbnails_loaded(page)
    expect(page.locator("select[name=sort]")).to_have_value("file")
    page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)


def test_with_auth_the_token_shows_only_the_callers_images(start_server, page):
    provider = IdentityProvider()
    provider.add_key("rsa", rsa_key("main"), "RS256")
    try:
        server = start_server(OIDC_JWKS_URI=provider.jwks_uri, IMAGE_SCOPE="user")
        alice = provider.token(preferred_username="alice")
        bob = provider.token(preferred_username="bob")
        seed(server, {"Authorization": f"Bearer {alice}"}, owner="alice_")
        bob_files = seed(server, {"Authorization": f"Bearer {bob}"}, owner="bob_")

        page.goto(f"{server.url}/gallery/?limit=12")
        expect(page.locator("#status")).to_contain_text("enter a bearer token")
        expect(page.locator("#grid .tile")).to_have_count(0)

        page.fill("#token", bob)
        page.click("#token-form button[type=submit]")
        expect(page.locator("#status")).to_have_text(shown(1, 12, 17))
        thumbnails_loaded(page)
        assert all(name.startswith("bob_") for name in captions(page))
        assert page.evaluate("sessionStorage.getItem('imagestore.token')") == bob
        sources = page.eval_on_selector_all("#grid img", "images => images.map(i => i.src)")
        assert all(source.startswith("blob:") for source in sources)

        page.locator("#grid .tile").first.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#detail-title")).to_have_text("bob/cam1/bob_frame_0000.png")
        with page.expect_download() as download_info:
            page.click("#download")
        assert Path(download_info.value.path()).read_bytes() == bob_files["cam1/bob_frame_0000.png"]
        page.keyboard.press("Escape")

        page.reload()
        expect(page.locator("#status")).to_have_text(shown(1, 12, 17))
        page.click("#token-clear")
        expect(page.locator("#status")).to_contain_text("enter a bearer token")
    finally:
        provider.stop()
