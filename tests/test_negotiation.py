"""`Accept` never makes a JSON route or a download fail: they have one representation."""

from __future__ import annotations

from tests.helpers import image_bytes, upload


def test_download_answers_whatever_accept_names(api):
    created = upload(api, "cat.jpg", image_bytes()).json()
    response = api.get(f"/images/{created['_id']}/image", HTTP_ACCEPT="image/jpeg")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == image_bytes()


def test_json_route_answers_json_to_a_browser_accept(api):
    upload(api, "cat.jpg", image_bytes())
    response = api.get("/images", HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["total"] == 1


def test_schema_still_negotiates_between_its_renderers(api):
    response = api.get("/docs/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "imagestore"
