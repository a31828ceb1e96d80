"""Fixtures: a real mongod and `manage.py serve` for the session, clients, image trees."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagestore_client import Client
from testing.harness import REPO_ROOT, DatabaseServer, ServeProcess

CLIENT_SOURCE = REPO_ROOT / "client" / "src"


class Service(ServeProcess):
    """A mongod and a `manage.py serve` (2 workers) in their own folder, with extra
    environment."""

    ready_path = "/health/live"

    def __init__(self, workdir: Path, env: dict[str, str], replica_set: str | None = None) -> None:
        """`replica_set`: its database is a replica set of one member of that name."""
        database = DatabaseServer(workdir / "db", replica_set=replica_set)
        self.uploads = workdir / "uploads"
        environment = {
            "MONGODB_CONNECTION_STRING": database.uri("imagestore_client_test"),
            "DATA_DIRECTORY": str(workdir / "data"),
            "UPLOADS_DIRECTORY": str(self.uploads),
            "IMAGE_SCOPE": "",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        super().__init__(
            environment,
            workdir,
            workers=2,
            log_path=workdir / "serve.log",
            owned_database=database,
        )


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[Service]:
    running = Service(tmp_path_factory.mktemp("service"), {})
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def feed_service(tmp_path_factory) -> Iterator[Service]:
    """A service on a replica set of one member, for the change feed (`pull --sync`, `watch`)."""
    running = Service(tmp_path_factory.mktemp("feed-service"), {}, replica_set="rs0")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def client(service) -> Iterator[Client]:
    """A client on an emptied service."""
    with Client(service.url) as api:
        api.delete_many(all=True)
        yield api


def cli(service_url: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `imagestore --url <service> ...` from this source tree, as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "imagestore_client", "--url", service_url, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=cli_environment(),
        **kwargs,
    )


def start_cli(service_url: str, *args: str) -> subprocess.Popen:
    """`imagestore --url <service> ...` started in the background, to be interrupted."""
    return subprocess.Popen(
        [sys.executable, "-m", "imagestore_client", "--url", service_url, *args],
        env=cli_environment(),
        # A suite that ignored SIGINT would pass that on: the interrupt must reach the client.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli_environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESTORE_")}
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(CLIENT_SOURCE), environment.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return environment


def image_bytes(index: int, fmt: str = "PNG", size: tuple[int, int] = (16, 12)) -> bytes:
    """A small image whose bytes differ for every index."""
    buffer = io.BytesIO()
    color = (index % 256, (index // 256) % 256, (index * 7) % 256)
    image = Image.new("RGB", size, color)
    image.putpixel((0, 0), (index % 251, index % 241, index % 239))
    image.info["comment"] = str(index)
    image.save(buffer, fmt)
    return buffer.getvalue()


class LocalHTTPServer:
    """A threaded HTTP server on a free loopback port, for the handler class it is given."""

    def start_server(self, handler: type) -> None:
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# A held request is closed after this long, so a client waiting on it can always end.
HOLD_SECONDS = 2


class FaultyProxy(LocalHTTPServer):
    """An HTTP proxy on 127.0.0.1 in front of the service that fails chosen requests.

    `fault(method, path, number)` returns "503" (answer 503 with Retry-After: 0), "drop" (close
    the connection without an answer), "truncate" (forward, but close after half the body),
    "slow" (forward after 50 ms), "hold" (wait up to HOLD_SECONDS or until `release()`, then
    close the connection without forwarding: the request never reaches the service) or None
    (forward); `number` counts requests from 1.
    """

    def __init__(self, target: str, fault) -> None:
        from http.server import BaseHTTPRequestHandler

        proxy = self
        self.target = target
        self.fault = fault
        self.requests = 0
        self.released = threading.Event()
        self.faults: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()
        self.http = httpx.Client(base_url=target, timeout=60)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.requests += 1
                    number = proxy.requests
                kind = proxy.fault(self.command, self.path, number)
                if kind:
                    proxy.faults.append((self.command, self.path, kind))
                if kind == "hold":
                    proxy.released.wait(HOLD_SECONDS)
                if kind in ("drop", "hold"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if kind == "slow":
                    time.sleep(0.05)
                if kind == "503":
                    self._answer(503, {"Retry-After": "0"}, b'{"detail": "busy"}')
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream = proxy.http.request(
                    self.command, self.path, headers=headers, content=body
                )
                passed = {
                    k: v
                    for k, v in upstream.headers.items()
                    if k.lower() not in ("transfer-encoding", "content-length", "connection")
                }
                self._answer(upstream.status_code, passed, upstream.content, kind == "truncate")

            def _answer(self, status: int, headers: dict, body: bytes, cut: bool = False) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)
                if cut:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_one

            def log_message(self, format, *args) -> None:
                pass

        self.start_server(Handler)

    def release(self) -> None:
        """Let held requests end (closed, never forwarded)."""
        self.released.set()

    def stop(self) -> None:
        self.release()
        super().stop()
        self.http.close()


def image_tree(root: Path, count: int) -> dict[str, dict]:
    """`count` images under root/cam<k>/<label>/, a third with `x.png.json` sidecars and a third
    with `x.json`; returns the expected data of each relative path (folders as camera,label)."""
    expected: dict[str, dict] = {}
    for index in range(count):
        camera, label = f"cam{index % 4}", ("cat", "dog", "bird")[index % 3]
        folder = root / camera / label
        folder.mkdir(parents=True, exist_ok=True)
        name = f"img{index:04d}.png"
        (folder / name).write_bytes(image_bytes(index))
        data = {"camera": camera, "label": label}
        sidecar = (index // 4) % 3
        if sidecar == 1:
            (folder / f"{name}.json").write_text(json.dumps({"index": index, "tags": ["a"]}))
            data.update(index=index, tags=["a"])
        elif sidecar == 2:
            (folder / f"img{index:04d}.json").write_text(json.dumps({"index": index}))
            data.update(index=index)
        expected[f"{camera}/{label}/{name}"] = data
    return expected
