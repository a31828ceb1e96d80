"""Against an unusual or hostile server: redirects to S3, bodies past their size, unsafe paths."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import boto3
import pytest
from conftest import LocalHTTPServer, Service, cli, image_bytes
from moto.server import ThreadedMotoServer

from images.runtime.embedded_db import free_port
from imagestore_client import Client, ImagestoreError, IntegrityError
from imagestore_client.files import safe_relative

S3_ENV = {
    "S3_ACCESS_KEY_ID": "testing",
    "S3_SECRET_ACCESS_KEY": "testing",
    "S3_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def presigned(tmp_path_factory) -> Iterator[Service]:
    """The service on S3 (moto), answering downloads with a 307 to a presigned URL."""
    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket="images")
    env = {**S3_ENV, "S3_BUCKET": "images", "S3_ENDPOINT": endpoint}
    running = Service(
        tmp_path_factory.mktemp("presigned"), {**env, "S3_PRESIGNED_DOWNLOADS": "true"}
    )
    running.start()
    yield running
    running.stop()
    s3.stop()


@pytest.mark.slow  # talks to a `serve` of its own
def test_downloads_follow_a_redirect_to_presigned_s3(presigned, tmp_path):
    with Client(presigned.url) as client:
        documents = [client.upload(image_bytes(i), f"s3/{i}.png", {"n": i}) for i in range(3)]
        raw = client.transport.http.get(f"/images/{documents[0]['_id']}/image")
        assert raw.status_code == 307 and raw.headers["Location"]
        assert client.download(documents[0]["_id"]) == image_bytes(0)
        samples = [data for _, data in client.iter_samples(sort="file")]
        assert samples == [image_bytes(i) for i in range(3)]
    result = cli(presigned.url, "pull", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "3 downloaded" in result.stdout
    assert (tmp_path / "out" / "s3" / "2.png").read_bytes() == image_bytes(2)


class Liar(LocalHTTPServer):
    """Lists one document of 73 bytes, then sends `body_size` bytes for it (no Content-Length)."""

    def __init__(self, file: str = "big.png", body_size: int = 200 * 1024 * 1024) -> None:
        liar = self
        self.sent = 0
        self.document = {
            "_id": "6b0eb2cb38c4a998fd4a97d6", "file": file, "data": {}, "size": 73,
            "sha256": hashlib.sha256(b"x" * 73).hexdigest(),
        }  # fmt: skip

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith("/image"):
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    try:
                        while liar.sent < body_size:
                            self.wfile.write(b"x" * 65536)
                            liar.sent += 65536
                    except OSError:
                        pass
                    return
                body = json.dumps({"total": 1, "skip": 0, "limit": 1, "items": [liar.document]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, format, *args) -> None:
                pass

        self.start_server(Handler)


@pytest.fixture
def liar() -> Iterator[Liar]:
    server = Liar()
    yield server
    server.stop()


def test_a_body_past_the_documents_size_is_cut_off(liar, tmp_path):
    started = time.monotonic()
    result = cli(liar.url, "pull", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "failed big.png" in result.stderr
    assert "sent more than the 73 bytes announced" in result.stderr
    assert not (tmp_path / "out" / "big.png").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["metadata.jsonl"]
    with Client(liar.url) as client:
        with pytest.raises(IntegrityError, match="more than the 73 bytes"):
            client.download(liar.document)
        with pytest.raises(IntegrityError):
            list(client.iter_samples())
    assert liar.sent < 64 * 1024 * 1024
    assert time.monotonic() - started < 60


@pytest.mark.parametrize(
    "path",
    ["C:/Windows/x.png", "C:x.png", "c:\\x.png", "a/D:b.png", "\\\\server\\share\\x.png",
     "//server/share/x.png", "\\\\?\\C:\\x.png", "../x.png", "/etc/x.png", "a/../../x.png"],
)  # fmt: skip
def test_paths_that_would_leave_the_folder_are_refused(path):
    with pytest.raises(ImagestoreError, match="Unsafe file path"):
        safe_relative(path)


def test_a_pull_refuses_a_drive_path(tmp_path):
    server = Liar(file="C:/Users/x.png", body_size=73)
    try:
        result = cli(server.url, "pull", str(tmp_path / "out"))
    finally:
        server.stop()
    assert result.returncode == 1
    assert re.search(r"failed C:/Users/x.png: Unsafe file path", result.stderr), result.stderr
    assert not list(tmp_path.rglob("*.png"))
    assert safe_relative("a/12:00:00.png").as_posix() == "a/12:00:00.png"  # colons elsewhere
