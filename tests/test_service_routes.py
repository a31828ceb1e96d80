"""GET /, docs, schema, health, metrics, CORS and unknown routes."""

from __future__ import annotations

import pytest

from images.api.views.service import redacted_connection_string


def test_info_document(api, settings):
    body = api.get("/").json()
    assert body["application_name"] == "imagestore"
    assert body["mongodb"]["connected"] is True
    assert body["storage"] == {"directories": {"uploadsDirectoryPath": None}}
    assert str(settings.UPLOADS_DIRECTORY) not in api.get("/").content.decode()
    settings.SHOW_STORAGE_PATHS = True
    shown = api.get("/").json()["storage"]
    assert shown == {"directories": {"uploadsDirectoryPath": str(settings.UPLOADS_DIRECTORY)}}
    assert body["auth"]["enabled"] is False
    assert body["image_scope"] is None


def test_info_shows_s3(api, s3_bucket, s3_endpoint):
    body = api.get("/").json()
    assert body["storage"]["s3"]["bucket"] == s3_bucket


def test_connection_string_password_is_redacted():
    redacted = redacted_connection_string(
        "mongodb://alice:s3cret@db.example:27017/x?authSource=admin"
    )
    assert "s3cret" not in redacted and "alice" in redacted
    assert redacted_connection_string("mongodb://h:1/x") == "mongodb://h:1/x"


def test_docs_and_schema(api):
    assert api.get("/docs").status_code == 301
    page = api.get("/docs/")
    assert page.status_code == 200 and b"swagger" in page.content.lower()
    schema = api.get("/docs/schema", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    for route in (
        "/images",
        "/images/{id}",
        "/images/{id}/image",
        "/images/{id}/file",
        "/fields",
        "/fields/{field}",
    ):
        assert any(p.rstrip("/") == route for p in paths), route
    list_params = {p["name"] for p in paths["/images"]["get"]["parameters"]}
    assert {
        "filter",
        "ids",
        "file",
        "regex",
        "from",
        "to",
        "sort",
        "order",
        "skip",
        "limit",
        "select",
    } <= list_params
    upload_body = paths["/images"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload_body


def test_swagger_ui_assets_are_served_locally(api):
    page = api.get("/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page


@pytest.mark.parametrize("path", ["/nonexistent", "/images/a/b/c", "/imagesx"])
def test_unknown_routes_are_json_404(api, path):
    response = api.get(path)
    assert response.status_code == 404
    assert response.json()["detail"]


def test_unknown_method_is_405(api):
    response = api.generic("TRACE", "/images")
    assert response.status_code == 405
    assert response.json()["detail"]


def test_cors_headers(api):
    response = api.options(
        "/images", HTTP_ORIGIN="http://gui.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE"
    )
    assert response["Access-Control-Allow-Origin"] == "*"
    response = api.get("/images", HTTP_ORIGIN="http://gui.example")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Expose-Headers"] == "Content-Disposition"


def test_health(api):
    assert api.get("/health/live").json() == {"status": "ok"}
    ready = api.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["mongodb"] is True


def test_metrics(api):
    api.get("/images")
    body = api.get("/metrics").content.decode()
    assert "django_http_requests_total_by_method_total" in body
