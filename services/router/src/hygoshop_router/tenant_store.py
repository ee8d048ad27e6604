"""Tenant-owned router state: overrides, budgets, month spend, credential cooldowns, alerts.

Every call is one tenant transaction, so row-level security sees only that tenant's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors

from hygoshop_platform.bus import add_to_outbox
from hygoshop_platform.db import Connection, Pool, tenant_transaction
from hygoshop_platform.errors import AlreadyExists
from hygoshop_router import events
from hygoshop_router.domain.model import Budget, Override, OverrideAction, TenantRouting

_OVERRIDE = "override_id, category, provider_id, action, reason, expire_time, create_time"
_BUDGET = """
SELECT b.category, b.monthly_limit, b.near_cap_ratio, b.update_time,
       coalesce(s.amount, 0) AS spend
  FROM router.budgets b
  LEFT JOIN router.spend s
    ON s.tenant_id = b.tenant_id AND s.category = b.category AND s.month = %(month)s
"""


def month_of(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


@dataclass(frozen=True, slots=True)
class BudgetWithSpend:
    budget: Budget
    spend: Decimal


@dataclass(frozen=True, slots=True)
class AuthFailure:
    provider_id: str
    category: str
    until: datetime
    detail: str


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: uuid.UUID
    kind: str
    provider_id: str
    category: str
    detail: str
    cooldown_until: datetime | None
    create_time: datetime


def _override(row: Any) -> Override:
    return Override(
        override_id=row.override_id,
        category=row.category,
        provider_id=row.provider_id,
        action=OverrideAction(row.action),
        reason=row.reason,
        expire_time=row.expire_time,
        create_time=row.create_time,
    )


def _budget(row: Any) -> BudgetWithSpend:
    return BudgetWithSpend(
        Budget(row.category, row.monthly_limit, row.near_cap_ratio, row.update_time), row.spend
    )


class TenantStore:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def routing(self, tenant_id: uuid.UUID, now: datetime) -> TenantRouting:
        """Everything of one tenant that shapes its route decisions, in one transaction."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {_OVERRIDE} FROM router.overrides WHERE tenant_id = %s"
                " AND (expire_time IS NULL OR expire_time > %s) ORDER BY create_time",
                (tenant_id, now),
            )
            overrides = tuple(_override(r) for r in await cur.fetchall())
            cur = await conn.execute(
                "SELECT category, monthly_limit, near_cap_ratio, update_time FROM router.budgets"
                " WHERE tenant_id = %s",
                (tenant_id,),
            )
            budgets = {
                r.category: Budget(r.category, r.monthly_limit, r.near_cap_ratio, r.update_time)
                for r in await cur.fetchall()
            }
            cur = await conn.execute(
                "SELECT category, amount FROM router.spend WHERE tenant_id = %s AND month = %s",
                (tenant_id, month_of(now)),
            )
            spend = {r.category: r.amount for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT provider_id, until FROM router.credential_cooldowns"
                " WHERE tenant_id = %s AND until > %s",
                (tenant_id, now),
            )
            cooldowns = {r.provider_id: r.until.timestamp() for r in await cur.fetchall()}
        return TenantRouting(overrides, budgets, spend, cooldowns)

    # --- overrides -------------------------------------------------------------------------

    async def create_override(
        self, tenant_id: uuid.UUID, override: Override, now: datetime
    ) -> Override:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            # An expired override has no effect; it must not block its replacement either.
            await conn.execute(
                "DELETE FROM router.overrides WHERE tenant_id = %(t)s AND expire_time <= %(now)s"
                " AND category = %(c)s AND (provider_id = %(p)s OR action = 'pin')",
                {"t": tenant_id, "now": now, "c": override.category, "p": override.provider_id},
            )
            try:
                async with conn.transaction():
                    cur = await conn.execute(
                        "INSERT INTO router.overrides (tenant_id, override_id, category,"
                        " provider_id, action, reason, expire_time, create_time)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
                        f" RETURNING {_OVERRIDE}",
                        (
                            tenant_id,
                            override.override_id,
                            override.category,
                            override.provider_id,
                            override.action.value,
                            override.reason,
                            override.expire_time,
                        ),
                    )
            except pg_errors.UniqueViolation as exc:
                if exc.diag.constraint_name == "overrides_one_pin":
                    raise AlreadyExists(
                        "the category already has a pinned provider; delete that override first",
                        reason="PIN_EXISTS",
                    ) from None
                raise AlreadyExists(
                    "this provider already has an override; delete it first",
                    reason="OVERRIDE_EXISTS",
                ) from None
            row = await cur.fetchone()
        assert row is not None
        return _override(row)

    async def get_override(self, tenant_id: uuid.UUID, override_id: uuid.UUID) -> Override | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {_OVERRIDE} FROM router.overrides"
                " WHERE tenant_id = %s AND override_id = %s",
                (tenant_id, override_id),
            )
            row = await cur.fetchone()
        return None if row is None else _override(row)

    async def list_overrides(
        self,
        tenant_id: uuid.UUID,
        category: str | None,
        *,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> list[Override]:
        where = ["tenant_id = %(t)s"]
        params: dict[str, Any] = {"t": tenant_id, "limit": limit}
        if category:
            where.append("category = %(c)s")
            params["c"] = category
        if after is not None:
            where.append("(create_time, override_id) > (%(at)s, %(aid)s)")
            params.update(at=after[0], aid=after[1])
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                f"SELECT {_OVERRIDE} FROM router.overrides WHERE {' AND '.join(where)}"
                " ORDER BY create_time, override_id LIMIT %(limit)s",
                params,
            )
            return [_override(r) for r in await cur.fetchall()]

    async def delete_override(self, tenant_id: uuid.UUID, override_id: uuid.UUID) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "DELETE FROM router.overrides WHERE tenant_id = %s AND override_id = %s",
                (tenant_id, override_id),
            )
            return cur.rowcount > 0

    # --- budgets ---------------------------------------------------------------------------

    async def get_budget(
        self, tenant_id: uuid.UUID, category: str, month: date
    ) -> BudgetWithSpend | None:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            return await self._get_budget(conn, tenant_id, category, month)

    async def _get_budget(
        self, conn: Connection, tenant_id: uuid.UUID, category: str, month: date
    ) -> BudgetWithSpend | None:
        cur = await conn.execute(
            _BUDGET + " WHERE b.tenant_id = %(t)s AND b.category = %(c)s",
            {"t": tenant_id, "c": category, "month": month},
        )
        row = await cur.fetchone()
        return None if row is None else _budget(row)

    async def list_budgets(
        self, tenant_id: uuid.UUID, month: date, *, limit: int, after: str | None
    ) -> list[BudgetWithSpend]:
        sql = _BUDGET + " WHERE b.tenant_id = %(t)s"
        if after is not None:
            sql += " AND b.category > %(after)s"
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                sql + " ORDER BY b.category LIMIT %(limit)s",
                {"t": tenant_id, "month": month, "after": after, "limit": limit},
            )
            return [_budget(r) for r in await cur.fetchall()]

    async def put_budget(
        self,
        tenant_id: uuid.UUID,
        category: str,
        month: date,
        change: Callable[[Budget | None], Budget | None],
    ) -> BudgetWithSpend | None:
        """Lock the budget (if any), let `change(current)` decide the new one (None: leave
        it missing), write it. `change` may raise a domain error: nothing is written."""
        async with tenant_transaction(self._pool, tenant_id) as conn:
            # Serialize concurrent creations of the same budget (no row to lock yet).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"budget:{tenant_id}:{category}",)
            )
            current = await self._get_budget(conn, tenant_id, category, month)
            updated = change(None if current is None else current.budget)
            if updated is None:
                return None
            await conn.execute(
                "INSERT INTO router.budgets (tenant_id, category, monthly_limit, near_cap_ratio)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, category) DO UPDATE"
                " SET monthly_limit = EXCLUDED.monthly_limit,"
                " near_cap_ratio = EXCLUDED.near_cap_ratio, update_time = clock_timestamp()",
                (tenant_id, category, updated.monthly_limit, updated.near_cap_ratio),
            )
            return await self._get_budget(conn, tenant_id, category, month)

    async def delete_budget(self, tenant_id: uuid.UUID, category: str) -> bool:
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "DELETE FROM router.budgets WHERE tenant_id = %s AND category = %s",
                (tenant_id, category),
            )
            return cur.rowcount > 0

    # --- outcomes: spend, credential cooldowns, alerts -------------------------------------

    async def record(
        self,
        tenant_id: uuid.UUID,
        month: date,
        spend: Mapping[str, tuple[Decimal, int]],
        auth_failures: Sequence[AuthFailure],
        now: datetime,
    ) -> list[Alert]:
        """Add a batch's spend per category and its auth failures. Returns the alerts raised:
        one per provider whose credentials were not already cooling down, each also
        published (`router.alert.raised`) through the outbox in the same transaction."""
        if not spend and not auth_failures:
            return []
        alerts: list[Alert] = []
        async with tenant_transaction(self._pool, tenant_id) as conn:
            if spend:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO router.spend (tenant_id, category, month, amount, calls)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant_id, category, month)"
                        " DO UPDATE SET amount = router.spend.amount + EXCLUDED.amount,"
                        " calls = router.spend.calls + EXCLUDED.calls",
                        [(tenant_id, c, month, a, n) for c, (a, n) in sorted(spend.items())],
                    )
            for failure in auth_failures:
                cur = await conn.execute(
                    "SELECT until FROM router.credential_cooldowns"
                    " WHERE tenant_id = %s AND provider_id = %s FOR UPDATE",
                    (tenant_id, failure.provider_id),
                )
                existing = await cur.fetchone()
                await conn.execute(
                    "INSERT INTO router.credential_cooldowns (tenant_id, provider_id, until)"
                    " VALUES (%s, %s, %s) ON CONFLICT (tenant_id, provider_id)"
                    " DO UPDATE SET until = greatest(router.credential_cooldowns.until,"
                    " EXCLUDED.until)",
                    (tenant_id, failure.provider_id, failure.until),
                )
                if existing is not None and existing.until > now:
                    continue  # already alerted for this cooldown
                cur = await conn.execute(
                    "INSERT INTO router.alerts (tenant_id, alert_id, kind, provider_id, category,"
                    " detail, cooldown_until) VALUES (%s, %s, 'credentials_rejected', %s, %s, %s,"
                    " %s) RETURNING alert_id, kind, provider_id, category, detail,"
                    " cooldown_until, create_time",
                    (
                        tenant_id,
                        uuid.uuid4(),
                        failure.provider_id,
                        failure.category,
                        failure.detail,
                        failure.until,
                    ),
                )
                row = await cur.fetchone()
                assert row is not None
                alert = Alert(*row)
                await add_to_outbox(conn, "router", events.alert_raised(tenant_id, alert))
                alerts.append(alert)
        return alerts

    async def list_alerts(
        self, tenant_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[Alert]:
        where = "tenant_id = %(t)s"
        if after is not None:
            where += " AND (create_time, alert_id) < (%(at)s, %(aid)s)"
        async with tenant_transaction(self._pool, tenant_id) as conn:
            cur = await conn.execute(
                "SELECT alert_id, kind, provider_id, category, detail, cooldown_until,"
                f" create_time FROM router.alerts WHERE {where}"
                " ORDER BY create_time DESC, alert_id DESC LIMIT %(limit)s",
                {
                    "t": tenant_id,
                    "limit": limit,
                    "at": after and after[0],
                    "aid": after and after[1],
                },
            )
            return [Alert(*r) for r in await cur.fetchall()]
