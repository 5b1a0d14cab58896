"""The job record the journal stores and the events the runner publishes (stdlib only, no I/O)."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import Category
from .textenum import TextEnum


class JobState(TextEnum):
    """Where a job is in its life; the value is what the journal and events carry."""

    QUEUED = "queued"
    UPLOADING = "uploading"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    PROCESSING = "processing"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    IMPORTED = "imported"
    TIMED_OUT = "timed_out"  # still processing on the server: resumable
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({JobState.IMPORTED, JobState.FAILED, JobState.CANCELLED})
SETTLED_STATES = TERMINAL_STATES | {JobState.DOWNLOADED, JobState.TIMED_OUT}


@dataclass
class JobRecord:
    """Everything known about one job; exactly what the journal stores (JSON). Never holds the API key."""

    local_id: str
    name: str
    source: str
    params: dict[str, Any]
    base_url: str
    flavor: str
    state: str = JobState.QUEUED.value
    image_url: str | None = None
    remote_id: str | None = None
    eta: float | None = None
    future_links: list[str] = field(default_factory=list)
    output_urls: list[str] = field(default_factory=list)
    proxy_links: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    file_path: str | None = None
    file_bytes: int | None = None
    object_name: str | None = None
    error: dict[str, str] | None = None
    message: str = ""  # the latest human-readable status line (survives restarts, unlike events)
    progress: float = 0.0
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    submitted_at: float | None = None
    downloaded_at: float | None = None
    history: list[list[Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # the session id (api.ownership) of the process working on the job
    adopted_from_closed_session: bool = False  # taken over after the process that started it ended

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe deep copy of the fields."""
        data = asdict(self)
        data["state"] = str(self.state)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Rebuild a record; unknown keys are ignored, wrong types raise ValueError/TypeError."""
        if not isinstance(data, dict):
            raise TypeError("a job record must be a JSON object")
        for name in ("local_id", "name", "source", "base_url", "flavor"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"job record field {name!r} is missing or not text")
        state = JobState(data.get("state", JobState.QUEUED.value)).value
        known = {f.name for f in fields(cls)}
        values = {k: copy.deepcopy(v) for k, v in data.items() if k in known}
        values["state"] = state
        for name in ("params", "meta", "extra"):
            if not isinstance(values.get(name, {}), dict):
                raise ValueError(f"job record field {name!r} is not an object")
        values.setdefault("params", {})
        for name in ("future_links", "output_urls", "proxy_links", "history"):
            if not isinstance(values.get(name, []), list):
                raise ValueError(f"job record field {name!r} is not a list")
        if values.get("remote_id") is not None:
            values["remote_id"] = str(values["remote_id"])
        if values.get("owner") is not None and not isinstance(values["owner"], str):
            raise ValueError("job record field 'owner' is not text")
        values["adopted_from_closed_session"] = bool(values.get("adopted_from_closed_session", False))
        return cls(**values)

    def copy(self) -> JobRecord:
        """An independent deep copy (events and callers get these, never the runner's own record)."""
        return copy.deepcopy(self)

    @property
    def is_terminal(self) -> bool:
        """Imported, failed or cancelled: nothing more will happen."""
        return self.state in TERMINAL_STATES

    @property
    def is_settled(self) -> bool:
        """The runner has nothing more to do (terminal, downloaded, or timed out)."""
        return self.state in SETTLED_STATES

    @property
    def was_submitted(self) -> bool:
        """True when a submit may have reached the server (so credits may have been spent)."""
        return self.remote_id is not None or any(entry and entry[0] == JobState.SUBMITTING for entry in self.history)


# Answers that mean the server refused the submit (or nothing was sent): no job, no charge.
_REFUSED = frozenset(
    c.value for c in (Category.RATE_LIMITED, Category.INVALID_INPUT, Category.AUTH, Category.CREDITS, Category.OFFLINE)
)


def may_have_been_charged(record: JobRecord) -> bool:
    """Whether the job may have cost credits: it has a remote id, or a submit may have reached the server
    (record.was_submitted) and did not end in a refusal (rate limit, invalid input, auth, credits, offline)."""
    if record.remote_id:
        return True
    if (record.error or {}).get("category") in _REFUSED:
        return False
    return record.was_submitted


@dataclass
class JobEvent:
    """One change of a job, with a copy of its record taken when the event was made."""

    local_id: str
    state: str
    progress: float
    message: str
    record: JobRecord
