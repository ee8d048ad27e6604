"""workflow_claims: how a claim's cost grows with the number of tenants waiting.

One fresh database, the workflows schema migrated. Claims of CLAIM_LIMIT runs
(`workflows.claim_runs`, what every worker loop calls) are timed in transactions that are
rolled back, so every claim sees the same waiting runs:

- baseline: ONE tenant with RUNS_PER_TENANT * MANY_TENANTS runnable runs;
- measured: MANY_TENANTS tenants with RUNS_PER_TENANT runnable runs each.

claims/s = CLAIMS / elapsed, best of ROUNDS interleaved rounds. ratio = many-tenant
claims/s / one-tenant claims/s: 1.0 means a claim costs the same however many tenants
wait (a claim visits a window of tenants, workflows migration `0003_bounded_scans`). Measured here before
that window, when a claim listed every waiting tenant: 342 claims/s with one tenant,
29 with 5,000 (ratio 0.09); with it: 1,188 and 871 (ratio 0.73).
"""

from __future__ import annotations

import time
import uuid

import psycopg

from hygoshop_platform.migrations import upgrade
from hygoshop_workflows.config import SCHEMA
from tests.bench.common import Result, scratch_database

MANY_TENANTS = 5_000
RUNS_PER_TENANT = 2
CLAIM_LIMIT = 16
CLAIMS = 300
ROUNDS = 3
TYPES = ["bench.claim@1"]


def _fill(conn: psycopg.Connection, tenants: int, per_tenant: int) -> None:
    conn.execute("TRUNCATE workflows.runs CASCADE")
    rows = [
        (tenant, uuid.uuid4(), f"key-{i}")
        for tenant in (uuid.uuid4() for _ in range(tenants))
        for i in range(per_tenant)
    ]
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY workflows.runs (tenant_id, run_id, workflow_type, version, business_key,"
            " input, state, wake_at) FROM STDIN"
        ) as copy,
    ):
        for tenant, run, key in rows:
            copy.write_row((tenant, run, "bench.claim", 1, key, "{}", "pending", "-infinity"))
    conn.execute("ANALYZE workflows.runs")


def _claims_per_second(conn: psycopg.Connection) -> float:
    start = time.perf_counter()
    for _ in range(CLAIMS):
        with conn.transaction() as tx:
            claimed = conn.execute(
                "SELECT run_id FROM workflows.claim_runs('bench', 30, %s, %s)",
                (CLAIM_LIMIT, TYPES),
            ).fetchall()
            assert len(claimed) == CLAIM_LIMIT, len(claimed)
            raise psycopg.Rollback(tx)
    return CLAIMS / (time.perf_counter() - start)


def run() -> Result:
    one: list[float] = []
    many: list[float] = []
    with scratch_database("workflow_claims") as url:
        upgrade(url, SCHEMA)
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(ROUNDS):
                _fill(conn, 1, RUNS_PER_TENANT * MANY_TENANTS)
                one.append(_claims_per_second(conn))
                _fill(conn, MANY_TENANTS, RUNS_PER_TENANT)
                many.append(_claims_per_second(conn))
                print(
                    f"workflow_claims round: 1 tenant {one[-1]:,.0f} claims/s,"
                    f" {MANY_TENANTS:,} tenants {many[-1]:,.0f} claims/s",
                    flush=True,
                )
    return Result(
        name="workflow_claims",
        value=max(many),
        unit="claims/s",
        baseline=f"one tenant waiting ({MANY_TENANTS:,} tenants measured)",
        baseline_value=max(one),
        extra={
            "claim_limit": CLAIM_LIMIT,
            "tenants": MANY_TENANTS,
            "rounds_one": one,
            "rounds_many": many,
        },
    )
