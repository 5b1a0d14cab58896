"""Headless batch: turn many images into meshes with the ModelsLab extension, without a window.

    blender -b [file.blend] --python scripts/batch.py -- [options] IMAGE_OR_URL...
    python scripts/batch.py [options] IMAGE_OR_URL...          (with the `bpy` module installed)
    ... --prompt "a red chair" --prompts prompts.txt            (text to 3D: one job per prompt)
    ... --camera scene.blend                                    (render the .blend's active camera and send that)
    ... --adopt 1234                                            (import a job started elsewhere; nothing submitted)

A thin command line over the extension's batch engine (blender/batch.py: the same job runner, importer and
resume rules as the `modelslab.image_to_3d` operator and `modelslab.run()`): the installed extension when
Blender has it enabled, else the package in the checkout this script sits in.
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


class UsageError(Exception):
    """A command line that cannot run: exit code 2, nothing submitted."""


class BatchArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so the caller decides how to leave Blender."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(message)


def build_parser(formats: tuple[str, ...]) -> BatchArgumentParser:
    """The batch command line (option names and exit codes are a public contract: tests/batch asserts them)."""
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
    parser.add_argument("--format", choices=formats, dest="output_format", help="mesh format (default obj)")
    parser.add_argument("--concurrency", type=int, default=4, metavar="K", help="jobs in flight at once (default 4)")
    parser.add_argument("--timeout", type=float, metavar="S", help="give up waiting for one job after S seconds")
    parser.add_argument("--render", action="store_true", help="render a small preview PNG of each imported object")
    parser.add_argument("--resume", action="store_true", help="finish jobs an interrupted run left in the journal")
    placing = parser.add_argument_group("placing the results (unset: the scene's Import settings)")
    placing.add_argument("--ground", action="store_const", const=True, default=None, help="stand each on the floor")
    placing.add_argument("--height", type=float, metavar="M", help="scale each to this height (scene units; 0 keeps)")
    placing.add_argument("--facing", metavar="AXIS", help="axis the image's front faces: -Y (default), Y, X, -X")
    placing.add_argument("--as-asset", action="store_const", const=True, default=None, help="mark each as an asset")
    placing.add_argument("--bake", type=int, metavar="N", help="bake the colours into an N px texture (256-4096)")
    placing.add_argument("--export", metavar="FMT", help="also export each result as glb, fbx or obj into OUT/exports")
    placing.add_argument("--asset-library", metavar="DIR", help="write the results as assets into a .blend in DIR")
    parser.add_argument("--webhook", metavar="URL", help="URL the server calls when a job is done")
    parser.add_argument("--track-id", metavar="ID", help="id echoed back in the webhook call")
    more = parser.add_argument_group("other inputs")
    more.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="text to 3D (repeatable)")
    more.add_argument("--prompts", metavar="FILE", help="text to 3D: one prompt per line (blank lines skipped)")
    more.add_argument(
        "--camera",
        nargs="?",
        const="",
        metavar="BLEND",
        help="render the active camera of BLEND (or of the open .blend) with a transparent background",
    )
    more.add_argument("--adopt", action="append", default=[], metavar="REMOTE_ID", help="import a remote job by id")
    newer = parser.add_argument_group("the newer revision's fields (sent only when given)")
    for name, (kind, metavar) in NEWER_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if kind == "yesno":
            newer.add_argument(flag, dest=name, choices=("yes", "no"), help=SPEC_HELP.get(name))
        else:
            newer.add_argument(flag, dest=name, type=int if kind == "int" else float, metavar=metavar)
    text = parser.add_argument_group("text to 3D fields (sent only when given)")
    text.add_argument("--negative-prompt", metavar="TEXT", help="what to avoid")
    text.add_argument("--guidance-scale", type=float, metavar="F", help="how closely to follow the prompt (1-20)")
    text.add_argument("--num-inference-steps", type=int, metavar="N", help="diffusion steps (1-50)")
    text.add_argument("--model-id", metavar="ID", help="model on an enterprise server")
    return parser


# The newer revision's fields as flags: name -> (value kind, metavar). `render` is --server-render here, as
# --render already renders previews of the imported objects.
NEWER_FLAGS = {
    "ss_guidance_strength": ("float", "F"),
    "ss_sampling_steps": ("int", "N"),
    "slat_guidance_strength": ("float", "F"),
    "slat_sampling_steps": ("int", "N"),
    "mesh_simplify": ("float", "F"),
    "server_render": ("yesno", ""),
    "temp": ("yesno", ""),
}
SPEC_HELP = {"server_render": "ask the server to render a preview too", "temp": "store outputs as temporary files"}
TEXT_FLAGS = ("negative_prompt", "guidance_scale", "num_inference_steps", "model_id")


def given_params(args: argparse.Namespace, param_fields: tuple[str, ...]) -> dict[str, Any]:
    """The generation parameters given on the command line (image and text fields; unset ones are left out)."""
    values = {name: getattr(args, name) for name in param_fields if getattr(args, name) is not None}
    for name in (*NEWER_FLAGS, *TEXT_FLAGS):
        value = getattr(args, name)
        if value is not None:
            values["render" if name == "server_render" else name] = value == "yes" if value in ("yes", "no") else value
    return values


def read_prompts(args: argparse.Namespace) -> list[str]:
    """--prompt values, then the lines of --prompts FILE (blank lines skipped); UsageError for an unreadable file."""
    prompts = [prompt for prompt in args.prompt]
    if args.prompts:
        try:
            text = Path(args.prompts).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--prompts: cannot read {args.prompts}: {exc}") from None
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    for prompt in prompts:
        if not prompt.strip():
            raise UsageError("--prompt: an empty prompt; describe the object to make.")
    return prompts


def script_argv(argv: list[str]) -> list[str]:
    """The batch's own arguments: after `--` inside Blender, else everything after the script name."""
    if argv and argv[0] and Path(argv[0]).name == Path(__file__).name:
        return argv[1:]
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return []


def parse_args(parser: BatchArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse and check the command line; raise UsageError with a clear message."""
    for arg in argv:
        name = arg.split("=", 1)[0].lower()
        if name.startswith("--") and ("key" in name and "track" not in name):
            # Refuse before argparse, whose message would echo the value (the key) to the terminal.
            raise UsageError(
                f"{name}: the API key is never accepted on the command line; "
                "set MODELSLAB_API_KEY or the add-on preferences."
            )
    args = parser.parse_args(argv)
    if not (args.inputs or args.prompt or args.prompts or args.camera is not None or args.adopt or args.resume):
        raise UsageError(
            "no IMAGE_OR_URL given (nor --prompt, --prompts, --camera or --adopt; or use --resume to finish "
            "an interrupted run)."
        )
    if args.concurrency < 1 or args.concurrency > 64:
        raise UsageError(f"--concurrency must be from 1 to 64, got {args.concurrency}.")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be a positive number of seconds, got {args.timeout:g}.")
    if args.save_blend and not args.save_blend.lower().endswith(".blend"):
        raise UsageError(f"--save-blend must name a .blend file, got {args.save_blend!r}.")
    return args


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
def import_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The import options given on the command line (unset ones are left to the scene's settings)."""
    given = {
        "ground": args.ground,
        "target_height": args.height,
        "facing": args.facing,
        "as_asset": args.as_asset,
        "bake_size": args.bake,
    }
    return {name: value for name, value in given.items() if value is not None}


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
    balance_before = session.wallet_balance_now()  # None when unknown; a failed check never stops the batch
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
    output.progress(batch_output.money_line(balance_before, session.wallet_balance_now(), session.money()))
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


def open_blend(path: str) -> None:
    """Open the .blend whose active camera --camera renders; UsageError when it cannot be opened."""
    import bpy

    blend = Path(path).expanduser()
    if blend.suffix.lower() != ".blend" or not blend.is_file():
        raise UsageError(f"--camera: {path!r} is not a .blend file.")
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # Blender says "Read blend: ..." on fd 1, which carries JSON only
    try:
        bpy.ops.wm.open_mainfile(filepath=str(blend.absolute()))
    except RuntimeError as exc:
        raise UsageError(f"--camera: cannot open {path}: {exc}") from None
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    check_camera_blend()


def check_camera_blend() -> None:
    """--camera needs an open .blend with an active camera."""
    import bpy

    if not bpy.data.filepath:
        raise UsageError("--camera renders the active camera of a .blend: give its path, or open it in Blender.")
    if bpy.context.scene.camera is None:
        raise UsageError(f"--camera: {bpy.data.filepath} has no active camera.")


def main(argv: list[str] | None = None) -> int:
    """Run the batch; returns the exit code (see the module docstring)."""
    ext = Extension()
    try:
        return _run(ext, script_argv(sys.argv if argv is None else argv))
    finally:
        ext.close()


def _run(ext: Extension, argv: list[str]) -> int:
    api = ext.module("api")
    params_module = ext.module("api.params")
    parser = build_parser(tuple(params_module.OUTPUT_FORMATS))
    try:
        args = parse_args(parser, argv)
        params = given_params(args, params_module.PARAM_FIELDS)
        args.prompt_list = read_prompts(args)
        inputs = ext.module("blender.inputs")
        # validated as the operator does, before any request: the image fields, and each prompt's
        image_fields, text_fields = params_module.fields_for("image"), params_module.fields_for("text")
        if args.inputs or args.camera is not None:
            inputs.build_params({k: v for k, v in params.items() if k in image_fields})
        for prompt in args.prompt_list:
            text_values = {k: v for k, v in params.items() if k in text_fields}
            inputs.build_params({**text_values, "prompt": prompt}, kind="text")
        stray = sorted(set(params) - set(image_fields) - set(text_fields))
        if stray:
            raise UsageError(f"unknown parameters: {', '.join(stray)}")
        if args.camera:
            open_blend(args.camera)
        elif args.camera is not None:
            check_camera_blend()
        import_options = ext.module("blender.batch").batch_import_options(import_option_values(args), use_scene=True)
        if args.export:
            args.export = ext.module("blender.export").check_export_format(args.export)
    except (UsageError, api.ModelsLabError) as error:
        parser.print_usage(sys.stderr)
        text = str(error) if isinstance(error, UsageError) else f"{error.message} [{error.category.value}]"
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


if __name__ == "__main__":
    sys.exit(run_script())
