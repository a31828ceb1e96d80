"""What any caller sees: GET / without secrets or paths, response headers, logs, signed links."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from images.api.redaction import redacted_mongodb_uri
from images.api.views.service import redacted_connection_string
from images.runtime.log_escaping import EscapeControlCharacters, OneLineFormatter
from testing.harness import ServeProcess
from tests.helpers import image_bytes, upload
from tests.samples import SAMPLES

SECRET = "Sup3rSecretValue"


# --- GET / ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        f"mongodb://alice:{SECRET}@db1:27017,db2/x?replicaSet=rs0",
        f"mongodb://db/x?tls=true&tlsCertificateKeyFilePassword={SECRET}",
        f"mongodb://db/x?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}",
        f"mongodb+srv://u:{SECRET}@cluster.example/x?retryWrites=true&w=majority",
        f"mongodb://db/x?sslClientCertificateKeyPassword={SECRET}",
        f"mongodb://db/x?someFutureOption={SECRET}",
        f"mongodb://db/x?authSource=admin;proxyPassword={SECRET}",
        f"mongodb://us%40r:{SECRET}@db/x",
        f"mongodb://u:p%40{SECRET}@db/x",
        f"mongodb://db/x?AUTHMECHANISMPROPERTIES=AWS_SESSION_TOKEN:{SECRET}",
        f"mongodb://u:pa?{SECRET}@db/x",
        f"mongodb://u:pa/{SECRET}@db/x",
        f"mongodb://u:pa#{SECRET}@db/x",
        f"mongodb://db/x?appName={SECRET}@x",
        f"mongodb+srv://u:{SECRET}",
        f"MONGODB://u:{SECRET}@db/x",
        f"mongodb://db:{SECRET}/x",
    ],
)
def test_no_secret_of_the_uri_reaches_the_info_page(settings, uri):
    # The page's own function (the page would also try to connect to these hosts).
    shown = redacted_connection_string(uri)
    assert SECRET not in shown
    assert shown.startswith("mongodb") or shown == "<invalid>"


def test_the_info_page_redacts_its_connection_string(api, settings, monkeypatch):
    monkeypatch.setattr("images.api.views.service.ping", lambda: True)
    uri = f"mongodb://db.example/x?tlsCertificateKeyFilePassword={SECRET}"
    settings.MONGODB_CONNECTION_STRING = uri
    body = api.get("/").content.decode()
    assert SECRET not in body and "tlsCertificateKeyFilePassword=***" in body


def test_harmless_options_user_and_hosts_are_kept():
    shown = redacted_mongodb_uri(
        f"mongodb://alice:{SECRET}@db1:27017,db2/x?replicaSet=rs0&tlsCertificateKeyFilePassword=s"
    )
    assert (
        shown
        == "mongodb://alice:***@db1:27017,db2/x?replicaSet=rs0&tlsCertificateKeyFilePassword=***"
    )


def test_paths_in_the_uri_are_shown_only_when_asked():
    uri = "mongodb://%2Ftmp%2Fmongodb.sock/x?tlsCAFile=/etc/ssl/ca.pem"
    assert "/etc/ssl" not in redacted_mongodb_uri(uri) and "tmp" not in redacted_mongodb_uri(uri)
    assert redacted_mongodb_uri(uri, show_paths=True) == uri


def test_invalid_uri_is_not_echoed():
    assert redacted_mongodb_uri(f"nonsense {SECRET}") == "<invalid>"


def test_endpoint_credentials_are_hidden(api, settings):
    settings.S3_BUCKET = "b"
    settings.S3_ENDPOINT = f"http://key:{SECRET}@minio:9000"
    body = api.get("/").content.decode()
    assert SECRET not in body and "minio:9000" in body
    settings.S3_ENDPOINT = f"http://key:se/{SECRET}@minio:9000"
    assert SECRET not in api.get("/").content.decode()


# --- headers ----------------------------------------------------------------------------------
def test_nosniff_on_every_kind_of_response(api, settings):
    body = upload(api, "a.png", SAMPLES["alpha.png"].content).json()
    image = f"/images/{body['_id']}"
    etag = api.get(f"{image}/image")["ETag"]
    responses = [
        api.get("/"),
        api.get("/images"),
        api.get(image),
        api.get(f"{image}/image"),
        api.head(f"{image}/image"),
        api.get(f"{image}/image", HTTP_RANGE="bytes=0-3"),
        api.get(f"{image}/image", HTTP_RANGE="bytes=999999-"),
        api.get(f"{image}/image", HTTP_IF_NONE_MATCH=etag),
        api.get(f"{image}/thumbnail?size=64"),
        api.get("/images/nope"),
        api.get("/no/such/route"),
        api.post("/images", {}, format="multipart"),
        api.get("/static/images/gallery.css"),
        api.get("/health/live"),
        api.options("/images", HTTP_ORIGIN="http://x", HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET"),
    ]
    for response in responses:
        assert response["X-Content-Type-Options"] == "nosniff", (response.status_code, response)


@pytest.mark.parametrize("backend_name", ["local", "s3"])
def test_download_type_is_the_detected_format_not_the_extension(api, request, backend_name):
    if backend_name == "s3":
        request.getfixturevalue("s3_bucket")
    png = upload(api, "page.html", SAMPLES["alpha.png"].content).json()
    assert png["contentType"] == "image/png"
    response = api.get(f"/images/{png['_id']}/image")
    assert response["Content-Type"] == "image/png"
    assert api.head(f"/images/{png['_id']}/file")["Content-Type"] == "image/png"


def test_presigned_download_carries_the_detected_type(api, s3_bucket, settings):
    settings.S3_PRESIGNED_DOWNLOADS = True
    png = upload(api, "page.html", SAMPLES["alpha.png"].content).json()
    location = api.get(f"/images/{png['_id']}/image")["Location"]
    fetched = requests.get(location, timeout=10)
    assert fetched.headers["Content-Type"] == "image/png"


def test_a_file_that_is_not_an_image_is_served_as_bytes(api, settings, collection):
    settings.ALLOW_NON_IMAGES = True
    body = upload(api, "x.html", b"<script>alert(1)</script>").json()
    assert api.get(f"/images/{body['_id']}/image")["Content-Type"] == "application/octet-stream"
    collection.update_one({}, {"$set": {"contentType": "text/html"}})
    assert api.get(f"/images/{body['_id']}/image")["Content-Type"] == "application/octet-stream"
    svg = upload(api, "y.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>").json()
    assert api.get(f"/images/{svg['_id']}/image")["Content-Type"] == "application/octet-stream"


# --- signed links -----------------------------------------------------------------------------
@pytest.fixture
def signer(api, oidc):
    api.credentials(**oidc.auth("alice"))
    return api


def image_link(api, **headers) -> str:
    image_id = upload(api, "a.jpg", image_bytes()).json()["_id"]
    response = api.post(f"/images/{image_id}/url", **headers)
    assert response.status_code == 200, response.content
    return response.json()["image"]


def test_a_forged_host_never_gets_a_link_to_itself(signer, settings):
    settings.ALLOWED_HOSTS = ["*"]
    settings.PUBLIC_URL = ""
    link = image_link(signer, HTTP_HOST="evil.example:8443")
    assert "evil.example" not in link and link.startswith("/images/")


def test_public_url_is_the_base_of_links(signer, settings):
    settings.PUBLIC_URL = "https://images.example/api"
    link = image_link(signer, HTTP_HOST="evil.example")
    assert link.startswith("https://images.example/api/images/") and "evil" not in link


def test_links_on_a_host_that_allowed_hosts_names(signer, settings):
    settings.PUBLIC_URL = ""
    settings.ALLOWED_HOSTS = ["images.example", "*"]
    assert image_link(signer, HTTP_HOST="images.example").startswith("http://images.example/")
    assert image_link(signer, HTTP_HOST="localhost:3000").startswith("http://localhost:3000/")
    assert image_link(signer, HTTP_HOST="other.example").startswith("/images/")
    settings.ALLOWED_HOSTS = ["images.example"]
    assert signer.post("/export/url", HTTP_HOST="evil.example").status_code == 400


# --- logs -------------------------------------------------------------------------------------
FORGED = "2026-01-01 00:00:00,000 INFO imagestore.requests DELETE /images 200 1.0ms"


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_logged_value_cannot_forge_a_line(tmp_path, mongodb_uri, log_format):
    service = ServeProcess(
        {
            "MONGODB_CONNECTION_STRING": mongodb_uri.rsplit("/", 1)[0] + "/log_forging",
            "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
            "DATA_DIRECTORY": str(tmp_path / "data"),
            "LOG_FORMAT": log_format,
        },
        tmp_path,
    ).start()
    try:
        forged = requests.utils.quote(f"/nope\n{FORGED}\r\x1b[2J\u2028x", safe="/")
        assert requests.get(f"{service.url}{forged}", timeout=10).status_code == 404
    finally:
        service.stop(timeout=30)
    lines = service.output.splitlines()
    assert not any(line.startswith(FORGED[:20]) for line in lines), lines
    assert not any("\x1b" in line or "\u2028" in line for line in lines)
    logged = [line for line in lines if "/nope" in line]
    assert len(logged) == 1
    if log_format == "json":
        assert json.loads(logged[0])["path"].startswith("/nope\\n2026-01-01")
    else:
        assert "/nope\\n2026-01-01" in logged[0]


def test_a_traceback_stays_under_its_record():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("a\nb",), None)
    try:
        raise ValueError(f"line one\n{FORGED}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    EscapeControlCharacters().filter(record)
    text = OneLineFormatter("%(levelname)s %(message)s").format(record)
    first, *rest = text.split("\n")
    assert first == "ERROR failed a\\nb"
    assert rest and all(line.startswith("    | ") for line in rest)


def test_gunicorn_logs_are_escaped_too(capsys):
    from gunicorn.config import Config

    from images.runtime.log_escaping import GunicornLogger

    config = Config()
    config.set("errorlog", "-")
    logger = GunicornLogger(config)
    logger.error("Error handling request %s", f"/x\n{FORGED}")
    logged = capsys.readouterr().err.splitlines()
    assert len(logged) == 1 and logged[0].endswith(f"/x\\n{FORGED}")
