"""The pieces of images/runtime/serving/client_limits.py on their own, over socket pairs: no
server (tests/test_client_limits.py holds them against a real `serve`)."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import SimpleNamespace

import pytest

from images.core.errors import RequestTimeout
from images.runtime.serving import client_limits, http_errors

POLICY = client_limits.BodyPolicy(grace=0.5, min_rate=1024, idle=5.0)


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    with left, right:
        left.settimeout(POLICY.idle)
        yield client_limits.ClientSocket(left, POLICY), right


def test_a_plain_read_outside_a_request_is_the_sockets_own(pair):
    sock, peer = pair
    peer.sendall(b"GET")
    assert sock.recv(10) == b"GET"
    assert sock.gettimeout() == POLICY.idle  # every other method is the socket's


def trickling(peer: socket.socket, interval: float, chunk: bytes = b"a") -> threading.Event:
    """A client sending `chunk` every `interval` seconds until the event is set."""
    stop = threading.Event()

    def send() -> None:
        while not stop.wait(interval):
            try:
                peer.sendall(chunk)
            except OSError:
                return

    threading.Thread(target=send, daemon=True).start()
    return stop


def test_a_trickle_passes_the_deadline_and_it_stays_passed(pair):
    sock, peer = pair
    request = SimpleNamespace(must_close=False)
    sock.begin_body(request)
    stop = trickling(peer, 0.05)
    started = time.monotonic()
    try:
        with pytest.raises(RequestTimeout, match="too slowly") as raised:
            while time.monotonic() - started < 10:
                sock.recv(1)
    finally:
        stop.set()
    # 0.5 s of waiting plus a millisecond per byte received, not an idle timeout per byte
    assert 0.4 < time.monotonic() - started < 2
    assert request.must_close is True
    with pytest.raises(RequestTimeout):
        sock.recv(1)  # an app reading on gets the same answer
    assert sock.end_body() is raised.value
    assert sock.gettimeout() == POLICY.idle
    time.sleep(0.1)
    peer.sendall(b"next")
    assert sock.recv(65536).endswith(b"next")  # a plain socket again


def test_bytes_that_keep_coming_earn_more_time(pair):
    sock, peer = pair
    sock.begin_body(SimpleNamespace(must_close=False))
    received = 0
    stop = trickling(peer, 0.05, b"x" * 1024)
    started = time.monotonic()
    try:
        while time.monotonic() - started < 1.5:  # three times the grace, at 20 KiB/s
            received += len(sock.recv(65536))
    finally:
        stop.set()
    assert sock.end_body() is None
    assert received > 20_000


def test_time_the_app_spends_between_reads_is_not_the_clients(pair):
    sock, peer = pair
    sock.begin_body(SimpleNamespace(must_close=False))
    peer.sendall(b"x" * 10)
    time.sleep(0.8)  # the app is busy: the bytes wait in the socket
    assert sock.recv(10) == b"x" * 10
    assert sock.end_body() is None


def test_a_silent_body_past_the_idle_timeout_is_a_408_too():
    left, right = socket.socketpair()
    with left, right:
        sock = client_limits.ClientSocket(left, client_limits.BodyPolicy(5, 0, idle=0.3))
        sock.begin_body(SimpleNamespace(must_close=False))
        with pytest.raises(RequestTimeout, match=r"No byte of the request body arrived for 0\.3 s"):
            sock.recv(1)


def test_the_answer_is_408_whatever_the_app_made_of_the_error(pair):
    sock, _ = pair
    sock.begin_body(SimpleNamespace(must_close=False))
    sock._expire(sock.too_slow())
    started: list[tuple] = []

    def swallowing_app(environ, start_response):
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"oops"]

    def start_response(status, headers, exc_info=None):
        assert exc_info is None or exc_info[0] is RequestTimeout
        started.append((status, dict(headers)))

    app = client_limits.answer_expired_bodies(swallowing_app)
    body = b"".join(app({"gunicorn.socket": sock}, start_response))
    assert started[-1][0] == "408 Request Timeout"
    assert started[-1][1]["Content-Type"] == "application/json"
    assert "too slowly" in json.loads(body)["detail"]
    # A request whose body kept its pace is the app's own answer.
    assert sock.end_body() is not None
    sock.begin_body(SimpleNamespace(must_close=False))
    assert b"".join(app({"gunicorn.socket": sock}, start_response)) == b"oops"


@pytest.mark.parametrize(
    ("address", "key"),
    [
        (("192.0.2.7", 5000), "192.0.2.7"),
        (("::ffff:192.0.2.7", 5000, 0, 0), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 5000, 0, 0), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5000, 0, 0), "2001:db8:1:2::/64"),
        ("", None),  # a Unix socket
    ],
)
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(address, key):
    assert client_limits.client_key(address) == key


def test_the_cap_counts_per_address_and_frees_on_release():
    cap = client_limits.ConnectionCap(2)
    assert cap.admit("a") and cap.admit("a") and not cap.admit("a")
    assert cap.admit("b") and cap.admit(None)
    cap.release("a")
    assert cap.admit("a") and not cap.admit("a")
    for _ in range(2):
        cap.release("a")
    assert "a" not in cap.held
    unlimited = client_limits.ConnectionCap(0)
    assert all(unlimited.admit("a") for _ in range(1000)) and not unlimited.held


def test_the_refusal_is_a_json_429_with_retry_after():
    head, _, body = client_limits.refusal_answer(7).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests\r\n")
    assert b"\r\nRetry-After: 1\r\n" in head and b"\r\nConnection: close\r\n" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert "at most 7" in json.loads(body)["detail"]


def test_lingering_after_an_answer_is_bounded_in_all_not_per_byte(monkeypatch):
    """A client trickling after an error answer cannot keep the connection open byte by byte."""
    monkeypatch.setattr(http_errors, "LINGER_SECONDS", 0.5)
    left, right = socket.socketpair()
    with left, right:
        stop = trickling(right, 0.05)
        started = time.monotonic()
        http_errors.linger(left)
        stop.set()
        assert time.monotonic() - started < 1.5


class ExpiredInput:
    """A request body whose deadline passes while it is read (gunicorn's reads block until
    they hold what was asked, so the first read is the one that fails)."""

    def read(self, size: int = -1) -> bytes:
        raise RequestTimeout("The request body arrived too slowly: test")

    readline = read


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/images", "multipart/form-data; boundary=b"),
        ("PUT", "/images/0123456789abcdef01234567", "application/json"),
    ],
)
def test_the_api_itself_answers_408_json(method, path, content_type):
    """The app's own answer to an expired body (the worker's is only the fallback)."""
    from django.test.client import RequestFactory

    from imagestore.wsgi import application

    environ = RequestFactory()._base_environ(
        PATH_INFO=path,
        REQUEST_METHOD=method,
        CONTENT_TYPE=content_type,
        CONTENT_LENGTH="100000",
        **{"wsgi.input": ExpiredInput()},
    )
    started: list[str] = []
    body = b"".join(application(environ, lambda status, headers, *_: started.append(status)))
    assert started == ["408 Request Timeout"], body
    assert json.loads(body) == {"detail": "The request body arrived too slowly: test"}
