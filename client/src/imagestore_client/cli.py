"""The `imagestore` command: arguments, connection options and exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from imagestore_client import commands
from imagestore_client.auth import ClientCredentials
from imagestore_client.client import Client
from imagestore_client.errors import ImagestoreError
from imagestore_client.push_plan import PlanError

DEFAULT_URL = "http://localhost:3000"
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


def add_query_options(parser: argparse.ArgumentParser, terms: bool = True) -> None:
    group = parser.add_argument_group("query (as GET /images)")
    if terms:
        group.add_argument(
            "terms", nargs="*", metavar="key=value", help="data field equals value (repeatable)"
        )
    group.add_argument("--filter", help="a MongoDB query document, JSON")
    group.add_argument("--from", dest="from_", metavar="TIME", help="time at or after (ISO 8601)")
    group.add_argument("--to", metavar="TIME", help="time at or before (ISO 8601)")
    group.add_argument("--sort", help="sort field (default _id)")
    group.add_argument("--order", choices=["asc", "desc", "1", "-1"])
    group.add_argument("--file", help="exact stored path")
    group.add_argument("--regex", action="store_true", help="key=value and --file match partially")
    group.add_argument("--limit", type=int, help="at most this many images")
    group.add_argument("--skip", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagestore", description="Push, pull and manage image datasets in imagestore."
    )
    env = os.environ.get
    parser.add_argument(
        "--url", default=env("IMAGESTORE_URL", DEFAULT_URL), help=f"(IMAGESTORE_URL) {DEFAULT_URL}"
    )
    parser.add_argument("--token", default=env("IMAGESTORE_TOKEN"), help="(IMAGESTORE_TOKEN)")
    oidc = "OIDC client credentials, the token renewed before it expires"
    parser.add_argument("--token-url", default=env("IMAGESTORE_TOKEN_URL"), help=oidc)
    parser.add_argument("--client-id", default=env("IMAGESTORE_CLIENT_ID"))
    parser.add_argument("--client-secret", default=env("IMAGESTORE_CLIENT_SECRET"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    push = sub.add_parser("push", help="upload a folder of images, skipping what is stored")
    push.add_argument("folder")
    push.add_argument("--prefix", default="", help="stored path under which the tree lands")
    push.add_argument("--meta", action="append", default=[], metavar="key=value")
    push.add_argument("--metadata-csv", metavar="FILE", help="rows keyed by relative path")
    push.add_argument("--folders-as", default="", metavar="a,b", help="folder levels as fields")
    push.add_argument("--jobs", type=int, default=8, help="concurrent uploads (default 8)")
    push.add_argument("--on-duplicate", choices=["upload", "skip", "reject"], default="upload")
    push.add_argument("--all-files", action="store_true", help="not only image extensions")

    pull = sub.add_parser("pull", help="download matching images and metadata.jsonl")
    pull.add_argument("dest")
    add_query_options(pull)
    pull.add_argument("--layout", default="keep", help="keep (stored paths) or by-field:<field>")
    pull.add_argument("--jobs", type=int, default=8, help="concurrent downloads (default 8)")
    pull.add_argument(
        "--sync", action="store_true", help="mirror every image: only changes after the first run"
    )

    watch = sub.add_parser("watch", help="keep a folder in sync (as pull --sync) until Ctrl-C")
    watch.add_argument("dest")
    watch.add_argument("--jobs", type=int, default=8, help="concurrent downloads (default 8)")

    ls = sub.add_parser("ls", help="list matching documents")
    add_query_options(ls)
    ls.add_argument("--select", help="projection, e.g. 'file data.label'")
    ls.add_argument("--json", action="store_true", help="one JSON document per line")

    get = sub.add_parser("get", help="one document, or its file with -o")
    get.add_argument("id")
    get.add_argument("-o", "--output", help="write the image file here")

    rm = sub.add_parser("rm", help="delete images by id or by query")
    rm.add_argument("ids", nargs="*", metavar="id|key=value")
    add_query_options(rm, terms=False)
    rm.add_argument("--yes", action="store_true", help="do not ask before a bulk delete")

    patch = sub.add_parser("patch", help="set or remove data keys by id or by query")
    patch.add_argument("ids", nargs="*", metavar="id|key=value")
    add_query_options(patch, terms=False)
    patch.add_argument("--set", action="append", default=[], metavar="key=value|key:=json")
    patch.add_argument("--unset", action="append", default=[], metavar="key")

    export = sub.add_parser("export", help="download an archive of matching images")
    export.add_argument("output", help="the file (or, with --shard-size, the folder of shards)")
    add_query_options(export)
    export.add_argument("--format", choices=["zip", "webdataset", "imagefolder", "jsonl"])
    export.add_argument("--by", help="imagefolder: the field naming the class folder")
    export.add_argument("--shard-size", type=int, help="webdataset: samples per shard-NNNNNN.tar")

    imp = sub.add_parser("import", help="upload an export archive")
    imp.add_argument("archive")
    imp.add_argument("--meta", action="append", default=[], metavar="key=value")
    imp.add_argument("--on-duplicate", choices=["skip", "reject"])

    sub.add_parser("duplicates", help="groups of stored images with the same bytes")
    sub.add_parser("info", help="the service's description of itself")
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
    args, extra = parser.parse_known_args(argv)
    positional = "terms" if hasattr(args, "terms") else "ids" if hasattr(args, "ids") else None
    terms = [value for value in extra if "=" in value and not value.startswith("-")]
    if extra and (positional is None or len(terms) != len(extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        getattr(args, positional).extend(terms)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if getattr(args, "jobs", 1) < 1:
        print("imagestore: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        with connect(args) as client:
            return getattr(commands, f"run_{args.command}")(client, args)
    except (PlanError, ValueError) as error:
        print(f"imagestore: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ImagestoreError, OSError) as error:
        print(f"imagestore: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imagestore: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
