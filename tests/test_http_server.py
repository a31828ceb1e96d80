"""The HTTP server under the app: its own answers are JSON, its limits are the documented ones,
slow clients cannot starve it, and files leave through it whole."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from benchmarks import slow_clients
from images.core.query import MAX_FILTER_LENGTH
from images.runtime.serving import http_errors
from testing.harness import ServeProcess
from tests.helpers import noise_image

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses


@pytest.fixture(scope="module")
def server(tmp_path_factory, mongodb_uri):
    """One `serve` (2 gevent workers) on a database of its own, for the whole module."""
    workdir = tmp_path_factory.mktemp("http-server")
    env = {
        "MONGODB_CONNECTION_STRING": mongodb_uri.rsplit("/", 1)[0] + "/http_server_test",
        "UPLOADS_DIRECTORY": str(workdir / "uploads"),
        "DATA_DIRECTORY": str(workdir / "data"),
        "LOG_LEVEL": "WARNING",
    }
    served = ServeProcess(env, workdir, workers=2, log_path=workdir / "serve.log").start()
    yield served.url, served.port
    served.stop()


def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; the status, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


# --- every answer is JSON --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("request_bytes", "status", "words"),
    [
        (b"GET /images?q=" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "262144"),
        (b"NOT A REQUEST LINE\r\n\r\n", 400, "Malformed"),
        (b"GET /images HTTP/7.0\r\nHost: x\r\n\r\n", 400, "Malformed"),
        (b"GET /images HTTP/1.1\r\nBad Header\r\n\r\n", 400, "Malformed"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: 1\r\n" * 200 + b"\r\n", 431, "headers"),
        (b"POST /images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "Malformed"),
    ],
)
def test_the_http_servers_own_errors_are_json(server, request_bytes, status, words):
    _, port = server
    got, headers, body = raw_exchange(port, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert words in json.loads(body)["detail"]


def test_a_failure_before_the_first_byte_is_a_json_500():
    """What gunicorn writes when the app fails before a (streamed) response started."""
    http_errors.install(4096)
    from gunicorn import util

    left, right = socket.socketpair()
    with left, right:
        util.write_error(left, 500, "Internal Server Error", "Traceback details stay in the log")
        left.shutdown(socket.SHUT_WR)
        answer = right.recv(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"application/json" in head
    assert json.loads(body) == {"detail": "Internal server error"}


def test_the_documented_filter_limit_is_reachable_by_url(server):
    """A filter of MAX_FILTER_LENGTH characters, every one percent-encoded, reaches the app."""
    url, _ = server
    padding = "x" * (MAX_FILTER_LENGTH - len('{"data.camera":""}'))
    raw = json.dumps({"data.camera": padding}, separators=(",", ":"))
    assert len(raw) == MAX_FILTER_LENGTH
    encoded = "".join(f"%{byte:02X}" for byte in raw.encode())
    response = requests.get(f"{url}/images?filter={encoded}", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0
    too_long = json.dumps({"data.camera": padding + "x"}, separators=(",", ":"))
    refused = requests.get(f"{url}/images", params={"filter": too_long}, timeout=30)
    assert refused.status_code == 400 and "at most" in refused.json()["detail"]


# --- slow clients ------------------------------------------------------------------------------
def test_slow_and_idle_clients_do_not_starve_a_fresh_client(server):
    """64 connections trickling a header line or a body and 256 idle kept-alive ones: a fresh
    client's /health/live and /images?limit=1 still answer, and all is well once they stop.

    The target is p95 <= 1 s (the benchmark prints it); the bound here is looser so that a
    loaded 2-core machine does not fail it, yet far below the 5 s probe timeout that a server
    holding a thread per slow socket hits on most probes."""
    url, _ = server
    load = slow_clients.SlowLoad(seconds=6.0, recovery_seconds=2.0)
    report = slow_clients.run(url, load)
    assert report.slow_connections >= 300, report
    assert report.during.answered == report.during.count > 20, report.during
    assert report.during.p95_s < 2.5, report.during
    assert report.after.answered == report.after.count > 5, report.after
    assert report.after.p95_s < 2.5, report.after


# --- files through the server ---------------------------------------------------------------------
def test_downloads_leave_whole_while_other_requests_go_on(server):
    url, _ = server
    content = noise_image(1200, 900)  # about 3 MiB, sent with sendfile(2)
    created = requests.post(
        f"{url}/images", files={"image": ("big.png", content)}, timeout=60
    ).json()
    digest = hashlib.sha256(content).hexdigest()

    def fetch(index: int) -> str:
        if index % 2:
            return requests.get(f"{url}/health/live", timeout=30).json()["status"]
        body = requests.get(f"{url}/images/{created['_id']}/image", timeout=60).content
        return hashlib.sha256(body).hexdigest()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(fetch, range(16)))
    assert results[0::2] == [digest] * 8 and results[1::2] == ["ok"] * 8
    partial = requests.get(
        f"{url}/images/{created['_id']}/image", headers={"Range": "bytes=100-199"}, timeout=30
    )
    assert partial.status_code == 206 and partial.content == content[100:200]


def test_a_silent_client_is_dropped_after_the_idle_timeout(tmp_path, mongodb_uri):
    env = {
        "MONGODB_CONNECTION_STRING": mongodb_uri.rsplit("/", 1)[0] + "/http_idle_test",
        "UPLOADS_DIRECTORY": str(tmp_path / "uploads"),
        "DATA_DIRECTORY": str(tmp_path / "data"),
        "HTTP_IDLE_TIMEOUT": "1",
        "HTTP_KEEPALIVE_TIMEOUT": "1",
        "LOG_LEVEL": "ERROR",
    }
    served = ServeProcess(env, tmp_path).start()
    try:
        for opening, answer in (
            (b"GET /images HTTP/1.1\r\nHost: x\r\nX-Slow: ", b""),  # a head that never ends
            (
                b"POST /images HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n",
                b"HTTP/1.1 408 ",  # a body: told why, in JSON
            ),
        ):
            with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
                sock.sendall(opening)
                started = os.times().elapsed
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
                assert os.times().elapsed - started < 10
                assert received.startswith(answer), received
                if answer:
                    detail = json.loads(received.partition(b"\r\n\r\n")[2])["detail"]
                    assert "No byte of the request body arrived for 1 s" in detail, detail
    finally:
        served.stop()
    assert "Traceback" not in served.output, served.output[-3000:]
