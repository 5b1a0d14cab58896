"""This Blender session's one JobRunner and client, the settings it runs with, and where its files live.

Everything else in blender/ asks this module for the runner instead of keeping its own. The job-tracking sets
(`state.active`, `state.pending_imports` ...) live here too because they belong to the runner: they are
reset with it, and the client is only swapped under running jobs when none are active.

Several processes (Blenders, batches) may share the user folder. This process's session lock in
`<user dir>/sessions/` marks the jobs it runs as its own (api.ownership); ownership() tells the UI whose a job
is, and money() what this session spent (the shared ledger file, the wallet balance).
"""

import hashlib
import os
import sys
import threading
import time
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
    from ..api.ledger import Ledger
    from ..api.ownership import SessionLock
    from ..api.records import JobRecord

OWNER_RECHECK = 2.0  # seconds an answer to "is that process alive?" is reused before asking the OS again
MINE, OTHER, RECOVERED = "mine", "other", "recovered"


class Money:
    """What this session spent: jobs that may have been charged, and the wallet balance at start and now."""

    def __init__(self) -> None:
        self.charged: set[str] = set()  # jobs submitted in this session that settled and may have been charged
        self.ledgered: dict[str, str] = {}  # local id -> the settled state last written to the ledger
        self.balance_at_start: dict[str, Any] | None = None
        self.balance: dict[str, Any] | None = None
        self.balance_error = ""
        self.checked_at = 0.0
        self.thread: threading.Thread | None = None
        self.again = False  # a refresh was asked for while one was running
        self.lock = threading.Lock()


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
        self.lock: SessionLock | None = None  # this process's claim on its jobs (api.ownership)
        self.owners_seen: dict[str, tuple[bool, float]] = {}  # session id -> (alive, when checked)
        self.foreign: dict[str, JobRecord] = {}  # unfinished jobs another live process owns, as last read
        self.recovered: set[str] = set()  # jobs this process took over from a closed session
        self.money = Money()

    def forget_jobs(self) -> None:
        """Drop the tracking of the current runner's jobs (it is going away)."""
        self.active.clear()
        self.pending_imports.clear()
        self.submitted_here.clear()
        self.foreign.clear()
        self.recovered.clear()
        self.owners_seen.clear()
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


def sessions_dir() -> Path:
    """Where each process holds the lock that marks its jobs as its own: <user dir>/sessions."""
    return user_dir() / "sessions"


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


def get_runner(*, prune: bool = True) -> "JobRunner":
    """The session's JobRunner, created on first use; its client follows the current settings.

    A new runner prunes the mesh cache first unless prune=False (the caller then runs prune_cache() itself,
    e.g. on a worker thread: it reads the whole journal)."""
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
            owner=session_lock(),
        )
        state.runner = runner
        state.client_signature = signature
        state.resumed = False
        if prune:
            prune_cache(runner, current)
    elif signature != state.client_signature:
        old = runner.client
        runner.client = make_client(current)
        state.client_signature = signature
        if not state.active:
            old.close()
    return runner


def prune_cache(runner: "JobRunner", current: Settings) -> None:
    """Delete cached meshes older than the retention (keeping those of jobs not imported yet) and forget finished
    jobs as old from the journal, so the journal read at every start stays small; never raises."""
    if current.cache_retention_days > 0:
        try:
            runner.prune_cache(current.cache_retention_days)
            runner.journal.prune(current.cache_retention_days)
        except (OSError, ModelsLabError) as exc:
            print(f"ModelsLab: could not prune the mesh cache or the job journal: {exc}", file=sys.stderr)


def shutdown_runner(wait: bool = True, timeout: float = 10.0) -> None:
    """Stop the runner (joins its threads when wait); unfinished jobs stay journaled."""
    runner = state.runner
    state.runner = None
    state.client_signature = None
    state.forget_jobs()
    if runner is not None:
        runner.shutdown(wait=wait, timeout=timeout)
        for event in runner.drain_events():  # settled after the last pump: the ledger still hears of them
            if event.record.is_settled:
                note_settled(event.record)
        try:
            runner.client.close()
        except Exception as exc:  # closing sessions must not stop unregister
            print(f"ModelsLab: closing the client failed: {exc}", file=sys.stderr)
    balance_thread = state.money.thread
    if wait and balance_thread is not None:
        balance_thread.join(timeout)  # one wallet request at most: the client's own timeouts bound it
    lock, state.lock = state.lock, None
    if lock is not None:
        lock.release()  # this process's unfinished jobs may now be taken over by another one


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


# --- ownership across processes ------------------------------------------------------------------------------------
def session_lock() -> "SessionLock":
    """This process's session lock in sessions_dir(), created on first use and held until shutdown_runner()."""
    lock = state.lock
    if lock is None or not lock.held:
        from ..api.ownership import SessionLock

        lock = state.lock = SessionLock(sessions_dir())
    return lock


def owner_alive(session_id: str | None, *, fresh: bool = False) -> bool:
    """Whether another live process holds session_id (this process counts too); answers are reused for
    OWNER_RECHECK seconds unless fresh (the background re-check asks fresh)."""
    if not session_id:
        return False
    now = time.monotonic()
    seen = state.owners_seen.get(session_id)
    if seen is not None and not fresh and now - seen[1] < OWNER_RECHECK:
        return seen[0]
    alive = session_lock().owner_alive(session_id)
    state.owners_seen[session_id] = (alive, now)
    return alive


def ownership_of(local_id: str) -> str:
    """ownership() by job id without reading any file (for drawing rows): what this session last learnt."""
    if local_id in state.foreign:
        return OTHER
    return RECOVERED if local_id in state.recovered else MINE


def ownership(record: "JobRecord") -> str:
    """ "other": a live other process (another Blender or a batch) owns the job: view only, never touched here;
    "recovered": this process took it over from a session that closed or crashed; "mine": everything else."""
    lock = state.lock
    mine = lock.session_id if lock is not None and lock.held else None
    if record.owner and record.owner != mine and owner_alive(record.owner):
        return OTHER
    if getattr(record, "adopted_from_closed_session", False) or (record.extra or {}).get("recovered"):
        return RECOVERED
    return MINE


def current_blend_file() -> str:
    """The open .blend's absolute path ("" while it was never saved)."""
    import bpy

    return str(bpy.data.filepath or "")


def asked_from_here(record: "JobRecord") -> bool:
    """True when the job was started from the .blend open now (an unsaved file matches nothing)."""
    started_from = str((record.extra or {}).get("blend_file") or "")
    current = current_blend_file()
    if not started_from or not current:
        return False
    return os.path.normcase(os.path.abspath(started_from)) == os.path.normcase(os.path.abspath(current))


# --- money ---------------------------------------------------------------------------------------------------------
def ledger() -> "Ledger":
    """The ledger shared by every process using this user folder: <user dir>/ledger.jsonl."""
    from ..api.ledger import LEDGER_NAME, Ledger

    return Ledger(user_dir() / LEDGER_NAME)


def note_settled(record: "JobRecord") -> None:
    """A job reached a settled state here: one ledger line per (job, state), and the session's count of
    jobs that may have been charged (main thread; a ledger that cannot be written is reported, never fatal)."""
    from ..api.records import may_have_been_charged

    money = state.money
    state_text = str(record.state)
    if money.ledgered.get(record.local_id) == state_text:
        return
    money.ledgered[record.local_id] = state_text
    try:
        ledger().record(record)
    except ModelsLabError as exc:
        print(f"ModelsLab: {exc.message}", file=sys.stderr)
    if record.local_id in state.submitted_here and may_have_been_charged(record):
        money.charged.add(record.local_id)


def wallet_balance_now() -> "dict[str, Any] | None":
    """Ask the server for the wallet balance (blocking, main thread); None when it cannot be had (never raises).
    The first answer of the session is kept as the balance at start."""
    try:
        current = check_ready()
    except ModelsLabError as exc:
        _note_balance(None, exc.message)
        return None
    runner = peek_runner()
    if runner is not None:
        return _ask_balance(runner.client)
    client = make_client(current)
    try:
        return _ask_balance(client)
    finally:
        client.close()


def _ask_balance(client: "ModelsLabClient") -> "dict[str, Any] | None":
    """client.wallet_balance() noted in state.money; None on any failure (no bpy: runs on worker threads too)."""
    try:
        answer = dict(client.wallet_balance())
    except ModelsLabError as exc:
        _note_balance(None, exc.message)
        return None
    except Exception as exc:  # the balance is information: it never stops work
        _note_balance(None, str(exc)[:200])
        return None
    _note_balance(answer, "")
    return answer


def _note_balance(answer: "dict[str, Any] | None", error: str) -> None:
    money = state.money
    with money.lock:
        money.balance_error = error
        if answer is not None:
            if money.balance_at_start is None:
                money.balance_at_start = dict(answer)
            money.balance = dict(answer)
            money.checked_at = time.time()


def refresh_balance() -> None:
    """Ask for the wallet balance on a worker thread (main thread call; at most one request at a time, and one
    asked for meanwhile runs after it). Uses the runner's client, or one of its own closed afterwards."""
    money = state.money
    try:
        current = check_ready()
    except ModelsLabError as exc:
        _note_balance(None, exc.message)
        return
    with money.lock:
        if money.thread is not None and money.thread.is_alive():
            money.again = True
            return
        money.again = False
    runner = peek_runner()
    client = runner.client if runner is not None else make_client(current)
    own_client = runner is None

    def work() -> None:
        try:
            while True:
                _ask_balance(client)
                with money.lock:
                    if not money.again:
                        return
                    money.again = False
        finally:
            if own_client:
                client.close()

    thread = threading.Thread(target=work, name="modelslab-wallet", daemon=True)
    money.thread = thread
    thread.start()


def money() -> dict[str, Any]:
    """This session's money for the sidebar and the batch summary: charged_jobs (submitted here, may have been
    charged), balance / balance_at_start ({"balance", "currency"} or None), spent (start - now, when both are
    known), balance_error (why the balance is unknown) and the ledger file's path."""
    data = state.money
    with data.lock:
        start = dict(data.balance_at_start) if data.balance_at_start else None
        now = dict(data.balance) if data.balance else None
        error = data.balance_error
        checked = data.checked_at
    spent = None
    if start and now and start.get("currency") == now.get("currency"):
        spent = round(float(start["balance"]) - float(now["balance"]), 6)
    return {
        "charged_jobs": len(data.charged),
        "balance": now,
        "balance_at_start": start,
        "spent": spent,
        "balance_error": error,
        "balance_checked_at": checked,
        "ledger": str(ledger().path),
    }
