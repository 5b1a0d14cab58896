"""Work the session does off the main thread: preloading the client, the startup journal scan, and following
the jobs other processes own. Nothing here touches bpy; results reach the main thread through the queue that
blender.runtime drains on its timer (or in pump())."""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..api import ModelsLabError

if TYPE_CHECKING:
    from ..api.journal import JobJournal
    from ..api.ownership import SessionLock
    from ..api.records import JobRecord

FOREIGN_RECHECK = 2.0  # seconds between two looks at the jobs another live process owns
Found = list[tuple[str, "JobRecord | None", bool]]  # (job id, its record or None, is its owner alive)


def prewarm_imports() -> None:
    """Import the HTTP client and job modules (requests, urllib3 ...) so the first Generate click does not
    stall the UI on them. Pure imports: no bpy, no network."""
    try:
        from ..api import cache, client, jobs, journal  # noqa: F401
    except Exception as exc:  # the first real use reports any problem properly
        print(f"ModelsLab: preloading the client failed: {exc}", file=sys.stderr)


def scan_journal(
    runner: Any,
    current: Any,
    jobs: JobJournal,
    lock: SessionLock,
    prune_cache: Callable[[Any, Any], None],
    horizon_seconds: float,
    max_rows: int,
) -> tuple[list[JobRecord], list[JobRecord], list[JobRecord], set[str]]:
    """Resume this process's (and orphaned) unfinished jobs, find those other live processes own, prune, and
    collect recent jobs for the list: (resumed, foreign, recent, every known id)."""
    if runner is not None:
        resumed = runner.resume_unfinished()
        foreign = runner.foreign()
        prune_cache(runner, current)  # the mesh cache and the journal's old finished jobs
    else:
        resumed = []
        foreign = [r for r in jobs.unfinished() if r.owner != lock.session_id and lock.owner_alive(r.owner)]
    everything = jobs.all()
    horizon = time.time() - horizon_seconds
    recent = [r for r in everything if not r.is_terminal or r.updated_at > horizon][-max_rows:]
    return resumed, foreign, recent, {r.local_id for r in everything}


def follow_journal(
    jobs: JobJournal,
    stop: threading.Event,
    known: set[str],
    inbox: queue.Queue[tuple[str, Any]],
    current_lock: Callable[[], SessionLock | None],
    watched_ids: Callable[[], set[str]],
) -> None:
    """Thread body: every FOREIGN_RECHECK seconds list the journal folder (names only), read just the files not
    seen before and those of other processes' running jobs, and post ("foreign", found) when there is news."""
    seen = set(known)

    def look(lock: SessionLock) -> Found:
        try:
            with os.scandir(jobs.directory) as entries:
                names = [entry.name[: -len(".json")] for entry in entries if entry.name.endswith(".json")]
        except OSError:
            names = []
        watched = watched_ids()
        found: Found = []
        for local_id in [name for name in names if name not in seen] + sorted(watched):
            try:
                record = jobs.load(local_id)
            except ModelsLabError:
                record = None
            if local_id not in watched:
                seen.add(local_id)
                if record is None or record.is_terminal or record.owner == lock.session_id:
                    continue  # finished, or this process's own: nothing to follow
            alive = record is not None and lock.owner_alive(record.owner)
            found.append((local_id, record, alive))
        return found

    while not stop.wait(FOREIGN_RECHECK):
        lock = current_lock()
        if lock is None or not lock.held:
            continue  # no runner at the moment (e.g. after modelslab.shutdown())
        try:
            found = look(lock)
        except Exception:  # keep following: one unreadable file must not end the watch
            traceback.print_exc()
            continue
        if found:
            inbox.put(("foreign", found))
