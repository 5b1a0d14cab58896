"""Headless batch: turn many images into meshes with the ModelsLab extension, without a window.

    blender -b [file.blend] --python scripts/batch.py -- [options] IMAGE_OR_URL...
    python scripts/batch.py [options] IMAGE_OR_URL...          (with the `bpy` module installed)

It drives the same code as the `modelslab.image_to_3d` operator (the extension's job runner and importer):
the installed extension when Blender has it enabled, else the package in the checkout this script sits in.
Progress goes to stderr, one JSON object per input to stdout and to OUT/results.jsonl. Exit codes: 0 every
input imported, 1 any input not imported, 2 usage error, 130/143 interrupted (Ctrl-C/SIGTERM; the rest stays
resumable).
The API key comes only from MODELSLAB_API_KEY or the add-on preferences, never from the command line.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "modelslab_3d"
SCRIPT_ALIAS = "modelslab"  # sys.modules alias of blender/scripting.py that register() installs
FORMATS = ("obj", "glb", "ply", "stl")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# A submit the server refused with 429 is certainly not charged, so the batch may submit it again later.
MAX_RATE_LIMITED_RESUBMITS = 20
WAIT_SLICE_S = 0.25  # how long one wait for "any job settled" blocks before Ctrl-C is checked again
PREVIEW_SIZE = 256
PREVIEW_SAMPLES = 12
ROW_GAP = 0.4  # scene units between imported objects laid out in a row

OPERATOR_PARAMS = (
    "resolution",
    "foreground_ratio",
    "remove_bg",
    "chunk_size",
    "seed",
    "output_format",
    "webhook",
    "track_id",
)


class UsageError(Exception):
    """A command line that cannot run: exit code 2, nothing submitted."""


class BatchArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so the caller decides how to leave Blender."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> BatchArgumentParser:
    """The batch command line (option names are part of the public contract; see docs/SCRIPTS.md)."""
    parser = BatchArgumentParser(
        prog="batch.py",
        allow_abbrev=False,
        description="Generate 3D meshes from images with ModelsLab, headless. "
        "The API key is read from MODELSLAB_API_KEY or the add-on preferences.",
        epilog="Exit codes: 0 all imported, 1 any failed, 2 usage error, "
        "130/143 interrupted by Ctrl-C/SIGTERM (finish with --resume).",
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_URL", help="image files or http(s) image URLs")
    parser.add_argument("--base-url", metavar="URL", help="API base URL (default: preferences / MODELSLAB_BASE_URL)")
    parser.add_argument("--flavor", choices=("enterprise", "standard"), help="API flavour (default: preferences)")
    parser.add_argument("--out", metavar="DIR", default="modelslab-output", help="meshes, previews, results.jsonl")
    parser.add_argument("--save-blend", metavar="FILE", help="save the scene with the imported objects here")
    parser.add_argument("--resolution", type=int, metavar="N", help="marching-cubes resolution (32-512)")
    parser.add_argument("--foreground-ratio", type=float, metavar="F", help="object size in the view (0.5-1.0)")
    parser.add_argument("--remove-bg", action="store_const", const=True, default=None, help="remove the background")
    parser.add_argument("--chunk-size", type=int, metavar="N", help="points evaluated per chunk (1024-12000)")
    parser.add_argument("--seed", type=int, metavar="N", help="seed (0 = random)")
    parser.add_argument("--format", choices=FORMATS, dest="output_format", help="mesh format (default obj)")
    parser.add_argument("--concurrency", type=int, default=4, metavar="K", help="jobs in flight at once (default 4)")
    parser.add_argument("--timeout", type=float, metavar="S", help="give up waiting for one job after S seconds")
    parser.add_argument("--render", action="store_true", help="render a small preview PNG of each imported object")
    parser.add_argument("--resume", action="store_true", help="finish jobs an interrupted run left in the journal")
    parser.add_argument("--webhook", metavar="URL", help="URL the server calls when a job is done")
    parser.add_argument("--track-id", metavar="ID", help="id echoed back in the webhook call")
    return parser


def script_argv(argv: list[str]) -> list[str]:
    """The batch's own arguments: after `--` inside Blender, else everything after the script name."""
    if argv and argv[0] and Path(argv[0]).name == Path(__file__).name:
        return argv[1:]
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return []


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse and check the command line; raise UsageError with a clear message."""
    for arg in argv:
        name = arg.split("=", 1)[0].lower()
        if name.startswith("--") and ("key" in name and "track" not in name):
            # Refuse before argparse, whose message would echo the value (the key) to the terminal.
            raise UsageError(
                f"{name}: the API key is never accepted on the command line; "
                "set MODELSLAB_API_KEY or the add-on preferences."
            )
    args = build_parser().parse_args(argv)
    if not args.inputs and not args.resume:
        raise UsageError("no IMAGE_OR_URL given (or use --resume to finish an interrupted run).")
    if args.concurrency < 1 or args.concurrency > 64:
        raise UsageError(f"--concurrency must be from 1 to 64, got {args.concurrency}.")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}.")
    if args.save_blend and not args.save_blend.lower().endswith(".blend"):
        raise UsageError(f"--save-blend must name a .blend file, got {args.save_blend!r}.")
    return args


def job_params(args: argparse.Namespace) -> dict[str, Any]:
    """The operator's parameters the user set; unset ones fall back to the scene settings, as in the UI."""
    return {name: getattr(args, name) for name in OPERATOR_PARAMS if getattr(args, name) is not None}


# --- output -----------------------------------------------------------------------------------------------


class Output:
    """Progress on stderr; JSON lines on the real stdout and in OUT/results.jsonl (rewritten atomically)."""

    def __init__(self, out_dir: Path, json_stream: TextIO, keep_previous: bool) -> None:
        self.out_dir = out_dir
        self.results_path = out_dir / "results.jsonl"
        self.json_stream = json_stream
        self.rows: dict[str, dict] = {}
        if keep_previous and self.results_path.exists():
            # --resume keeps what earlier runs finished; rows for the same job are replaced.
            for line in self.results_path.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError):
                    row = json.loads(line)
                    if isinstance(row, dict):
                        self.rows[self._row_key(row)] = row

    @staticmethod
    def _row_key(row: dict) -> str:
        return str(row.get("job_id") or f"image:{row.get('image')}")

    def progress(self, text: str) -> None:
        """One progress line on stderr."""
        sys.stderr.write(f"[modelslab batch] {text}\n")
        sys.stderr.flush()

    def result(self, row: dict) -> None:
        """Emit one input's final JSON object and persist the results file."""
        self.json_stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.json_stream.flush()
        if row.get("job_id"):
            self.rows.pop(f"image:{row.get('image')}", None)
        self.rows[self._row_key(row)] = row
        self._write_results()

    def _write_results(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / f".results.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                for row in self.rows.values():
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            os.replace(tmp, self.results_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def split_stdout() -> TextIO:
    """Keep the real stdout for JSON only; everything else written to fd 1 (Blender, importers) goes to stderr."""
    sys.stdout.flush()
    json_stream = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    return json_stream


def restore_stdout(json_stream: TextIO) -> None:
    """Undo split_stdout(): fd 1 is the real stdout again and the extra descriptor is closed (in-process callers)."""
    sys.stdout.flush()
    json_stream.flush()
    os.dup2(json_stream.fileno(), 1)
    json_stream.close()


# --- the extension ------------------------------------------------------------------------------------------


def find_enabled_extension() -> ModuleType | None:
    """The modelslab_3d package already registered in this Blender (extension or legacy add-on), if any.

    `blender -b` enables the add-ons of the user's preferences; the bpy module does not load preferences, so
    there it is found only when the calling script enabled it (its register() sets the `modelslab` alias).
    """
    import bpy

    alias = sys.modules.get(SCRIPT_ALIAS)
    suffix = ".blender.scripting"
    if alias is not None and alias.__name__.endswith(suffix):
        registered = sys.modules.get(alias.__name__[: -len(suffix)])
        if registered is not None:
            return registered
    for addon in bpy.context.preferences.addons:
        module = addon.module
        if module == PACKAGE or module.endswith("." + PACKAGE):
            loaded = sys.modules.get(module)
            if loaded is not None:
                return loaded
    return None


def load_checkout_extension() -> ModuleType:
    """Load the checkout this script sits in as the package `modelslab_3d` and register it."""
    spec = importlib.util.spec_from_file_location(
        PACKAGE, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the extension from {REPO_ROOT}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    module.register()
    return module


class Extension:
    """The extension entry points the batch uses: blender/scripting.py and blender/runtime.py, i.e. the
    operator's own code paths (validation, upload, job runner, journal, importer)."""

    def __init__(self, package: ModuleType, loaded_here: bool) -> None:
        self.package = package
        self.loaded_here = loaded_here
        name = package.__name__
        self.api = importlib.import_module(f"{name}.api")
        self.scripting = importlib.import_module(f"{name}.blender.scripting")
        self.runtime = importlib.import_module(f"{name}.blender.runtime")

    @property
    def where(self) -> str:
        """Where the package came from, for the progress log."""
        how = "loaded from the checkout" if self.loaded_here else "already enabled"
        return f"{self.package.__name__} ({how}: {Path(self.package.__file__ or '').parent})"

    def check_params(self, params: dict[str, Any]) -> None:
        """Validate the parameters exactly as the operator does (raises ModelsLabError(invalid_input))."""
        self.runtime.build_params(params, None)

    def configure(self, args: argparse.Namespace) -> Any:
        """Apply --base-url/--flavor/--concurrency/--timeout to this process only; returns the runner."""
        return self.runtime.configure_batch(
            base_url=args.base_url,
            flavor=args.flavor,
            max_workers=args.concurrency,
            poll_timeout=args.timeout,
        )

    def submit(self, image: str, params: dict[str, Any], extra: dict[str, Any]) -> Any:
        """Validate and start one job like the operator (unset params from the scene); its JobRecord."""
        return self.scripting.submit(image, extra=extra, use_scene=True, **params)

    def resume(self, local_id: str) -> Any:
        """Poll/download a journaled job again (never resubmitted)."""
        return self.runtime.resume_job(local_id)

    def journal_records(self) -> list[Any]:
        """Every job in the journal."""
        return list(self.runtime.get_runner().journal.all())

    def wait_any(self, local_ids: list[str], timeout: float, on_event: Any) -> Any:
        """One settled job of local_ids (None after timeout); events go to on_event meanwhile."""
        return self.scripting.wait_any(local_ids, timeout, on_event)

    def record(self, local_id: str) -> Any:
        """The job's current record."""
        return self.runtime.get_record(local_id)

    def forget(self, local_id: str) -> None:
        """Drop a finished job that the server never accepted, with its journal file."""
        with contextlib.suppress(self.api.ModelsLabError):
            self.runtime.get_runner().forget(local_id)

    def import_job(self, local_id: str) -> Any:
        """Import a downloaded (or re-import an imported) job on the main thread; the new object."""
        return self.scripting.import_job(local_id)

    def result(self, local_id: str, obj: Any, image: str) -> dict[str, Any]:
        """The extension's result dict for a job (image, status, job_id, remote_id, object, vertices, error...)."""
        return self.scripting.result(local_id, obj, image)

    def close(self) -> None:
        """Stop the workers (unfinished jobs stay journaled); unregister when this script registered it."""
        if self.loaded_here:
            self.package.unregister()
        else:
            self.runtime.shutdown_runner(wait=True)


# --- the batch ----------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One input of the batch and what became of it."""

    image: str
    local_id: str | None = None
    started: float = field(default_factory=time.monotonic)
    rate_limited: int = 0
    resumed: bool = False
    done: bool = False


class Batch:
    """Keeps up to --concurrency jobs in flight and imports each result on the main thread as it settles."""

    def __init__(self, ext: Extension, args: argparse.Namespace, output: Output, stop: threading.Event) -> None:
        self.ext = ext
        self.args = args
        self.output = output
        self.stop = stop
        self.params = job_params(args)
        self.window = args.concurrency
        self.hold_until = 0.0
        self.items: list[Item] = []
        self.pending: collections.deque[Item] = collections.deque()
        self.active: dict[str, Item] = {}
        self.last_state: dict[str, str] = {}
        self.imported = 0
        self.failed = 0
        self.out_dir = Path(args.out).absolute()
        self.tag = {"out": str(self.out_dir)}
        self.row_edge: float | None = None  # right edge of the row of imported objects

    # progress ------------------------------------------------------------------------------------------------
    def _count(self) -> str:
        finished = self.imported + self.failed
        return f"[{finished}/{len(self.items)} done, {self.imported} imported, {self.failed} failed]"

    def _say(self, item: Item, text: str) -> None:
        self.output.progress(f"{_display_name(item.image)}: {text} {self._count()}")

    def on_event(self, event: Any) -> None:
        """One progress line per state change of a job of this batch."""
        item = self.active.get(event.local_id)
        state = str(event.state)
        if item is None or self.last_state.get(event.local_id) == state:
            return
        previous = self.last_state.get(event.local_id)
        self.last_state[event.local_id] = state
        detail = f" - {event.message}" if event.message else ""
        self._say(item, f"{state}{detail}")
        if state == "queued" and previous == "submitting":
            # The server refused the submit (429; not charged, the runner submits it again after retry_after):
            # keep fewer jobs in flight until results come back.
            narrower = max(1, len(self.active) - 1)
            if narrower < self.window:
                self.window = narrower
                self._say(item, f"server busy (rate limited): at most {self.window} job(s) in flight for now")

    # planning -----------------------------------------------------------------------------------------------
    def plan(self) -> None:
        """The work list: with --resume, the jobs an earlier run left first; then inputs not covered by them."""
        covered: set[str] = set()
        if self.args.resume:
            for record in self._resumable_records():
                item = Item(image=_original_source(record), local_id=record.local_id, resumed=True)
                covered.add(_source_key(item.image))
                self.items.append(item)
                self.active[record.local_id] = item
                self.last_state[record.local_id] = str(record.state)
                self._say(item, f"resuming job {record.local_id} ({record.state}; not submitted again)")
                state = str(record.state)
                if state in ("downloaded", "imported"):
                    continue  # imported from the cache when the loop meets it
                if state in ("failed", "cancelled") and not record.remote_id:
                    # It may have reached the server (no id to follow it by): report it, never send it again.
                    self.active.pop(record.local_id)
                    self._fail_row(item, self.ext.result(record.local_id, None, item.image))
                    continue
                try:
                    self.ext.resume(record.local_id)
                except self.ext.api.ModelsLabError as error:
                    self.active.pop(record.local_id)
                    self._fail(item, error.to_dict(), record=record)
        for image in self.args.inputs:
            if _source_key(image) in covered:
                continue
            item = Item(image=image)
            self.items.append(item)
            self.pending.append(item)

    def _resumable_records(self) -> list[Any]:
        """The newest journal job per input that an earlier batch with this --out left unfinished.

        Jobs the earlier run imported count too when its results file does not report them, or when this run
        saves a .blend (the killed run's scene is gone): they are imported again from the cache, no request.
        """
        latest: dict[str, Any] = {}
        for record in self.ext.journal_records():
            if (record.extra or {}).get("batch", {}).get("out") != str(self.out_dir):
                continue
            key = _source_key(_original_source(record))
            if key not in latest or record.created_at > latest[key].created_at:
                latest[key] = record
        reported = {row.get("job_id") for row in self.output.rows.values() if row.get("status") == "imported"}
        chosen = []
        for record in latest.values():
            state = str(record.state)
            if state in ("failed", "cancelled") and not _may_have_been_charged(record):
                continue  # the server never took it: an input given again is simply submitted again
            if state == "imported" and not (record.file_path and os.path.isfile(record.file_path)):
                continue
            if state == "imported" and record.local_id in reported and not self.args.save_blend:
                continue  # reported before; with --save-blend it is re-imported from the cache for a complete file
            chosen.append(record)
        return sorted(chosen, key=lambda r: r.created_at)

    # main loop ----------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run to completion or interruption and return the exit code."""
        self.ext.configure(self.args)
        self.plan()
        if not self.items:
            self.output.progress("nothing to do: no inputs, and nothing left to resume for this --out folder")
            return EXIT_OK
        self.output.progress(f"{len(self.items)} input(s), up to {self.window} at once; extension {self.ext.where}")
        while (self.pending or self.active) and not self.stop.is_set():
            self._fill_window()
            if not self.active:
                self.stop.wait(max(0.05, self.hold_until - time.monotonic()))
                continue
            record = self.ext.wait_any(list(self.active), WAIT_SLICE_S, self.on_event)
            if record is not None and not self.stop.is_set():
                self._finish(record)
        if self.stop.is_set():
            return self._interrupted()
        return EXIT_OK if self.imported == len(self.items) else EXIT_FAILED

    def _fill_window(self) -> None:
        while self.pending and len(self.active) < self.window and time.monotonic() >= self.hold_until:
            if self.stop.is_set():
                return
            item = self.pending.popleft()
            if not item.rate_limited:
                item.started = time.monotonic()  # a resubmit after a 429 keeps counting from the first try
            try:
                record = self.ext.submit(item.image, self.params, {"batch": self.tag})
            except self.ext.api.ModelsLabError as error:
                self._fail(item, error.to_dict())
                continue
            item.local_id = record.local_id
            self.active[record.local_id] = item
            self.last_state[record.local_id] = str(record.state)
            self._say(item, f"queued as job {record.local_id}")

    def _finish(self, record: Any) -> None:
        item = self.active.pop(record.local_id)
        state = str(record.state)
        if state in ("downloaded", "imported"):
            self._import(item, record)
        elif state == "failed" and self._retry_rate_limited(item, record):
            return
        else:
            row = self.ext.result(record.local_id, None, item.image)
            if state == "timed_out":
                row["resumable"] = True
            self._fail_row(item, row)

    def _retry_rate_limited(self, item: Item, record: Any) -> bool:
        """A submit refused with 429 was not charged: slow down (smaller window, pause) and submit it again."""
        error = record.error or {}
        if error.get("category") != "rate_limited" or record.remote_id:
            return False
        if item.rate_limited >= MAX_RATE_LIMITED_RESUBMITS:
            return False
        item.rate_limited += 1
        item.local_id = None
        self.ext.forget(record.local_id)  # nothing was charged: no journal entry to resume
        self.window = max(1, len(self.active))
        self.hold_until = time.monotonic() + min(30.0, 2.0 * item.rate_limited)
        self.pending.appendleft(item)
        self._say(item, f"rate limited (not charged); submitting again with at most {self.window} in flight")
        return True

    def _import(self, item: Item, record: Any) -> None:
        try:
            obj = self.ext.import_job(record.local_id)
        except self.ext.api.ModelsLabError:
            self._fail_row(item, self.ext.result(record.local_id, None, item.image))
            return
        self._place_in_row(obj)
        row = self.ext.result(record.local_id, obj, item.image)
        row["status"] = "imported"
        row["file"] = str(self._copy_mesh(Path(row.get("file") or record.file_path), obj.name))
        row["seconds"] = round(time.monotonic() - item.started, 2)
        if item.resumed:
            row["resumed"] = True
        if self.args.render:
            try:
                row["preview"] = str(
                    render_preview(obj, self.out_dir / "previews" / f"{_safe_file_name(obj.name)}.png")
                )
            except Exception as exc:  # a preview is a bonus: the object is imported all the same
                row["preview_error"] = f"{type(exc).__name__}: {exc}"
        self.imported += 1
        item.done = True
        self.window = min(self.args.concurrency, self.window + 1)  # after a 429 slow-down, widen again
        self._say(item, f"imported as {obj.name!r} ({row.get('vertices', 0)} vertices)")
        self.output.result(row)

    def _place_in_row(self, obj: Any) -> None:
        """Side by side along X from the 3D cursor (the first one stays at the cursor), so none overlap."""
        import bpy

        bpy.context.view_layer.update()
        half_width = obj.dimensions.x / 2
        if self.row_edge is not None:
            obj.location.x = self.row_edge + ROW_GAP + half_width
            bpy.context.view_layer.update()  # matrix_world follows the new location (the preview frames it)
        self.row_edge = obj.location.x + half_width

    def _copy_mesh(self, source: Path, object_name: str) -> Path:
        """A copy of the downloaded mesh in OUT/meshes (the cache keeps its own for re-imports)."""
        target = self.out_dir / "meshes" / f"{_safe_file_name(object_name)}{source.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    def _fail(self, item: Item, error: dict, *, record: Any = None) -> None:
        row: dict[str, Any] = {"image": item.image, "status": "failed", "error": _error_fields(error)}
        if record is not None:
            row["job_id"] = record.local_id
            row["remote_id"] = record.remote_id
        self._fail_row(item, row)

    def _fail_row(self, item: Item, row: dict[str, Any]) -> None:
        if row.get("file") and not os.path.isfile(row["file"]):
            del row["file"]  # a download that never completed
        if row.get("status") not in ("failed", "cancelled", "timed_out"):
            row["status"] = "failed"
        row["error"] = _error_fields(row.get("error") or {"category": "server", "message": "The job did not finish."})
        row["seconds"] = round(time.monotonic() - item.started, 2)
        if item.resumed:
            row["resumed"] = True
        self.failed += 1
        item.done = True
        self._say(item, f"{row['status']}: [{row['error']['category']}] {row['error']['message']}")
        self.output.result(row)

    def _interrupted(self) -> int:
        """Ctrl-C: stop waiting, report every unfinished input, keep the journal as it is (resumable)."""
        self.output.progress("interrupted: unfinished jobs stay in the journal; run again with --resume")
        for item in self.items:
            if item.done:
                continue
            row: dict[str, Any] = {"image": item.image, "status": "interrupted"}
            record = self.ext.record(item.local_id) if item.local_id else None
            if record is not None:
                row.update({"job_id": record.local_id, "remote_id": record.remote_id, "state": str(record.state)})
                row["resumable"] = True
            else:
                row["resumable"] = False  # never submitted: it is simply submitted on the next run
            self.output.result(row)
        return EXIT_INTERRUPTED


def _error_fields(error: dict) -> dict:
    return {
        "category": str(error.get("category") or "server"),
        "message": str(error.get("message") or ""),
        "fix": str(error.get("fix") or ""),
    }


def _may_have_been_charged(record: Any) -> bool:
    """Whether a job may have reached the server: it has a remote id, or a submit was cut off unanswered."""
    if record.remote_id:
        return True
    category = (record.error or {}).get("category")
    if category in ("rate_limited", "invalid_input", "auth", "credits", "offline"):
        return False  # refused by the server, or stopped before anything was sent
    return bool(record.was_submitted)


def _display_name(image: str) -> str:
    return Path(image.split("?", 1)[0].rstrip("/")).name or image


def _original_source(record: Any) -> str:
    return str((record.extra or {}).get("original_source") or record.source)


def _source_key(source: str) -> str:
    if "://" in source:
        return source
    return str(Path(source).expanduser().absolute())


def _safe_file_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return cleaned or "mesh"


# --- preview render -----------------------------------------------------------------------------------------


def render_preview(obj: Any, target: Path) -> Path:
    """Render obj alone, framed by an orthographic camera with a sun and a grey world (Cycles CPU, low samples)."""
    import bpy
    from mathutils import Vector

    target.parent.mkdir(parents=True, exist_ok=True)
    scene = bpy.data.scenes.new("ModelsLab preview")
    camera_data = bpy.data.cameras.new("ModelsLab preview camera")
    light_data = bpy.data.lights.new("ModelsLab preview light", type="SUN")
    world = bpy.data.worlds.new("ModelsLab preview world")
    camera = bpy.data.objects.new("ModelsLab preview camera", camera_data)
    light = bpy.data.objects.new("ModelsLab preview light", light_data)
    try:
        scene.collection.objects.link(obj)
        scene.collection.objects.link(camera)
        scene.collection.objects.link(light)
        scene.camera = camera
        scene.world = world
        world.color = (0.55, 0.57, 0.6)
        light_data.energy = 3.0
        light.rotation_euler = (0.75, 0.2, 0.6)

        corners = [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
        low = Vector((min(c.x for c in corners), min(c.y for c in corners), min(c.z for c in corners)))
        high = Vector((max(c.x for c in corners), max(c.y for c in corners), max(c.z for c in corners)))
        center = (low + high) / 2
        diagonal = max((high - low).length, 1e-3)
        view = Vector((0.55, -1.0, 0.4)).normalized()  # front-right, a little above (imported fronts face -Y)
        camera.location = center + view * diagonal * 2.0
        camera.rotation_euler = (-view).to_track_quat("-Z", "Y").to_euler()
        camera_data.type = "ORTHO"
        camera_data.ortho_scale = diagonal * 1.05
        camera_data.clip_end = diagonal * 10

        render = scene.render
        render.engine = "CYCLES"
        render.resolution_x = render.resolution_y = PREVIEW_SIZE
        render.resolution_percentage = 100
        render.image_settings.file_format = "PNG"
        render.filepath = str(target)
        scene.cycles.device = "CPU"
        scene.cycles.samples = PREVIEW_SAMPLES
        scene.cycles.use_denoising = False
        if hasattr(scene.cycles, "use_adaptive_sampling"):
            scene.cycles.use_adaptive_sampling = False
        bpy.ops.render.render(write_still=True, scene=scene.name)
    finally:
        bpy.data.scenes.remove(scene)
        bpy.data.objects.remove(camera)
        bpy.data.objects.remove(light)
        bpy.data.cameras.remove(camera_data)
        bpy.data.lights.remove(light_data)
        bpy.data.worlds.remove(world)
    if not target.exists() or target.stat().st_size == 0:
        raise RuntimeError(f"the renderer wrote no image to {target}")
    return target


def save_blend(path: str) -> Path:
    """Save the current scene (with the imported objects) as a .blend; the key is never part of it."""
    import bpy

    target = Path(path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(target), check_existing=False)
    return target


# --- entry point --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code (see the module docstring)."""
    try:
        args = parse_args(script_argv(sys.argv if argv is None else argv))
    except UsageError as error:
        build_parser().print_usage(sys.stderr)
        sys.stderr.write(f"batch.py: error: {error}\n")
        return EXIT_USAGE

    stop = threading.Event()
    received: list[int] = []

    def on_stop_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)  # 2nd: now

    previous = {signum: signal.signal(signum, on_stop_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    json_stream = split_stdout()
    output = Output(Path(args.out).absolute(), json_stream, keep_previous=args.resume)
    package = find_enabled_extension()
    ext = Extension(package, loaded_here=False) if package else Extension(load_checkout_extension(), loaded_here=True)
    batch = Batch(ext, args, output, stop)
    code = EXIT_FAILED
    try:
        try:
            ext.check_params(job_params(args))
        except ext.api.ModelsLabError as error:
            build_parser().print_usage(sys.stderr)
            sys.stderr.write(f"batch.py: error: {error.message} [{error.category.value}]\n")
            return EXIT_USAGE
        code = batch.run()
        if args.save_blend and batch.imported:
            output.progress(f"saved {save_blend(args.save_blend)}")
    finally:
        ext.close()
        for signum, handler in previous.items():
            # None: Blender's own C-level handler, which Python cannot put back.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if code == EXIT_INTERRUPTED and received:
            code = 128 + received[0]  # 130 after Ctrl-C, 143 after SIGTERM
        if batch.items:
            output.progress(
                f"finished: {batch.imported} imported, {batch.failed} failed of {len(batch.items)}; "
                f"results in {output.results_path}"
            )
        restore_stdout(json_stream)
    return code


def run_script() -> int:
    """main() with a non-zero exit for anything unexpected (`blender -b` would otherwise exit 0 after a traceback)."""
    try:
        return main()
    except KeyboardInterrupt:
        sys.stderr.write("batch.py: interrupted\n")
        return EXIT_INTERRUPTED
    except Exception:
        import traceback

        traceback.print_exc()
        sys.stderr.write("batch.py: stopped by an unexpected error (a bug: please report it); run with --resume\n")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(run_script())
