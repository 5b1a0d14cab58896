"""api.polling without threads or a server: the fetch/HEAD timetable, pinned number by number."""

from __future__ import annotations

import math

import pytest

from api.errors import Category, ModelsLabError
from api.polling import MAX_ODD_ANSWERS, PollSchedule, PollTiming, poll_error_is_final

T0 = 1000.0  # any monotonic start time
TIMING = PollTiming(timeout=600.0, interval_min=1.0, interval_max=5.0)


def schedule(eta: float | None = None, *, can_fetch: bool = True, future: bool = True, **timing: float) -> PollSchedule:
    return PollSchedule(
        T0, PollTiming(**{**TIMING.__dict__, **timing}), eta=eta, can_fetch=can_fetch, future_links=future
    )


def network() -> ModelsLabError:
    return ModelsLabError(Category.NETWORK, "connection refused")


def odd(http_status: int = 200, message: str = "The service answered with malformed JSON") -> ModelsLabError:
    return ModelsLabError(Category.SERVER, message, http_status=http_status)


# --- the first fetch and probe after a submit ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("eta", "first_fetch", "first_probe"),
    [
        (10.0, 9.7, 9.0),  # fetch 0.3 s early; probes start 1 s early
        (2.0, 1.7, 1.6),  # probes start at most 20 % of the eta early
        (0.0, 0.25, 0.25),  # an eta of 0: both wait a little (the probe one head interval)
        (100.0, 30.0, 99.0),  # a fetch at least every 30 s
    ],
)
def test_first_fetch_and_probe_follow_the_eta(eta: float, first_fetch: float, first_probe: float) -> None:
    s = schedule(eta)
    assert s.next_fetch - T0 == pytest.approx(first_fetch)
    assert s.next_probe - T0 == pytest.approx(first_probe)
    assert s.wake_at() - T0 == pytest.approx(min(first_fetch, first_probe))
    assert not s.fetch_due(T0 + first_fetch - 0.01) and s.fetch_due(T0 + first_fetch)


def test_resumed_job_fetches_and_probes_at_once() -> None:
    s = schedule(None)
    assert s.fetch_due(T0) and s.probe_due(T0)


def test_without_a_remote_id_only_probes_run() -> None:
    s = schedule(5.0, can_fetch=False)
    assert not s.fetch_due(T0 + 10_000)
    assert s.next_fetch == math.inf
    assert s.wake_at() - T0 == pytest.approx(4.0)


def test_without_future_links_no_probe_is_due_and_the_fetch_decides_the_wake() -> None:
    s = schedule(10.0, future=False)
    assert not s.probe_due(T0 + 9.5)
    assert s.wake_at() - T0 == pytest.approx(9.7)


# --- fetch intervals -----------------------------------------------------------------------------------------
def test_answers_without_eta_back_off_by_half_up_to_the_max() -> None:
    s = schedule(None, future=False)
    now, waits = T0, []
    for _ in range(7):
        s.fetch_started(now)
        s.fetch_answered(now, None, future_links=False)
        waits.append(round(s.next_fetch - now, 4))
        now = s.next_fetch
    assert waits == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0, 5.0]


def test_an_eta_longer_than_the_interval_is_followed() -> None:
    s = schedule(None)
    s.fetch_answered(T0, 8.0, future_links=False)
    assert s.next_fetch - T0 == pytest.approx(7.7)
    assert s.predicted == pytest.approx(T0 + 8.0)
    assert s.fetch_interval == 1.0  # following an eta does not grow the back-off
    s.fetch_answered(T0, 500.0, future_links=False)
    assert s.next_fetch - T0 == pytest.approx(30.0)


def test_an_eta_within_the_interval_backs_off_instead() -> None:
    s = schedule(None)
    s.fetch_answered(T0, 0.5, future_links=False)
    assert s.next_fetch - T0 == pytest.approx(1.0) and s.fetch_interval == 1.5
    assert s.predicted == pytest.approx(T0 + 0.5)


def test_failed_fetches_double_the_interval() -> None:
    s = schedule(None)
    now, waits = T0, []
    for _ in range(5):
        s.fetch_started(now)
        assert s.fetch_failed(now, network()) is False
        waits.append(s.next_fetch - now)
        now = s.next_fetch
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_failed_fetch_honours_retry_after_up_to_the_cap() -> None:
    s = schedule(None)
    limited = ModelsLabError(Category.RATE_LIMITED, "slow down", http_status=429, retry_after=12.0)
    assert s.fetch_failed(T0, limited) is False and s.next_fetch - T0 == 12.0
    limited.retry_after = 900.0
    assert s.fetch_failed(T0, limited) is False and s.next_fetch - T0 == 30.0


# --- which errors end the poll -------------------------------------------------------------------------------
def test_odd_answers_end_the_poll_only_when_they_persist() -> None:
    s = schedule(None)
    results = [s.fetch_failed(T0, odd()) for _ in range(MAX_ODD_ANSWERS)]
    assert results == [False] * (MAX_ODD_ANSWERS - 1) + [True]


def test_a_good_answer_or_other_trouble_resets_the_odd_count() -> None:
    s = schedule(None)
    for reset in (lambda: s.fetch_answered(T0, None, future_links=False), lambda: s.fetch_failed(T0, network())):
        assert [s.fetch_failed(T0, odd()) for _ in range(MAX_ODD_ANSWERS - 1)] == [False] * (MAX_ODD_ANSWERS - 1)
        reset()
        assert s.odd_answers == 0
    assert s.fetch_failed(T0, odd()) is False


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (ModelsLabError(Category.NETWORK, "refused"), False),
        (ModelsLabError(Category.RATE_LIMITED, "429", http_status=429), False),
        (ModelsLabError(Category.SERVER, "HTTP 503", http_status=503), False),
        (ModelsLabError(Category.SERVER, "no status"), False),
        (ModelsLabError(Category.SERVER, "The job failed on the server: GPU", http_status=200), True),
        (ModelsLabError(Category.EXPIRED, "gone", http_status=404), True),
        (ModelsLabError(Category.AUTH, "bad key", http_status=401), True),
        (ModelsLabError(Category.INVALID_INPUT, "bad id"), True),
    ],
)
def test_poll_error_is_final(error: ModelsLabError, final: bool) -> None:
    assert poll_error_is_final(error, 0) is final
    assert schedule(None).fetch_failed(T0, error) is final


# --- HEAD probes ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("probe_ended_at", "next_in"),
    [
        (9.0, 0.25),  # near the predicted finish (10 s): tight
        (14.9, 0.25),  # still inside the 5 s window after it
        (17.5, 0.375),  # 2.5 s past the window: slower, 0.25 * (1 + 2.5 / 5)
        (60.0, 1.0),  # long past: at most interval_min
    ],
)
def test_probes_are_tight_around_the_predicted_finish(probe_ended_at: float, next_in: float) -> None:
    s = schedule(10.0)
    s.probed(T0 + probe_ended_at, supported=True)
    assert s.next_probe - (T0 + probe_ended_at) == pytest.approx(next_in)


def test_a_probe_far_before_the_prediction_waits_for_it() -> None:
    s = schedule(None)
    s.fetch_answered(T0, 20.0, future_links=True)  # predicted T0 + 20
    s.probed(T0 + 1.0, supported=True)
    assert s.next_probe - T0 == pytest.approx(19.0)  # HEAD_LEAD before the prediction


def test_without_a_prediction_probes_run_every_half_interval() -> None:
    s = schedule(None, can_fetch=False)
    s.probed(T0 + 3.0, supported=True)
    assert s.next_probe - T0 == pytest.approx(3.5)


def test_head_not_supported_stops_probing_until_new_future_links() -> None:
    s = schedule(None)
    s.probed(T0, supported=False)
    assert not s.probe_due(T0 + 100)
    s.fetch_answered(T0 + 1, None, future_links=False)
    assert not s.probe_due(T0 + 100)
    s.fetch_answered(T0 + 2, None, future_links=True)
    assert s.probe_due(T0 + 100)


def test_probing_starts_when_a_fetch_brings_future_links() -> None:
    s = schedule(None, future=False)
    assert not s.probe_due(T0 + 5)
    s.fetch_answered(T0 + 1, 3.0, future_links=True)
    assert s.probe_due(T0 + 5)


# --- the deadline --------------------------------------------------------------------------------------------
def test_one_last_fetch_is_owed_at_the_deadline() -> None:
    s = schedule(None, future=False, timeout=60.0)
    s.fetch_started(T0 + 55.0)
    s.fetch_answered(T0 + 55.0, 30.0, future_links=False)  # next fetch would be past the deadline
    assert not s.timed_out(T0 + 59.9)
    assert s.wake_at() == T0 + 60.0
    assert not s.timed_out(T0 + 60.0)  # owes the last fetch ...
    assert s.fetch_due(T0 + 60.0)  # ... which is due now
    s.fetch_started(T0 + 60.0)
    assert s.timed_out(T0 + 60.1)  # after it, time is up


def test_no_last_fetch_right_after_one() -> None:
    s = schedule(None, timeout=60.0)
    s.fetch_started(T0 + 59.9)
    assert s.timed_out(T0 + 60.0)  # the last fetch was under head_interval ago


def test_without_a_remote_id_the_deadline_is_final() -> None:
    assert schedule(None, can_fetch=False, timeout=60.0).timed_out(T0 + 60.0)


def test_the_deadline_bounds_the_sleep() -> None:
    s = schedule(500.0, timeout=20.0)
    assert s.wake_at() == T0 + 20.0


# --- a whole poll, simulated ---------------------------------------------------------------------------------
def simulate(eta: float, done_at: float, *, head: bool = True, timeout: float = 600.0) -> tuple[str, float, int, int]:
    """Run the runner's loop on a fake clock against a server that is done at T0 + done_at.

    Returns (outcome, time found, fetches, probes); calls take no time.
    """
    s = schedule(eta, timeout=timeout)
    fetches = probes = 0
    now = T0
    for _ in range(100_000):
        if s.fetch_due(now):
            fetches += 1
            s.fetch_started(now)
            if now >= T0 + done_at:
                return "fetch", now - T0, fetches, probes
            s.fetch_answered(now, max(0.0, T0 + done_at - now), future_links=True)
        if s.probe_due(now):
            probes += 1
            if head and now >= T0 + done_at:
                return "probe", now - T0, fetches, probes
            s.probed(now, supported=head)
        if s.timed_out(now):
            return "timed_out", now - T0, fetches, probes
        now = max(now, s.wake_at())
    raise AssertionError("the schedule never settled")


def test_a_job_done_on_time_is_found_by_a_probe_within_one_head_interval() -> None:
    outcome, found, fetches, probes = simulate(10.0, 10.0)
    assert outcome == "probe" and 10.0 <= found <= 10.25
    assert fetches == 1 and probes == 5  # 9.0, 9.25, 9.5, 9.75, 10.0; one fetch at 9.7 in between


def test_a_job_done_late_is_found_by_probes_that_slow_down() -> None:
    outcome, found, fetches, probes = simulate(10.0, 40.0)
    assert outcome == "probe" and 40.0 <= found <= 41.0


def test_without_head_the_fetches_find_it() -> None:
    outcome, found, fetches, probes = simulate(10.0, 10.0, head=False)
    assert outcome == "fetch" and found == pytest.approx(10.7) and fetches == 2
    # A fetch answer that lists future links turns probing back on, so a server without HEAD is asked once more.
    assert probes == 2


def test_a_job_never_done_times_out_after_a_last_fetch() -> None:
    outcome, ended, fetches, _probes = simulate(10.0, 10_000.0, head=False, timeout=120.0)
    assert outcome == "timed_out" and ended == pytest.approx(120.0)
    assert fetches == 5  # 9.7, then every 30 s (the eta cap) at 39.7, 69.7, 99.7, and the last one at 120
