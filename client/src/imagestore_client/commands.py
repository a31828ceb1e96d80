"""One function per `imagestore` command: run it with a `Client` and print what happened."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from imagestore_client.client import Client
from imagestore_client.pull import Layout, Puller
from imagestore_client.push import Pusher, shown
from imagestore_client.push_plan import PlanError, PushPlan, read_metadata_csv
from imagestore_client.query import parse_pairs
from imagestore_client.shards import write_shards
from imagestore_client.sync import Syncer, SyncSummary

# Every exit code of the command: done, something failed, bad usage, interrupted (Ctrl-C).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SHOWN_FAILURES = 50
# What `--regex FIELD=PATTERN` takes for a field name; anything else is a pattern on the path.
FIELD_NAME = re.compile(r"[A-Za-z_][\w.-]*")
# The keywords of `query_from` that are not data fields.
QUERY_OPTIONS = frozenset(
    {"filter", "from_", "to", "sort", "order", "file", "limit", "skip", "select"}
)
WATCH_WAIT_SECONDS = 25.0
WATCH_RETRY_SECONDS = 5.0


def query_from(args: argparse.Namespace, terms: list[str] | None = None) -> dict[str, Any]:
    """The query keywords of `Client.find` from the command's options and key=value terms."""
    query: dict[str, Any] = {}
    for term in getattr(args, "terms", []) if terms is None else terms:
        if "=" not in term:
            raise PlanError(f"{term!r} is not key=value")
        key, value = term.split("=", 1)
        query.setdefault(key, []).append(value)
    clauses = [regex_clause(spec) for spec in args.regex]
    if args.filter is not None:
        try:
            clauses.insert(0, json.loads(args.filter))
        except ValueError:
            raise PlanError("--filter is not valid JSON") from None
    if clauses:
        query["filter"] = clauses[0] if len(clauses) == 1 else {"$and": clauses}
    for name in ("from_", "to", "sort", "order", "file", "limit", "skip"):
        if getattr(args, name, None) is not None:
            query[name] = getattr(args, name)
    return query


def regex_clause(spec: str) -> dict[str, Any]:
    """`--regex label=^ca` matches data.label, `--regex 'cam1/.*[.]png$'` the stored path."""
    key, separator, pattern = spec.partition("=")
    if not (separator and FIELD_NAME.fullmatch(key)):
        key, pattern = "file", spec
    return {key if key == "file" else f"data.{key}": {"$regex": pattern}}


def named_fields(query: dict[str, Any]) -> set[str]:
    """The top-level data fields a query names: its key=value terms, `data.x` keys of its filter."""
    named = {key for key in query if key not in QUERY_OPTIONS}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key.startswith("data."):
                    named.add(key[len("data.") :])
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(query.get("filter"))
    return {name.split(".", 1)[0] for name in named if name}


def explain_no_match(client: Client, query: dict[str, Any]) -> int:
    """After a query matched nothing: EXIT_FAILED, and a hint, if it names an unknown field."""
    known = set(client.fields())
    unknown = sorted(named_fields(query) - known)
    for name in unknown:
        print(
            f"imagestore: no image has a field {name!r}; known fields: "
            f"{', '.join(sorted(known)) or '(none)'}",
            file=sys.stderr,
        )
    return EXIT_FAILED if unknown else EXIT_OK


@contextmanager
def progress_bar(args: argparse.Namespace, total: int | None, unit: str = "img"):
    # disable=None: only on a terminal.
    with tqdm(total=total, unit=unit, disable=True if args.no_progress else None) as bar:
        yield bar


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f} images/s" if seconds > 0 else "-"


# --- push and pull ----------------------------------------------------------------------------
def run_push(client: Client, args: argparse.Namespace) -> int:
    plan = PushPlan(
        root=Path(args.folder),
        prefix=args.prefix,
        meta=parse_pairs(args.meta),
        folders_as=[name.strip() for name in args.folders_as.split(",") if name.strip()],
        csv_rows=read_metadata_csv(Path(args.metadata_csv)) if args.metadata_csv else {},
        all_files=args.all_files,
    )
    if args.similar is not None and args.on_duplicate == "upload" and not args.check_leak:
        raise PlanError("--similar goes with --on-duplicate skip|reject or --check-leak")
    files = plan.files()
    report_left_out(args.folder, plan)
    scoped = client.info().get("image_scope") == "user"
    with progress_bar(args, len(files)) as bar:
        pusher = Pusher(
            client,
            args.jobs,
            args.on_duplicate,
            scoped,
            progress=bar.update,
            replace_metadata=args.replace_metadata,
            verify=args.verify,
            similar=args.similar,
            check_leak=args.check_leak,
        )
        summary = pusher.run(plan.item(path, relative) for path, relative in files)
    handled = summary.done
    print(
        f"push {args.folder}: {summary.uploaded} uploaded, {summary.updated} metadata updated, "
        f"{summary.skipped} skipped (already stored), {summary.duplicates} duplicates, "
        f"{len(summary.failed)} failed{restored_note(args.verify, summary.restored)}; "
        f"{handled} of {len(files)} files in "
        f"{summary.seconds:.1f} s ({rate(handled, summary.seconds)})"
    )
    kept = sorted(summary.kept)
    listed("duplicate", [(name, f"not stored, {copy} (kept)") for name, copy in kept])
    return finish(summary.failed, summary.interrupted)


def restored_note(verify: bool, restored: int) -> str:
    """What `--verify` found: the skipped files the service had lost and got again."""
    return f", restored {restored} lost files" if verify else ""


def report_left_out(folder: str, plan: PushPlan) -> None:
    """What the walk of a push left out: links it did not follow, files that are not images."""
    parts = [f"{len(plan.left_out)} links"] if plan.left_out else []
    if plan.not_images:
        parts.append(f"{plan.not_images} files that are not images (--all-files pushes them)")
    if parts:
        print(f"push {folder}: left out {' and '.join(parts)}", file=sys.stderr)
    listed("left out", plan.left_out)


def listed(what: str, entries: list[tuple[str, str]]) -> None:
    """`  <what> <name>: <detail>` on stderr for the first SHOWN_FAILURES entries."""
    for name, detail in entries[:SHOWN_FAILURES]:
        shown = name if name.isprintable() else ascii(name)
        print(f"  {what} {shown}: {detail}", file=sys.stderr)
    if len(entries) > SHOWN_FAILURES:
        print(f"  ... and {len(entries) - SHOWN_FAILURES} more", file=sys.stderr)


def finish(failures: list[tuple[str, str]], interrupted: bool) -> int:
    """Report failures and choose the exit code of a push or pull."""
    listed("failed", failures)
    if interrupted:
        print("interrupted: run the same command again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failures else EXIT_OK


def run_pull(client: Client, args: argparse.Namespace) -> int:
    query = query_from(args)
    if args.sync:
        return run_sync(client, args, query)
    total = client.count(**query)
    if query.get("limit"):
        total = min(total, int(query["limit"]))
    with progress_bar(args, total) as bar:
        puller = Puller(client, Path(args.dest), Layout(args.layout), args.jobs, bar.update)
        summary = puller.run(client.find(**query))
    handled = summary.downloaded + summary.skipped + len(summary.failed)
    print(
        f"pull {args.dest}: {summary.downloaded} downloaded ({summary.bytes / 1e6:.1f} MB), "
        f"{summary.skipped} skipped (already there), {len(summary.failed)} failed; "
        f"{handled} of {total} images in {summary.seconds:.1f} s "
        f"({rate(handled, summary.seconds)})"
    )
    status = finish(summary.failed, summary.interrupted)
    return status or (explain_no_match(client, query) if total == 0 else EXIT_OK)


def run_sync(client: Client, args: argparse.Namespace, query: dict[str, Any]) -> int:
    if query or args.layout != "keep":
        raise PlanError("--sync mirrors every image with the kept layout: no query or --layout")
    with progress_bar(args, None) as bar:
        summary = Syncer(client, Path(args.dest), args.jobs, bar.update).run()
    print(sync_line(args.dest, summary))
    return finish(summary.failed, summary.interrupted)


def run_watch(client: Client, args: argparse.Namespace) -> int:
    """`pull --sync` again and again, each waiting for the next change, until Ctrl-C."""
    syncer = Syncer(client, Path(args.dest), args.jobs)
    print(f"watching {args.dest} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            summary = syncer.run(wait=WATCH_WAIT_SECONDS)
            if summary.changes or summary.full or not summary.complete:
                print(sync_line(args.dest, summary), flush=True)
            if summary.interrupted:
                return finish(summary.failed, summary.interrupted)
            if summary.failed:
                finish(summary.failed, False)
                time.sleep(WATCH_RETRY_SECONDS)
    except KeyboardInterrupt:
        print(f"stopped watching {args.dest}")
        return EXIT_OK


def sync_line(dest: str, summary: SyncSummary) -> str:
    kind = "full resync" if summary.full else f"{summary.changes} changes"
    return (
        f"sync {dest}: {kind}; {summary.downloaded} downloaded "
        f"({summary.bytes / 1e6:.1f} MB), {summary.skipped} skipped (already there), "
        f"{summary.removed} removed, {len(summary.failed)} failed in {summary.seconds:.1f} s"
    )


# --- documents --------------------------------------------------------------------------------
def run_ls(client: Client, args: argparse.Namespace) -> int:
    query = query_from(args)
    if args.select:
        query["select"] = args.select
    shown = 0
    for document in client.find(**{"limit": 100, **query}):
        shown += 1
        if args.json:
            print(json.dumps(document))
        else:
            data = json.dumps(document.get("data", {}), ensure_ascii=False)
            print(
                f"{document['_id']}  {document.get('time', '')}  {document.get('file', '')}  {data}"
            )
    total = client.count(**query)
    sys.stdout.flush()
    print(f"({shown} of {total} shown)", file=sys.stderr)
    return explain_no_match(client, query) if total == 0 else EXIT_OK


def run_get(client: Client, args: argparse.Namespace) -> int:
    document = client.get(args.id)
    if args.output:
        client.download(document, args.output)
        print(f"{args.output}: {document.get('size', '?')} bytes, sha256 verified")
    else:
        print(json.dumps(document, indent=2, ensure_ascii=False))
    return EXIT_OK


def _ids_and_terms(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    ids = [value for value in args.ids if "=" not in value]
    terms = [value for value in args.ids if "=" in value]
    return ids, terms


def run_rm(client: Client, args: argparse.Namespace) -> int:
    ids, terms = _ids_and_terms(args)
    query = query_from(args, terms)
    if ids and query:
        raise PlanError("give ids or a query, not both")
    if ids:
        for image_id in ids:
            client.delete(image_id)
            print(f"deleted {image_id}")
        return EXIT_OK
    if not query:
        raise PlanError("give ids or a query (key=value, --filter ...); an empty query is refused")
    count = client.count(**query)
    if count == 0:
        print("nothing matches")
        return explain_no_match(client, query)
    if not args.yes and not _confirm(f"delete {count} images and their files?"):
        print("nothing deleted")
        return EXIT_FAILED
    print(f"deleted {client.delete_many(**query)} images")
    return EXIT_OK


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} (refused: not a terminal; pass --yes)", file=sys.stderr)
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def run_patch(client: Client, args: argparse.Namespace) -> int:
    ids, terms = _ids_and_terms(args)
    query = query_from(args, terms)
    changes = parse_pairs(args.set)
    if not changes and not args.unset:
        raise PlanError("nothing to change: give --set key=value or --unset key")
    if ids and query:
        raise PlanError("give ids or a query, not both")
    if ids:
        for image_id in ids:
            document = client.update(image_id, changes, args.unset)
            print(json.dumps(document, ensure_ascii=False))
        return EXIT_OK
    if not query:
        raise PlanError("give ids or a query (key=value, --filter ...)")
    result = client.update_many(changes, args.unset, **query)
    print(f"matched {result['matchedCount']}, modified {result['modifiedCount']}")
    return explain_no_match(client, query) if result["matchedCount"] == 0 else EXIT_OK


# --- archives ---------------------------------------------------------------------------------
def run_export(client: Client, args: argparse.Namespace) -> int:
    query = query_from(args)
    for option in ("by", "split"):
        if getattr(args, option):
            query[option] = getattr(args, option)
    if args.shard_size is not None:
        if args.format not in (None, "webdataset"):
            raise PlanError("--shard-size goes with --format webdataset")
        return _export_shards(client, args, query)
    result = client.export(args.output, args.format, **query)
    print(f"{args.output}: {result['bytes'] / 1e6:.1f} MB")
    return EXIT_OK


def _export_shards(client: Client, args: argparse.Namespace, query: dict[str, Any]) -> int:
    from imagestore_client.query import build_params

    params = [*build_params(query), ("format", "webdataset")]
    with client.export_stream(params) as response:
        shards = write_shards(response.iter_bytes(1024 * 1024), Path(args.output), args.shard_size)
    total = sum(count for _, count in shards)
    print(f"{args.output}: {total} samples in {len(shards)} shards")
    for shard, count in shards:
        print(f"  {shard.name}  {count} samples  {shard.stat().st_size / 1e6:.1f} MB")
    return EXIT_OK


def run_import(client: Client, args: argparse.Namespace) -> int:
    if args.similar is not None and not args.on_duplicate:
        raise PlanError("--similar goes with --on-duplicate skip|reject")
    result = client.import_archive(
        args.archive, parse_pairs(args.meta), args.on_duplicate, args.similar
    )
    skipped = result.get("skippedCount", len(result.get("skipped", [])))
    duplicates = result.get("duplicatesCount", len(result.get("duplicates", [])))
    print(
        f"{args.archive}: {result.get('imported', 0)} imported, {skipped} skipped, "
        f"{duplicates} duplicates"
    )
    for entry in result.get("skipped", [])[:SHOWN_FAILURES]:
        print(f"  skipped {entry.get('entry')}: {entry.get('reason')}", file=sys.stderr)
    for entry in result.get("duplicates", [])[:SHOWN_FAILURES]:
        print(f"  duplicate {entry.get('entry')}: stored as {entry.get('file')}", file=sys.stderr)
    return EXIT_OK


def run_duplicates(client: Client, args: argparse.Namespace) -> int:
    """Groups of the same bytes; with `--distance`, of near-copies: each later file is followed
    by its distance to the group's first."""
    groups = 0
    for group in client.duplicates(distance=args.distance):
        groups += 1
        if args.json:
            print(json.dumps(group, ensure_ascii=False))
        elif args.distance is None:
            files = "  ".join(item["file"] for item in group["items"])
            print(f"{group['sha256'][:12]}  {group['count']}  {files}")
        else:
            anchor, *others = group["items"]
            files = "  ".join(
                [anchor["file"], *(f"{item['file']} ({item['distance']})" for item in others)]
            )
            print(f"{group['phash']}  {group['count']}  {files}")
    sys.stdout.flush()
    if args.distance is None:
        print(f"{groups} groups of images with the same bytes", file=sys.stderr)
    else:
        print(f"{groups} groups of near-copies{within(args.distance)}", file=sys.stderr)
    return EXIT_OK


def within(distance: int | None) -> str:
    return f" within distance {distance}" if distance is not None else ""


def run_similar(client: Client, args: argparse.Namespace) -> int:
    found = client.similar(args.id, args.distance, args.limit)
    for document in found:
        if args.json:
            print(json.dumps(document, ensure_ascii=False))
        else:
            data = json.dumps(document.get("data", {}), ensure_ascii=False)
            print(
                f"{document['distance']}  {document['_id']}  {document.get('time', '')}  "
                f"{document.get('file', '')}  {data}"
            )
    sys.stdout.flush()
    print(f"({len(found)} similar to {args.id}{within(args.distance)})", file=sys.stderr)
    return EXIT_OK


def run_leaks(client: Client, args: argparse.Namespace) -> int:
    """Pairs of near-copies whose `--field` differs: `distance  a-file (field=value)  b-file ...`."""
    pairs = 0
    for pair in client.leaks(args.field, args.distance):
        pairs += 1
        if args.json:
            print(json.dumps(pair, ensure_ascii=False))
        else:
            a, b = (
                f"{side['file']} ({args.field}={shown(side.get('value'))})"
                for side in (pair["a"], pair["b"])
            )
            print(f"{pair['distance']}  {a}  {b}")
    sys.stdout.flush()
    print(
        f"{pairs} pairs of near-copies with different {args.field}{within(args.distance)}",
        file=sys.stderr,
    )
    return explain_no_match(client, {args.field: True}) if pairs == 0 else EXIT_OK


def run_info(client: Client, args: argparse.Namespace) -> int:
    print(json.dumps(client.info(), indent=2))
    return EXIT_OK
