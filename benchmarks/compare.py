"""`python -m benchmarks.run --compare original`: the original and imagestore side by side.

Both services run against one mongod (each in its own database, seeded with the same
documents), and every scenario runs on the original, then on imagestore, round after round,
so that both see the same machine load; the table prints medians and ratios.
`--compare PATH` puts another checkout of imagestore (say, the commit before a change) in
the original's place.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks import payloads
from benchmarks.original import OriginalService, OriginalUnavailable, build, find_tool
from benchmarks.processes import MIB, ProcessGroup, load_average
from benchmarks.scenarios import Fixtures, Scenario
from benchmarks.service import BenchService, bench_database
from testing.harness import DatabaseServer

COMPARE_LIST = "/images?camera=cam03&limit=100"
EXPORT_CAMERA = "export"


@dataclass
class ComparePlan:
    documents: int = 2_500
    rounds: int = 2
    seconds: float = 3.0
    max_requests: int = 5_000
    archive_images: int = 500
    bulk: bool = True


@dataclass
class Side:
    """One service with what its scenarios need."""

    service: BenchService
    fixtures: Fixtures | None = None
    idle_pss_mib: float = 0.0
    list_commands: list[str] = field(default_factory=list)


@dataclass
class BulkFigures:
    seconds: float
    peak_pss_mib: float


@dataclass
class Comparison:
    label: str
    runs: dict[str, list] = field(default_factory=lambda: {"reference": [], "imagestore": []})

    def median(self, side: str, name: str) -> float:
        return statistics.median(getattr(run, name) for run in self.runs[side])


# --- the scenarios -----------------------------------------------------------------------------
def small_scenarios(fixtures: Fixtures) -> list[Scenario]:
    image = f"/images/{fixtures.image_id}"
    multipart = {"Content-Type": payloads.MULTIPART_TYPE}
    upload = fixtures.upload_body
    return [
        Scenario("list", "list camera=cam03&limit=100 c=1", "GET", COMPARE_LIST, 1),
        Scenario("list", "list camera=cam03&limit=100 c=16", "GET", COMPARE_LIST, 16),
        Scenario("get", "get one document c=1", "GET", image, 1),
        Scenario("get", "get one document c=16", "GET", image, 16),
        Scenario("download", "download c=1", "GET", f"{image}/image", 1),
        Scenario("download", "download c=16", "GET", f"{image}/image", 16),
        Scenario("upload", "upload c=1", "POST", "/images", 1, headers=multipart, body=upload),
        Scenario("upload", "upload c=16", "POST", "/images", 16, headers=multipart, body=upload),
    ]


def prepare(side: Side, plan: ComparePlan) -> None:
    service = side.service
    with service.mongo() as client:
        collection = client[service.database_name]["images"]
        for batch in payloads.seed_documents(plan.documents):
            collection.insert_many(batch, ordered=False)
    jpeg = payloads.jpeg_of_about()
    with httpx.Client(base_url=service.url, timeout=120) as client:
        image = post(client, jpeg, "download.jpg", "download")
        for index in range(plan.archive_images if plan.bulk else 0):
            post(client, jpeg, f"{EXPORT_CAMERA}/{index:05d}.jpg", EXPORT_CAMERA)
    service.warm_up(["/", COMPARE_LIST, f"/images/{image}", f"/images/{image}/image"])
    side.fixtures = Fixtures(
        image_id=image,
        etag="",
        upload_body=payloads.upload_body(jpeg),
        import_body=b"",
        export_images=plan.archive_images,
    )
    time.sleep(1.0)
    side.idle_pss_mib = service.service_group().pss_bytes() / MIB
    side.list_commands = database_commands(service, COMPARE_LIST)


def database_commands(service: BenchService, path: str) -> list[str]:
    """The commands one GET of `path` sends to the database, from the database's profiler."""
    noise = {"lsid", "$db", "$clusterTime", "$readPreference", "txnNumber"}
    with service.mongo() as client:
        database = client[service.database_name]
        database["system.profile"].drop()
        database.command("profile", 2)
        try:
            httpx.get(f"{service.url}{path}", timeout=120).raise_for_status()
        finally:
            database.command("profile", 0)
        entries = list(database["system.profile"].find({"ns": f"{database.name}.images"}))
        database["system.profile"].drop()
    return [
        f"{entry.get('millis', '?')} ms: "
        f"{ {k: v for k, v in entry['command'].items() if k not in noise} }"
        for entry in entries
    ]


def post(client: httpx.Client, jpeg: bytes, name: str, camera: str) -> str:
    response = client.post(
        "/images", files={"image": (name, jpeg, "image/jpeg")}, data={"camera": camera}
    )
    response.raise_for_status()
    return response.json()["_id"]


# --- export and import -------------------------------------------------------------------------
class PeakSampler:
    """The highest PSS of a process group, sampled every `interval` seconds while running."""

    def __init__(self, group: ProcessGroup, interval: float = 0.05) -> None:
        self.group = group
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.group.pss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.group.pss_bytes())


EXPORT_ATTEMPTS = 3


def export_to(client: httpx.Client, archive: Path) -> int:
    """GET /export into `archive`; returns how many attempts it took. The original deletes its
    temporary zip while `res.download` still opens it, so under load an export can answer 404:
    that export is asked again (and the retry is reported)."""
    for attempt in range(1, EXPORT_ATTEMPTS + 1):
        with client.stream("GET", f"/export?camera={EXPORT_CAMERA}") as response:
            if response.status_code == 404 and attempt < EXPORT_ATTEMPTS:
                continue
            response.raise_for_status()
            with open(archive, "wb") as out:
                for chunk in response.iter_raw(1024 * 1024):
                    out.write(chunk)
        return attempt
    raise AssertionError("unreachable")


def export_then_import(side: Side, archive: Path) -> tuple[BulkFigures, BulkFigures]:
    """GET /export of the archive images to a file; delete them; POST /import of that file."""
    service = side.service
    with httpx.Client(base_url=service.url, timeout=1800) as client:
        with PeakSampler(service.service_group()) as sampler:
            started = time.perf_counter()
            attempts = export_to(client, archive)
            exported = BulkFigures(time.perf_counter() - started, 0.0)
        exported.peak_pss_mib = sampler.peak / MIB
        if attempts > 1:
            print(f"  {service.name}: the export answered 404 and was asked {attempts} times")
        client.delete(f"/images?camera={EXPORT_CAMERA}").raise_for_status()
        with PeakSampler(service.service_group()) as sampler:
            started = time.perf_counter()
            with open(archive, "rb") as source:
                response = client.post(
                    "/import", files={"archive": ("export.zip", source, "application/zip")}
                )
            response.raise_for_status()
            seconds = time.perf_counter() - started
        imported = BulkFigures(seconds, sampler.peak / MIB)
        check_imported(client, side.fixtures.export_images, service.uploads)
    return exported, imported


def check_imported(client: httpx.Client, expected: int, uploads: Path) -> None:
    """The import answered after it had stored every document and every file: both are
    looked at once the answer is in (not trusted from the answer)."""
    body = client.get(f"/images?camera={EXPORT_CAMERA}&limit={max(expected, 1)}").json()
    if body["total"] != expected:
        raise RuntimeError(f"import left {body['total']} images, expected {expected}")
    missing = [item["file"] for item in body["items"] if not (uploads / item["file"]).is_file()]
    if missing:
        raise RuntimeError(f"import answered before storing {len(missing)} files: {missing[:3]}")


# --- running -----------------------------------------------------------------------------------
def run_small(
    runners: dict, sides: dict[str, Side], plan: ComparePlan, groups: list[str]
) -> list[Comparison]:
    def chosen(side: Side) -> list[Scenario]:
        return [s for s in small_scenarios(side.fixtures) if s.group in groups]

    results = [Comparison(scenario.label) for scenario in chosen(sides["imagestore"])]
    for index, result in enumerate(results):
        for round_number in range(plan.rounds):
            for name, side in sides.items():
                scenario = chosen(side)[index]
                figures = runners[name].run_scenario(scenario, f"{name}{index}-{round_number}-")
                result.runs[name].append(figures)
                print(
                    f"  {scenario.label} [{side.service.name}] round {round_number + 1}: "
                    f"{figures.throughput:.1f} req/s, svc CPU {figures.service_cpu_ms:.2f} ms, "
                    f"DB CPU {figures.database_cpu_ms:.2f} ms, errors {figures.errors}, "
                    f"load {load_average()}",
                    flush=True,
                )
    return results


def run_bulk(sides: dict[str, Side], plan: ComparePlan, workdir: Path) -> list[Comparison]:
    exports = Comparison(f"export {plan.archive_images} images")
    imports = Comparison("import that archive")
    for round_number in range(plan.rounds):
        for name, side in sides.items():
            exported, imported = export_then_import(side, workdir / f"{name}-export.zip")
            exports.runs[name].append(exported)
            imports.runs[name].append(imported)
            print(
                f"  export/import [{side.service.name}] round {round_number + 1}: export "
                f"{exported.seconds:.2f} s, {exported.peak_pss_mib:.0f} MiB; import "
                f"{imported.seconds:.2f} s, {imported.peak_pss_mib:.0f} MiB; "
                f"load {load_average()}",
                flush=True,
            )
    return [exports, imports]


# --- the table ---------------------------------------------------------------------------------
def small_cell(row: Comparison, side: str, with_database: bool) -> str:
    cell = (
        f"{row.median(side, 'throughput'):,.1f}/s, {row.median(side, 'service_cpu_ms'):.2f} ms CPU"
    )
    if with_database:
        cell += f", DB {row.median(side, 'database_cpu_ms'):.1f} ms"
    errors = sum(run.errors for run in row.runs[side])
    return cell + (f", {errors} errors" if errors else "")


def small_ratio(row: Comparison, with_database: bool) -> str:
    def ratio(name: str) -> float:
        original = row.median("reference", name)
        return row.median("imagestore", name) / original if original else float("nan")

    text = f"{ratio('throughput'):.2f}x req/s, {ratio('service_cpu_ms'):.2f}x CPU"
    return text + (f", {ratio('database_cpu_ms'):.2f}x DB CPU" if with_database else "")


def bulk_cell(row: Comparison, side: str) -> str:
    return f"{row.median(side, 'seconds'):.2f} s, {row.median(side, 'peak_pss_mib'):.0f} MiB PSS"


def bulk_ratio(row: Comparison) -> str:
    faster = row.median("reference", "seconds") / row.median("imagestore", "seconds")
    memory = row.median("imagestore", "peak_pss_mib") / row.median("reference", "peak_pss_mib")
    return f"{faster:.1f}x faster, {memory:.2f}x memory"


def table(
    small: list[Comparison], bulk: list[Comparison], sides: dict[str, Side], title: str
) -> str:
    lines = [
        f"| scenario | {title} | imagestore | imagestore / {title} |",
        "|---|---|---|---|",
    ]
    for row in small:
        listing = row.label.startswith("list")
        lines.append(
            f"| {row.label} | {small_cell(row, 'reference', listing)} | "
            f"{small_cell(row, 'imagestore', listing)} | {small_ratio(row, listing)} |"
        )
    for row in bulk:
        lines.append(
            f"| {row.label} | {bulk_cell(row, 'reference')} | {bulk_cell(row, 'imagestore')} | "
            f"{bulk_ratio(row)} |"
        )
    original, ours = sides["reference"].idle_pss_mib, sides["imagestore"].idle_pss_mib
    lines.append(
        f"| idle (after warm-up) | {original:.0f} MiB PSS | {ours:.0f} MiB PSS | "
        f"{ours / original:.2f}x |"
    )
    return "\n".join(lines)


# --- entry point -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("side by side (--compare original)")
    group.add_argument("--rounds", type=int, help="alternating rounds (default 2)")
    group.add_argument("--documents", type=int, help="seeded documents (default 2,500)")
    group.add_argument("--archive-images", type=int, help="images exported (default 500)")


def plan_for(arguments: argparse.Namespace) -> ComparePlan:
    plan = ComparePlan()
    if arguments.quick:
        plan = ComparePlan(documents=200, rounds=1, seconds=1.0, max_requests=20,
                           archive_images=5)  # fmt: skip
    plan.rounds = arguments.rounds or plan.rounds
    plan.documents = arguments.documents or plan.documents
    plan.archive_images = arguments.archive_images or plan.archive_images
    plan.seconds = arguments.seconds or plan.seconds
    plan.max_requests = arguments.requests or plan.max_requests
    plan.bulk = bool({"export", "import"} & set(arguments.groups))
    return plan


def reference_service(target: str, workdir: Path, database: DatabaseServer) -> BenchService:
    """The service imagestore is compared with: the original, or imagestore at `target`."""
    workdir.mkdir()
    if target == "original":
        tool = find_tool()
        print(build(tool), flush=True)
        return OriginalService(workdir, tool, database, "original_bench")
    root = Path(target).resolve()
    if not (root / "manage.py").is_file():
        raise OriginalUnavailable(f"{root} is not an imagestore checkout (no manage.py)")
    return BenchService(
        workdir, database=database, database_name="before_bench", root=root, name="before"
    )


def run(arguments: argparse.Namespace, runner_class) -> int:
    plan = plan_for(arguments)
    title = "original" if arguments.compare == "original" else "before"
    with tempfile.TemporaryDirectory(prefix="imagestore-compare-") as temporary:
        workdir = Path(temporary)
        database = bench_database(workdir)
        try:
            reference = reference_service(arguments.compare, workdir / "reference", database)
        except OriginalUnavailable as error:
            print(f"cannot compare with {arguments.compare}: {error}", flush=True)
            return 2
        print(
            f"side by side with {title} ({arguments.compare}): {plan.rounds} alternating "
            f"round(s), each run up to {plan.max_requests} requests or {plan.seconds:g} s; "
            f"{plan.documents} seeded documents; {plan.archive_images if plan.bulk else 0} "
            f"images exported and imported; load {load_average()}",
            flush=True,
        )
        (workdir / "imagestore").mkdir()
        sides = {
            "reference": Side(reference),
            "imagestore": Side(
                BenchService(workdir / "imagestore", database=database, database_name="bench")
            ),
        }
        try:
            database.start()
            for side in sides.values():
                side.service.start()
                prepare(side, plan)
            load_before = load_average()
            runners = {
                name: runner_class(side.service, plan, side.service.workdir)
                for name, side in sides.items()
            }
            small = run_small(runners, sides, plan, arguments.groups)
            bulk = []
            if plan.bulk:
                bulk = run_bulk(sides, plan, workdir)
        finally:
            for side in sides.values():
                side.service.stop()
            database.stop()
    print()
    print(table(small, bulk, sides, title))
    print()
    for side in sides.values():
        print(f"database commands of one GET {COMPARE_LIST}, {side.service.name}:")
        print("\n".join(f"  {line}" for line in side.list_commands))
    print()
    print(f"load average (1/5/15 min): before {load_before}, after {load_average()}")
    return 0
