"""This Blender session's one JobRunner and client, the settings it runs with, and where its files live.

Everything else in blender/ asks this module for the runner instead of keeping its own. The job-tracking sets
(`state.active`, `state.pending_imports` ...) live here too because they belong to the runner: they are
reset with it, and the client is only swapped under running jobs when none are active.
"""

import hashlib
import os
import sys
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..api import Category, ModelsLabError
from ..api.errors import invalid_input
from . import compat
from .preferences import Settings, get_settings

if TYPE_CHECKING:
    from ..api.client import ModelsLabClient
    from ..api.jobs import JobRunner
    from ..api.journal import JobJournal
    from ..api.records import JobRecord


class SessionState:
    """What the session holds between calls (a plain class: cheap to define at enable time)."""

    def __init__(self) -> None:
        self.runner: JobRunner | None = None
        self.client_signature: tuple | None = None
        self.overrides: dict[str, Any] = {}
        self.resumed = False  # the journal's unfinished jobs were taken over by this runner
        self.pending_imports: deque[str] = deque()
        self.active: set[str] = set()  # jobs not settled yet (from events)
        self.hidden: set[str] = set()  # cleared from the list by the user
        self.submitted_here: set[str] = set()  # submitted in this session (their extra["auto_import"] applies)

    def forget_jobs(self) -> None:
        """Drop the tracking of the current runner's jobs (it is going away)."""
        self.active.clear()
        self.pending_imports.clear()
        self.submitted_here.clear()
        self.resumed = False


state = SessionState()


# --- settings ------------------------------------------------------------------------------------------------------
def settings() -> Settings:
    """Effective settings: preferences (or defaults + env) with configure() overrides applied."""
    base = get_settings()
    return base.replace(**state.overrides) if state.overrides else base


def configure(**overrides: Any) -> None:
    """Override settings for this session (scripts/batch): base_url, flavor, max_concurrent_jobs, poll_timeout,
    cache_dir, auto_import, ... (any preferences.Settings field; None removes an override).

    A running runner takes the new concurrency, poll timeout and cache folder at once (for work it starts
    from now on); the client follows the new base URL/flavour/key on next use.
    """
    unknown = set(overrides) - set(Settings.FIELDS)
    if unknown:
        raise invalid_input(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    for key, value in overrides.items():
        if value is None:
            state.overrides.pop(key, None)
        else:
            state.overrides[key] = value.strip().rstrip("/") if key == "base_url" else value
    runner = peek_runner()
    if runner is not None:
        current = settings()
        runner.max_workers = int(current.max_concurrent_jobs)
        runner.poll_timeout = float(current.poll_timeout)
        wanted = cache_dir(current).expanduser().absolute()
        if Path(getattr(runner.cache, "directory", wanted)) != wanted:
            from ..api import MeshCache

            runner.cache = MeshCache(wanted)


def configure_batch(
    base_url: str | None = None,
    flavor: str | None = None,
    max_workers: int | None = None,
    poll_timeout: float | None = None,
) -> "JobRunner":
    """configure() for the headless batch (this process only, never written to the preferences); the runner."""
    configure(base_url=base_url, flavor=flavor, max_concurrent_jobs=max_workers, poll_timeout=poll_timeout)
    return get_runner()


# --- folders -------------------------------------------------------------------------------------------------------
def user_dir() -> Path:
    """The add-on's user directory (see compat.user_dir)."""
    return compat.user_dir()


def journal_dir() -> Path:
    """Where the job journal lives: <user dir>/jobs."""
    return user_dir() / "jobs"


def uploads_dir() -> Path:
    """Where re-encoded copies of local images wait for their upload: <user dir>/uploads."""
    return user_dir() / "uploads"


def cache_dir(current: Settings | None = None) -> Path:
    """The mesh cache: the preference, else <user dir>/meshes."""
    current = current or settings()
    return Path(current.cache_dir) if current.cache_dir else user_dir() / "meshes"


# --- client and runner ---------------------------------------------------------------------------------------------
def _signature(current: Settings) -> tuple:
    key_hash = hashlib.sha256(current.api_key.encode()).hexdigest() if current.api_key else ""
    return (key_hash, current.base_url, current.flavor, current.ca_bundle, current.proxy)


def make_client(current: Settings | None = None) -> "ModelsLabClient":
    """A new ModelsLabClient for the settings (imports requests on first use)."""
    from ..api.client import ClientConfig, ModelsLabClient

    current = current or settings()
    config = ClientConfig(
        base_url=current.base_url,
        flavor=current.flavor,
        ca_bundle=current.ca_bundle or None,
        proxy=current.proxy or None,
    )
    return ModelsLabClient(current.api_key, config)


def check_ready(current: Settings | None = None) -> Settings:
    """Raise the categorised error that stops any request: no key (auth), online access off (offline)."""
    current = current or settings()
    if not current.api_key:
        raise ModelsLabError(
            Category.AUTH,
            "No API key is set.",
            "Enter your key in Preferences > Add-ons > ModelsLab, or set MODELSLAB_API_KEY.",
        )
    compat.check_online_access(current.base_url)
    return current


def peek_runner() -> "JobRunner | None":
    """The runner if one was started (never creates one)."""
    runner = state.runner
    return runner if runner is not None and not runner.closed else None


def get_runner() -> "JobRunner":
    """The session's JobRunner, created on first use; its client follows the current settings."""
    current = settings()
    runner = peek_runner()
    signature = _signature(current)
    if runner is None:
        from ..api import JobJournal, JobRunner, MeshCache

        cache = MeshCache(cache_dir(current))
        runner = JobRunner(
            make_client(current),
            JobJournal(journal_dir()),
            cache,
            max_workers=int(current.max_concurrent_jobs),
            poll_timeout=float(current.poll_timeout),
        )
        state.runner = runner
        state.client_signature = signature
        state.resumed = False
        if current.cache_retention_days > 0:
            try:
                runner.prune_cache(current.cache_retention_days)  # keeps the meshes of jobs not imported yet
            except (OSError, ModelsLabError) as exc:
                print(f"ModelsLab: could not prune the mesh cache: {exc}", file=sys.stderr)
    elif signature != state.client_signature:
        old = runner.client
        runner.client = make_client(current)
        state.client_signature = signature
        if not state.active:
            old.close()
    return runner


def shutdown_runner(wait: bool = True, timeout: float = 10.0) -> None:
    """Stop the runner (joins its threads when wait); unfinished jobs stay journaled."""
    runner = state.runner
    state.runner = None
    state.client_signature = None
    state.forget_jobs()
    if runner is not None:
        runner.shutdown(wait=wait, timeout=timeout)
        try:
            runner.client.close()
        except Exception as exc:  # closing sessions must not stop unregister
            print(f"ModelsLab: closing the client failed: {exc}", file=sys.stderr)


# --- the journal ---------------------------------------------------------------------------------------------------
def journal() -> "JobJournal":
    """The journal of this user directory (the runner's when one runs)."""
    runner = peek_runner()
    if runner is not None:
        return runner.journal
    from ..api import JobJournal

    return JobJournal(journal_dir())


def journal_has_files() -> bool:
    """Whether any job was ever journaled here (cheap: no api module is imported)."""
    try:
        with os.scandir(journal_dir()) as entries:
            return any(entry.name.endswith(".json") for entry in entries)
    except OSError:
        return False


def get_record(local_id: str) -> "JobRecord | None":
    """A copy of a job's record from the runner or the journal."""
    runner = peek_runner()
    if runner is not None:
        return runner.get(local_id)
    try:
        return journal().load(local_id)
    except ModelsLabError:
        return None
