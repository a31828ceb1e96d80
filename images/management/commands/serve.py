"""`python manage.py serve`: the production server (gunicorn, gevent workers) on $APP_PORT.

It binds the port first (taken: one line naming APP_PORT, exit 1), then, without
MONGODB_CONNECTION_STRING, uses the embedded MongoDB of DATA_DIRECTORY (started
here or reused; stopped by the last `serve` or command using it). See `images.runtime.serving`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any, cast

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.files.storage import storages
from django.core.management.base import BaseCommand
from pymongo.errors import PyMongoError

from images.core.errors import MissingBucket
from images.runtime import embedded_db
from images.runtime.serving import listener
from images.runtime.serving.server import GunicornServer, ServerOptions, gunicorn_config
from images.runtime.serving.startup import SETTING_ERROR_STATUS
from images.store import repository
from images.store.files import S3FileStore

LOCAL_ONLY = "127.0.0.1"
# The start-up look at the bucket: one quick try (an unreachable S3 must not delay serving).
BUCKET_PROBE = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})


def default_host() -> str:
    """APP_HOST, else loopback only while auth is off (an open API must be exposed on purpose)."""
    if settings.APP_HOST:
        return settings.APP_HOST
    return "0.0.0.0" if settings.OIDC_JWKS_URI else LOCAL_ONLY


class Command(BaseCommand):
    help = "Start the production server (gunicorn) on $APP_HOST:$APP_PORT."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--host", default=None, help="default: APP_HOST (see docs/configuration.md)"
        )
        parser.add_argument("--port", type=int, default=settings.APP_PORT)
        parser.add_argument("--workers", type=int, default=settings.WEB_CONCURRENCY)
        parser.add_argument("--threads", type=int, default=settings.GUNICORN_THREADS)
        parser.add_argument(
            "--worker-class",
            choices=["gevent", "gthread", "sync"],
            default=settings.GUNICORN_WORKER_CLASS,
        )
        parser.add_argument("--max-requests", type=int, default=settings.MAX_REQUESTS)

    def handle(self, *args, **options) -> None:
        host = options["host"] or default_host()
        sock = listener.bind(host, options["port"])
        self.say_who_can_reach(host)
        with self.database() as lease:
            self._prepare()
            self.stdout.write(f"Serving on http://{host}:{options['port']}")
            self.stdout.flush()
            server_options = ServerOptions(
                workers=options["workers"],
                worker_class=options["worker_class"],
                threads=options["threads"],
                max_requests=options["max_requests"],
            )
            config = gunicorn_config(server_options, listener.gunicorn_bind(sock))
            GunicornServer(config, lease).run()

    def say_who_can_reach(self, host: str) -> None:
        if settings.OIDC_JWKS_URI:
            return
        if host in {LOCAL_ONLY, "localhost", "::1"}:
            self.stdout.write(
                f"Auth is off (no OIDC_JWKS_URI): listening on {host} only. To expose the API "
                "set APP_HOST=0.0.0.0, and OIDC_JWKS_URI if others must not edit or delete images."
            )
        else:
            self.stdout.write(
                f"Auth is off (no OIDC_JWKS_URI) and APP_HOST={host}: anyone who can reach this "
                "port can read, change and delete every image."
            )

    @contextlib.contextmanager
    def database(self):
        """The embedded server's lease while serving, unless MONGODB_CONNECTION_STRING is set.

        gunicorn workers are forked inside this block and leave through it: the lease does
        nothing in them (only this process releases it).
        """
        if settings.MONGODB_CONNECTION_STRING:
            yield None
            return
        try:
            lease = embedded_db.acquire(settings.DATA_DIRECTORY)
        except embedded_db.Unavailable as error:
            self.stderr.write(f"serve: {error}")
            sys.exit(SETTING_ERROR_STATUS)
        os.environ["MONGODB_CONNECTION_STRING"] = lease.uri
        settings.MONGODB_CONNECTION_STRING = lease.uri
        how = "started" if lease.server.started_here else "reusing"
        self.stdout.write(
            f"Embedded MongoDB ({how}): {lease.uri} "
            f"(pid {lease.server.pid}, data in {settings.DATA_DIRECTORY / 'mongodb'})"
        )
        try:
            yield lease
        finally:
            lease.release()

    def say_if_the_bucket_is_missing(self) -> None:
        """One line naming S3_BUCKET and its endpoint when the bucket does not exist; serving
        goes on (it may be created later), /health/ready answers 503 naming it meanwhile."""
        if not settings.S3_BUCKET:
            return
        store = S3FileStore(storages.create_storage(bucket_probe_storage()))
        try:
            store.check()
        except MissingBucket as error:
            self.stderr.write(f"serve: {error.detail}; serving anyway (uploads answer 503)")
        except (BotoCoreError, ClientError) as error:
            self.stderr.write(f"S3 not reachable at start ({error}); serving anyway")
        finally:
            store.client.close()  # the workers fork next: no connection of this one is shared

    def _prepare(self) -> None:
        """Indexes once at start (a database that is down only delays them to first use)."""
        settings.UPLOADS_DIRECTORY.mkdir(parents=True, exist_ok=True)
        self.say_if_the_bucket_is_missing()
        try:
            repository.ensure_indexes()
        except PyMongoError as error:
            self.stderr.write(f"MongoDB not reachable at start ({error}); serving anyway")
        finally:
            repository.close_client()
            wait_for_other_threads()


def bucket_probe_storage() -> dict:
    """The default storage's settings with BUCKET_PROBE as its client's configuration."""
    default = cast(dict[str, Any], settings.STORAGES["default"])
    return {**default, "OPTIONS": {**default["OPTIONS"], "client_config": BUCKET_PROBE}}


def wait_for_other_threads(timeout: float = 5.0) -> None:
    """PyMongo's monitor threads (greenlets under gevent) must be gone before the workers fork:
    a thread that ends in a forked child breaks its threading bookkeeping."""
    for thread in threading.enumerate():
        if thread is not threading.current_thread():
            thread.join(timeout)
