"""`python -m benchmarks.run --growth`: how the cost of a request grows with the collection.

One imagestore, one mongod; the collection is seeded straight through PyMongo up to each
size in turn (2,000, 20,000, 200,000 and 1,000,000 documents by default), and at each size the same requests
run at c=1: a list of one camera (1 in 20 documents match) without and with an index on
`data.camera`, one document, near-copies of one image (`/images/<id>/similar`), an upload, and
`/fields`.

Seeded documents carry a perceptual hash (benchmarks.payloads.seed_phash: mostly uniformly
random, 1% near-copies of another document, 1 in 500 a blank frame). The near-copy requests
go to images picked at random among the seeded ones that are not blank frames, a different one
each request, at the default distance and at 12; and to one blank frame, whose hash 1 in 500
documents share. After them, `explain()` of the candidate query and the time PyMongo takes to
read the candidates and Python to compare their hashes, for a few of those images: what a
lookup costs where the in-memory index (images.duplicates.hash_index) is not used.

The database is a replica set of one member, as the embedded default, so `serve`'s workers
answer near-copy lookups from their in-memory index. Before the near-copy requests, each
worker is asked until its index is built (`warm_similar`); this process builds one too, to
print how long a build takes and what its arrays weigh.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks import payloads
from benchmarks.processes import load_average
from benchmarks.report import Row
from benchmarks.scenarios import Scenario
from benchmarks.service import DATABASE, BenchService, bench_database
from images.core.documents import PHASH_BANDS
from images.duplicates.hash_index import HashIndex
from images.duplicates.perceptual import DEFAULT_DISTANCE, MAX_DISTANCE, band_keys, distance

SIZES = (2_000, 20_000, 200_000, 1_000_000)
LIST_QUERY = "/images?camera=cam07&limit=100"
CAMERA_INDEX = "data.camera_1"
# Images whose near-copies are asked for (a different one each request), and how many of them
# `explain_similar` looks at.
SIMILAR_IMAGES = 200
EXPLAINED_IMAGES = 20
# A near-copy lookup this fast is taken as answered from a worker's in-memory index.
WARM_MS = 40
# What images.duplicates.near_copies reads of each candidate.
CANDIDATE_FIELDS = {"_id": 1, "file": 1, "phash": 1}


@dataclass
class SimilarTargets:
    """Seeded images to ask near-copies of: random non-blank ones, and one blank frame."""

    ids: list[str]
    hashes: list[str]
    blank_id: str


@dataclass
class GrowthPlan:
    sizes: tuple[int, ...] = SIZES
    repeat: int = 2
    seconds: float = 3.0
    max_requests: int = 2_000


def plan_for(arguments: argparse.Namespace) -> GrowthPlan:
    plan = GrowthPlan()
    if arguments.quick:
        plan = GrowthPlan(sizes=(200, 2_000), repeat=1, seconds=0.5, max_requests=5)
    if arguments.sizes:
        plan.sizes = tuple(int(size) for size in arguments.sizes.split(","))
    plan.repeat = arguments.repeat or plan.repeat
    plan.seconds = arguments.seconds or plan.seconds
    plan.max_requests = arguments.requests or plan.max_requests
    return plan


def scenarios(image_id: str, upload_body: bytes, similar: SimilarTargets) -> list[Scenario]:
    multipart = {"Content-Type": payloads.MULTIPART_TYPE}
    random_paths = [f"/images/{target}/similar" for target in similar.ids]
    blank_path = f"/images/{similar.blank_id}/similar?limit=100"
    return [
        Scenario("list", "list no index", "GET", LIST_QUERY, 1, camera_index=False),
        Scenario("list", "list indexed", "GET", LIST_QUERY, 1, camera_index=True),
        Scenario("get", "get one document", "GET", f"/images/{image_id}", 1),
        Scenario(
            "similar",
            f"similar d={DEFAULT_DISTANCE}, random images",
            "GET",
            random_paths[0],
            1,
            paths=random_paths,
        ),
        Scenario(
            "similar",
            f"similar d={MAX_DISTANCE}, random images",
            "GET",
            f"{random_paths[0]}?distance={MAX_DISTANCE}",
            1,
            paths=[f"{path}?distance={MAX_DISTANCE}" for path in random_paths],
        ),
        Scenario("similar", "similar blank frame, limit=100", "GET", blank_path, 1),
        Scenario("upload", "upload", "POST", "/images", 1, headers=multipart, body=upload_body),
        Scenario("fields", "/fields", "GET", "/fields", 1),
    ]


def grow_to(service: BenchService, size: int, seeded: int) -> float:
    """Seeds documents `seeded`..`size` (numbered on, so files stay unique); returns seconds."""
    started = time.perf_counter()
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        for batch in payloads.seed_documents(size - seeded, start=seeded, hashes=True):
            collection.insert_many(batch, ordered=False)
    return time.perf_counter() - started


def similar_targets(service: BenchService, size: int) -> SimilarTargets:
    """SIMILAR_IMAGES seeded images picked at random (blank frames left out), and the first
    blank frame; found by their paths (`seed/NNNNNN.jpg`), through the `file` index."""
    picker = random.Random(size)
    indexes = [
        index
        for index in picker.sample(range(size), min(size, SIMILAR_IMAGES * 2))
        if payloads.seed_phash(index) != payloads.BLANK_HASH
    ][:SIMILAR_IMAGES]
    picker.shuffle(indexes)
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        files = [f"seed/{index:06d}.jpg" for index in indexes]
        found = {
            document["file"]: document
            for document in collection.find({"file": {"$in": files}}, {"file": 1, "phash": 1})
        }
        blank = collection.find_one({"phash": payloads.BLANK_HASH}, {"_id": 1})
    chosen = [found[file] for file in files if file in found]
    return SimilarTargets(
        ids=[str(document["_id"]) for document in chosen],
        hashes=[document["phash"] for document in chosen],
        blank_id=str(blank["_id"]),
    )


@dataclass
class CandidateCost:
    keys: int = 0
    keys_examined: int = 0
    documents_examined: int = 0
    candidates: int = 0
    within: int = 0
    database_ms: float = 0.0
    read_ms: float = 0.0
    compare_ms: float = 0.0


def candidate_cost(collection, phash: str, within: int) -> CandidateCost:
    """The query images.duplicates.near_copies sends (unscoped): its explain(), then the
    candidates read through PyMongo and their hashes compared as near_copies does."""
    keys = band_keys(phash, within)
    query = {PHASH_BANDS: {"$in": keys}}
    explained = collection.database.command(
        "explain",
        {"find": collection.name, "filter": query, "projection": CANDIDATE_FIELDS},
        verbosity="executionStats",
    )["executionStats"]
    started = time.perf_counter()
    candidates = list(collection.find(query, CANDIDATE_FIELDS, batch_size=1000))
    read = time.perf_counter()
    near = sum(1 for document in candidates if distance(phash, document["phash"]) <= within)
    compared = time.perf_counter()
    return CandidateCost(
        keys=len(keys),
        keys_examined=explained["totalKeysExamined"],
        documents_examined=explained["totalDocsExamined"],
        candidates=explained["nReturned"],
        within=near,
        database_ms=explained["executionTimeMillis"],
        read_ms=(read - started) * 1000,
        compare_ms=(compared - read) * 1000,
    )


def explain_similar(service: BenchService, similar: SimilarTargets) -> list[str]:
    """Medians over EXPLAINED_IMAGES of the random images, and the blank frame's figures."""
    cases = [
        (f"d={DEFAULT_DISTANCE}", DEFAULT_DISTANCE, similar.hashes[:EXPLAINED_IMAGES]),
        (f"d={MAX_DISTANCE}", MAX_DISTANCE, similar.hashes[:EXPLAINED_IMAGES]),
        ("blank frame", DEFAULT_DISTANCE, [payloads.BLANK_HASH]),
    ]
    lines = []
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        for label, within, hashes in cases:
            costs = [candidate_cost(collection, phash, within) for phash in hashes]

            def median(name: str, costs: list[CandidateCost] = costs) -> float:
                return statistics.median(getattr(cost, name) for cost in costs)

            lines.append(
                f"similar {label} (median of {len(costs)}): {median('keys'):,.0f} band keys, "
                f"{median('keys_examined'):,.0f} keys and {median('documents_examined'):,.0f} "
                f"documents examined, {median('candidates'):,.0f} candidates, "
                f"{median('within'):,.0f} within {within} (itself included); mongod "
                f"{median('database_ms'):.0f} ms, read through PyMongo "
                f"{median('read_ms'):.1f} ms, hashes compared {median('compare_ms'):.1f} ms"
            )
    return lines


def warm_similar(service: BenchService, similar: SimilarTargets, timeout: float = 300) -> str:
    """Asks for near-copies, 4 at a time on new connections (so every worker is asked), until
    two rounds in a row answer each within WARM_MS: the workers' indexes are built."""
    paths = [f"/images/{target}/similar" for target in similar.ids]
    started = time.perf_counter()
    calm = 0
    with httpx.Client(base_url=service.url, timeout=120) as client:

        def seconds_of(path: str) -> float:
            begun = time.perf_counter()
            client.get(path, headers={"Connection": "close"}).raise_for_status()
            return time.perf_counter() - begun

        with ThreadPoolExecutor(max_workers=4) as pool:
            while time.perf_counter() - started < timeout:
                slowest = max(pool.map(seconds_of, random.sample(paths, 4)))
                calm = calm + 1 if slowest * 1000 <= WARM_MS else 0
                if calm == 2:
                    seconds = time.perf_counter() - started
                    return f"workers' indexes answered within {WARM_MS} ms after {seconds:.1f} s"
                time.sleep(0.5)
    return f"workers' indexes not warm after {timeout:.0f} s: the band index answered meanwhile"


def measure_index_build(service: BenchService, similar: SimilarTargets) -> str:
    """A HashIndex of the collection built in this process: seconds, arrays, peak RSS growth,
    and the time of its part of a lookup (matching, no documents read) for each target."""
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with service.mongo() as client:
        index = HashIndex(client[DATABASE]["images"])
        started = time.perf_counter()
        index.build()
        seconds = time.perf_counter() - started
        arrays = sum(a.nbytes for a in (index.ids, index.hashes, index.owner_codes, index.alive))
        lookups = []
        for phash in similar.hashes:
            begun = time.perf_counter()
            index.nearest(phash, DEFAULT_DISTANCE, 100)
            lookups.append((time.perf_counter() - begun) * 1000)
        index.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    p50, p95 = statistics.median(lookups), statistics.quantiles(lookups, n=20)[-1]
    return (
        f"in-memory index of {index.size:,} hashes built in {seconds:.1f} s: arrays "
        f"{arrays / 2**20:.1f} MiB, peak RSS of the building process +{peak / 1024:.0f} MiB; "
        f"matching alone (stream read included) p50 {p50:.1f} ms, p95 {p95:.1f} ms"
    )


def set_camera_index(service: BenchService, wanted: bool | None) -> None:
    """Made through PyMongo without a time limit (at 200,000 documents it takes a while)."""
    if wanted is None:
        return
    with service.mongo() as client:
        collection = client[DATABASE]["images"]
        present = CAMERA_INDEX in collection.index_information()
        if wanted and not present:
            collection.create_index("data.camera")
        elif present and not wanted:
            collection.drop_index(CAMERA_INDEX)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("growth (--growth)")
    group.add_argument(
        "--sizes", help="comma-separated collection sizes (default 2000,20000,200000,1000000)"
    )


def line(size: int, row: Row) -> str:
    throughput = row.median("throughput")
    rate = f"{throughput:,.1f}" if throughput >= 1 else f"{throughput:.3f}"
    return (
        f"| {size:,} | {row.label} | {rate} | {row.median('p50_ms'):.1f} "
        f"| {row.median('p95_ms'):.1f} | {row.median('service_cpu_ms'):.2f} "
        f"| {row.median('database_cpu_ms'):.2f} |"
    )


def run(arguments: argparse.Namespace, runner_class) -> int:
    plan = plan_for(arguments)
    print(
        f"growth: sizes {', '.join(f'{s:,}' for s in plan.sizes)}; {plan.repeat} run(s) per "
        f"request, each up to {plan.max_requests} requests or {plan.seconds:g} s, c=1; "
        f"load {load_average()}",
        flush=True,
    )
    lines = [
        "| documents | request | req/s | p50 ms | p95 ms | svc CPU ms/req | DB CPU ms/req |",
        "|---|---|---|---|---|---|---|",
    ]
    explained: list[str] = []
    with tempfile.TemporaryDirectory(prefix="imagestore-growth-") as temporary:
        workdir = Path(temporary)
        database = bench_database(workdir, replica_set="rs0")
        database.start()
        service = BenchService(workdir, database=database)
        try:
            service.start()
            jpeg = payloads.jpeg_of_about()
            with httpx.Client(base_url=service.url, timeout=120) as client:
                response = client.post(
                    "/images", files={"image": ("growth.jpg", jpeg, "image/jpeg")}
                )
                image_id = response.raise_for_status().json()["_id"]
            runner = runner_class(service, plan, workdir)
            seeded = 0
            for size in plan.sizes:
                seconds = grow_to(service, size, seeded)
                seeded = size
                print(f"seeded to {size:,} documents in {seconds:.1f} s", flush=True)
                similar = similar_targets(service, size)
                for measure in (warm_similar, measure_index_build):
                    text = measure(service, similar)
                    explained.append(f"{size:,}: {text}")
                    print(f"  {text}", flush=True)
                for scenario in scenarios(image_id, payloads.upload_body(jpeg), similar):
                    set_camera_index(service, scenario.camera_index)
                    row = Row(scenario.label)
                    for run in range(plan.repeat):
                        row.runs.append(runner.run_scenario(scenario, f"g{size}-{run}-"))
                    lines.append(line(size, row))
                    print(f"  {lines[-1]} load {load_average()}", flush=True)
                for text in explain_similar(service, similar):
                    explained.append(f"{size:,}: {text}")
                    print(f"  {text}", flush=True)
        finally:
            service.stop()
            database.stop()
    print()
    print("\n".join(lines))
    print()
    print("\n".join(explained))
    print()
    print(f"load average (1/5/15 min) at the end: {load_average()}")
    return 0
