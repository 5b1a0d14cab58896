"""When to ask the server about a submitted job: the fetch and HEAD(future_links) timetable as a plain object.

No threads, no clock, no I/O: the runner tells the schedule what time it is (time.monotonic()) and what the
last fetch or probe found; the schedule answers what is due and until when to sleep.

One stream of checks, each either a HEAD probe of the first future link (cheap: 404 until the file exists) or
a status fetch:

- Before the predicted finish (submit time + the server's `eta`): probes on the official CLI's own fetch
  timetable (1, 3, 7, 15 s after the submit, then every 2 x interval_max), so a pessimistic eta never makes
  us later than that client; a fetch every eta_wait_cap seconds while the prediction is far away, and one
  fetch_lead seconds before it (at most half the eta): it catches a failed job or a new eta (which moves the
  prediction, sooner or later).
- The first probe is at the predicted finish, then head_window / head_interval more, head_interval (50 ms) apart:
  the fast window that catches an honest eta within a few milliseconds. An eta is a rounded number ("2.99",
  "45"), so the prediction is the end of its rounding interval (half a unit of its last digit, at most
  eta_rounding_cap later): a first probe a few milliseconds early would cost a whole head_interval.
- After the fast window the gap grows with the job's age: backoff x (time since the submit), at least
  head_interval and at most interval_max. A late job is noticed within 15 % of the time it has taken, and a
  job clearly not near done is asked less and less often. The first of these gaps is scaled by the poll's
  phase (the runner draws one in [0, 1) per poll), so jobs sent together neither reach the server at the
  same instants nor all miss a cluster of late finishes by the same long gap.
- While probing, the first fetch takes a check's place interval_min after the predicted finish, then at
  doubling intervals (up to eta_wait_cap): it detects a failed job and brings a new eta, which moves the
  prediction when it is later than the next check anyway. Without future links (or without HEAD) every
  check is a fetch, never more often than interval_min.
- At the deadline one last fetch is owed unless one just happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import Category, ModelsLabError

MAX_ODD_ANSWERS = 3  # consecutive non-5xx `server` errors while polling (malformed JSON, status error) before giving up
HEAD_INTERVAL = 0.05  # the shortest gap between two checks: never more than 20 probes a second
HEAD_WINDOW = 0.05  # how long after the predicted finish the checks stay that tight (two probes)
BACKOFF = 0.15  # after the fast window, the gap is this fraction of the time since the submit
ETA_WAIT_CAP = 30.0  # never wait longer than this between two fetches
FETCH_LEAD = 0.3  # the last fetch before the predicted finish is sent this long (at most half the eta) before it
# The most a rounded eta's rounding interval may move the prediction: "2.99" gets its 5 ms, "3.0" (which may be
# a rounded 2.996 or a whole-second estimate) no more, so an exact eta is not waited out for long.
ETA_ROUNDING_CAP = HEAD_INTERVAL / 10


@dataclass(frozen=True)
class PollTiming:
    """The schedule's constants, in seconds (backoff is a fraction)."""

    timeout: float = 3600.0
    interval_min: float = 1.0
    interval_max: float = 5.0
    head_interval: float = HEAD_INTERVAL
    head_window: float = HEAD_WINDOW
    backoff: float = BACKOFF
    eta_wait_cap: float = ETA_WAIT_CAP
    fetch_lead: float = FETCH_LEAD
    eta_rounding_cap: float = ETA_ROUNDING_CAP


class PollSchedule:
    """The check timetable of one poll of one job, from `start` (a monotonic time) to start + timeout.

    eta is the server's eta counted from start (None when resuming an older job: the first check is at once);
    age is how long ago the job was submitted (the back-off grows with it); can_fetch is False when the job has
    no remote id (only the future links can tell); probing starts when future links are known and stops for
    good once a probe says HEAD is not supported; phase (0..1) scales the first back-off gap.
    """

    def __init__(
        self,
        start: float,
        timing: PollTiming,
        *,
        eta: float | None,
        can_fetch: bool,
        future_links: bool,
        age: float = 0.0,
        phase: float = 1.0,
    ) -> None:
        self.timing = timing
        self.phase = min(1.0, max(0.0, phase))  # scales the first back-off gap (spreads jobs sent together)
        self.fast_gaps = max(0, round(timing.head_window / timing.head_interval))  # head_interval gaps after the eta
        self.can_fetch = can_fetch
        self.probing = future_links
        self.deadline = start + timing.timeout
        self.submitted = start - max(0.0, age)
        self.predicted = start + self._eta_end(eta) if eta is not None else start  # when the server should be done
        self.fetch_interval = timing.interval_min
        self.next_fetch = start  # fetches wait for this too (spacing while probing, back-off after errors)
        if eta is not None and can_fetch:  # the fetch just before the prediction, or a refresh when it is far
            lead = min(timing.fetch_lead, max(0.0, eta) / 2)
            far = self.predicted - start > timing.eta_wait_cap
            self.next_fetch = start + timing.eta_wait_cap if far else max(start, self.predicted - lead)
        # Early probes on the official CLI's own timetable (1, 3, 7, 15 s ... after the submit, then every
        # 2 x interval_max): a pessimistic eta never makes us later than that client.
        self.early_gap = timing.interval_min
        self.next_early = self.submitted + timing.interval_min if eta is not None else math.inf
        self.next_check = self._after(start) if self.predicted > start else start
        self.last_fetch = -math.inf
        self.final_check = False
        self.odd_answers = 0

    def _eta_end(self, eta: float) -> float:
        """The latest moment a rounded eta can stand for: eta plus half a unit of its last decimal, capped."""
        if eta <= 0:
            return 0.0
        return eta + min(rounding_margin(eta), self.timing.eta_rounding_cap)

    def _after(self, now: float) -> float:
        """When the check after one that ended at now is due."""
        t = self.timing
        if now < self.predicted:
            due = [self.predicted, now + t.eta_wait_cap]
            if self.probing and self.next_early < self.predicted - t.head_interval:
                due.append(self.next_early)  # (one that would land next to the prediction is left to it)
            if self.can_fetch and self.next_fetch > now:
                due.append(self.next_fetch)
            return max(now, min(due))
        floor = t.head_interval if self.probing else t.interval_min
        if self.fast_gaps > 0:  # counted, not timed: a first probe that went out late still gets its second
            self.fast_gaps -= 1
            return now + floor
        gap = t.backoff * (now - self.submitted) * self.phase
        self.phase = 1.0  # only the first gap is shortened: the checks after it keep their geometric spacing
        return now + min(max(floor, gap), max(floor, t.interval_max))

    # --- what is due -----------------------------------------------------------------------------------------
    def fetch_due(self, now: float) -> bool:
        """True when the check due now is a status fetch."""
        return self.can_fetch and now >= self.next_check and (self.final_check or now >= self.next_fetch)

    def probe_due(self, now: float) -> bool:
        """True when the check due now is a HEAD probe of the first future link."""
        return self.probing and now >= self.next_check and not self.fetch_due(now)

    def wake_at(self) -> float:
        """The monotonic time at which something is due next (a check or the deadline)."""
        if not (self.can_fetch or self.probing):
            return self.deadline
        return min(self.next_check, self.deadline)

    # --- fetches ---------------------------------------------------------------------------------------------
    def fetch_started(self, now: float) -> None:
        """A fetch is being sent at now."""
        self.last_fetch = now

    def _checked(self, now: float) -> None:
        """A check ended at now: move the early timetable on when it was due."""
        if now < self.predicted and now >= self.next_early:
            self.early_gap = min(self.early_gap * 2, 2 * self.timing.interval_max)
            self.next_early = now + self.early_gap

    def fetch_answered(self, now: float, eta: float | None, *, future_links: bool) -> None:
        """The fetch answered "processing" at now with this eta (future_links: the answer named some)."""
        self._checked(now)
        self.odd_answers = 0
        self.probing = self.probing or future_links
        if eta is not None and eta > 0 and (now < self.predicted or now + eta > self._after(now)):
            # Before the predicted finish the newest eta wins (sooner or later); after it, only one that is clearly
            # later (the job is not near done) moves it, so a late job's "almost done" keeps the back-off going.
            self.predicted = now + self._eta_end(eta)
            if self.next_early <= now:
                self.next_early = now + self.early_gap
        if not self.probing:
            self.fetch_interval = self.timing.interval_min
        elif now < self.predicted:  # a probe looks first at the prediction; a far one is refreshed by fetches
            far = self.predicted - now > self.timing.eta_wait_cap
            self.next_fetch = now + self.timing.eta_wait_cap if far else self.predicted + self.timing.interval_min
        else:
            self.fetch_interval = min(self.fetch_interval * 2, self.timing.eta_wait_cap)
            self.next_fetch = now + self.fetch_interval
        self.next_check = self._after(now)

    def fetch_failed(self, now: float, error: ModelsLabError) -> bool:
        """The fetch raised error, noticed at now: True when that ends the poll, else the next check is scheduled.

        Network trouble, 429 and 5xx never end it (the timeout leaves the job resumable); the server saying the
        job failed does, and so do other odd answers (malformed JSON, status error) when they persist.
        """
        self._checked(now)
        odd = error.category is Category.SERVER and (error.http_status or 500) < 500
        self.odd_answers = self.odd_answers + 1 if odd else 0
        if poll_error_is_final(error, self.odd_answers):
            return True
        wait = max(self.fetch_interval, min(error.retry_after or 0.0, self.timing.eta_wait_cap))
        cap = self.timing.eta_wait_cap if self.probing else self.timing.interval_max
        self.fetch_interval = min(self.fetch_interval * 2, max(cap, self.timing.interval_min))
        self.next_fetch = now + wait
        self.next_check = self._after(now) if self.probing else max(self._after(now), self.next_fetch)
        return False

    # --- HEAD probes -----------------------------------------------------------------------------------------
    def probed(self, now: float, *, supported: bool) -> None:
        """A probe that did not find the file ended at now; supported=False: the server does not do HEAD."""
        self._checked(now)
        if not supported:
            self.probing = False
        self.next_check = self._after(now)
        if not self.probing:
            self.next_check = max(self.next_check, self.next_fetch)

    # --- the end ---------------------------------------------------------------------------------------------
    def timed_out(self, now: float) -> bool:
        """True once the deadline has passed and no last fetch is owed; owing one, it becomes due at now."""
        if now < self.deadline:
            return False
        if self.can_fetch and not self.final_check and now - self.last_fetch > self.timing.head_interval:
            self.final_check = True  # one last look before giving up (the eta may have been past the deadline)
            self.next_check = now
            return False
        return True


def rounding_margin(value: float) -> float:
    """Half a unit of value's last decimal place as written (2.99 -> 0.005, 3 or 3.0 -> 0.5)."""
    text = repr(float(value))
    if "e" in text or "n" in text:  # tiny, huge, inf or nan: no usable digits
        return 0.0
    decimals = len(text.partition(".")[2].rstrip("0"))
    return 0.5 * 10.0**-decimals


def poll_error_is_final(error: ModelsLabError, odd_answers: int) -> bool:
    """Whether an error while polling ends the job, after odd_answers odd answers in a row (see fetch_failed)."""
    if error.category in (Category.NETWORK, Category.RATE_LIMITED):
        return False
    if error.category is not Category.SERVER:
        return True  # expired, auth, credits, invalid id: asking again cannot help
    if error.http_status is None or error.http_status >= 500:
        return False
    if "job failed" in error.message.lower():
        return True
    return odd_answers >= MAX_ODD_ANSWERS
