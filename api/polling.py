"""When to ask the server about a submitted job: the fetch and HEAD(future_links) schedule as a plain object.

No threads, no clock, no I/O: the runner tells the schedule what time it is (time.monotonic()) and what the
last fetch or probe found; the schedule answers what is due and until when to sleep.

Policy: the first fetch after a submit waits for the server's `eta` (a little less, capped); later fetches follow
each answer's eta or back off from interval_min by x1.5 (x2 after a failed fetch) up to interval_max. Around the
predicted finish, cheap HEAD probes of the first future link run every head_interval seconds, slowing down again
once the prediction is head_window seconds past. At the deadline, one last fetch is owed unless one just happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import Category, ModelsLabError

MAX_ODD_ANSWERS = 3  # consecutive non-5xx `server` errors while polling (malformed JSON, status error) before giving up
HEAD_INTERVAL = 0.25  # seconds between HEAD probes near the predicted finish
HEAD_WINDOW = 5.0  # how long after the predicted finish the probes stay that tight
HEAD_LEAD = 1.0  # probes start this long (at most 20 % of the eta) before the predicted finish
ETA_WAIT_CAP = 30.0  # never wait longer than this between two fetches
FETCH_LEAD = 0.3  # fetch slightly before the predicted finish
_FIRST_FETCH_MIN = 0.25  # even an eta of 0 waits this long before the first fetch


@dataclass(frozen=True)
class PollTiming:
    """The schedule's constants, in seconds."""

    timeout: float = 600.0
    interval_min: float = 1.0
    interval_max: float = 5.0
    head_interval: float = HEAD_INTERVAL
    head_window: float = HEAD_WINDOW
    head_lead: float = HEAD_LEAD
    eta_wait_cap: float = ETA_WAIT_CAP
    fetch_lead: float = FETCH_LEAD


class PollSchedule:
    """The fetch/probe timetable of one poll of one job, from `start` (a monotonic time) to start + timeout.

    eta is the server's eta from a submit that just happened (None when resuming an older job); can_fetch is
    False when the job has no remote id (only the future links can tell); probing starts when future links are
    known and stops for good once a probe says HEAD is not supported.
    """

    def __init__(
        self, start: float, timing: PollTiming, *, eta: float | None, can_fetch: bool, future_links: bool
    ) -> None:
        self.timing = timing
        self.can_fetch = can_fetch
        self.deadline = start + timing.timeout
        self.fetch_interval = timing.interval_min
        self.predicted: float | None = None  # when the server should be done
        self.next_fetch = start
        if eta is not None:  # fresh submit: the first wait is the server's eta
            self.predicted = start + max(0.0, eta)
            self.next_fetch = start + min(max(eta - timing.fetch_lead, _FIRST_FETCH_MIN), timing.eta_wait_cap)
        if not can_fetch:
            self.next_fetch = math.inf
        self.probing = future_links
        self.next_probe = self._probe_time(start, eta, first=True)
        self.last_fetch = -math.inf
        self.final_check = False
        self.odd_answers = 0

    # --- fetches ---------------------------------------------------------------------------------------------
    def fetch_due(self, now: float) -> bool:
        """True when a status fetch should be sent now."""
        return self.can_fetch and now >= self.next_fetch

    def fetch_started(self, now: float) -> None:
        """A fetch is being sent at now."""
        self.last_fetch = now

    def fetch_answered(self, now: float, eta: float | None, *, future_links: bool) -> None:
        """The fetch answered "processing" at now with this eta (future_links: the answer named some)."""
        self.odd_answers = 0
        self.probing = self.probing or future_links
        if eta is not None:
            self.predicted = now + eta
        if eta is not None and eta > self.fetch_interval:
            wait = min(eta - self.timing.fetch_lead, self.timing.eta_wait_cap)
        else:
            wait = self.fetch_interval
            self.fetch_interval = min(self.fetch_interval * 1.5, self.timing.interval_max)
        self.next_fetch = now + wait

    def fetch_failed(self, now: float, error: ModelsLabError) -> bool:
        """The fetch raised error, noticed at now: True when that ends the poll, else the next fetch is scheduled.

        Network trouble, 429 and 5xx never end it (the timeout leaves the job resumable); the server saying the
        job failed does, and so do other odd answers (malformed JSON, status error) when they persist.
        """
        odd = error.category is Category.SERVER and (error.http_status or 500) < 500
        self.odd_answers = self.odd_answers + 1 if odd else 0
        if poll_error_is_final(error, self.odd_answers):
            return True
        wait = max(self.fetch_interval, min(error.retry_after or 0.0, self.timing.eta_wait_cap))
        self.fetch_interval = min(self.fetch_interval * 2, self.timing.interval_max)
        self.next_fetch = now + wait
        return False

    # --- HEAD probes -----------------------------------------------------------------------------------------
    def probe_due(self, now: float) -> bool:
        """True when the first future link should be probed (HEAD) now."""
        return self.probing and now >= self.next_probe

    def probed(self, now: float, *, supported: bool) -> None:
        """A probe that did not find the file ended at now; supported=False: the server does not do HEAD."""
        if not supported:
            self.probing = False
        self.next_probe = self._probe_time(now, None, first=False)

    def _probe_time(self, now: float, eta: float | None, *, first: bool) -> float:
        """When to send the next HEAD: tight around the predicted finish, slower when far from it."""
        t = self.timing
        if self.predicted is None:
            return now + (0.0 if first else t.interval_min / 2)
        lead = min(t.head_lead, 0.2 * eta) if eta is not None else t.head_lead
        if now < self.predicted - lead:
            return self.predicted - lead
        late = now - self.predicted - t.head_window
        if late <= 0:
            return now + t.head_interval
        return now + min(t.interval_min, t.head_interval * (1.0 + late / t.head_window))

    # --- the end ---------------------------------------------------------------------------------------------
    def timed_out(self, now: float) -> bool:
        """True once the deadline has passed and no last fetch is owed; owing one, it becomes due at now."""
        if now < self.deadline:
            return False
        if self.can_fetch and not self.final_check and now - self.last_fetch > self.timing.head_interval:
            self.final_check = True  # one last look before giving up (the eta may have been past the deadline)
            self.next_fetch = now
            return False
        return True

    def wake_at(self) -> float:
        """The monotonic time at which something is due next (a fetch, a probe or the deadline)."""
        return min(self.next_fetch, self.next_probe if self.probing else math.inf, self.deadline)


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
