"""The two DynamoDB-enforced limits: one SMS per user and alert type per window, and the
per-provider token bucket. Both must hold under concurrency: threads race on moto's table."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.alerts.limits import AlertRateLimit, TokenBucket, reserve_for
from chalicelib.services import Services

from .alerts_harness import ORG, FakeClock, aws_env_fixture, clock_fixture, svc_fixture  # noqa: F401

pytestmark = pytest.mark.unit


@pytest.fixture
def limit(svc: Services, clock: FakeClock) -> AlertRateLimit:
    return AlertRateLimit(svc.ddb, svc.settings.table_name, 900, clock=clock)


@pytest.fixture
def bucket(svc: Services, clock: FakeClock) -> TokenBucket:
    return TokenBucket(svc.ddb, svc.settings.table_name, clock=clock)


# --- rate limit -----------------------------------------------------------------------------------


def test_the_first_job_takes_the_window_and_the_next_is_told_who_holds_it(
    limit: AlertRateLimit, clock: FakeClock
) -> None:
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed

    second = limit.claim(ORG, "u-1", "temp", "job-b")

    assert not second.allowed
    assert second.holder == "job-a"
    assert second.until is not None
    assert (second.until - clock()).total_seconds() == 900


def test_the_holder_keeps_the_window_across_its_own_retries(limit: AlertRateLimit, clock: FakeClock) -> None:
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed
    clock.advance(30)
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed


def test_the_window_opens_again_after_it_ends(limit: AlertRateLimit, clock: FakeClock) -> None:
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed
    clock.advance(899)
    assert not limit.claim(ORG, "u-1", "temp", "job-b").allowed
    clock.advance(1)
    assert limit.claim(ORG, "u-1", "temp", "job-b").allowed


def test_windows_are_per_org_user_and_alert_type_and_keys_cannot_collide(limit: AlertRateLimit) -> None:
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed
    assert limit.claim(ORG, "u-1", "door", "job-b").allowed
    assert limit.claim(ORG, "u-2", "temp", "job-c").allowed
    assert limit.claim("globex", "u-1", "temp", "job-d").allowed
    # "a#b" + "c" and "a" + "b#c" would be the same key if '#' were not escaped.
    assert limit.claim(ORG, "a#b", "c", "job-e").allowed
    assert limit.claim(ORG, "a", "b#c", "job-f").allowed


def test_release_frees_the_window_only_for_its_holder(limit: AlertRateLimit) -> None:
    assert limit.claim(ORG, "u-1", "temp", "job-a").allowed
    limit.release(ORG, "u-1", "temp", "job-b")  # not the holder: no effect
    assert not limit.claim(ORG, "u-1", "temp", "job-b").allowed

    limit.release(ORG, "u-1", "temp", "job-a")

    assert limit.claim(ORG, "u-1", "temp", "job-b").allowed


def test_a_zero_window_disables_the_limit(svc: Services, clock: FakeClock) -> None:
    off = AlertRateLimit(svc.ddb, svc.settings.table_name, 0, clock=clock)
    assert all(off.claim(ORG, "u-1", "temp", f"job-{n}").allowed for n in range(3))


@pytest.mark.parametrize("round_", range(3))
def test_five_concurrent_claims_let_exactly_one_through(limit: AlertRateLimit, round_: int) -> None:
    """GIVEN 5 jobs for the same user and alert type WHEN they claim at the same moment THEN 1 wins."""
    start = threading.Barrier(5)

    def claim(n: int) -> bool:
        start.wait()
        return limit.claim(ORG, "u-race", "temp", f"job-{round_}-{n}").allowed

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(claim, range(5)))

    assert outcomes.count(True) == 1


# --- token bucket ---------------------------------------------------------------------------------


def test_a_full_bucket_serves_its_burst_then_says_how_long_to_wait(bucket: TokenBucket) -> None:
    assert all(bucket.take("sms:sns", 10, 10) is None for _ in range(10))

    wait = bucket.take("sms:sns", 10, 10)

    assert wait == pytest.approx(0.1)


def test_the_bucket_refills_at_its_rate_and_never_above_its_burst(bucket: TokenBucket, clock: FakeClock) -> None:
    for _ in range(5):
        assert bucket.take("sms:telnyx", 5, 5) is None
    assert bucket.take("sms:telnyx", 5, 5) is not None
    clock.advance(0.4)  # two tokens back
    assert bucket.take("sms:telnyx", 5, 5) is None
    assert bucket.take("sms:telnyx", 5, 5) is None
    assert bucket.take("sms:telnyx", 5, 5) is not None
    clock.advance(3600)  # an idle hour refills to the burst, not beyond
    assert sum(bucket.take("sms:telnyx", 5, 5) is None for _ in range(8)) == 5


def test_buckets_are_per_provider(bucket: TokenBucket) -> None:
    assert bucket.take("sms:telnyx", 1, 1) is None
    assert bucket.take("sms:telnyx", 1, 1) is not None
    assert bucket.take("sms:sns", 1, 1) is None


def test_the_reserve_is_left_for_urgent_callers(bucket: TokenBucket) -> None:
    """Non-urgent work stops when `reserve` tokens are left; urgent work may take them."""
    taken = sum(bucket.take("sms:sns", 20, 20, reserve=5) is None for _ in range(30))
    assert taken == 15
    assert bucket.take("sms:sns", 20, 20, reserve=5) == pytest.approx(0.05)
    assert sum(bucket.take("sms:sns", 20, 20) is None for _ in range(10)) == 5


def test_concurrent_takers_never_get_more_than_the_burst(bucket: TokenBucket) -> None:
    """The clock stands still: 10 threads x 5 takes on a bucket of 20 -> exactly 20 tokens."""

    def take_five(_: int) -> int:
        return sum(bucket.take("sms:sns", 20, 20) is None for _ in range(5))

    with ThreadPoolExecutor(max_workers=10) as pool:
        assert sum(pool.map(take_five, range(10))) == 20


@pytest.mark.parametrize(("rate", "reserve"), [(1, 0), (2, 1), (4, 1), (20, 5), (100, 25)])
def test_the_reserve_is_a_quarter_but_never_the_whole_bucket(rate: int, reserve: int) -> None:
    assert reserve_for(rate) == reserve


def test_threads_of_one_process_taking_from_one_bucket_never_race_each_other(svc: Services, clock: FakeClock) -> None:
    """A batch's records run on threads: ten SMS at once, with room for all, all get a token."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    class SlowReads:  # every reader sees the same version unless the takers queue
        def __init__(self, ddb: object) -> None:
            self._ddb = ddb

        def get_item(self, **kwargs: object) -> object:
            got = self._ddb.get_item(**kwargs)  # type: ignore[attr-defined]
            time.sleep(0.02)
            return got

        def __getattr__(self, name: str) -> object:
            return getattr(self._ddb, name)

    shared = TokenBucket(SlowReads(svc.ddb), svc.settings.table_name, clock=clock)
    start = threading.Barrier(10)

    def take(_: int) -> float | None:
        start.wait()
        return shared.take("sms:sns", rate_per_s=20, burst=20)

    with ThreadPoolExecutor(max_workers=10) as pool:
        waits = list(pool.map(take, range(10)))
    assert waits == [None] * 10
