"""The one JobRunner of this Blender session and the main-thread side of it.

Used by the operators, the panels, the script API and the headless batch alike, so all of them run the
same code. Worker threads (api.jobs) never touch bpy; everything here runs on Blender's main thread:
- interactive sessions: a `bpy.app.timers` callback drains the runner's events (bounded per tick),
  updates the WindowManager job rows, tags the sidebar for redraw and imports at most one mesh per tick;
- background sessions (`blender -b`, the bpy module): timers never fire, so callers block in
  `wait_for()` / `wait_any()` and import with `import_job()`.
"""

import hashlib
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bpy

from ..api import Category, GenerationParams, ModelsLabError
from ..api.errors import invalid_input
from ..api.params import check_http_url, is_url
from . import compat
from .preferences import Settings, get_settings

if TYPE_CHECKING:
    from ..api.jobs import JobEvent, JobRecord, JobRunner

_API_PACKAGE = (__package__ or "modelslab_3d.blender").rpartition(".")[0] + ".api"
MAX_EVENTS_PER_TICK = 32
ACTIVE_INTERVAL = 0.1  # seconds between ticks while jobs run
IDLE_INTERVAL = 1.0
REDRAW_EVERY = 1.0  # elapsed-time labels tick once a second
MAX_UPLOAD_BYTES = 5 << 20
MAX_ROWS = 50  # job rows rebuilt from the journal after a restart

# States as plain strings (api.jobs is imported lazily; JobState is a StrEnum, so they compare equal).
DOWNLOADED = "downloaded"
IMPORTED = "imported"
FAILED = "failed"
CANCELLED = "cancelled"
TIMED_OUT = "timed_out"
TERMINAL = frozenset({IMPORTED, FAILED, CANCELLED})
SETTLED = TERMINAL | {DOWNLOADED, TIMED_OUT}

EventCallback = Callable[["JobEvent"], None]


class _State:
    """Session state of the main-thread side (a plain class: cheap to define at enable time)."""

    def __init__(self) -> None:
        self.runner: JobRunner | None = None
        self.client_signature: tuple | None = None
        self.overrides: dict[str, Any] = {}
        self.pending_imports: deque[str] = deque()
        self.active: set[str] = set()  # jobs not settled yet (from events)
        self.hidden: set[str] = set()  # cleared from the list by the user
        self.submitted_here: set[str] = set()  # submitted in this session (their extra["auto_import"] applies)
        self.row_index: dict[str, int] = {}
        self.listeners: list[EventCallback] = []
        self.timer_on = False
        self.resumed = False
        self.last_redraw = 0.0
        self.registered = False
        self.prewarm: threading.Thread | None = None


_state = _State()


# --- settings, client, runner ------------------------------------------------------------------------------------
def settings() -> Settings:
    """Effective settings: preferences (or defaults + env) with configure() overrides applied."""
    base = get_settings()
    return base.replace(**_state.overrides) if _state.overrides else base


def configure(**overrides: Any) -> None:
    """Override settings for this session (scripts/batch): base_url, flavor, max_concurrent_jobs, poll_timeout,
    cache_dir, auto_import, ... (any preferences.Settings field; None removes an override).

    A running runner takes the new concurrency, poll timeout and cache folder at once (for work it starts
    from now on); the client follows the new base URL/flavour/key on next use.
    """
    names = set(Settings.FIELDS)
    unknown = set(overrides) - names
    if unknown:
        raise invalid_input(f"Unknown setting(s): {', '.join(sorted(unknown))}.")
    for key, value in overrides.items():
        if value is None:
            _state.overrides.pop(key, None)
        else:
            _state.overrides[key] = value.strip().rstrip("/") if key == "base_url" else value
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


def user_dir() -> Path:
    """The add-on's user directory (see compat.user_dir)."""
    return compat.user_dir()


def journal_dir() -> Path:
    """Where the job journal lives: <user dir>/jobs."""
    return user_dir() / "jobs"


def cache_dir(current: Settings | None = None) -> Path:
    """The mesh cache: the preference, else <user dir>/meshes."""
    current = current or settings()
    return Path(current.cache_dir) if current.cache_dir else user_dir() / "meshes"


def _signature(current: Settings) -> tuple:
    key_hash = hashlib.sha256(current.api_key.encode()).hexdigest() if current.api_key else ""
    return (key_hash, current.base_url, current.flavor, current.ca_bundle, current.proxy)


def make_client(current: Settings | None = None) -> Any:
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
    runner = _state.runner
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
        _state.runner = runner
        _state.client_signature = signature
        _state.resumed = False
        if current.cache_retention_days > 0:
            # prune_cache keeps the meshes of jobs not imported yet; older api versions only have cache.prune
            prune = getattr(runner, "prune_cache", None) or cache.prune
            try:
                prune(current.cache_retention_days)
            except (OSError, ModelsLabError) as exc:
                print(f"ModelsLab: could not prune the mesh cache: {exc}", file=sys.stderr)
    elif signature != _state.client_signature:
        old = runner.client
        runner.client = make_client(current)
        _state.client_signature = signature
        if not _state.active:
            old.close()
    return runner


def shutdown_runner(wait: bool = True, timeout: float = 10.0) -> None:
    """Stop the runner (joins its threads when wait); unfinished jobs stay journaled."""
    runner = _state.runner
    _state.runner = None
    _state.client_signature = None
    _state.active.clear()
    _state.pending_imports.clear()
    _state.submitted_here.clear()
    _state.resumed = False
    if runner is not None:
        runner.shutdown(wait=wait, timeout=timeout)
        try:
            runner.client.close()
        except Exception as exc:  # closing sessions must not stop unregister
            print(f"ModelsLab: closing the client failed: {exc}", file=sys.stderr)


# --- input ---------------------------------------------------------------------------------------------------------
class ImageInput:
    """A resolved image: `source` is what the runner gets (URL or local file), `original` what the user gave."""

    __slots__ = ("source", "name", "original", "is_url")

    def __init__(self, source: str, name: str, original: str, is_url: bool) -> None:
        self.source = source
        self.name = name
        self.original = original
        self.is_url = is_url


def resolve_image(image: str) -> ImageInput:
    """Validate an image argument: http(s) URL, absolute/relative path or `//`-relative to the saved .blend.

    Local images the service cannot take (over 5 MB, or a format Blender reads but the service does not) are
    re-encoded as PNG (downscaled if needed) with Blender's image API. Raises ModelsLabError(invalid_input).
    """
    text = (image or "").strip()
    if not text:
        raise invalid_input("No image was chosen.", "Choose an image file or enter an image URL.")
    if is_url(text):
        check_http_url(text, "image")
        stem = Path(text.split("?", 1)[0].rstrip("/")).stem
        return ImageInput(text, _clean_name(stem), text, True)
    if text.startswith("//"):
        if not bpy.data.filepath:
            raise invalid_input(
                f"The path {text} is relative to the .blend file, but this file has not been saved.",
                "Save the .blend file first, or use an absolute path.",
            )
        path = bpy.path.abspath(text)
    else:
        path = os.path.expanduser(text)
    path = os.path.normpath(os.path.abspath(path))
    if not os.path.isfile(path):
        raise invalid_input(f"Image file not found: {path}", "Check the path; the file may have been moved.")
    prepared = prepare_local_image(path)
    return ImageInput(prepared, _clean_name(Path(path).stem), path, False)


def _clean_name(stem: str) -> str:
    return stem.strip()[:63] or "image"


def prepare_local_image(path: str) -> str:
    """Return path, or a PNG re-encoded (and downscaled) by Blender under <user dir>/uploads when needed."""
    from ..api.images import check_image_file, sniff_image_type

    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    known_type = sniff_image_type(head) is not None
    if size <= MAX_UPLOAD_BYTES and known_type:
        check_image_file(path)
        return path
    try:
        check_image_file(path)
        api_error = None
    except ModelsLabError as error:
        api_error = error  # what is wrong with the file as it is, in the api's words
    try:
        return _reencode_png(path, size)
    except Exception as exc:
        if known_type and isinstance(exc, ModelsLabError):
            raise  # a picture that stays too big even downscaled: our message is the precise one
        if api_error is not None:
            raise api_error from exc
        raise invalid_input(f"Blender could not read the image {path}: {exc}") from exc


def _reencode_png(path: str, size: int) -> str:
    stat = os.stat(path)
    digest = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out_dir = user_dir() / "uploads"
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{digest}.png"
    if target.is_file() and 0 < target.stat().st_size <= MAX_UPLOAD_BYTES:
        return str(target)
    image = bpy.data.images.load(path, check_existing=False)
    try:
        size_px: Any = image.size
        width, height = int(size_px[0]), int(size_px[1])
        if width <= 0 or height <= 0:
            raise invalid_input(f"Blender could not read the image {path}.", "Convert it to PNG or JPEG.")
        scale = 1.0
        for _attempt in range(8):
            if scale < 1.0:
                new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
                if min(new_w, new_h) < 64:
                    break
                image.scale(new_w, new_h)
            image.filepath_raw = str(target)
            image.file_format = "PNG"
            image.save()
            written = target.stat().st_size
            if written <= MAX_UPLOAD_BYTES:
                print(f"ModelsLab: {os.path.basename(path)} ({size / (1 << 20):.1f} MB) re-encoded for upload")
                return str(target)
            scale *= max(0.3, min(0.85, (MAX_UPLOAD_BYTES / written) ** 0.5 * 0.95))
    finally:
        bpy.data.images.remove(image)
    target.unlink(missing_ok=True)
    raise invalid_input(
        f"The image {path} is {size / (1 << 20):.1f} MB and could not be made smaller than 5 MB.",
        "Resize or compress the image, or give an image URL instead.",
    )


def build_params(values: dict[str, Any], fallback: Any = None) -> GenerationParams:
    """GenerationParams from explicit values, then `fallback` (a scene.modelslab), then the defaults.

    Raises ModelsLabError(invalid_input) for unknown names or bad values.
    """
    names = {f.name for f in fields(GenerationParams)} - {"init_image"}
    unknown = set(values) - names
    if unknown:
        known = ", ".join(sorted(names))
        raise invalid_input(f"Unknown parameter(s): {', '.join(sorted(unknown))}.", f"Known parameters: {known}.")
    merged: dict[str, Any] = {}
    for name in names:
        if name in values and values[name] is not None:
            merged[name] = values[name]
        elif fallback is not None and hasattr(fallback, name):
            merged[name] = getattr(fallback, name)
        if isinstance(merged.get(name), float):  # bpy float properties are single precision: 0.85 -> 0.8500000238
            merged[name] = round(merged[name], 6)
    for name in ("webhook", "track_id"):
        if not merged.get(name):
            merged[name] = None
    params = GenerationParams.from_dict(merged)
    params.validate(require_image=False)
    return params


# --- submitting ----------------------------------------------------------------------------------------------------
def submit(
    image: str | ImageInput,
    params: GenerationParams,
    *,
    name: str | None = None,
    auto_import: bool | None = None,
    origin: str = "script",
    extra: dict[str, Any] | None = None,
) -> "JobRecord":
    """Validate everything (no request before that), then hand the job to the runner; returns its record.

    auto_import: whether the interactive timer imports the mesh when it arrives (default: the preference).
    """
    resolved = image if isinstance(image, ImageInput) else resolve_image(image)
    current = check_ready()
    runner = get_runner()
    want_import = current.auto_import if auto_import is None else bool(auto_import)
    job_extra = dict(extra or {})
    job_extra.update({"auto_import": want_import, "origin": origin, "original_source": resolved.original})
    record = runner.submit(resolved.source, params, name=name or resolved.name, extra=job_extra)
    _state.hidden.discard(record.local_id)
    _state.submitted_here.add(record.local_id)
    _state.active.add(record.local_id)
    pump(max_imports=0)
    ensure_timer()
    return record


def cancel(local_id: str) -> "JobRecord":
    """Stop waiting for a job (the server may still charge for it if it had accepted it)."""
    record = get_runner().cancel(local_id)
    pump(max_imports=0)
    _update_row(record)
    return record


def resume_job(local_id: str) -> "JobRecord":
    """Resume one job (poll again, never resubmit)."""
    check_ready()
    record = get_runner().resume(local_id)
    if record.state not in SETTLED:
        _state.active.add(local_id)
    pump(max_imports=0)
    ensure_timer()
    return record


def resume_unfinished() -> list["JobRecord"]:
    """Take over the journal's unfinished jobs once per runner (poll/download again; never resubmit)."""
    if not _journal_has_files():
        return []
    check_ready()
    runner = get_runner()
    if _state.resumed:
        return [r for r in runner.records() if not r.is_terminal]
    _state.resumed = True
    records = runner.resume_unfinished()
    for record in records:
        if record.state not in SETTLED:
            _state.active.add(record.local_id)
    pump(max_imports=0)
    ensure_timer()
    return records


def forget_finished() -> int:
    """Hide finished jobs from the list and drop their journal files; returns how many."""
    runner = peek_runner()
    removed = 0
    rows = _rows()
    ids = [row.local_id for row in rows] if rows is not None else []
    if runner is not None:
        ids += [r.local_id for r in runner.records() if r.local_id not in ids]
    for local_id in ids:
        record = runner.get(local_id) if runner is not None else _journal_load(local_id)
        if record is None or record.state not in TERMINAL:
            continue
        try:
            if runner is not None:
                runner.forget(local_id)
            else:
                _journal().delete(local_id)
        except ModelsLabError:
            continue
        _state.hidden.add(local_id)
        removed += 1
    sync_rows()
    return removed


def _journal() -> Any:
    from ..api import JobJournal

    return JobJournal(journal_dir())


def _journal_load(local_id: str) -> "JobRecord | None":
    runner = peek_runner()
    if runner is not None:
        return runner.get(local_id)
    try:
        return _journal().load(local_id)
    except ModelsLabError:
        return None


def get_record(local_id: str) -> "JobRecord | None":
    """A copy of a job's record from the runner or the journal."""
    return _journal_load(local_id)


def _journal_has_files() -> bool:
    try:
        with os.scandir(journal_dir()) as entries:
            return any(entry.name.endswith(".json") for entry in entries)
    except OSError:
        return False


# --- events --------------------------------------------------------------------------------------------------------
def add_listener(callback: EventCallback) -> None:
    """Call callback(event) on the main thread for every job event this session processes."""
    if callback not in _state.listeners:
        _state.listeners.append(callback)


def remove_listener(callback: EventCallback) -> None:
    """Undo add_listener."""
    if callback in _state.listeners:
        _state.listeners.remove(callback)


def pump(
    max_events: int | None = MAX_EVENTS_PER_TICK,
    max_imports: int = 1,
    on_event: EventCallback | None = None,
) -> bool:
    """Apply queued job events on the main thread; import up to max_imports meshes; True while work remains."""
    runner = peek_runner()
    if runner is None:
        return False
    events = runner.drain_events(max_events)
    for event in events:
        _apply_event(event)
        for callback in list(_state.listeners):
            callback(event)
        if on_event is not None:
            on_event(event)
    imported = 0
    while _state.pending_imports and imported < max_imports:
        local_id = _state.pending_imports.popleft()
        imported += 1
        try:
            import_job(local_id)
        except ModelsLabError as exc:
            print(f"ModelsLab: import of job {local_id} failed: {exc}", file=sys.stderr)
    now = time.monotonic()
    if events or imported or (_state.active and now - _state.last_redraw >= REDRAW_EVERY):
        _state.last_redraw = now
        tag_redraw()
    return bool(_state.active or _state.pending_imports or (max_events is not None and len(events) >= max_events))


def _apply_event(event: "JobEvent") -> None:
    record = event.record
    state = str(record.state)
    if state in SETTLED:
        if record.local_id in _state.active and state in (FAILED, TIMED_OUT) and not bpy.app.background:
            print(f"ModelsLab: {record.name}: {state}: {event.message}", file=sys.stderr)  # the panel shows the fix
        _state.active.discard(record.local_id)
    else:
        _state.active.add(record.local_id)
    if state == DOWNLOADED and not bpy.app.background and _wants_auto_import(record):
        _state.pending_imports.append(record.local_id)
    if record.local_id not in _state.hidden:
        _update_row(record, event.message)


def _wants_auto_import(record: "JobRecord") -> bool:
    """Jobs submitted in this session follow their own choice; resumed ones follow the preference."""
    if record.local_id in _state.pending_imports:
        return False
    preference = settings().auto_import
    if record.local_id in _state.submitted_here:
        return bool(record.extra.get("auto_import", preference))
    return preference


# --- job rows on the WindowManager ---------------------------------------------------------------------------------
def _rows() -> Any:
    wm = getattr(bpy.context, "window_manager", None)
    return getattr(wm, "modelslab_jobs", None) if wm is not None else None


def _update_row(record: "JobRecord", message: str | None = None) -> None:
    rows = _rows()
    if rows is None:
        return
    index = _state.row_index.get(record.local_id)
    row = rows[index] if index is not None and index < len(rows) else None
    if row is None or row.local_id != record.local_id:
        _state.row_index = {r.local_id: i for i, r in enumerate(rows)}
        index = _state.row_index.get(record.local_id)
        if index is None:
            row = rows.add()
            row.local_id = record.local_id
            index = _state.row_index[record.local_id] = len(rows) - 1
            wm: Any = bpy.context.window_manager
            wm.modelslab_jobs_index = index
        row = rows[index]
    _fill_row(row, record, message)


def _fill_row(row: Any, record: "JobRecord", message: str | None = None) -> None:
    state = str(record.state)
    row.name = record.name
    row.state = state
    row.progress = float(record.progress)
    error = record.error or {}
    row.category = error.get("category", "") if state in (FAILED, CANCELLED) else ""
    row.fix = error.get("fix", "") if state in (FAILED, CANCELLED) else ""
    text = error.get("message") if state in (FAILED, CANCELLED) and error else (message or record.message)
    row.message = (text or "")[:500]
    row.created = record.created_at - _session_epoch()
    row.finished = (record.updated_at - _session_epoch()) if state in SETTLED else 0.0
    row.eta = float(record.eta) if record.eta is not None and state not in SETTLED else -1.0
    row.remote_id = record.remote_id or ""
    row.source = str(record.extra.get("original_source") or record.source)
    row.file_path = record.file_path or ""
    row.object_name = record.object_name or ""
    urls = list(record.output_urls or []) + list(record.proxy_links or [])
    row.result_url = urls[0] if urls else ""
    row.was_submitted = bool(record.was_submitted)


def _session_epoch() -> float:
    from .props import SESSION_EPOCH

    return SESSION_EPOCH


def sync_rows() -> None:
    """Rebuild the job rows from the runner (or, before one exists, the journal's recent jobs)."""
    rows = _rows()
    if rows is None:
        return
    runner = peek_runner()
    if runner is not None:
        records = runner.records()
    else:
        if not _journal_has_files():
            rows.clear()
            _state.row_index = {}
            return
        records = sorted(_journal().all(), key=lambda r: r.created_at)
    horizon = time.time() - 24 * 3600
    keep = [r for r in records if r.local_id not in _state.hidden and (not r.is_terminal or r.updated_at > horizon)]
    rows.clear()
    for record in keep[-MAX_ROWS:]:
        row = rows.add()
        row.local_id = record.local_id
        _fill_row(row, record)
    _state.row_index = {r.local_id: i for i, r in enumerate(rows)}
    tag_redraw()


def tag_redraw() -> None:
    """Redraw the 3D views' sidebars (cheap: no-op without windows)."""
    wm = getattr(bpy.context, "window_manager", None)
    if wm is None:
        return
    for window in wm.windows:
        screen = window.screen
        if screen is None:
            continue
        for area in screen.areas:
            # only the sidebar (and the preferences, for the connection test): never the whole viewport
            wanted = "UI" if area.type == "VIEW_3D" else "WINDOW" if area.type == "PREFERENCES" else None
            if wanted is None:
                continue
            for region in area.regions:
                if region.type == wanted:
                    region.tag_redraw()


# --- importing -----------------------------------------------------------------------------------------------------
def import_job(local_id: str, context: bpy.types.Context | None = None, *, again: bool = False) -> bpy.types.Object:
    """Import a downloaded job's mesh on the main thread; mark it imported (or failed(bad_mesh)).

    again=True re-imports an already imported job from the cached file (a new object).
    """
    from .importer import ImportOptions, Provenance, import_mesh

    runner = get_runner()
    record = runner.get(local_id)
    if record is None:
        raise invalid_input(f"No job with id {local_id!r}.")
    allowed = (DOWNLOADED, IMPORTED) if again else (DOWNLOADED,)
    if str(record.state) not in allowed or not record.file_path:
        raise invalid_input(
            f"Job {record.name} has no downloaded mesh to import (it is {record.state}).",
            "Wait for the download, or resume the job." if str(record.state) not in TERMINAL else None,
        )
    if not os.path.isfile(record.file_path):
        raise ModelsLabError(
            Category.EXPIRED,
            f"The downloaded mesh of {record.name} is no longer in the cache.",
            "Resume the job to download it again (outputs stay on the server for 24 hours).",
        )
    current = settings()
    fmt = str(record.params.get("output_format") or Path(record.file_path).suffix.lstrip(".") or "obj")
    provenance = Provenance(
        job_id=record.local_id,
        remote_id=record.remote_id or "",
        source=str(record.extra.get("original_source") or record.source),
        params={k: v for k, v in record.params.items() if k != "init_image"},
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created_at)),
    )
    try:
        with _main_window_context(context) as ctx:
            obj = import_mesh(
                ctx,
                record.file_path,
                fmt,
                name=record.name,
                options=ImportOptions.from_settings(current),
                provenance=provenance,
            )
    except ModelsLabError as exc:
        if str(record.state) == DOWNLOADED:
            _update_row(runner.mark_failed(local_id, exc))
        raise
    _update_row(runner.mark_imported(local_id, obj.name))
    _drop_prepared_upload(record)
    return obj


class _main_window_context:
    """Yield a context with a window when one exists (timer callbacks run without one)."""

    def __init__(self, context: bpy.types.Context | None) -> None:
        self.context = context or bpy.context
        self.override: Any = None

    def __enter__(self) -> bpy.types.Context:
        ctx = self.context
        if getattr(ctx, "window", None) is None and not bpy.app.background:
            wm = ctx.window_manager
            if wm is not None and len(wm.windows):
                window = wm.windows[0]
                self.override = ctx.temp_override(window=window)  # type: ignore[attr-defined]
                self.override.__enter__()
                return bpy.context
        return ctx

    def __exit__(self, *exc: object) -> None:
        if self.override is not None:
            self.override.__exit__(*exc)


def _drop_prepared_upload(record: "JobRecord") -> None:
    """Remove a re-encoded upload copy once its job is done (it lives under <user dir>/uploads)."""
    source = record.source
    if source and source != record.extra.get("original_source") and not is_url(source):
        path = Path(source)
        if path.parent.name == "uploads" and path.parent.parent == user_dir():
            path.unlink(missing_ok=True)


# --- blocking helpers (background sessions, scripts) ---------------------------------------------------------------
def wait_for(local_id: str, timeout: float | None = None, on_event: EventCallback | None = None) -> "JobRecord":
    """Block until the job is settled (or timeout); events are applied and passed to on_event meanwhile."""
    runner = get_runner()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = 0.5 if remaining is None else min(0.5, remaining)
        record = runner.wait(local_id, timeout=step)
        pump(max_events=None, max_imports=0, on_event=on_event)
        if record.is_settled or (deadline is not None and time.monotonic() >= deadline):
            return runner.get(local_id) or record
        if str(record.state) not in SETTLED and local_id not in _state.active:
            # the runner stopped working on it (e.g. resume refused): nothing more will happen
            return record


def wait_any(
    local_ids: Iterable[str], timeout: float | None = None, on_event: EventCallback | None = None
) -> "JobRecord | None":
    """Block until one of the jobs is settled; returns it (None on timeout). Pass only ids not yet handled."""
    ids = list(local_ids)
    if not ids:
        return None
    runner = get_runner()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        step = 0.5 if remaining is None else min(0.5, remaining)
        record = runner.wait_any(ids, timeout=step)
        pump(max_events=None, max_imports=0, on_event=on_event)
        if record is not None:
            return runner.get(record.local_id) or record
        if deadline is not None and time.monotonic() >= deadline:
            return None


def result_of(record: "JobRecord", obj: bpy.types.Object | None = None, image: str | None = None) -> dict[str, Any]:
    """The per-job result the batch prints: status/object/vertices/file/job_id/seconds, or the error."""
    state = str(record.state)
    result: dict[str, Any] = {
        "image": image if image is not None else str(record.extra.get("original_source") or record.source),
        "status": state,
        "job_id": record.local_id,
        "remote_id": record.remote_id,
        "seconds": round(max(0.0, record.updated_at - record.created_at), 3),
    }
    if state in (FAILED, CANCELLED, TIMED_OUT):
        error = record.error or {}
        if state == TIMED_OUT and not error:
            error = {
                "category": Category.SERVER.value,
                "message": record.message or "Still processing on the server — resume later.",
                "fix": "Resume the job later; it is not submitted again.",
            }
        result["error"] = dict(error)
        if state == CANCELLED and "category" not in result["error"]:
            result["error"]["category"] = Category.CANCELLED.value
    if record.file_path:
        result["file"] = record.file_path
    if obj is not None:
        result["object"] = obj.name
        mesh = obj.data
        result["vertices"] = len(mesh.vertices) if isinstance(mesh, bpy.types.Mesh) else 0
    elif record.object_name:
        result["object"] = record.object_name
    return result


# --- the timer and handlers ----------------------------------------------------------------------------------------
def _timer_tick() -> float | None:
    if not _state.registered:
        _state.timer_on = False
        return None
    try:
        busy = pump(MAX_EVENTS_PER_TICK, 1)
    except Exception:  # never let the timer die silently: report and keep ticking
        traceback.print_exc()
        busy = True
    return ACTIVE_INTERVAL if busy else IDLE_INTERVAL


def ensure_timer() -> None:
    """Start the drain timer (interactive sessions only; timers never fire in background mode)."""
    if bpy.app.background or not _state.registered:
        return
    if not bpy.app.timers.is_registered(_timer_tick):
        bpy.app.timers.register(_timer_tick, first_interval=ACTIVE_INTERVAL, persistent=True)
    _state.timer_on = True


def _prewarm_imports() -> None:
    """Import the HTTP client and job modules (requests, urllib3 ...) off the main thread, so the first
    Generate click does not stall the UI on them. Pure imports: no bpy, no network."""
    try:
        from ..api import cache, client, jobs, journal  # noqa: F401
    except Exception as exc:  # the first real use reports any problem properly
        print(f"ModelsLab: preloading the client failed: {exc}", file=sys.stderr)


def _start_prewarm() -> None:
    if f"{_API_PACKAGE}.client" in sys.modules or (_state.prewarm is not None and _state.prewarm.is_alive()):
        return
    thread = threading.Thread(target=_prewarm_imports, name="modelslab-preload", daemon=True)
    _state.prewarm = thread
    thread.start()


def _startup() -> None:
    """First tick after enabling (interactive): preload the client, show journaled jobs, resume unfinished ones."""
    if not _state.registered:
        return None
    _start_prewarm()
    try:
        sync_rows()
        if _journal_has_files():
            current = settings()
            if current.api_key:
                try:
                    resume_unfinished()
                except ModelsLabError as exc:
                    print(f"ModelsLab: unfinished jobs not resumed: {exc}", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    return None


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    """After a file loads: rebuild the rows; interactive sessions resume and queue pending imports."""
    try:
        sync_rows()
        if bpy.app.background:
            return
        runner = peek_runner()
        if runner is None:
            _startup()
            return
        for record in runner.records():
            if str(record.state) == DOWNLOADED and _wants_auto_import(record):
                _state.pending_imports.append(record.local_id)
        ensure_timer()
    except Exception:
        traceback.print_exc()


def register() -> None:
    """Install handlers and (interactive) the startup tick. Cheap: no network modules are imported."""
    _state.registered = True
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)
    if not bpy.app.background:
        bpy.app.timers.register(_startup, first_interval=0.2, persistent=True)


def unregister() -> None:
    """Stop the timer and the runner (no threads left), remove handlers; journaled jobs stay for next time."""
    _state.registered = False
    for timer in (_timer_tick, _startup):
        if bpy.app.timers.is_registered(timer):
            bpy.app.timers.unregister(timer)
    _state.timer_on = False
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    shutdown_runner(wait=True)
    if _state.prewarm is not None:
        _state.prewarm.join(10.0)  # imports only: finishes quickly; no thread is left behind
        _state.prewarm = None
    _state.listeners.clear()
    _state.hidden.clear()
    _state.row_index = {}
    _state.overrides.clear()
