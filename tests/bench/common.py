"""What every benchmark shares: result files, latency percentiles, per-process CPU time."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hygoshop_platform.infra import create_database, drop_database, find_or_start_postgres

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / ".bench"
_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


def ms_per_request(seconds: float, figures: dict[str, float]) -> float:
    """CPU milliseconds per request of a load-generator run (`figures["requests"]`)."""
    return round(seconds / figures["requests"] * 1e3, 4)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class Result:
    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    extra: dict[str, Any]

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def write(self) -> Path:
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{self.name}.json"
        payload = {
            "name": self.name,
            "value": round(self.value, 2),
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": round(self.baseline_value, 2),
            "ratio": round(self.ratio, 3),
            **self.extra,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        return path

    def summary(self) -> str:
        return (
            f"{self.name}: {self.value:,.0f} {self.unit} vs {self.baseline} "
            f"{self.baseline_value:,.0f} {self.unit} -> ratio {self.ratio:.2f}"
        )


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh database on whatever PostgreSQL the tests would use; dropped afterwards."""
    server = find_or_start_postgres()
    name = f"bench_{prefix}_{os.getpid()}"
    try:
        url = create_database(server.url, name)
        yield url
    finally:
        drop_database(server.url, name)
        server.stop()
