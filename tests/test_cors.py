"""CORS as the original answers it: preflights for every route and method, headers on answers."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from imagestore.settings import cors_allowed_origins
from tests.helpers import upload

IMAGE = "/images/0123456789abcdef01234567"
ROUTES = [
    ("/", "GET"),
    ("/images", "GET"),
    ("/images", "POST"),
    ("/images", "PATCH"),
    ("/images", "DELETE"),
    (IMAGE, "GET"),
    (IMAGE, "PATCH"),
    (IMAGE, "PUT"),
    (IMAGE, "DELETE"),
    (f"{IMAGE}/image", "GET"),
    (f"{IMAGE}/image", "HEAD"),
    (f"{IMAGE}/file", "GET"),
    (f"{IMAGE}/thumbnail", "GET"),
    (f"{IMAGE}/url", "POST"),
    ("/images/duplicates", "GET"),
    ("/fields", "GET"),
    ("/fields/camera", "GET"),
    ("/export", "GET"),
    ("/export/url", "POST"),
    ("/import", "POST"),
    ("/health/ready", "GET"),
    ("/docs/schema", "GET"),
    ("/no/such/route", "GET"),
]
METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"
# What real clients ask for: the GUI (axios with a request header named like the response
# header), bearer tokens, JSON bodies, jQuery-style and home-made headers.
REQUESTED_HEADERS = "access-control-allow-origin,authorization,content-type,x-requested-with,x-app"


def preflight(api, path: str, method: str, headers: str | None = REQUESTED_HEADERS, **extra):
    if headers is not None:
        extra["HTTP_ACCESS_CONTROL_REQUEST_HEADERS"] = headers
    return api.options(
        path,
        HTTP_ORIGIN="http://127.0.0.1:8080",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD=method,
        **extra,
    )


def vary(response) -> set[str]:
    return {part.strip().lower() for part in response.get("Vary", "").split(",") if part.strip()}


@pytest.mark.parametrize(("path", "method"), ROUTES)
def test_preflight_of_every_route_allows_the_method_and_echoes_the_headers(api, path, method):
    response = preflight(api, path, method)
    assert response.status_code == 204
    assert response.content == b""
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Methods"] == METHODS
    assert response["Access-Control-Allow-Headers"] == REQUESTED_HEADERS
    assert "access-control-request-headers" in vary(response)
    assert response["Access-Control-Expose-Headers"] == "Content-Disposition"


def test_preflight_of_every_documented_operation(api):
    # Routes added later are covered too: every path and method the schema publishes.
    schema = api.get("/docs/schema?format=json").json()
    operations = [
        (path.replace("{id}", IMAGE.rsplit("/", 1)[1]).replace("{field}", "camera"), method)
        for path, methods in schema["paths"].items()
        for method in methods
    ]
    assert len(operations) >= len(ROUTES) - 3
    for path, method in operations:
        response = preflight(api, path, method.upper())
        assert response.status_code == 204, (path, method)
        assert response["Access-Control-Allow-Headers"] == REQUESTED_HEADERS
        assert response["Access-Control-Allow-Methods"] == METHODS


def test_preflight_echoes_any_header_list_as_sent(api):
    asked = "X-Custom-Thing, Authorization,  x-b3-traceid"
    assert preflight(api, "/images", "PUT", asked)["Access-Control-Allow-Headers"] == asked


def test_preflight_without_requested_headers_allows_none(api):
    response = preflight(api, "/images", "DELETE", headers=None)
    assert response.status_code == 204
    assert "Access-Control-Allow-Headers" not in response
    assert response["Access-Control-Allow-Methods"] == METHODS


def test_preflight_refuses_to_echo_what_no_header_name_is(api):
    response = preflight(api, "/images", "GET", "x-a\u00e9b")
    assert response.status_code == 204
    assert "Access-Control-Allow-Headers" not in response


def test_preflight_needs_no_token_with_auth_on(api, oidc):
    assert api.get("/images").status_code == 401
    response = preflight(api, "/images", "GET", "authorization,access-control-allow-origin")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Headers"] == "authorization,access-control-allow-origin"


def test_plain_options_is_not_a_preflight(api):
    response = api.options("/images", HTTP_ORIGIN="http://127.0.0.1:8080")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("origin", [{"HTTP_ORIGIN": "http://gui.example"}, {}])
def test_every_answer_allows_any_origin_and_exposes_content_disposition(api, origin, settings):
    # As the original: with or without Origin, success or error, JSON or streamed.
    stored = upload(api).json()
    answers = [
        api.get("/images", **origin),
        upload(api, "other.jpg", **origin),
        api.get(f"/images/{stored['_id']}/image", **origin),
        api.get("/export", **origin),
        api.get("/images?filter=nope", **origin),
        api.get("/no/such/route", **origin),
        api.get("/docs/", **origin),
    ]
    settings.OIDC_JWKS_URI = "http://127.0.0.1:9/certs"  # auth on: no token, 401
    answers.append(api.get("/images", **origin))
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 400, 404, 200, 401]
    for answer in answers:
        assert answer["Access-Control-Allow-Origin"] == "*"
        assert answer["Access-Control-Expose-Headers"] == "Content-Disposition"
        assert "origin" not in vary(answer)  # one answer for every origin: caches may share it


# --- CORS_ALLOWED_ORIGINS --------------------------------------------------------------------
@pytest.fixture
def gui_only(settings):
    settings.CORS_ALLOWED_ORIGINS = ("https://gui.example.com", "http://127.0.0.1:8080")


def test_a_listed_origin_is_named_and_answers_vary_on_origin(api, gui_only):
    response = preflight(api, IMAGE, "PATCH")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
    assert response["Access-Control-Allow-Headers"] == REQUESTED_HEADERS
    assert {"origin", "access-control-request-headers"} <= vary(response)
    answer = api.get("/images", HTTP_ORIGIN="https://gui.example.com")
    assert answer["Access-Control-Allow-Origin"] == "https://gui.example.com"
    assert answer["Access-Control-Expose-Headers"] == "Content-Disposition"
    assert "origin" in vary(answer)


def test_an_unlisted_origin_gets_no_cors_headers(api, gui_only):
    response = api.options(
        "/images",
        HTTP_ORIGIN="https://evil.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-app",
    )
    assert response.status_code != 204
    answers = [response, api.get("/images", HTTP_ORIGIN="https://evil.example"), api.get("/images")]
    for answer in answers:
        assert "Access-Control-Allow-Origin" not in answer
        assert "Access-Control-Allow-Headers" not in answer
        assert "Access-Control-Allow-Methods" not in answer
        assert "origin" in vary(answer)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ("*",)),
        ("", ("*",)),
        ("*", ("*",)),
        (
            "https://GUI.example.com/, http://127.0.0.1:8080",
            ("https://gui.example.com", "http://127.0.0.1:8080"),
        ),
        ("null", ("null",)),
    ],
)
def test_cors_allowed_origins_setting(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    else:
        monkeypatch.setenv("CORS_ALLOWED_ORIGINS", raw)
    assert cors_allowed_origins() == expected


@pytest.mark.parametrize(
    "raw", ["gui.example.com", "https://gui.example.com/app", "ftp://x.example"]
)
def test_cors_allowed_origins_refuses_what_is_no_origin(monkeypatch, raw):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", raw)
    with pytest.raises(ImproperlyConfigured, match="CORS_ALLOWED_ORIGINS"):
        cors_allowed_origins()
