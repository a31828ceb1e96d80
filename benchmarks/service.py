"""The service under test: a fresh SecantusDB and `manage.py serve` in a temporary directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from pymongo import MongoClient

from benchmarks.processes import ProcessGroup, children
from images import embedded_db

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "imagestore_bench"


@dataclass
class ServerOptions:
    workers: int | None = None
    threads: int | None = None
    worker_class: str | None = None


class BenchService:
    """Starts the database, then the service against it; both stopped by `stop()`."""

    def __init__(self, workdir: Path, options: ServerOptions) -> None:
        self.workdir = workdir
        self.options = options
        self.db_port = embedded_db.free_port()
        self.port = embedded_db.free_port()
        self.db_process: subprocess.Popen | None = None
        self.process: subprocess.Popen | None = None

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.db_port}/{DATABASE}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads(self) -> Path:
        return self.workdir / "uploads"

    def environment(self) -> dict[str, str]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "OIDC_"))}
        environment.update(
            MONGODB_CONNECTION_STRING=self.mongodb_uri,
            DATA_DIRECTORY=str(self.workdir / "data"),
            UPLOADS_DIRECTORY=str(self.uploads),
            APP_PORT=str(self.port),
            IMAGE_SCOPE="",
            LOG_LEVEL="WARNING",
        )
        return environment

    def start(self) -> None:
        storage = self.workdir / "db"
        storage.mkdir(parents=True)
        self.db_process = embedded_db.start_process(storage, self.db_port, self.workdir / "db.log")
        embedded_db.wait_until_listening(self.db_port, self.db_process, 60)
        command = [sys.executable, str(REPO_ROOT / "manage.py"), "serve", "--host", "127.0.0.1"]
        for flag, value in (
            ("--workers", self.options.workers),
            ("--threads", self.options.threads),
            ("--worker-class", self.options.worker_class),
        ):
            if value is not None:
                command += [flag, str(value)]
        with open(self.workdir / "service.log", "ab") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=self.environment(), stdout=log, stderr=log
            )
        self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.workdir / "service.log").read_text()[-2000:]
                raise RuntimeError(f"the service exited:\n{log}")
            try:
                if httpx.get(f"{self.base_url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("the service did not answer /health/live in time")

    def service_group(self) -> ProcessGroup:
        """The gunicorn master and its workers (looked up again: a worker may be replaced)."""
        return ProcessGroup([self.process.pid, *children(self.process.pid)])

    def database_group(self) -> ProcessGroup:
        return ProcessGroup([self.db_process.pid])

    def mongo(self) -> MongoClient:
        return MongoClient(self.mongodb_uri, tz_aware=True)

    def manage(self, *arguments: str) -> str:
        completed = subprocess.run(
            [sys.executable, str(REPO_ROOT / "manage.py"), *arguments],
            cwd=REPO_ROOT,
            env=self.environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        return completed.stdout

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.db_process is not None:
            embedded_db.stop_pid(self.db_process.pid)
