"""`python manage.py ensure_indexes [--field camera ...]`: the API's indexes, plus `data.<field>`.

Filtering on `data` keys (`GET /images?camera=x`) is the main query pattern: without an index
on the key, every such query scans the whole collection.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from pymongo.errors import PyMongoError

from images.store import repository


def valid_field(name: str) -> str:
    parts = name.split(".")
    if not name or any(not part or part.startswith("$") or "\x00" in part for part in parts):
        raise CommandError(f"Invalid field {name!r}: a data key or dotted path, e.g. camera")
    return name


class Command(BaseCommand):
    help = "Create the indexes the API relies on, plus an index on data.<field> per --field."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--field",
            action="append",
            default=[],
            metavar="NAME",
            help="a data key (dotted paths allowed) to index; repeatable",
        )

    def handle(self, *args, **options) -> None:
        fields = [valid_field(name.strip()) for name in options["field"]]
        try:
            names = repository.ensure_indexes(data_fields=fields)
        except PyMongoError as error:
            raise CommandError(f"MongoDB error: {error}") from None
        finally:
            repository.close_client()
        for name in names:
            self.stdout.write(name)
