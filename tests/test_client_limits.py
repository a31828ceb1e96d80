"""What one client may hold of the service (images/runtime/serving/client_limits.py), against a
real `serve` with raw sockets: a request body that keeps the worker waiting too long is answered
408 and its connection closed, a client over its connection cap is answered 429, and meanwhile
other clients are served; a large upload at loopback speed, keep-alive and the idle timeout work
as before.

Clients come from different loopback addresses (127.0.0.2, 127.0.0.3...: Linux routes all of
127/8 to the loopback interface), so each is a client of its own. The bounds are generous: these
are functional checks on a loaded machine, not benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from images.runtime.serving import client_limits
from testing.harness import ServeProcess

pytestmark = pytest.mark.slow  # starts `manage.py serve` subprocesses

BODY_TIMEOUT = 2  # HTTP_BODY_TIMEOUT of the server under test
CAP = 4  # HTTP_MAX_CONNECTIONS_PER_CLIENT of the server under test
ATTACKER, OTHER, THIRD = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@pytest.fixture(scope="module")
def server(tmp_path_factory, mongodb_uri) -> Iterator[ServeProcess]:
    """One gevent worker (so that the cap, counted per worker, is exact), a 2 s body deadline,
    4 connections per client, kept-alive connections held for 30 s."""
    workdir = tmp_path_factory.mktemp("client-limits")
    env = {
        "MONGODB_CONNECTION_STRING": mongodb_uri.rsplit("/", 1)[0] + "/client_limits_test",
        "UPLOADS_DIRECTORY": str(workdir / "uploads"),
        "DATA_DIRECTORY": str(workdir / "data"),
        "HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT),
        "HTTP_MAX_CONNECTIONS_PER_CLIENT": str(CAP),
        "HTTP_KEEPALIVE_TIMEOUT": "30",
        "ALLOW_NON_IMAGES": "true",
        "LOG_LEVEL": "WARNING",
    }
    served = ServeProcess(env, workdir, workers=1, log_path=workdir / "serve.log").start()
    yield served
    served.stop()
    assert "Traceback" not in served.output, served.output[-3000:]


def connect(port: int, source: str, timeout: float = 30) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One answer with a Content-Length body, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of an answer"
        body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket, within: float = 10) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def upload_head(length: int, boundary: str = "b") -> bytes:
    return (
        f"POST /images HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()


class Probe(threading.Thread):
    """Another client's `GET /health/live`, on new connections, over and over until stopped."""

    def __init__(self, port: int, source: str) -> None:
        super().__init__(daemon=True)
        self.port, self.source = port, source
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            with connect(self.port, self.source, timeout=10) as sock:
                sock.sendall(get("/health/live"))
                status, _, _ = read_answer(sock)
            self.latencies.append(time.monotonic() - started)
            self.statuses.append(status)
            self.stop.wait(0.1)


# --- the body deadline -------------------------------------------------------------------------
@pytest.mark.parametrize("interval", [0.5, None], ids=["trickling", "silent"])
def test_a_body_too_slow_is_answered_408_and_closed(server, interval):
    """A body trickling a byte every 0.5 s (each byte resets the idle timeout) or sending
    nothing: 408 JSON once it kept the worker waiting HTTP_BODY_TIMEOUT (2 s) plus 1 s per
    1,024 bytes, then the connection is closed; another client is answered meanwhile."""
    probe = Probe(server.port, OTHER)
    try:
        with connect(server.port, ATTACKER) as sock:
            sock.sendall(upload_head(100_000) + b'--b\r\nContent-Disposition: form-data; name="x"')
            started = time.monotonic()
            probe.start()
            answer = b""
            sock.settimeout(interval or 30)
            while b"\r\n\r\n" not in answer and time.monotonic() - started < 30:
                try:
                    answer += sock.recv(65536)
                except TimeoutError:
                    sock.sendall(b"a")
            elapsed = time.monotonic() - started
            sock.settimeout(10)
            while not answer.endswith(b"}") and (chunk := sock.recv(65536)):
                answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer
            assert BODY_TIMEOUT - 0.5 < elapsed < BODY_TIMEOUT + 8, elapsed
            headers = head.decode().lower()
            assert "content-type: application/json" in headers and "connection: close" in headers
            detail = json.loads(body)["detail"]
            assert "too slowly" in detail and f"{BODY_TIMEOUT} s" in detail, detail
            assert closed_by_server(sock)
    finally:
        probe.stop.set()
        probe.join(15)
    assert probe.statuses and set(probe.statuses) == {200}, probe.statuses
    assert max(probe.latencies) < 2.0, probe.latencies


def test_a_body_that_keeps_coming_is_not_cut_at_the_grace_period(server):
    """A slow body that keeps above the rate floor (8 KiB every 0.25 s: 32 KiB/s) is read to
    its end past HTTP_BODY_TIMEOUT: the deadline grows with what arrives."""
    content = bytes(range(256)) * 512  # 128 KiB: about 4 s at this pace, twice the grace
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="slow.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--b--\r\n"
    )
    with connect(server.port, THIRD) as sock:
        sock.sendall(upload_head(len(body)))
        started = time.monotonic()
        for offset in range(0, len(body), 8192):
            sock.sendall(body[offset : offset + 8192])
            time.sleep(0.25)
        assert time.monotonic() - started > BODY_TIMEOUT + 1
        status, _, answer = read_answer(sock)
    assert status == 200, answer
    assert json.loads(answer)["sha256"] == hashlib.sha256(content).hexdigest()


def test_a_large_upload_at_loopback_speed_passes_and_the_connection_is_kept(server):
    """100 MB at loopback speed under the 2 s grace period, then a second request on the same
    connection (keep-alive) and the file downloaded whole (sendfile)."""
    block = hashlib.sha256(b"block").digest() * 32768  # 1 MiB
    blocks, tail = divmod(100_000_000, len(block))
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(block)
    digest.update(block[:tail])
    opening = (
        b'--big\r\nContent-Disposition: form-data; name="image"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    closing = b"\r\n--big--\r\n"
    with connect(server.port, THIRD, timeout=120) as sock:
        sock.sendall(upload_head(len(opening) + 100_000_000 + len(closing), "big") + opening)
        for _ in range(blocks):
            sock.sendall(block)
        sock.sendall(block[:tail] + closing)
        status, _, answer = read_answer(sock)
        assert status == 200, answer
        created = json.loads(answer)
        assert created["size"] == 100_000_000 and created["sha256"] == digest.hexdigest()
        sock.sendall(get(f"/images/{created['_id']}"))
        status, _, answer = read_answer(sock)
        assert status == 200 and json.loads(answer)["_id"] == created["_id"]
    downloaded = hashlib.sha256()
    with requests.get(f"{server.url}/images/{created['_id']}/image", stream=True, timeout=120) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1024 * 1024):
            downloaded.update(chunk)
    assert downloaded.hexdigest() == digest.hexdigest()


# --- the connection cap ------------------------------------------------------------------------
def test_a_client_over_its_connection_cap_is_answered_429(server):
    """CAP kept-alive connections from one address are served; the next one from it gets 429
    with Retry-After before its request is read, and is closed; other addresses are served
    meanwhile; once one of its connections ends, the client is admitted again."""
    held = [connect(server.port, ATTACKER) for _ in range(CAP)]
    try:
        for sock in held:
            sock.sendall(get("/health/live"))
            assert read_answer(sock)[0] == 200
        with connect(server.port, ATTACKER) as extra:
            status, headers, body = read_answer(extra)  # sent nothing: refused before reading
            assert status == 429, body
            assert headers["content-type"] == "application/json"
            assert headers["connection"] == "close"
            assert int(headers["retry-after"]) == client_limits.RETRY_AFTER_SECONDS
            assert f"at most {CAP}" in json.loads(body)["detail"]
            assert closed_by_server(extra)
        with connect(server.port, ATTACKER) as extra:
            extra.sendall(get("/health/live"))  # a request sent at once is refused alike
            assert read_answer(extra)[0] == 429
        for sock in held:  # the held connections still work
            sock.sendall(get("/health/live"))
            assert read_answer(sock)[0] == 200
        with connect(server.port, OTHER) as other:
            other.sendall(get("/health/live"))
            assert read_answer(other)[0] == 200
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the close as soon as it reads the end of the stream
            with connect(server.port, ATTACKER) as again:
                again.sendall(get("/health/live"))
                status = read_answer(again)[0]
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert status == 200
    finally:
        for sock in held:
            sock.close()
