"""A page on another origin calls the API from headless Chromium, as the original's GUI does.

Only a browser enforces CORS: the page, served by a small HTTP server on another loopback port,
sends every call with `fetch` and the request header the GUI's axios sets on every call
(`Access-Control-Allow-Origin: *`), so each one is preceded by a preflight.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from playwright.sync_api import Page

from tests.helpers import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # drives Chromium against `serve`

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>another origin</title></head><body>
<script>
// What the GUI's axios sends on every call.
const AXIOS_HEADER = {
  "Access-Control-Allow-Origin": "*",
  "Accept": "application/json, text/plain, */*",
};

async function png() {
  const canvas = document.createElement("canvas");
  canvas.width = 24;
  canvas.height = 16;
  canvas.getContext("2d").fillRect(0, 0, 12, 8);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

async function call(name, url, options = {}) {
  try {
    const headers = {...AXIOS_HEADER, ...(options.headers || {})};
    const response = await fetch(url, {...options, headers});
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json() : (await response.blob()).size;
    const disposition = response.headers.get("content-disposition");
    return {name, status: response.status, body, disposition};
  } catch (error) {
    return {name, error: String(error)};
  }
}

async function runCalls(api) {
  const json = {"Content-Type": "application/json"};
  const form = new FormData();
  form.append("image", await png(), "page.png");
  form.append("data", JSON.stringify({camera: "cam2", label: "ok"}));
  const upload = await call("upload", `${api}/images`, {method: "POST", body: form});
  const id = upload.body && upload.body._id;
  const results = [upload];
  results.push(await call("list", `${api}/images?limit=10&skip=0&sort=time&order=-1`));
  results.push(await call("patch", `${api}/images/${id}`,
    {method: "PATCH", headers: json, body: JSON.stringify({reviewed: "yes"})}));
  results.push(await call("bulk patch", `${api}/images?camera=cam2`,
    {method: "PATCH", headers: json, body: JSON.stringify({review: {by: "gui"}})}));
  results.push(await call("put", `${api}/images/${id}`,
    {method: "PUT", headers: json, body: JSON.stringify({camera: "cam3"})}));
  results.push(await call("fields", `${api}/fields?limit=10`));
  results.push(await call("download", `${api}/images/${id}/image`));
  results.push(await call("delete", `${api}/images/${id}`, {method: "DELETE"}));
  results.push(await call("list after delete", `${api}/images`));
  return results;
}
</script>
</body></html>
"""


class PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def page_origin() -> Iterator[str]:
    """The test page, served from a loopback origin of its own."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def run_calls(page: Page, page_origin: str, api: str) -> dict[str, dict]:
    page.goto(f"{page_origin}/")
    assert page.evaluate("location.origin") != api
    return {result["name"]: result for result in page.evaluate("runCalls", api)}


def test_a_page_on_another_origin_lists_uploads_edits_and_deletes(page, page_origin, start_server):
    api = start_server().url
    results = run_calls(page, page_origin, api)
    assert {name: r.get("error") for name, r in results.items() if "error" in r} == {}
    assert {name: r["status"] for name, r in results.items()} == dict.fromkeys(results, 200)
    upload = results["upload"]["body"]
    assert upload["file"] == "page.png" and upload["data"] == {"camera": "cam2", "label": "ok"}
    assert results["list"]["body"]["total"] == 1
    assert results["patch"]["body"]["data"]["reviewed"] == "yes"
    assert results["bulk patch"]["body"]["matchedCount"] == 1
    assert results["put"]["body"]["data"] == {"camera": "cam3"}
    assert results["fields"]["body"] == ["camera"]
    # The exposed header is readable by the page, as the GUI's download name needs.
    assert results["download"]["body"] > 0
    assert 'filename="page.png"' in results["download"]["disposition"]
    assert results["delete"]["body"] == {"_id": upload["_id"]}
    assert results["list after delete"]["body"]["total"] == 0


def test_an_export_opened_as_a_page_downloads_with_the_filter_as_typed(page, start_server):
    # The GUI opens exports as pages (no CORS), the filter's JSON not URL-encoded.
    server = start_server()
    jpeg = image_bytes()
    for name, camera in (("a.jpg", "cam3"), ("b.jpg", "cam1")):
        requests.post(
            f"{server.url}/images",
            files={"image": (name, jpeg, "image/jpeg")},
            data={"data": json.dumps({"camera": camera})},
            timeout=30,
        ).raise_for_status()
    url = server.url + '/export?filter={"$and":[{"data.camera":"cam3"}]}'
    page.goto(f"{server.url}/")
    with page.expect_download() as download_info:
        page.evaluate("url => { location.href = url; }", url)
    download = download_info.value
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(download.path()) as archive:
        assert [n for n in archive.namelist() if n.endswith(".jpg")] == ["a.jpg"]


def test_an_origin_not_listed_is_refused_by_the_browser(page, page_origin, start_server):
    api = start_server(CORS_ALLOWED_ORIGINS="https://gui.example.com").url
    results = run_calls(page, page_origin, api)
    assert all("Failed to fetch" in r.get("error", "") for r in results.values()), results
