"""The `imagestore` command: arguments, connection options and exit codes."""

from __future__ import annotations

import argparse
import difflib
import itertools
import os
import sys
from collections.abc import Sequence

from imagestore_client import commands
from imagestore_client.auth import ClientCredentials
from imagestore_client.client import Client
from imagestore_client.commands import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from imagestore_client.errors import ConnectionFailed, ImagestoreError
from imagestore_client.push_plan import PlanError

DEFAULT_URL = "http://localhost:3000"
CONNECTION_HINT = "is the service running? set --url or IMAGESTORE_URL"
# The largest pHash distance (of 64 bits) the service compares pictures within.
MAX_DISTANCE = 12


class Parser(argparse.ArgumentParser):
    """Options by their full names only: `--to` never stands for `--token`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def distance(text: str) -> int:
    """A pHash distance as the service takes it: 0 (the same picture) to MAX_DISTANCE bits."""
    value = int(text)
    if not 0 <= value <= MAX_DISTANCE:
        raise argparse.ArgumentTypeError(f"{text} is not a distance from 0 to {MAX_DISTANCE}")
    return value


def global_options(defaults: bool) -> Parser:
    """The options of every command, taken before or after its name (a parent parser).

    After the command they default to nothing (SUPPRESS), so only a value given there replaces
    the one given before it, or the environment's.
    """
    env = os.environ.get

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    parent = Parser(add_help=False)
    group = parent.add_argument_group("connection (before or after the command)")
    group.add_argument(
        "--url",
        default=default(env("IMAGESTORE_URL", DEFAULT_URL)),
        help=f"(IMAGESTORE_URL) {DEFAULT_URL}",
    )
    group.add_argument(
        "--token", default=default(env("IMAGESTORE_TOKEN")), help="(IMAGESTORE_TOKEN)"
    )
    oidc = "OIDC client credentials, the token renewed before it expires"
    group.add_argument("--token-url", default=default(env("IMAGESTORE_TOKEN_URL")), help=oidc)
    group.add_argument("--client-id", default=default(env("IMAGESTORE_CLIENT_ID")))
    group.add_argument("--client-secret", default=default(env("IMAGESTORE_CLIENT_SECRET")))
    group.add_argument("--timeout", type=float, default=default(120.0), help="seconds per request")
    group.add_argument(
        "--no-progress", action="store_true", default=default(False), help="no progress bar"
    )
    return parent


def add_query_options(
    parser: argparse.ArgumentParser, terms: bool = True, paging: bool = True
) -> None:
    """The query of `GET /images`; `paging=False` leaves out what bulk edits cannot honour."""
    group = parser.add_argument_group("query (as GET /images)")
    if terms:
        group.add_argument(
            "terms", nargs="*", metavar="key=value", help="data field equals value (repeatable)"
        )
    group.add_argument("--filter", help="a MongoDB query document, JSON")
    group.add_argument("--from", dest="from_", metavar="TIME", help="time at or after (ISO 8601)")
    group.add_argument("--to", metavar="TIME", help="time at or before (ISO 8601)")
    group.add_argument("--file", help="exact stored path")
    group.add_argument(
        "--regex",
        action="append",
        default=[],
        metavar="[FIELD=]PATTERN",
        help="a data field (or, without FIELD=, the stored path) matches the regular "
        "expression; case-sensitive unless it starts with (?i); repeatable",
    )
    if paging:
        group.add_argument("--sort", help="sort field (default _id)")
        group.add_argument("--order", choices=["asc", "desc", "1", "-1"])
        group.add_argument("--limit", type=int, help="at most this many images")
        group.add_argument("--skip", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="imagestore",
        description="Push, pull and manage image datasets in imagestore.",
        parents=[global_options(defaults=True)],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    after = [global_options(defaults=False)]

    def command(name: str, run, help: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help, parents=after)
        child.set_defaults(func=run)
        return child

    push = command("push", commands.run_push, "upload a folder of images, skipping what is stored")
    push.add_argument("folder")
    push.add_argument("--prefix", default="", help="stored path under which the tree lands")
    push.add_argument("--meta", action="append", default=[], metavar="key=value")
    push.add_argument("--metadata-csv", metavar="FILE", help="rows keyed by relative path")
    push.add_argument("--folders-as", default="", metavar="a,b", help="folder levels as fields")
    push.add_argument("--jobs", type=positive_int, default=8, help="concurrent uploads (default 8)")
    push.add_argument("--on-duplicate", choices=["upload", "skip", "reject"], default="upload")
    push.add_argument(
        "--similar",
        type=distance,
        metavar="N",
        help="with --on-duplicate skip|reject: a picture within pHash distance N (0-12) of one "
        "stored at another path is a duplicate too; with --check-leak: how near a near-copy is",
    )
    push.add_argument(
        "--check-leak",
        metavar="FIELD",
        help="refuse (fail) a file whose near-copy is stored with another value of data.FIELD "
        "(e.g. split: the same picture in train and test)",
    )
    push.add_argument("--all-files", action="store_true", help="not only image extensions")
    push.add_argument(
        "--replace-metadata",
        action="store_true",
        help="the stored data becomes the pushed metadata (default: merged over the stored data)",
    )
    push.add_argument(
        "--verify",
        action="store_true",
        help="check that the files skipped as stored are there; upload again those lost",
    )

    pull = command("pull", commands.run_pull, "download matching images and metadata.jsonl")
    pull.add_argument("dest")
    add_query_options(pull)
    pull.add_argument("--layout", default="keep", help="keep (stored paths) or by-field:<field>")
    pull.add_argument(
        "--jobs", type=positive_int, default=8, help="concurrent downloads (default 8)"
    )
    pull.add_argument(
        "--sync", action="store_true", help="mirror every image: only changes after the first run"
    )

    watch = command(
        "watch", commands.run_watch, "keep a folder in sync (as pull --sync) until Ctrl-C"
    )
    watch.add_argument("dest")
    watch.add_argument(
        "--jobs", type=positive_int, default=8, help="concurrent downloads (default 8)"
    )

    ls = command("ls", commands.run_ls, "list matching documents")
    add_query_options(ls)
    ls.add_argument("--select", help="projection, e.g. 'file data.label'")
    ls.add_argument("--json", action="store_true", help="one JSON document per line")

    get = command("get", commands.run_get, "one document, or its file with -o")
    get.add_argument("id")
    get.add_argument("-o", "--output", help="write the image file here")

    rm = command("rm", commands.run_rm, "delete images by id or by query (every match)")
    rm.add_argument("ids", nargs="*", metavar="id|key=value")
    add_query_options(rm, terms=False, paging=False)
    rm.add_argument("--yes", action="store_true", help="do not ask before a bulk delete")

    patch = command("patch", commands.run_patch, "set or remove data keys by id or by query")
    patch.add_argument("ids", nargs="*", metavar="id|key=value")
    add_query_options(patch, terms=False, paging=False)
    patch.add_argument("--set", action="append", default=[], metavar="key=value|key:=json")
    patch.add_argument("--unset", action="append", default=[], metavar="key")

    export = command("export", commands.run_export, "download an archive of matching images")
    export.add_argument("output", help="the file (or, with --shard-size, the folder of shards)")
    add_query_options(export)
    export.add_argument("--format", choices=["zip", "webdataset", "imagefolder", "jsonl"])
    export.add_argument("--by", help="imagefolder: the field naming the class folder")
    export.add_argument("--split", help="imagefolder: the field naming the split folder")
    export.add_argument(
        "--shard-size", type=positive_int, help="webdataset: samples per shard-NNNNNN.tar"
    )

    imp = command("import", commands.run_import, "upload an export archive")
    imp.add_argument("archive")
    imp.add_argument("--meta", action="append", default=[], metavar="key=value")
    imp.add_argument("--on-duplicate", choices=["skip", "reject"])
    imp.add_argument(
        "--similar",
        type=distance,
        metavar="N",
        help="with --on-duplicate: a picture within pHash distance N (0-12) counts as a duplicate",
    )

    duplicates = command(
        "duplicates",
        commands.run_duplicates,
        "groups of stored images with the same bytes (or near-copies: --distance)",
    )
    duplicates.add_argument(
        "--distance",
        type=distance,
        metavar="N",
        help="groups of near-copies instead: pictures within pHash distance N (0-12)",
    )
    duplicates.add_argument("--json", action="store_true", help="one JSON group per line")

    similar = command(
        "similar", commands.run_similar, "stored pictures near one image's, nearest first"
    )
    similar.add_argument("id")
    similar.add_argument(
        "--distance", type=distance, metavar="N", help="pHash distance, 0-12 (default 10)"
    )
    similar.add_argument(
        "--limit", type=positive_int, metavar="N", help="at most N images (default 100)"
    )
    similar.add_argument("--json", action="store_true", help="one JSON document per line")

    leaks = command(
        "leaks", commands.run_leaks, "near-copies stored with different values of a field"
    )
    leaks.add_argument("--field", required=True, help="the data field that must agree, e.g. split")
    leaks.add_argument(
        "--distance", type=distance, metavar="N", help="pHash distance, 0-12 (default 10)"
    )
    leaks.add_argument("--json", action="store_true", help="one JSON pair per line")

    command("info", commands.run_info, "the service's description of itself")
    return parser


def connect(args: argparse.Namespace) -> Client:
    if args.token_url or args.client_id:
        if not (args.token_url and args.client_id and args.client_secret):
            raise PlanError("--token-url, --client-id and --client-secret go together")
        auth = ClientCredentials(args.token_url, args.client_id, args.client_secret)
        return Client(args.url, auth=auth, timeout=args.timeout, pool_size=_pool(args))
    return Client(args.url, token=args.token, timeout=args.timeout, pool_size=_pool(args))


def _pool(args: argparse.Namespace) -> int:
    return max(16, getattr(args, "jobs", 0) + 4)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; `key=value` terms may also come after options (`pull out --sort x a=b`)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    everywhere = _option_names(parser, *_commands(parser).values())
    for token in itertools.takewhile(lambda value: value != "--", argv):
        # Caught before parsing: the value of an unknown option must not pass for the command.
        if token.startswith("--") and token.split("=", 1)[0] not in everywhere:
            parser.error(f"unrecognized arguments: {token}{_did_you_mean(token, everywhere)}")
    args, extra = parser.parse_known_args(argv)
    positional = "terms" if hasattr(args, "terms") else "ids" if hasattr(args, "ids") else None
    terms = [value for value in extra if "=" in value and not value.startswith("-")]
    if extra and (positional is None or len(terms) != len(extra)):
        unknown = [value for value in extra if value not in terms]
        known = _option_names(parser, _commands(parser)[args.command])
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)}{_did_you_mean(unknown[0], known)}"
        )
    if extra and positional is not None:
        getattr(args, positional).extend(terms)
    return args


def _did_you_mean(token: str, known: list[str]) -> str:
    close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1)
    return f" (did you mean {close[0]}?)" if close and token.startswith("--") else ""


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse offers no public view of its actions and subcommands.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _option_names(*parsers: argparse.ArgumentParser) -> list[str]:
    return [
        name
        for parser in parsers
        for action in parser._actions
        for name in action.option_strings
        if name.startswith("--")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        with connect(args) as client:
            return args.func(client, args)
    except (PlanError, ValueError) as error:
        print(f"imagestore: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionFailed as error:
        print(f"imagestore: {error}; {CONNECTION_HINT}", file=sys.stderr)
        return EXIT_FAILED
    except (ImagestoreError, OSError) as error:
        print(f"imagestore: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imagestore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
