"""The health state machine: errors open the circuit, probes close it, 429s only cool down."""

from __future__ import annotations

import json

import pytest

from hygoshop_router.domain.health import HealthBook, HealthPolicy
from hygoshop_router.domain.model import HealthState, Outcome, ResultClass

P = "email.resend"
T0 = 1_800_000_000.0
POLICY = HealthPolicy(
    window_seconds=30,
    min_calls=10,
    error_rate_threshold=0.5,
    open_seconds=5,
    max_open_seconds=60,
    probe_interval_seconds=1,
    half_open_successes=3,
    rate_limit_cooldown_seconds=2,
)


def outcome(result: ResultClass, latency_ms: float = 100.0, **kw: float) -> Outcome:
    return Outcome(P, result, latency_ms=latency_ms, **kw)  # type: ignore[arg-type]


def feed(book: HealthBook, result: ResultClass, count: int, at: float) -> None:
    for _ in range(count):
        book.record(outcome(result), at)


def open_circuit(book: HealthBook, at: float = T0) -> None:
    feed(book, ResultClass.SERVER_ERROR, POLICY.min_calls, at)
    assert book.view(P, at).state is HealthState.OPEN


def test_a_run_of_5xx_opens_the_circuit_only_after_the_minimum_calls() -> None:
    book = HealthBook(POLICY)
    feed(book, ResultClass.SERVER_ERROR, POLICY.min_calls - 1, T0)
    view = book.view(P, T0)
    assert view.state is HealthState.HEALTHY
    assert view.error_rate == 1.0
    book.record(outcome(ResultClass.SERVER_ERROR), T0)
    view = book.view(P, T0)
    assert view.state is HealthState.OPEN
    assert view.available_at == T0 + POLICY.open_seconds
    assert "10 of 10 calls failed" in view.reason


def test_timeouts_count_like_server_errors_and_successes_dilute_them() -> None:
    book = HealthBook(POLICY)
    feed(book, ResultClass.OK, 11, T0)
    feed(book, ResultClass.TIMEOUT, 10, T0)
    assert book.view(P, T0).state is HealthState.HEALTHY  # 10 of 21: under 50 %
    book.record(outcome(ResultClass.TIMEOUT), T0)
    assert book.view(P, T0).state is HealthState.OPEN  # 11 of 22


def test_errors_leave_the_sliding_window() -> None:
    book = HealthBook(POLICY)
    feed(book, ResultClass.SERVER_ERROR, 9, T0)
    later = T0 + POLICY.window_seconds + 1
    assert book.view(P, later).window_calls == 0
    book.record(outcome(ResultClass.SERVER_ERROR), later)
    assert book.view(P, later).state is HealthState.HEALTHY  # 1 call in the window, not 10


def test_open_then_half_open_probes_then_recovery() -> None:
    book = HealthBook(POLICY)
    open_circuit(book)
    assert not book.claim_probe(P, T0 + 1)  # still open: no probe
    half = T0 + POLICY.open_seconds
    assert book.view(P, half).state is HealthState.HALF_OPEN
    assert book.claim_probe(P, half)
    assert not book.claim_probe(P, half + 0.5)  # one probe per interval
    for i in range(POLICY.half_open_successes):
        at = half + i * POLICY.probe_interval_seconds
        assert book.view(P, at).state is HealthState.HALF_OPEN
        book.record(outcome(ResultClass.OK), at)
    view = book.view(P, half + 3)
    assert view.state is HealthState.HEALTHY
    assert view.window_calls == 0  # the failures before the outage are forgotten
    assert "recovered after 3 successful probes" in view.reason


def test_a_failed_probe_reopens_for_twice_as_long_capped() -> None:
    book = HealthBook(POLICY)
    open_circuit(book)
    now = T0
    periods = []
    for _ in range(6):
        now = book.view(P, now).available_at or now
        assert book.view(P, now).state is HealthState.HALF_OPEN
        book.record(outcome(ResultClass.SERVER_ERROR), now)
        view = book.view(P, now)
        assert view.state is HealthState.OPEN
        assert view.available_at is not None
        periods.append(view.available_at - now)
    assert periods == [10, 20, 40, 60, 60, 60]


def test_recovery_resets_the_open_period() -> None:
    book = HealthBook(POLICY)
    open_circuit(book)
    half = T0 + POLICY.open_seconds
    feed(book, ResultClass.OK, POLICY.half_open_successes, half)
    open_circuit(book, half + 1)
    assert book.view(P, half + 1).available_at == half + 1 + POLICY.open_seconds


def test_429s_cool_down_without_opening() -> None:
    book = HealthBook(POLICY)
    feed(book, ResultClass.RATE_LIMITED, 50, T0)
    view = book.view(P, T0)
    assert view.state is HealthState.COOLING_DOWN
    assert view.available_at == T0 + POLICY.rate_limit_cooldown_seconds
    assert view.window_calls == 0  # not counted toward the error rate
    assert book.view(P, T0 + POLICY.rate_limit_cooldown_seconds).state is HealthState.HEALTHY


def test_retry_after_sets_the_cooldown_capped() -> None:
    book = HealthBook(POLICY)
    book.record(outcome(ResultClass.RATE_LIMITED, retry_after_s=30), T0)
    assert book.view(P, T0).available_at == T0 + 30
    book.record(outcome(ResultClass.RATE_LIMITED, retry_after_s=1), T0)
    assert book.view(P, T0).available_at == T0 + 30  # a shorter one never shortens it
    book.record(outcome(ResultClass.RATE_LIMITED, retry_after_s=10_000), T0)
    assert book.view(P, T0).available_at == T0 + POLICY.max_cooldown_seconds


def test_auth_errors_and_bad_requests_do_not_hurt_the_provider() -> None:
    book = HealthBook(POLICY)
    feed(book, ResultClass.AUTH_ERROR, 20, T0)
    feed(book, ResultClass.BAD_REQUEST, 20, T0)
    view = book.view(P, T0)
    assert view.state is HealthState.HEALTHY
    assert view.error_rate == 0.0


def test_outcomes_from_many_callers_aggregate() -> None:
    # Two adapters (or tenants) each see 5 failures: neither alone reaches min_calls.
    book = HealthBook(POLICY)
    for _caller in range(2):
        feed(book, ResultClass.SERVER_ERROR, 5, T0)
    assert book.view(P, T0).state is HealthState.OPEN


def test_mean_latency_of_successful_calls() -> None:
    book = HealthBook(POLICY)
    book.record(outcome(ResultClass.OK, latency_ms=100), T0)
    book.record(outcome(ResultClass.OK, latency_ms=300), T0 + 1)
    book.record(outcome(ResultClass.SERVER_ERROR, latency_ms=9000), T0 + 1)
    assert book.view(P, T0 + 1).mean_latency_ms == pytest.approx(200)


def test_a_snapshot_restores_the_same_state_in_a_new_book() -> None:
    book = HealthBook(POLICY)
    open_circuit(book)
    book.record(outcome(ResultClass.RATE_LIMITED, retry_after_s=50), T0)
    assert book.dirty
    saved = json.loads(json.dumps(book.snapshot()))  # what PostgreSQL stores
    assert not book.dirty
    restored = HealthBook(POLICY)
    restored.restore(saved)
    for at in (T0, T0 + POLICY.open_seconds):
        assert restored.view(P, at) == book.view(P, at)
    assert restored.view("email.other", T0).state is HealthState.HEALTHY
