"""The servers that tests, client tests and benchmarks start: a standalone mongod and
`manage.py serve`, each on a free loopback port, each stopped with the group it started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

from images.runtime import embedded_db

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
# What a started service never takes from the caller's environment: it is given its own.
NOT_INHERITED = ("MONGODB_CONNECTION_STRING", "S3_", "OIDC_")


def project_copy(destination: Path) -> Path:
    """The service's files (manage.py, imagestore/, images/) copied as the Dockerfile does: a
    project whose default `data/` and `uploads/` are its own, not the checkout's."""
    ignored = shutil.ignore_patterns("__pycache__")
    destination.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "manage.py", destination / "manage.py")
    for package in ("imagestore", "images"):
        shutil.copytree(REPO_ROOT / package, destination / package, ignore=ignored)
    return destination


def command_environment(
    env: Mapping[str, str], cwd: Path, root: Path = REPO_ROOT
) -> dict[str, str]:
    """The caller's environment (less NOT_INHERITED) with `env` over it, for a command of the
    project in `root` run in `cwd`. The checkout's own `data/` and `uploads/` are never used:
    for the checkout they default to the working directory's instead."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(NOT_INHERITED)}
    if root == REPO_ROOT:
        inherited.update(DATA_DIRECTORY=str(cwd / "data"), UPLOADS_DIRECTORY=str(cwd / "uploads"))
    return {**inherited, **env}


class DatabaseServer:
    """A standalone mongod on a free loopback port, its files in `folder`; it can be stopped
    and started again on the same port. With `replica_set`, a replica set of one member of
    that name (change streams need one), its oplog `oplog_mb` large; `extra`: more options."""

    def __init__(
        self,
        folder: Path,
        cache_gb: float = embedded_db.DEFAULT_CACHE_GB,
        *,
        replica_set: str | None = None,
        oplog_mb: int = 128,
        extra: Sequence[str] = (),
    ) -> None:
        self.folder = folder
        self.cache_gb = cache_gb
        self.replica_set = replica_set
        self.oplog_mb = oplog_mb
        self.extra = list(extra)
        self.port = embedded_db.free_port()
        self.process: subprocess.Popen | None = None

    def uri(self, database: str) -> str:
        options = f"?replicaSet={self.replica_set}" if self.replica_set else ""
        return f"mongodb://127.0.0.1:{self.port}/{database}{options}"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = embedded_db.start_process(
            self.folder / "data",
            self.port,
            self.folder / "log",
            replica_set=self.replica_set,
            cache_gb=self.cache_gb,
            oplog_mb=self.oplog_mb,
            extra=self.extra,
        )
        embedded_db.wait_until_listening(self.port, self.process, START_TIMEOUT)
        if self.replica_set:
            embedded_db.become_primary(self.port, START_TIMEOUT, self.replica_set)

    def stop(self) -> None:
        if self.process is not None:
            embedded_db.stop_pid(self.process.pid)
            self.process = None


class ServeProcess:
    """`manage.py serve` of `root` on a free loopback port (or `port`), in a process group of
    its own, run in `cwd` with `env` over command_environment (so the checkout's data/ and
    uploads/ are never the ones it uses).

    `workers` sets WEB_CONCURRENCY (None: serve's default). Its output goes to `log_path`
    (appended), or to a pipe read when it stops; `output` holds either. An `owned_database`
    is started before it and stopped after it.
    """

    # None: ready once the port takes a connection; a path: once it answers 200 there.
    ready_path: str | None = None

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path,
        *,
        port: int | None = None,
        host: str | None = "127.0.0.1",
        workers: int | None = 1,
        arguments: Sequence[str] = (),
        log_path: Path | None = None,
        root: Path = REPO_ROOT,
        owned_database: DatabaseServer | None = None,
    ) -> None:
        self.env = {**({"WEB_CONCURRENCY": str(workers)} if workers else {}), **env}
        self.cwd = cwd
        self.port = port or embedded_db.free_port()
        self.host = host
        self.arguments = list(arguments)
        self.log_path = log_path
        self.root = root
        self.owned_database = owned_database
        self.process: subprocess.Popen | None = None
        self.piped_output = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    @property
    def output(self) -> str:
        """What it printed: its log file so far, or its pipe once it stopped."""
        if self.log_path is None:
            return self.piped_output
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def environment(self) -> dict[str, str]:
        return command_environment({"APP_PORT": str(self.port), **self.env}, self.cwd, self.root)

    def command(self) -> list[str]:
        host = ["--host", self.host] if self.host else []
        return [sys.executable, str(self.root / "manage.py"), "serve", *host, *self.arguments]

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        if self.owned_database is not None:
            self.owned_database.start()
        log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.cwd,
                env=self.environment(),
                stdout=log or subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group: master and workers
            )
        finally:
            if log is not None:
                log.close()
        self.wait_until_ready(timeout)
        return self

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()  # reads what it printed, stops the database it owns
                raise RuntimeError(
                    f"serve exited with status {self.process.returncode}:\n{self.output[-2000:]}"
                )
            if self.answers():
                return
            time.sleep(0.2)
        self.stop(signal.SIGKILL)
        raise TimeoutError(f"serve did not answer on port {self.port} within {timeout:.0f} s")

    def answers(self) -> bool:
        try:
            if self.ready_path is None:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            return httpx.get(f"{self.url}{self.ready_path}", timeout=1).status_code == 200
        except (OSError, httpx.HTTPError):
            return False

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the whole group, as a terminal's Ctrl-C does."""
        os.killpg(self.pid, sig)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60) -> None:
        """Signal the group and wait until the server exited (killed after `timeout`); then
        stop the database it owns."""
        try:
            self.stop_server(sig, timeout)
        finally:
            if self.owned_database is not None:
                self.owned_database.stop()

    def stop_server(self, sig: signal.Signals, timeout: float) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.send_signal(sig)
        try:
            printed, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.process.communicate()
            raise
        if printed:
            self.piped_output = printed.decode(errors="replace")
