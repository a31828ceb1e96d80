"""Settings errors as one line, and the embedded database for management commands."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from images.runtime import embedded_db

SETTING_ERROR_STATUS = 2
# Commands that manage the embedded database themselves, or need none.
WITHOUT_DATABASE = {"serve"}


def load_settings_or_exit(program: str) -> None:
    """Import the settings module; a wrong environment variable: one line, exit status 2."""
    try:
        importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
    except ImproperlyConfigured as error:
        sys.stderr.write(f"{program}: {error}\n")
        sys.exit(SETTING_ERROR_STATUS)


def is_project_command(name: str) -> bool:
    import django
    from django.core.management import get_commands

    django.setup()
    return get_commands().get(name) == "images" and name not in WITHOUT_DATABASE


@contextlib.contextmanager
def embedded_database_for(command: str) -> Iterator[None]:
    """The project's commands without MONGODB_CONNECTION_STRING: the embedded server of
    DATA_DIRECTORY (the one `serve` runs, else started here and stopped when the last
    user leaves)."""
    from django.conf import settings

    if settings.MONGODB_CONNECTION_STRING or not is_project_command(command):
        yield
        return
    lease = use_embedded_database(command)
    try:
        yield
    finally:
        from images.store import repository

        repository.close_client()
        lease.release()


def use_embedded_database(program: str) -> embedded_db.Lease:
    """The embedded server of DATA_DIRECTORY, made this process's MONGODB_CONNECTION_STRING
    (and its children's); where mongod cannot run, one line and exit status 2."""
    from django.conf import settings

    from images.runtime import embedded_db

    try:
        lease = embedded_db.acquire(settings.DATA_DIRECTORY)
    except embedded_db.Unavailable as error:
        sys.stderr.write(f"{program}: {error}\n")
        sys.exit(SETTING_ERROR_STATUS)
    settings.MONGODB_CONNECTION_STRING = lease.uri
    os.environ["MONGODB_CONNECTION_STRING"] = lease.uri
    return lease
