"""gevent's monkey patching, done by `manage.py serve` before any other import.

The app is loaded once in the gunicorn master (`preload_app`) and forked into the workers, so
the standard library must be cooperative before Django, PyMongo or botocore import `socket`,
`ssl` and `threading`; gunicorn's gevent worker patching after the fork would be too late for
locks and sockets created at import.
"""

from __future__ import annotations

import os

GEVENT = "gevent"


def worker_class_from(arguments: list[str]) -> str:
    """`--worker-class X` (or `=X`) from serve's arguments, else GUNICORN_WORKER_CLASS."""
    for index, argument in enumerate(arguments):
        if argument == "--worker-class" and index + 1 < len(arguments):
            return arguments[index + 1].strip()
        if argument.startswith("--worker-class="):
            return argument.split("=", 1)[1].strip()
    return os.environ.get("GUNICORN_WORKER_CLASS", "").strip() or GEVENT


def patch_for_serve(arguments: list[str]) -> None:
    if worker_class_from(arguments) != GEVENT:
        return
    from gevent import monkey

    monkey.patch_all()
