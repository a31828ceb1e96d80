"""The services under test: a fresh mongod and `manage.py serve` in a temporary directory.

`BenchDatabase` is the mongod server; `BenchService` is imagestore against a database of its
own (or against a shared `BenchDatabase`, for side-by-side runs); `benchmarks.original` runs the
original service the same way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from pymongo import MongoClient

from benchmarks.processes import ProcessGroup, children
from images.runtime import embedded_db

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "imagestore_bench"


@dataclass
class ServerOptions:
    workers: int | None = None
    threads: int | None = None
    worker_class: str | None = None


class BenchDatabase:
    """A standalone mongod in `workdir/db`, on a free port, stopped by `stop()`; with
    `replica_set`, a replica set of one member of that name (for change streams)."""

    def __init__(self, workdir: Path, replica_set: str | None = None) -> None:
        self.workdir = workdir
        self.port = embedded_db.free_port()
        self.process: subprocess.Popen | None = None
        self.replica_set = replica_set

    def start(self) -> None:
        storage = self.workdir / "db"
        storage.mkdir(parents=True)
        self.process = embedded_db.start_process(
            storage, self.port, self.workdir / "db.log", replica_set=self.replica_set, cache_gb=1.0
        )
        embedded_db.wait_until_listening(self.port, self.process, 60)
        if self.replica_set:
            embedded_db.become_primary(self.port, 60, self.replica_set)

    def uri(self, database: str) -> str:
        options = f"?replicaSet={self.replica_set}" if self.replica_set else ""
        return f"mongodb://127.0.0.1:{self.port}/{database}{options}"

    def group(self) -> ProcessGroup:
        return ProcessGroup([self.process.pid])

    def stop(self) -> None:
        if self.process is not None:
            embedded_db.stop_pid(self.process.pid)


class BenchService:
    """imagestore on a free port; it starts (and stops) its own database unless given one."""

    name = "imagestore"
    ready_path = "/health/live"

    def __init__(
        self,
        workdir: Path,
        options: ServerOptions | None = None,
        database: BenchDatabase | None = None,
        database_name: str = DATABASE,
        root: Path = REPO_ROOT,
    ) -> None:
        self.workdir = workdir
        self.root = root
        self.options = options or ServerOptions()
        self.owns_database = database is None
        self.database = database or BenchDatabase(workdir)
        self.database_name = database_name
        self.port = embedded_db.free_port()
        self.process: subprocess.Popen | None = None

    @property
    def db_port(self) -> int:
        return self.database.port

    @property
    def mongodb_uri(self) -> str:
        return self.database.uri(self.database_name)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uploads(self) -> Path:
        return self.workdir / "uploads"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

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

    def command(self) -> list[str]:
        command = [sys.executable, str(self.root / "manage.py"), "serve", "--host", "127.0.0.1"]
        for flag, value in (
            ("--workers", self.options.workers),
            ("--threads", self.options.threads),
            ("--worker-class", self.options.worker_class),
        ):
            if value is not None:
                command += [flag, str(value)]
        return command

    def start(self) -> None:
        if self.owns_database:
            self.database.start()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.root, env=self.environment(), stdout=log, stderr=log
            )
        self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"{self.name} exited:\n{log}")
            try:
                if httpx.get(f"{self.base_url}{self.ready_path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer {self.ready_path} in time")

    def warm_up(self, paths: list[str], rounds: int = 10) -> None:
        """GETs each path `rounds` times, 8 at once, each on a new connection: a kept-alive
        connection stays with one worker, and every worker must have served (its first
        request makes the indexes; idle memory is that of workers that have served)."""

        def get(path: str) -> None:
            headers = {"Connection": "close"}
            httpx.get(f"{self.base_url}{path}", headers=headers, timeout=120).raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(get, paths * rounds))

    def service_group(self) -> ProcessGroup:
        """The server process and its children (looked up again: a worker may be replaced)."""
        pid = self.process.pid
        return ProcessGroup([pid, *children(pid)], root=pid)

    def database_group(self) -> ProcessGroup:
        return self.database.group()

    def mongo(self) -> MongoClient:
        return MongoClient(self.mongodb_uri, tz_aware=True)

    def manage(self, *arguments: str) -> str:
        completed = subprocess.run(
            [sys.executable, str(self.root / "manage.py"), *arguments],
            cwd=self.root,
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
        if self.owns_database:
            self.database.stop()
