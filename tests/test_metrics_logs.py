"""/metrics (stored-image gauges, request metrics by route), CORS, and per-request log lines."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
import requests
from django.http import HttpResponse

from images.api.middleware.request_log import RequestLogMiddleware
from images.runtime import embedded_db, metrics
from testing.harness import ServeProcess
from tests.helpers import image_bytes, upload


def scrape(api) -> str:
    response = api.get("/metrics")
    assert response.status_code == 200
    return response.content.decode()


def sample(text: str, name: str, labels: str = "") -> float | None:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.fixture
def collector():
    registered = metrics.register()
    registered.expire()
    yield registered
    registered.expire()


def test_gauges_count_images_and_bytes(api, collection, collector):
    contents = [image_bytes("PNG", (8 + i, 8), "blue") for i in range(3)]
    for index, content in enumerate(contents):
        upload(api, f"{index}.png", content)
    collection.insert_one({"file": "legacy.png", "data": {}, "userId": None})
    text = scrape(api)
    assert sample(text, "imagestore_images") == 4
    assert sample(text, "imagestore_image_bytes") == sum(len(c) for c in contents)
    assert sample(text, "imagestore_images_without_facts") == 1


def test_gauges_are_cached_between_scrapes(api, collector):
    upload(api, "a.jpg")
    assert sample(scrape(api), "imagestore_images") == 1
    upload(api, "b.jpg")
    assert sample(scrape(api), "imagestore_images") == 1
    collector.expire()
    assert sample(scrape(api), "imagestore_images") == 2


def test_gauges_are_left_out_while_the_database_is_down(api, settings, collector):
    settings.MONGODB_CONNECTION_STRING = f"mongodb://127.0.0.1:{embedded_db.free_port()}/x"
    settings.MONGODB_TIMEOUT_MS = 200
    text = scrape(api)
    assert "imagestore_images " not in text
    assert "django_http_requests_total_by_method_total" in text


def test_request_metrics_by_route_and_status(api):
    body = upload(api).json()
    api.get(f"/images/{body['_id']}")
    api.get("/images/0123456789abcdef01234567")
    text = scrape(api)
    ok = sample(
        text,
        "django_http_responses_total_by_status_view_method_total",
        '{method="GET",status="200",view="image"}',
    )
    missing = sample(
        text,
        "django_http_responses_total_by_status_view_method_total",
        '{method="GET",status="404",view="image"}',
    )
    assert ok and ok >= 1
    assert missing and missing >= 1
    latency = sample(
        text,
        "django_http_requests_latency_seconds_by_view_method_count",
        '{method="GET",view="image"}',
    )
    assert latency and latency >= 2


def test_each_request_counts_once_in_its_own_series(api):
    """The labelled children are cached per process: a request still adds exactly one to its
    own series (by status, view and method) and to no other."""
    body = upload(api).json()
    series = "django_http_responses_total_by_status_view_method_total"
    found = '{method="GET",status="200",view="image"}'
    missing = '{method="GET",status="404",view="image"}'
    listed = '{method="GET",status="200",view="images"}'
    api.get(f"/images/{body['_id']}")
    api.get("/images/0123456789abcdef01234567")
    before = scrape(api)
    for _ in range(3):
        api.get(f"/images/{body['_id']}")
    api.get("/images/0123456789abcdef01234567")
    api.get("/images")
    after = scrape(api)

    def added(labels: str) -> float:
        return (sample(after, series, labels) or 0) - (sample(before, series, labels) or 0)

    assert (added(found), added(missing), added(listed)) == (3, 1, 1)
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    assert (
        sample(after, latency, '{method="GET",view="image"}')
        - sample(before, latency, '{method="GET",view="image"}')
        == 4
    )


def test_ajax_requests_and_body_bytes_are_counted_from_the_request_headers(api):
    before = scrape(api)
    api.get("/images", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    api.patch("/images?file=none.jpg", {"data": {"a": 1}}, format="json")
    after = scrape(api)

    def added(name: str) -> float:
        return (sample(after, name) or 0) - (sample(before, name) or 0)

    assert added("django_http_ajax_requests_total") == 1
    assert added("django_http_requests_body_total_bytes_sum") == len(b'{"data":{"a":1}}')


def test_labelled_children_cache_is_bounded_and_keyed_by_label_names(monkeypatch):
    from prometheus_client import CollectorRegistry, Counter

    from images.api.middleware import request_metrics

    monkeypatch.setattr(request_metrics, "MAX_CACHED_CHILDREN", 3)
    monkeypatch.setattr(request_metrics.PrometheusAfterMiddleware, "_children", {})
    counter = Counter("c", "c", ["a", "b"], registry=CollectorRegistry())
    middleware = request_metrics.PrometheusAfterMiddleware(lambda request: HttpResponse())
    # The same values under swapped names are other series.
    middleware.label_metric(counter, None, a="x", b="y").inc()
    middleware.label_metric(counter, None, b="x", a="y").inc(2)
    assert counter.labels(a="x", b="y")._value.get() == 1
    assert counter.labels(a="y", b="x")._value.get() == 2
    for index in range(10):
        middleware.label_metric(counter, None, a=str(index), b="z").inc()
    assert len(request_metrics.PrometheusAfterMiddleware._children) <= 3
    assert counter.labels(a="9", b="z")._value.get() == 1


def test_metrics_stay_public_with_auth_on(api, oidc):
    assert api.get("/images").status_code == 401
    assert api.get("/metrics").status_code == 200


def test_cors_allows_any_origin_and_exposes_content_disposition(api):
    body = upload(api).json()
    response = api.get(f"/images/{body['_id']}/file", HTTP_ORIGIN="http://gui.example")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Content-Disposition" in response["Access-Control-Expose-Headers"]
    preflight = api.options(
        "/images", HTTP_ORIGIN="http://gui.example", HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE"
    )
    assert preflight["Access-Control-Allow-Origin"] == "*"


# --- request logs ----------------------------------------------------------------------------
def request_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "imagestore.requests"]


def test_one_record_per_request_with_route_status_and_duration(api, caplog):
    caplog.set_level(logging.INFO, logger="imagestore.requests")
    body = upload(api).json()
    api.get(f"/images/{body['_id']}")
    api.get("/no/such/route")
    records = request_records(caplog)
    assert [(r.method, r.route, r.status) for r in records] == [
        ("POST", "/images", 200),
        ("GET", "/images/<str:pk>", 200),
        ("GET", None, 404),
    ]
    assert records[1].path == f"/images/{body['_id']}"
    assert all(isinstance(r.duration_ms, float) and r.duration_ms >= 0 for r in records)
    assert all(r.user is None for r in records)


def test_the_user_is_logged_when_authenticated(api, oidc, settings, caplog):
    settings.IMAGE_SCOPE = "user"
    caplog.set_level(logging.INFO, logger="imagestore.requests")
    api.get("/images", **oidc.auth("alice"))
    api.get("/images")
    assert [(r.user, r.status) for r in request_records(caplog)] == [("alice", 200), (None, 401)]


def test_the_middleware_times_the_whole_request(rf, caplog):
    caplog.set_level(logging.INFO, logger="imagestore.requests")

    def slow_view(request):
        time.sleep(0.05)
        return HttpResponse(status=204)

    RequestLogMiddleware(slow_view)(rf.delete("/somewhere"))
    (record,) = request_records(caplog)
    assert record.duration_ms >= 50
    assert (record.method, record.status, record.route) == ("DELETE", 204, None)


@pytest.mark.slow
def test_json_log_lines_from_a_running_server(tmp_path, mongodb_uri):
    database = mongodb_uri.rsplit("/", 1)[0] + "/logs_test"
    service = ServeProcess(
        {
            "MONGODB_CONNECTION_STRING": database,
            "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
            "DATA_DIRECTORY": str(tmp_path / "data"),
            "LOG_FORMAT": "json",
        },
        tmp_path,
    ).start()
    try:
        for path in ("/images?limit=1", "/images/nope"):
            requests.get(f"{service.url}{path}", timeout=10)
    finally:
        service.stop(timeout=30)
    lines = [json.loads(line) for line in service.output.splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("logger") == "imagestore.requests"]
    assert [(r["method"], r["route"], r["status"]) for r in request_lines] == [
        ("GET", "/images", 200),
        ("GET", "/images/<str:pk>", 400),
    ]
    assert all(r["level"] == "INFO" and r["time"].endswith("+00:00") for r in request_lines)
    assert all(isinstance(r["duration_ms"], float) for r in request_lines)
