"""api.polling without threads or a server: the check timetable, pinned number by number."""

from __future__ import annotations

import math

import pytest

from api.errors import Category, ModelsLabError
from api.polling import MAX_ODD_ANSWERS, PollSchedule, PollTiming, poll_error_is_final, rounding_margin

T0 = 1000.0  # any monotonic start time
# Exact etas unless a test asks for the rounding interval (eta_rounding_cap) to count.
TIMING = PollTiming(timeout=3600.0, interval_min=1.0, interval_max=5.0, eta_rounding_cap=0.0)


def schedule(
    eta: float | None = None,
    *,
    can_fetch: bool = True,
    future: bool = True,
    age: float = 0.0,
    phase: float = 1.0,
    **timing: float,
) -> PollSchedule:
    return PollSchedule(
        T0,
        PollTiming(**{**TIMING.__dict__, **timing}),
        eta=eta,
        can_fetch=can_fetch,
        future_links=future,
        age=age,
        phase=phase,
    )


def network() -> ModelsLabError:
    return ModelsLabError(Category.NETWORK, "connection refused")


def odd(http_status: int = 200, message: str = "The service answered with malformed JSON") -> ModelsLabError:
    return ModelsLabError(Category.SERVER, message, http_status=http_status)


def checks(
    s: PollSchedule, until: float, done_at: float = math.inf, links: bool = True, claimed: float | None = None
) -> list[tuple[str, float]]:
    """Run the runner's loop on a fake clock (calls take no time) until T0 + until or the file exists at
    T0 + done_at; fetches answer processing with an eta towards T0 + claimed (default: the honest done_at; at
    least 0.2 s, as the local server does) and future links when links. Returns (kind, seconds after T0) per
    check."""
    claimed = done_at if claimed is None else claimed
    seen: list[tuple[str, float]] = []
    now = T0
    while now <= T0 + until:
        if s.fetch_due(now):
            seen.append(("fetch", now - T0))
            s.fetch_started(now)
            if now >= T0 + done_at:
                return seen
            eta = None if claimed == math.inf else max(0.2, T0 + claimed - now)
            s.fetch_answered(now, eta, future_links=links)
        elif s.probe_due(now):
            seen.append(("probe", now - T0))
            if now >= T0 + done_at:
                return seen
            s.probed(now, supported=True)
        if s.timed_out(now):
            seen.append(("timed_out", now - T0))
            return seen
        now = max(now, s.wake_at())
    return seen


# --- the first check -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("eta", "expected"),
    [
        (0.4, [("fetch", 0.2), ("probe", 0.4)]),  # the fetch 0.3 s early, at most half the eta
        (3.0, [("probe", 1.0), ("fetch", 2.7), ("probe", 3.0)]),
        (
            29.0,
            [
                ("probe", 1.0),
                ("probe", 3.0),
                ("probe", 7.0),
                ("probe", 15.0),
                ("probe", 25.0),
                ("fetch", 28.7),
                ("probe", 29.0),
            ],
        ),
    ],
)
def test_early_probes_on_the_clis_timetable_one_fetch_just_before_the_eta_and_a_probe_at_it(
    eta: float, expected: list[tuple[str, float]]
) -> None:
    seen = checks(schedule(eta), eta)  # the server says "processing, done at the eta" all along
    assert [kind for kind, _ in seen] == [kind for kind, _ in expected]
    assert [t for _, t in seen] == pytest.approx([t for _, t in expected])


@pytest.mark.parametrize(
    ("value", "margin"), [(2.99, 0.005), (12.5, 0.05), (3.0, 0.5), (45, 0.5), (0.125, 0.0005), (1e-7, 0.0)]
)
def test_the_rounding_margin_is_half_a_unit_of_the_last_digit(value: float, margin: float) -> None:
    assert rounding_margin(value) == pytest.approx(margin)


@pytest.mark.parametrize(("eta", "first_probe"), [(2.99, 2.995), (3.0, 3.005), (12.5, 12.505), (2.995, 2.9955)])
def test_the_first_probe_is_at_the_end_of_the_etas_rounding_interval_capped(eta: float, first_probe: float) -> None:
    """A server that rounds 2.994 s to "2.99" is done by 2.995 s at the earliest; "3" may mean 3.4 s, but the
    prediction moves by at most the cap (the default: 5 ms, a tenth of one fast-window step)."""
    seen = checks(schedule(eta, eta_rounding_cap=PollTiming().eta_rounding_cap), first_probe + 0.0001)
    assert seen[-1] == ("probe", pytest.approx(first_probe))
    assert all(t < first_probe for _, t in seen[:-1])


def test_a_rounded_eta_from_a_fetch_is_read_the_same_way() -> None:
    s = schedule(3.0, eta_rounding_cap=0.005)
    s.fetch_answered(T0 + 1.0, 1.99, future_links=True)
    assert s.wake_at() - T0 == pytest.approx(1.0 + 1.995)


def test_an_eta_of_zero_gets_no_margin() -> None:
    assert [t for _, t in checks(schedule(0.0, eta_rounding_cap=0.005), 0.06)] == pytest.approx([0.0, 0.05])


def test_an_early_probe_next_to_the_prediction_is_left_to_the_probe_at_it() -> None:
    """The CLI-timetable probe at 3 s would land 20 ms before an eta of 3.02 s: the probe at the eta (the one that
    downloads) takes its place; 100 ms before, both are kept."""
    seen = checks(schedule(3.02), 3.02)
    assert [kind for kind, _ in seen] == ["probe", "fetch", "probe"]
    assert [t for _, t in seen] == pytest.approx([1.0, 2.72, 3.02])
    assert [t for _, t in checks(schedule(3.1), 3.1)] == pytest.approx([1.0, 2.8, 3.0, 3.1])


def test_an_eta_of_zero_is_a_fetch_at_once_then_the_fast_window() -> None:
    assert [t for _, t in checks(schedule(0.0), 0.11)] == pytest.approx([0.0, 0.05, 0.1])


def test_without_a_remote_id_the_first_check_is_the_probe_at_the_eta() -> None:
    s = schedule(3.0, can_fetch=False)
    assert s.wake_at() - T0 == pytest.approx(1.0)  # the early probe
    s.probed(T0 + 1.0, supported=True)
    assert s.wake_at() - T0 == pytest.approx(3.0) and s.probe_due(T0 + 3.0)


def test_a_long_eta_is_refreshed_by_a_fetch_every_30_s_until_then() -> None:
    s = schedule(100.0)
    seen = checks(s, 100.0)
    assert [t for kind, t in seen if kind == "fetch"] == pytest.approx([30.0, 60.0, 90.0])
    probes = [t for kind, t in seen if kind == "probe"]
    assert probes[:5] == pytest.approx([1.0, 3.0, 7.0, 15.0, 25.0]) and probes[-1] == pytest.approx(100.0)
    assert max(b - a for a, b in zip(probes, probes[1:], strict=False)) <= 10.0 + 1e-9  # the CLI's 10 s at most
    hour = checks(
        schedule(3600.0, future=False), 3599.0, links=False
    )  # without future links: a fetch every 30 s until then
    assert {kind for kind, _ in hour} == {"fetch"} and len(hour) == 3600 / 30 - 1


def test_a_resumed_job_is_asked_at_once_with_a_fetch() -> None:
    s = schedule(None, age=600.0)
    assert s.fetch_due(T0)
    s.fetch_started(T0)
    s.fetch_answered(T0, 120.0, future_links=True)  # the server's new eta moves the prediction
    assert s.predicted == pytest.approx(T0 + 120.0)
    assert s.wake_at() - T0 == pytest.approx(30.0) and s.fetch_due(T0 + 30.0)  # refreshed on the way


def test_without_a_remote_id_only_probes_run() -> None:
    s = schedule(5.0, can_fetch=False)
    seen = checks(s, 20.0)
    assert seen and {kind for kind, _ in seen} == {"probe"} and ("probe", 5.0) in seen


def test_without_future_links_every_check_is_a_fetch_never_closer_than_interval_min() -> None:
    s = schedule(3.0, future=False)
    seen = checks(s, 30.0, links=False)
    assert {kind for kind, _ in seen} == {"fetch"} and [t for _, t in seen[:2]] == pytest.approx([2.7, 3.0])
    times = [t for _, t in seen[1:]]
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 1.0 - 1e-9


# --- the fast window, the back-off, the cap --------------------------------------------------------------------
def test_the_fast_window_is_two_probes_50_ms_apart_then_the_back_off() -> None:
    seen = checks(schedule(3.0), 3.6)
    assert [kind for kind, _ in seen] == ["probe", "fetch"] + ["probe"] * 3
    assert [t for _, t in seen] == pytest.approx([1.0, 2.7, 3.0, 3.05, 3.05 + 0.15 * 3.05])


def fast_window_done(s: PollSchedule, at: float) -> PollSchedule:
    """The probe at the prediction and its fast follow-up, both not finding the file (the second ends at T0+at)."""
    s.probed(s.predicted, supported=True)
    s.probed(T0 + at, supported=True)
    return s


def test_after_the_fast_window_the_gap_is_15_percent_of_the_jobs_age() -> None:
    s = fast_window_done(schedule(3.0), 3.2)
    assert s.next_check - (T0 + 3.2) == pytest.approx(0.15 * 3.2)
    old = fast_window_done(schedule(3.0, age=7.0), 3.2)  # resumed: submitted 7 s before this poll began
    assert old.next_check - (T0 + 3.2) == pytest.approx(0.15 * 10.2)


def test_the_fast_follow_up_is_counted_not_timed() -> None:
    """A first probe that went out 80 ms late (a busy machine) still gets its follow-up 50 ms later."""
    s = schedule(3.0)
    s.probed(T0 + 3.08, supported=True)
    assert s.next_check - (T0 + 3.08) == pytest.approx(0.05)
    s.probed(T0 + 3.13, supported=True)
    assert s.next_check - (T0 + 3.13) == pytest.approx(0.15 * 3.13)


def test_a_phase_shortens_only_the_first_back_off_gap() -> None:
    """Jobs sent together get different phases (the runner draws one per poll), so their checks do not all
    land on the server at the same instants and a cluster of late jobs is not all found at one late check."""
    s = fast_window_done(schedule(3.0, phase=0.4), 3.2)
    first = s.next_check - (T0 + 3.2)
    assert first == pytest.approx(0.4 * 0.15 * 3.2)
    s.probed(s.next_check, supported=True)
    assert s.next_check - (T0 + 3.2 + first) == pytest.approx(0.15 * (3.2 + first))
    tiny = fast_window_done(schedule(3.0, phase=0.0), 3.2)
    assert tiny.next_check - (T0 + 3.2) == pytest.approx(0.05)  # never below the 50 ms floor


def test_the_gap_never_goes_below_50_ms_nor_above_the_cap() -> None:
    s = schedule(0.0)
    seen = checks(s, 600.0)
    times = [t for _, t in seen]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.05 - 1e-9 and max(gaps) == pytest.approx(5.0)
    assert all(b >= a - 1e-9 for a, b in zip(gaps, gaps[1:], strict=False))  # it only ever slows down
    assert 600 / 5 < len(seen) <= 160  # about one check per cap interval once the job is old


def test_a_fetch_takes_a_checks_place_one_interval_after_the_eta_then_doubling() -> None:
    seen = checks(schedule(3.0), 60.0)
    fetches = [t for kind, t in seen if kind == "fetch"][1:]  # after the one just before the eta
    assert fetches[0] >= 4.0 and fetches[0] - 4.0 < 1.0  # the first check at or after eta + interval_min
    spacing = [b - a for a, b in zip(fetches, fetches[1:], strict=False)]
    assert spacing[0] >= 2.0 and spacing[1] >= 4.0  # then at least 2 s, 4 s, ... apart
    times = [t for _, t in seen]
    assert len(times) == len(set(times))  # a fetch replaces a probe, it is never sent beside one


def test_an_honest_later_eta_from_the_fetch_before_the_eta_moves_the_first_probe() -> None:
    seen = checks(schedule(3.0), 100.0, done_at=7.0)
    assert seen == [("probe", 1.0), ("fetch", pytest.approx(2.7)), ("probe", 3.0), ("probe", pytest.approx(7.0))]


def test_before_the_prediction_a_sooner_eta_moves_it_earlier() -> None:
    s = schedule(600.0)  # a pessimistic first estimate
    s.fetch_started(T0 + 30.0)
    s.fetch_answered(T0 + 30.0, 60.0, future_links=True)
    assert s.predicted == T0 + 90.0
    seen = checks(s, 200.0, done_at=90.0)
    assert seen[-1] == ("probe", pytest.approx(90.0))


def test_a_later_eta_moves_the_prediction_a_small_one_does_not() -> None:
    s = fast_window_done(schedule(3.0), 3.05)
    s.fetch_started(T0 + 4.0)
    s.fetch_answered(T0 + 4.0, 0.2, future_links=True)  # "almost done" while late: keep backing off
    assert s.predicted == T0 + 3.0 and s.next_check - (T0 + 4.0) == pytest.approx(0.6)
    s.fetch_started(T0 + 5.0)
    s.fetch_answered(T0 + 5.0, 20.0, future_links=True)  # clearly not near done: wait for the new prediction
    assert s.predicted == T0 + 25.0 and s.probe_due(s.next_check)  # only the early probes until then
    assert [t for _, t in checks(s, 25.0)][-1] == pytest.approx(25.0)


def test_head_not_supported_turns_every_check_into_a_fetch() -> None:
    s = schedule(3.0)
    s.probed(T0 + 3.0, supported=False)
    assert not s.probing and s.next_check - (T0 + 3.0) == pytest.approx(1.0)  # fetch spacing: interval_min
    assert s.fetch_due(s.next_check) and not s.probe_due(s.next_check)


def test_probing_starts_when_a_fetch_brings_future_links() -> None:
    s = schedule(None, future=False)
    assert not s.probe_due(T0 + 5)
    s.fetch_started(T0)
    s.fetch_answered(T0, 3.0, future_links=True)
    assert s.next_check == T0 + 3.0 and s.probe_due(T0 + 3.0)


# --- whole polls, simulated ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("done_at", "found_by", "at_most", "requests"),
    [
        (0.9, 1.0, 1.0, 1),  # far earlier than the eta said: the CLI's first look, ours too
        (2.5, 2.7, 2.7, 2),  # early: the fetch just before the eta finds it
        (3.0, 3.0, 3.0, 3),  # an honest eta: the fetch, then the first probe finds it
        (3.04, 3.05, 3.05, 4),  # a few ms late: the fast window
        (5.0, 5.0, 5.0 * 1.15 + 0.05, 8),  # 2 s late: found within 15 % of the job's age
        (60.0, 60.0, 65.0, 33),  # long late: the cap
    ],
)
def test_a_late_job_is_found_soon_with_few_requests(
    done_at: float, found_by: float, at_most: float, requests: int
) -> None:
    """The server's eta keeps promising the original 3 s (as a busy server's does): only the back-off helps."""
    seen = checks(schedule(3.0), 1000.0, done_at=done_at, claimed=3.0)
    found = seen[-1][1]
    assert found_by <= found + 1e-9 and found <= at_most + 1e-9
    assert len(seen) <= requests


def test_a_job_never_done_times_out_after_a_last_fetch() -> None:
    s = schedule(10.0, future=False, timeout=120.0)
    seen = checks(s, 1000.0, links=False)
    assert seen[-1] == ("timed_out", pytest.approx(120.0))
    assert seen[-2] == ("fetch", pytest.approx(120.0))  # one last look at the deadline


# --- fetch errors ----------------------------------------------------------------------------------------------
def test_failed_fetches_double_the_wait_up_to_the_max() -> None:
    s = schedule(None, future=False)
    now, waits = T0, []
    for _ in range(5):
        s.fetch_started(now)
        assert s.fetch_failed(now, network()) is False
        waits.append(s.next_check - now)
        now = s.next_check
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_failed_fetch_honours_retry_after_up_to_the_cap() -> None:
    s = schedule(None, future=False)
    limited = ModelsLabError(Category.RATE_LIMITED, "slow down", http_status=429, retry_after=12.0)
    assert s.fetch_failed(T0, limited) is False and s.next_check - T0 == 12.0
    limited.retry_after = 900.0
    assert s.fetch_failed(T0, limited) is False and s.next_check - T0 == 30.0


def test_while_fetches_wait_after_an_error_the_probes_go_on() -> None:
    s = schedule(3.0)
    limited = ModelsLabError(Category.RATE_LIMITED, "slow down", http_status=429, retry_after=12.0)
    s.fetch_failed(T0 + 4.0, limited)
    assert s.probe_due(s.next_check) and s.next_check - (T0 + 4.0) < 1.0
    assert not s.fetch_due(T0 + 15.9) and s.fetch_due(T0 + 16.0)


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


# --- the deadline --------------------------------------------------------------------------------------------
def test_no_last_fetch_right_after_one() -> None:
    s = schedule(None, timeout=60.0)
    s.fetch_started(T0 + 59.99)
    assert s.timed_out(T0 + 60.0)  # the last fetch was under head_interval ago


def test_without_a_remote_id_the_deadline_is_final() -> None:
    assert schedule(None, can_fetch=False, timeout=60.0).timed_out(T0 + 60.0)


def test_the_deadline_bounds_the_sleep() -> None:
    s = schedule(500.0, future=False, timeout=20.0)
    assert s.wake_at() == T0 + 20.0
