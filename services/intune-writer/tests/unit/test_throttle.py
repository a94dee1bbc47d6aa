"""The writer's budget for one tenant: Intune's windows, Retry-After kept exactly, the limit
learned from 429s and recovered slowly; on an injected clock."""

from __future__ import annotations

import math

import pytest

from tenantflow.intune_writer.throttle import Budget, Limits

pytestmark = pytest.mark.unit

LIMITS = Limits(writes=100, requests=1000, window_s=20.0)
WRITE_SCOPE = "Tenant_Application/Write/app/tenant"


def spend(budget: Budget, at: float, writes: int) -> int:
    """Send up to ``writes`` writes at ``at``, each answered at once; how many went."""
    sent = 0
    for _ in range(writes):
        if not budget.take(at, write=True):
            break
        budget.answered(at, write=True)
        sent += 1
    return sent


def test_at_most_the_published_writes_in_any_window_and_the_next_once_the_oldest_ages_out() -> None:
    budget = Budget(LIMITS)
    assert spend(budget, 0.0, 60) == 60
    assert spend(budget, 5.0, 60) == 40
    assert budget.wait(5.0, write=True) == pytest.approx(15.0)
    assert spend(budget, 19.99, 1) == 0
    assert spend(budget, 20.0, 100) == 60  # the 60 of t=0 aged out, the 40 of t=5 did not
    assert budget.wait(20.0, write=True) == pytest.approx(5.0)
    assert budget.wait(20.0, write=False) == 0  # reads have their own room


def test_how_long_until_several_writes_fit() -> None:
    budget = Budget(LIMITS)
    for at in range(100):  # a write every 0.1 s
        assert spend(budget, at / 10, 1) == 1
    assert budget.wait(10.0, write=True) == pytest.approx(10.0)  # the first ages out at 20 s
    assert budget.wait(10.0, True, count=20) == pytest.approx(11.9)  # the 20th at 21.9 s
    assert budget.wait(10.0, True, count=500) == pytest.approx(19.9)  # at most the limit


def test_calls_in_flight_count_before_they_are_answered() -> None:
    budget = Budget(Limits(writes=2, requests=10, window_s=20.0))
    assert budget.take(0.0, write=True)
    assert budget.take(0.0, write=True)
    assert not budget.take(0.0, write=True)
    budget.answered(0.5, write=True)
    budget.answered(0.5, write=True)
    assert budget.wait(1.0, write=True) == pytest.approx(19.5)  # counted from the answer


def test_retry_after_is_kept_exactly_never_shortened() -> None:
    budget = Budget(LIMITS)
    assert budget.take(10.0, write=True)
    budget.throttled(10.0, 7.5, write=True)
    assert budget.wait(17.49, write=False) == pytest.approx(0.01)
    assert not budget.take(17.49, write=False)
    assert budget.take(17.5, write=False)
    budget.throttled(17.5, 1.0, write=False)  # a later, shorter Retry-After counts from now
    assert budget.not_before == pytest.approx(18.5)


def test_a_429_before_the_window_is_full_teaches_the_lower_limit() -> None:
    budget = Budget(LIMITS)
    assert spend(budget, 0.0, 50) == 50
    assert budget.take(1.0, write=True)
    budget.throttled(1.0, 19.0, True, WRITE_SCOPE)  # the tenant's real limit is 50
    assert budget.write_limit == 50
    assert spend(budget, 20.0, 100) == 50  # once the window has passed: 50, not 100


def test_a_stray_429_at_most_halves_the_limit() -> None:
    budget = Budget(LIMITS)
    assert spend(budget, 0.0, 3) == 3
    assert budget.take(0.0, write=True)
    budget.throttled(0.0, 1.0, True, WRITE_SCOPE)
    assert budget.write_limit == 50


def test_a_429_that_names_no_write_limit_is_waited_out_and_teaches_nothing() -> None:
    budget = Budget(LIMITS)
    for n, scope in enumerate((None, "Tenant_Application/ReadWrite/app/tenant", "garbage")):
        now = 10.0 * n
        assert spend(budget, now, 3) == 3
        assert budget.take(now, write=True)
        budget.throttled(now, 2.0, True, scope)
        assert budget.write_limit == 100
        assert budget.wait(now + 1.0, write=True) == pytest.approx(1.0)  # waited out all the same


def test_the_limit_recovers_slowly_two_quiet_windows_at_a_time() -> None:
    budget = Budget(LIMITS)
    spend(budget, 0.0, 50)
    budget.take(0.0, write=True)
    budget.throttled(0.0, 20.0, True, WRITE_SCOPE)
    assert budget.write_limit == 50
    budget.wait(39.0, write=True)
    assert budget.write_limit == 50  # not two whole windows yet
    budget.wait(40.0, write=True)
    assert budget.write_limit == 55
    budget.wait(60.0, write=True)
    assert budget.write_limit == 55
    budget.wait(80.0, write=True)
    assert budget.write_limit == 60
    for at in range(100, 800, 20):
        budget.wait(float(at), write=True)
    assert budget.write_limit == 100  # never above the published limit


def test_a_takeover_after_a_crash_waits_one_window() -> None:
    budget = Budget(LIMITS)
    budget.blackout(100.0)
    assert budget.wait(100.0, write=True) == pytest.approx(20.0)
    assert budget.take(120.0, write=True)


def test_the_state_moves_between_processes_on_their_own_clocks() -> None:
    budget = Budget(LIMITS)
    spend(budget, 1000.0, 40)
    budget.take(1001.0, write=True)
    budget.throttled(1001.0, 3.0, True, WRITE_SCOPE)
    state = budget.state(now=1001.0, epoch=1_700_000_000.0)

    # another process, whose monotonic clock reads 5.0 at the same wall-clock moment
    taken = Budget.restore(state, LIMITS, now=5.0, epoch=1_700_000_000.0)
    assert taken.write_limit == budget.write_limit
    assert taken.wait(5.0, write=True) == pytest.approx(3.0)
    assert taken.writes.count(5.0) == 40
    assert taken.writes_left(8.0) == budget.write_limit - 40


def test_writes_near_the_limit_and_beyond_what_was_learned_go_in_small_batches() -> None:
    budget = Budget(LIMITS)
    assert budget.batch_size(0.0, 20) == 20
    spend(budget, 0.0, 50)
    assert budget.batch_size(0.0, 20) == 10  # past half the limit: a lower real one costs little
    budget.take(0.0, write=True)
    budget.throttled(0.0, 20.0, True, WRITE_SCOPE)  # learned: 50
    assert not budget.probing(0.0)
    budget.wait(40.0, write=True)  # two quiet windows: 55 allowed again
    assert budget.write_limit == 55
    spend(budget, 40.0, 50)
    assert budget.probing(40.0)  # beyond the 50 learned: one write at a time
    assert budget.batch_size(40.0, 20) == 1


def test_writes_reserved_but_not_sent_do_not_shrink_batches() -> None:
    budget = Budget(LIMITS)
    for _ in range(80):  # a round reserves its writes before the first batch goes
        assert budget.take(0.0, write=True)
    assert budget.batch_size(0.0, 20, unsent=80) == 20
    assert budget.batch_size(0.0, 20, unsent=30) == 10  # 50 sent: past half the limit

    learned = Budget(LIMITS)
    spend(learned, 0.0, 50)
    learned.take(0.0, write=True)
    learned.throttled(0.0, 20.0, True, WRITE_SCOPE)  # the 51st refused: 50 learned
    learned.wait(40.0, write=True)  # two quiet windows: 55 allowed again
    for _ in range(52):
        learned.take(40.0, write=True)
    assert not learned.probing(40.0, unsent=52)
    assert learned.probing(40.0, unsent=2)  # 50 sent: the next goes beyond what was learned
    assert learned.batch_size(40.0, 20, unsent=7) == 5  # 45 sent: no batch crosses the 50


def test_calls_in_flight_when_the_tenant_changes_hands_count_for_the_next_owner() -> None:
    budget = Budget(LIMITS)
    spend(budget, 0.0, 60)
    for _ in range(40):  # sent, not answered yet
        assert budget.take(10.0, write=True)
    taken = Budget.restore(
        budget.state(now=10.0, epoch=1_700_000_010.0), LIMITS, now=0.0, epoch=1_700_000_010.0
    )
    assert taken.writes_left(0.0) == 0
    assert taken.wait(0.0, write=True) == pytest.approx(10.0)  # the first 60 age out first
    assert taken.writes_left(10.0) == 60


def test_a_tenant_out_of_writes_comes_back_for_a_batch_but_never_waits_a_window_for_one() -> None:
    budget = Budget(LIMITS)
    spend(budget, 0.0, 20)
    spend(budget, 0.5, 20)
    spend(budget, 1.0, 60)  # the window is full; writes free at 20, 20.5 and 21 s
    assert budget.gathered_wait(5.0, 20) == pytest.approx(15.0)  # twenty free at once
    assert budget.gathered_wait(5.0, 30) == pytest.approx(15.5)  # thirty half a second later

    # a learned limit of 50, as the adaptation benchmark found it: 10 writes free at 23.88 s,
    # the next 10 only once the 22.3 s ones age out
    learned = Budget(LIMITS, write_limit=50, proven=50, last_throttled=3.9)
    for at, writes in [(1.0, 20), (3.59, 20), (3.88, 10), (22.3, 20), (23.71, 20)]:
        assert spend(learned, at, writes) == writes
    assert learned.wait(23.75, True, 20) == pytest.approx(18.55)  # a whole window for twenty
    assert learned.gathered_wait(23.75, 20) == pytest.approx(0.13)  # the ten free first


def test_a_waiting_tenant_says_whether_its_quota_or_a_retry_after_holds_it() -> None:
    budget = Budget(LIMITS)
    spend(budget, 0.0, 100)
    assert budget.holding(1.0) == "quota"
    assert budget.take(1.0, write=False)
    budget.throttled(1.0, 30.0, write=False)
    assert budget.holding(2.0) == "retry_after"
    assert budget.holding(31.0) == "quota"  # the Retry-After passed; the window not yet


def test_a_round_reserves_the_writes_the_window_frees_within_the_pace_and_each_goes_on_time() -> (
    None
):
    budget = Budget(LIMITS)
    spend(budget, 0.0, 20)
    spend(budget, 0.4, 20)
    spend(budget, 0.8, 60)  # the window is full; 20 free at 20 s, 20 at 20.4 s, 60 at 20.8 s
    assert budget.writes_left(19.5) == 0
    assert budget.writes_left(19.5, within=1.0) == 40  # the 60 of 0.8 s stay till 20.8 s
    for _ in range(40):
        assert budget.take(19.5, write=True, within=1.0)
    assert not budget.take(19.5, write=True, within=1.0)  # the 41st only at 20.8 s
    # sent in order: the first twenty at 20 s, the next twenty once the 0.4 s ones age out
    assert budget.send_wait(19.5, unsent=20) == pytest.approx(0.5)
    assert budget.send_wait(19.5, unsent=0) == pytest.approx(0.9)
    assert budget.send_wait(20.0, unsent=20) == 0


def test_a_round_never_waits_out_a_retry_after_nor_goes_beyond_a_limit_learned_meanwhile() -> None:
    budget = Budget(LIMITS)
    spend(budget, 0.0, 100)
    for _ in range(10):
        assert budget.take(19.5, write=True, within=1.0)
    budget.take(19.5, write=False)
    budget.throttled(19.6, 0.5, write=False)  # a read refused: a Retry-After of 0.5 s
    assert budget.send_wait(19.7, unsent=0) == math.inf
    assert not budget.take(19.7, write=True, within=1.0)
    assert budget.writes_left(19.7, within=1.0) == 0

    learned = Budget(LIMITS)
    spend(learned, 0.0, 50)
    for _ in range(50):
        assert learned.take(0.0, write=True)
    learned.write_limit = 40  # a 429 meanwhile taught a lower limit
    assert learned.send_wait(0.0, unsent=0) == math.inf  # more in hand than it allows
