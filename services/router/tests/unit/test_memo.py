"""The decision memo is exact: whenever it answers, recomputing gives the same decision."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from hygoshop_router.domain.health import HealthBook, HealthPolicy
from hygoshop_router.domain.memo import DecisionMemo, MemoInputs, valid_until
from hygoshop_router.domain.model import (
    Outcome,
    Override,
    OverrideAction,
    Provider,
    ResultClass,
    TenantRouting,
    Tier,
)
from hygoshop_router.domain.ranking import Decision, RouteQuery, rank

T0 = 1_800_000_000.0
PROVIDERS = [
    Provider(
        provider_id=f"email.p{i}",
        category="email",
        display_name=f"P{i}",
        capabilities=frozenset({"send_email"}),
        unit_costs={"send_email": Decimal(i) / 100},
        tiers=frozenset(Tier),
    )
    for i in range(4)
]
POLICY = HealthPolicy(window_seconds=5, min_calls=3, open_seconds=2, rate_limit_cooldown_seconds=1)
TENANT = TenantRouting(
    overrides=(
        Override(
            uuid.uuid4(),
            "email",
            "email.p0",
            OverrideAction.EXCLUDE,
            expire_time=datetime.fromtimestamp(T0 + 7.5, UTC),
        ),
    ),
    credential_cooldowns={"email.p1": T0 + 4.2},
)
QUERY = RouteQuery("email", "send_email", Tier.GROWTH)

step = st.tuples(
    st.floats(min_value=0, max_value=1.5),  # time passes
    st.none() | st.tuples(st.sampled_from(PROVIDERS), st.sampled_from(list(ResultClass))),
)


def shape(d: Decision) -> tuple[object, ...]:
    return (d.budget_state, d.profile, d.candidates, d.rejections)


def fresh(book: HealthBook, now: float) -> Decision:
    return rank(QUERY, PROVIDERS, lambda pid: book.view(pid, now), TENANT, now=now)


def until_of(decision: Decision, book: HealthBook, now: float) -> float:
    return valid_until(
        decision,
        providers=PROVIDERS,
        health=lambda pid: book.view(pid, now),
        next_change=lambda pid: book.next_change(pid, now),
        tenant=TENANT,
        now=now,
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=40))
def test_a_kept_decision_equals_a_fresh_one(steps: list[tuple[float, object]]) -> None:
    book, memo, version, now = HealthBook(POLICY), DecisionMemo(), 0, T0
    for elapsed, event in steps:
        now += elapsed
        if event is not None:
            provider, result = event  # type: ignore[misc]
            book.record(Outcome(provider.provider_id, result, latency_ms=10), now)
            version += 1  # what the engine does for every outcome of the category
        inputs = MemoInputs(Tier.GROWTH, TENANT, 1, version)
        kept = memo.get("k", inputs, now)
        if kept is not None:
            assert shape(kept) == shape(fresh(book, now))
            continue
        decision = fresh(book, now)
        memo.put("k", decision, inputs, valid_until=until_of(decision, book, now), now=now)


def test_the_memo_answers_only_for_the_same_inputs() -> None:
    book, memo = HealthBook(POLICY), DecisionMemo()
    decision = fresh(book, T0)
    inputs = MemoInputs(Tier.GROWTH, TENANT, 1, 0)
    memo.put("k", decision, inputs, valid_until=T0 + 1, now=T0)
    assert memo.get("k", inputs, T0 + 0.5) is decision
    assert memo.get("k", inputs, T0 + 1) is None  # expired
    assert memo.get("k", MemoInputs(Tier.FREE, TENANT, 1, 0), T0) is None
    assert memo.get("k", MemoInputs(Tier.GROWTH, TenantRouting(), 1, 0), T0) is None
    assert memo.get("k", MemoInputs(Tier.GROWTH, TENANT, 2, 0), T0) is None
    assert memo.get("k", MemoInputs(Tier.GROWTH, TENANT, 1, 1), T0) is None


def test_a_half_open_provider_is_never_kept() -> None:
    book = HealthBook(POLICY)
    for _ in range(3):
        book.record(Outcome("email.p2", ResultClass.SERVER_ERROR), T0)
    later = T0 + POLICY.open_seconds
    assert until_of(fresh(book, later), book, later) == later
