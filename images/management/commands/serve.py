"""`python manage.py serve`: the production server (gunicorn) on 0.0.0.0:$APP_PORT.

Without MONGODB_CONNECTION_STRING it first starts (or reuses) the embedded MongoDB-wire
server for DATA_DIRECTORY, and stops it on exit if it started it.
"""

from __future__ import annotations

import gc
import os

from django.conf import settings
from django.core.management.base import BaseCommand
from gunicorn.app.base import BaseApplication
from pymongo.errors import PyMongoError

from images import embedded_db, repository


class GunicornServer(BaseApplication):
    def __init__(self, options: dict) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        """The WSGI app, loaded once in the master (preload_app) and shared by the workers.

        The URLconf (views, serializers, schema) is imported here too, then the heap is frozen:
        workers fork with those pages shared copy-on-write instead of importing them each.
        """
        from django.urls import get_resolver

        from imagestore.wsgi import application

        get_resolver().url_patterns  # noqa: B018 (imports every view module now)
        gc.collect()
        gc.freeze()
        return application


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


class Command(BaseCommand):
    help = "Start the production server (gunicorn) on 0.0.0.0:$APP_PORT."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=os.environ.get("APP_HOST", "0.0.0.0"))
        parser.add_argument("--port", type=int, default=settings.APP_PORT)
        parser.add_argument("--workers", type=int, default=_env_int("WEB_CONCURRENCY", 2))
        parser.add_argument("--threads", type=int, default=_env_int("GUNICORN_THREADS", 4))
        parser.add_argument(
            "--worker-class",
            choices=["gthread", "sync"],
            default=os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or "gthread",
        )

    def handle(self, *args, **options) -> None:
        server = None
        if not settings.MONGODB_CONNECTION_STRING:
            server = embedded_db.ensure_running(settings.DATA_DIRECTORY)
            os.environ["MONGODB_CONNECTION_STRING"] = server.uri
            settings.MONGODB_CONNECTION_STRING = server.uri
            how = "started" if server.started_here else "reusing"
            self.stdout.write(
                f"Embedded MongoDB-wire server ({how}): {server.uri} "
                f"(pid {server.pid}, data in {settings.DATA_DIRECTORY / 'db'})"
            )
        self._prepare()
        self.stdout.write(f"Serving on http://{options['host']}:{options['port']}")
        self.stdout.flush()
        try:
            GunicornServer(
                {
                    "bind": f"{options['host']}:{options['port']}",
                    "workers": options["workers"],
                    "threads": options["threads"],
                    "worker_class": options["worker_class"],
                    "timeout": 120,
                    "graceful_timeout": 20,
                    "keepalive": 5,
                    "preload_app": True,
                    "accesslog": None,
                    "errorlog": "-",
                    "loglevel": "warning",
                    "logger_class": "images.log_escaping.GunicornLogger",
                }
            ).run()
        finally:
            if server is not None:
                embedded_db.stop(server, settings.DATA_DIRECTORY)

    def _prepare(self) -> None:
        """Indexes once at start (a database that is down only delays them to first use)."""
        settings.UPLOADS_DIRECTORY.mkdir(parents=True, exist_ok=True)
        try:
            repository.ensure_indexes()
        except PyMongoError as error:
            self.stderr.write(f"MongoDB not reachable at start ({error}); serving anyway")
        finally:
            repository.close_client()
