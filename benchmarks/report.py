"""Figures of one run, their medians over runs, and the printed table."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from benchmarks.processes import MIB

COLUMNS = (
    ("scenario", 34, "label"),
    ("req/s", 8, "throughput"),
    ("p50 ms", 8, "p50_ms"),
    ("p95 ms", 8, "p95_ms"),
    ("p99 ms", 8, "p99_ms"),
    ("errors", 6, "errors"),
    ("svc CPU ms/req", 14, "service_cpu_ms"),
    ("DB CPU ms/req", 13, "database_cpu_ms"),
    ("client CPU ms/req", 17, "client_cpu_ms"),
    ("svc peak MiB", 12, "service_peak_mib"),
    ("DB peak MiB", 11, "database_peak_mib"),
)


@dataclass
class RunFigures:
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    service_cpu_ms: float
    database_cpu_ms: float
    client_cpu_ms: float
    service_peak_mib: float
    database_peak_mib: float
    first_error: str = ""


@dataclass
class Row:
    label: str
    runs: list[RunFigures] = field(default_factory=list)
    note: str = ""

    def median(self, name: str) -> float:
        return statistics.median(getattr(run, name) for run in self.runs)


def _cell(row: Row, attribute: str, width: int) -> str:
    if attribute == "label":
        return row.label.ljust(width)
    if attribute == "errors":
        return str(sum(run.errors for run in row.runs)).rjust(width)
    value = row.median(attribute)
    text = f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"
    return text.rjust(width)


def table(rows: list[Row]) -> str:
    header = " | ".join(title.ljust(width) for title, width, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        if not row.runs:
            lines.append(f"{row.label.ljust(COLUMNS[0][1])} | {row.note}")
            continue
        lines.append(" | ".join(_cell(row, attribute, width) for _, width, attribute in COLUMNS))
    notes = [
        f"{row.label}: {run.first_error}" for row in rows for run in row.runs if run.first_error
    ]
    if notes:
        lines += ["", "first error of each failing run:", *notes]
    return "\n".join(lines)


def mib(value: int) -> float:
    return value / MIB
