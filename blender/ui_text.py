"""The words the sidebar shows: durations, time left, job names, error sentences and notices.

Pure functions (stdlib only, no bpy), so they are unit-tested without Blender; the panels and rows pass in
plain values (times in seconds since the epoch, record fields) and get text and bar fractions back.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SETTLED = ("downloaded", "imported", "failed", "cancelled", "timed_out")
BEFORE_SERVER = ("queued", "uploading", "submitting")
# Where the bar stands when the server has the job, and how far it may go before the result is there.
BAR_SUBMITTED = 0.1
BAR_DUE = 0.85
BAR_LATE_MAX = 0.95
_CATEGORY_TAG = re.compile(r"^\s*\[[a-z_]+\]\s*")
_IDENTIFIER = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")


DAY_SECONDS = 86400.0


def duration(seconds: float) -> str:
    """A short human duration: 6s, 2m 05s, 1h 03m; anything past a day (a server's absurd eta) is "over a day"."""
    if not seconds < DAY_SECONDS:  # also inf and nan: never a 300-character label or an OverflowError
        return "over a day" if seconds == seconds and seconds > 0 else "0s"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def settled_at(state: str, history: Sequence[Sequence[Any]], updated_at: float, downloaded_at: float | None) -> float:
    """When the job itself ended: its first settled state in the history (a later re-import or a mark on the
    record does not move it); the download time for a downloaded/imported job; updated_at as the last resort."""
    if state in ("downloaded", "imported") and downloaded_at:
        return float(downloaded_at)
    for entry in history:
        if entry and len(entry) > 1 and entry[0] in SETTLED:
            try:
                return float(entry[1])
            except (TypeError, ValueError):
                continue
    return float(updated_at)


def predicted_finish(
    state: str, eta: float | None, submitted_at: float | None, updated_at: float, previous: float = 0.0
) -> float:
    """When the server should be done (seconds since the epoch; 0 when unknown).

    The submit's eta counts from submitted_at; a later status answer's eta counts from when it came
    (updated_at). `previous` is kept while the eta did not change (other updates move updated_at)."""
    if eta is None or eta < 0 or state not in ("submitted", "processing"):
        return 0.0
    if previous:
        return previous
    start = submitted_at if state == "submitted" and submitted_at else updated_at
    return float(start) + float(eta)


def progress_view(
    now: float, state: str, progress: float, submitted_at: float, due: float, created_at: float
) -> tuple[float, str]:
    """(bar fraction, short bar text) for a running job: time left counting down to the predicted finish, then
    "Taking longer than expected"; the bar moves with elapsed/expected between BAR_SUBMITTED and BAR_DUE."""
    if state in BEFORE_SERVER:
        words = {"queued": "Waiting to start", "uploading": "Uploading the image", "submitting": "Submitting"}
        return max(0.0, min(progress, BAR_SUBMITTED)), words[state]
    if state == "downloading":
        return max(progress, BAR_DUE), "Downloading the mesh"
    start = submitted_at or created_at
    elapsed = max(0.0, now - start)
    if not due or due <= start:
        return max(progress, BAR_SUBMITTED), f"Processing, {duration(elapsed)} so far"
    expected = due - start
    left = due - now
    if left > 0:
        fraction = BAR_SUBMITTED + (BAR_DUE - BAR_SUBMITTED) * (elapsed / expected)
        text = f"About {duration(math.ceil(left))} left" if left < DAY_SECONDS else "More than a day left"
        return max(min(progress, BAR_DUE), fraction), text
    late = elapsed / expected  # >= 1: creeps toward BAR_LATE_MAX, never reaches it
    fraction = BAR_DUE + (BAR_LATE_MAX - BAR_DUE) * (1.0 - 1.0 / late)
    return fraction, "Taking longer than expected"


def timing_line(now: float, submitted_at: float, due: float, created_at: float) -> str:
    """The details' line under the bar: how long the job has run, and how long the server said it would take."""
    elapsed = f"Elapsed {duration(now - created_at)}"
    start = submitted_at or created_at
    if not due or due <= start:
        return elapsed
    return f"{elapsed}, expected {duration(due - start)}"


def short_progress(now: float, state: str, submitted_at: float, due: float) -> str:
    """The list row's compact note for a running job: seconds left ("12s"), "late", or nothing."""
    if state not in ("submitted", "processing") or not due:
        return ""
    left = due - now
    if not left > 0:
        return "late"
    return duration(math.ceil(left)) if left < DAY_SECONDS else "over a day"


def numbered_names(names: Iterable[str]) -> list[str]:
    """Tell repeated names apart in list order: duck_512, duck_512 (2), duck_512 (3)."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return result


def people_words(text: str, labels: Mapping[str, str]) -> str:
    """Replace API field names (remove_bg) by the labels the sidebar shows ("Remove Background")."""

    def label(match: re.Match[str]) -> str:
        word = match.group(0)
        return f'"{labels[word]}"' if word in labels else word

    return _IDENTIFIER.sub(label, text)


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if text and text[-1] not in ".!?:":
        text += "."
    return text[:1].upper() + text[1:]


def people_error(message: str, fix: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """(what went wrong, what to do) as whole sentences in the sidebar's words; no category tag."""
    message = _CATEGORY_TAG.sub("", message or "")
    return _sentence(people_words(message, labels)), _sentence(people_words(fix or "", labels))


def wrap(text: str, width: int) -> list[str]:
    """Lines of at most width characters (at least one line)."""
    return textwrap.wrap(text, max(8, width)) or [""]


def finished_notice(name: str, state: str, object_name: str, took: float, message: str) -> tuple[str, str] | None:
    """(level, text) for the status bar when a job ends, or None for states that need no notice."""
    if state == "imported":
        return "INFO", f"ModelsLab: {name} imported as {object_name} (took {duration(took)})"
    if state == "downloaded":
        return "INFO", f"ModelsLab: {name} is ready to import (took {duration(took)}); see the ModelsLab tab"
    if state == "failed":
        return "WARNING", f"ModelsLab: {name} failed: {_sentence(message)} See the ModelsLab tab."
    if state == "timed_out":
        return "WARNING", f"ModelsLab: {name} is still processing on the server; Resume it in the ModelsLab tab"
    return None


def cleared_text(count: int) -> str:
    """What Clear Finished reports."""
    if count == 0:
        return "No finished jobs to clear"
    return f"Cleared {count} finished job{'s' if count != 1 else ''} (their meshes stay in the cache)"


def resume_text(count: int) -> str:
    """What Resume reports."""
    if count == 0:
        return "Nothing to resume: no unfinished jobs"
    return f"Resuming {count} unfinished job{'s' if count != 1 else ''}"


def money_text(charged: int, balance: Any, currency: str = "") -> str:
    """The sidebar's line about this session's spending."""
    jobs = f"{charged} job{'s' if charged != 1 else ''} may have been charged this session"
    if balance is None or balance == "":
        return jobs
    amount = f"{balance:.2f}" if isinstance(balance, (int, float)) else str(balance)
    return f"{jobs}; balance {amount} {currency}".rstrip()
