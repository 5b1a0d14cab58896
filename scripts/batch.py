"""Headless batch: turn many images into meshes with the ModelsLab extension, without a window.

    blender -b [file.blend] --python scripts/batch.py -- [options] IMAGE_OR_URL...
    python scripts/batch.py [options] IMAGE_OR_URL...          (with the `bpy` module installed)
    ... --prompt "a red chair" --prompts prompts.txt            (text to 3D: one job per prompt)
    ... --camera scene.blend                                    (render the .blend's active camera and send that)
    ... --adopt 1234                                            (import a job started elsewhere; nothing submitted)

A thin command line over the extension's batch engine (blender/batch.py: the same job runner, importer and
resume rules as the `modelslab.image_to_3d` operator and `modelslab.run()`): the installed extension when
Blender has it enabled, else the package in the checkout this script sits in. The options and the checks made
before any request are the extension's (blender/batch_cli.py); this script keeps stdout for JSON, handles the
signals and sets the exit code.
Progress goes to stderr, one JSON object per input to stdout and to OUT/results.jsonl. Exit codes: 0 every
input imported, 1 any input not imported, 2 usage error, 130/143 interrupted (Ctrl-C/SIGTERM; the rest stays
resumable).
The API key comes only from MODELSLAB_API_KEY or the add-on preferences, never from the command line.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "modelslab_3d"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def script_argv(argv: list[str]) -> list[str]:
    """The batch's own arguments: after `--` inside Blender, else everything after the script name."""
    if argv and argv[0] and Path(argv[0]).name == Path(__file__).name:
        return argv[1:]
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return []


# --- output -----------------------------------------------------------------------------------------------
class Output:
    """Progress on stderr; JSON lines on the real stdout and appended to OUT/results.jsonl (results: a ResultsLog
    of blender/batch_output.py)."""

    def __init__(self, out_dir: Path, json_stream: TextIO, results: Any) -> None:
        self.out_dir = out_dir
        self.json_stream = json_stream
        self.results = results
        self.results_path = results.path

    def reported_imports(self) -> set[str]:
        """Job ids an earlier run reported as imported."""
        return set(self.results.reported_imports())

    def progress(self, text: str) -> None:
        """One progress line on stderr."""
        sys.stderr.write(f"[modelslab batch] {text}\n")
        sys.stderr.flush()

    def result(self, row: dict) -> None:
        """Emit one input's final JSON object and append it to the results file."""
        self.json_stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.json_stream.flush()
        self.results.append(row)


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
    """The modelslab_3d package already enabled in this Blender (extension or legacy add-on), if any.

    Enabled means Blender's add-on loader registered it (it marks the module with `__addon_enabled__`): in the
    bpy module, which does not load preferences, a calling script must have enabled it; `blender -b` enables it
    from the user's preferences.
    """
    for name, module in list(sys.modules.items()):
        if name.rpartition(".")[2] == PACKAGE and getattr(module, "__addon_enabled__", False):
            return module
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
    """The package the batch drives and where it came from."""

    def __init__(self) -> None:
        found = find_enabled_extension()
        self.loaded_here = found is None
        self.package = load_checkout_extension() if found is None else found
        how = "loaded from the checkout" if self.loaded_here else "already enabled"
        self.where = f"{self.package.__name__} ({how}: {Path(self.package.__file__ or '').parent})"

    def module(self, name: str) -> Any:
        """A module of the package (`api.params`, `blender.batch` ...)."""
        return importlib.import_module(f"{self.package.__name__}.{name}")

    def close(self) -> None:
        """Stop the workers (unfinished jobs stay journaled); unregister when this script registered it."""
        if self.loaded_here:
            self.package.unregister()
        else:
            self.module("blender.session").shutdown_runner(wait=True)


# --- entry point --------------------------------------------------------------------------------------------
def run_batch(
    ext: Extension,
    args: argparse.Namespace,
    params: dict,
    import_options: dict,
    output: Output,
    stop: threading.Event,
) -> Any:
    """Configure this process's session, plan (resumed jobs first) and run the engine; returns the engine."""
    batch_output = ext.module("blender.batch_output")
    decorate = batch_output.BatchOutput(output.out_dir, args.render, args.export)
    session = ext.module("blender.session")
    session.configure_batch(
        base_url=args.base_url, flavor=args.flavor, max_workers=args.concurrency, poll_timeout=args.timeout
    )
    engine = ext.module("blender.batch").Batch(
        params,
        limit=args.concurrency,
        use_scene=True,  # unset parameters come from the scene's settings, as in the UI
        import_options=import_options,
        tag={"out": str(output.out_dir)},
        stop=stop,
        on_row=output.result,
        on_progress=output.progress,
        after_import=decorate,
    )
    if args.resume:
        engine.resume_tagged(reported=output.reported_imports(), reimport_reported=bool(args.save_blend))
    engine.add(args.inputs)
    engine.add_prompts(args.prompt_list)
    if args.camera is not None:
        engine.add_camera()
    engine.add_remote(args.adopt)
    if not engine.items:
        output.progress("nothing to do: no inputs, and nothing left to resume for this --out folder")
        return engine
    output.progress(f"{len(engine.items)} input(s), up to {engine.window} at once; extension {ext.where}")
    engine.run()
    # The wallet is asked only after jobs that may have cost money: bad input must cause no request at all.
    charged = session.money()["charged_jobs"] > 0
    output.progress(batch_output.money_line(session.wallet_balance_now() if charged else None, session.money()))
    if engine.interrupted:
        output.progress("interrupted: unfinished jobs stay in the journal; run again with --resume")
    if args.asset_library and decorate.objects:
        try:
            output.progress(f"asset library written: {decorate.write_asset_library(args.asset_library)}")
        except Exception as exc:  # the objects are imported (and saved with --save-blend) all the same
            output.progress(f"asset library not written: {type(exc).__name__}: {exc}")
    if args.save_blend and engine.imported:
        output.progress(f"saved {batch_output.save_blend(args.save_blend)}")
    return engine


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code (see the module docstring)."""
    ext = Extension()
    try:
        return _run(ext, script_argv(sys.argv if argv is None else argv))
    finally:
        ext.close()


def _run(ext: Extension, argv: list[str]) -> int:
    api = ext.module("api")
    cli = ext.module("blender.batch_cli")  # the options and the checks made before any request
    parser = cli.build_parser()
    try:
        args = cli.parse_args(parser, argv)
        params, import_options = cli.check_before_request(args)
    except (cli.UsageError, api.ModelsLabError) as error:
        parser.print_usage(sys.stderr)
        text = f"{error.message} [{error.category.value}]" if isinstance(error, api.ModelsLabError) else str(error)
        sys.stderr.write(f"batch.py: error: {text}\n")
        return EXIT_USAGE

    stop = threading.Event()
    received: list[int] = []

    def on_stop_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        stop.set()
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)  # 2nd: now

    previous = {signum: signal.signal(signum, on_stop_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    json_stream = split_stdout()
    out_dir = Path(os.path.normpath(os.path.abspath(os.path.expanduser(args.out))))
    results = ext.module("blender.batch_output").ResultsLog(out_dir, keep_previous=args.resume)
    output = Output(out_dir, json_stream, results)
    engine = None
    try:
        engine = run_batch(ext, args, params, import_options, output, stop)
    finally:
        for signum, handler in previous.items():
            # None: Blender's own C-level handler, which Python cannot put back.
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if engine is not None and engine.items:
            output.progress(
                f"finished: {engine.imported} imported, {engine.failed} failed of {len(engine.items)}; "
                f"results in {output.results_path}"
            )
        results.close()
        restore_stdout(json_stream)
    if engine.interrupted:
        return 128 + received[0] if received else EXIT_INTERRUPTED  # 130 after Ctrl-C, 143 after SIGTERM
    return EXIT_OK if engine.imported == len(engine.items) else EXIT_FAILED


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


def leave(code: int) -> None:
    """Exit with code. Under the bpy module of Blender 4.2, Python's own shutdown can crash (SIGSEGV) after a
    Cycles bake or an export although every result is written; there the process leaves without it."""
    bpy = sys.modules.get("bpy")
    launched_as_python = bool(sys.argv) and Path(sys.argv[0]).name == Path(__file__).name
    if bpy is not None and launched_as_python and tuple(bpy.app.version[:2]) == (4, 2):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    leave(run_script())
