"""The services under test: a fresh mongod and `manage.py serve` in a temporary directory.

`BenchService` is imagestore (testing.harness.ServeProcess) against a database of its own, or
against a shared `DatabaseServer` for side-by-side runs; `benchmarks.original` runs the
original service the same way.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
from pymongo import MongoClient

from benchmarks.processes import ProcessGroup, children
from testing.harness import REPO_ROOT, DatabaseServer, ServeProcess

DATABASE = "imagestore_bench"
DATABASE_CACHE_GB = 1.0


@dataclass
class ServerOptions:
    workers: int | None = None
    threads: int | None = None
    worker_class: str | None = None

    def arguments(self) -> list[str]:
        """`serve`'s flags for the options that are set."""
        flags = {
            "--workers": self.workers,
            "--threads": self.threads,
            "--worker-class": self.worker_class,
        }
        chosen = [(flag, str(value)) for flag, value in flags.items() if value is not None]
        return [part for pair in chosen for part in pair]


def bench_database(workdir: Path, replica_set: str | None = None) -> DatabaseServer:
    """A mongod in `workdir/db` with a cache sized for benchmarks; with `replica_set`, a
    replica set of one member of that name (for change streams)."""
    return DatabaseServer(workdir / "db", cache_gb=DATABASE_CACHE_GB, replica_set=replica_set)


class BenchService(ServeProcess):
    """imagestore on a free port; it starts (and stops) its own database unless given one."""

    ready_path = "/health/live"

    def __init__(
        self,
        workdir: Path,
        options: ServerOptions | None = None,
        database: DatabaseServer | None = None,
        database_name: str = DATABASE,
        root: Path = REPO_ROOT,
        name: str = "imagestore",
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.database = database or bench_database(workdir)
        self.database_name = database_name
        self.mongodb_uri = self.database.uri(database_name)
        env = {
            "MONGODB_CONNECTION_STRING": self.mongodb_uri,
            "DATA_DIRECTORY": str(workdir / "data"),
            "UPLOADS_DIRECTORY": str(self.uploads),
            "IMAGE_SCOPE": "",
            "LOG_LEVEL": "WARNING",
        }
        arguments = (options or ServerOptions()).arguments()
        log_path = workdir / f"{name}.log"
        super().__init__(
            env,
            root,
            workers=None,
            arguments=arguments,
            log_path=log_path,
            root=root,
            owned_database=self.database if database is None else None,
        )

    @property
    def uploads(self) -> Path:
        return self.workdir / "uploads"

    def warm_up(self, paths: list[str], rounds: int = 10) -> None:
        """GETs each path `rounds` times, 8 at once, each on a new connection: a kept-alive
        connection stays with one worker, and every worker must have served (its first
        request makes the indexes; idle memory is that of workers that have served)."""

        def get(path: str) -> None:
            headers = {"Connection": "close"}
            httpx.get(f"{self.url}{path}", headers=headers, timeout=120).raise_for_status()

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(get, paths * rounds))

    def service_group(self) -> ProcessGroup:
        """The server process and its children (looked up again: a worker may be replaced)."""
        return ProcessGroup([self.pid, *children(self.pid)], root=self.pid)

    def database_group(self) -> ProcessGroup:
        return ProcessGroup([self.database.process.pid])

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
