"""gunicorn, configured from the settings, with a master that keeps the embedded database up."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from images.runtime import embedded_db

WATCH_INTERVAL = 2.0


@dataclass
class ServerOptions:
    workers: int
    worker_class: str
    threads: int
    max_requests: int


def gunicorn_config(options: ServerOptions, bind: str) -> dict:
    return {
        "bind": bind,
        "workers": options.workers,
        "worker_class": f"images.runtime.serving.workers.{options.worker_class}",
        "threads": options.threads,
        "worker_connections": settings.WORKER_CONNECTIONS,
        "backlog": 2048,
        "max_requests": options.max_requests,
        "max_requests_jitter": settings.MAX_REQUESTS_JITTER if options.max_requests else 0,
        # The master's heartbeat check: a worker whose loop is stuck this long is replaced.
        # Streamed exports are not bounded by it (the loop keeps beating meanwhile).
        "timeout": 120,
        "graceful_timeout": settings.GRACEFUL_TIMEOUT,
        "keepalive": settings.HTTP_KEEPALIVE_TIMEOUT,
        "limit_request_line": settings.HTTP_MAX_REQUEST_LINE,
        "preload_app": True,
        "control_socket_disable": True,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "logger_class": "images.runtime.log_escaping.GunicornLogger",
        "worker_exit": close_database_client,
    }


def close_database_client(_server, _worker) -> None:
    """A leaving worker closes its MongoClient (its sockets and monitors) before it exits."""
    from images.store import repository

    repository.close_client()


class ServiceArbiter(Arbiter):
    """gunicorn's master, which also starts the embedded database again if it dies."""

    def __init__(self, app, lease: embedded_db.Lease | None) -> None:
        super().__init__(app)
        self.lease = lease
        self.next_watch = time.monotonic() + WATCH_INTERVAL

    def spawn_worker(self):
        """A forked worker ends here, with os._exit: none of the master's cleanup (the
        database lease, `serve`'s finally blocks, atexit hooks) runs in it."""
        try:
            return super().spawn_worker()
        except SystemExit as leaving:
            if os.getpid() == self.pid:
                raise
            code = leaving.code if isinstance(leaving.code, int) else (leaving.code is not None)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def manage_workers(self) -> None:
        super().manage_workers()
        if self.lease is None or time.monotonic() < self.next_watch:
            return
        self.next_watch = time.monotonic() + WATCH_INTERVAL
        try:
            revived = self.lease.revive()
        except RuntimeError as error:
            self.log.error("The embedded database could not be started again: %s", error)
            return
        if revived is not None and revived.uri != settings.MONGODB_CONNECTION_STRING:
            # Another port: workers fork again from the master, which knows the new one.
            self.log.warning("The embedded database moved to %s: restarting workers", revived.uri)
            settings.MONGODB_CONNECTION_STRING = revived.uri
            self.kill_workers(signal.SIGTERM)


class GunicornServer(BaseApplication):
    def __init__(self, config: dict, lease: embedded_db.Lease | None) -> None:
        self.config = config
        self.lease = lease
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.config.items():
            self.cfg.set(key, value)

    def load(self):
        """The WSGI app, loaded once in the master (preload_app) and shared by the workers.

        The URLconf (views, serializers, schema) and what hashing a picture imports lazily are
        imported here too, then the heap is frozen: workers fork with those pages shared
        copy-on-write instead of importing them each.
        """
        from django.urls import get_resolver

        from images.duplicates.perceptual import load_hashing
        from imagestore.wsgi import application

        get_resolver().url_patterns  # noqa: B018 (imports every view module now)
        load_hashing()
        gc.collect()
        gc.freeze()
        return application

    def run(self) -> None:
        ServiceArbiter(self, self.lease).run()
