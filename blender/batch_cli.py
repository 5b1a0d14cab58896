"""The batch command line's options and the checks it makes before any request (scripts/batch.py runs it).

The generation parameters' flags are made from api.params.FIELD_SPECS, so each field's value kind, range,
choices and description are stated once. Option names are a public contract (README's flag table, tests/batch).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..api.params import FIELD_SPECS, IMAGE, TEXT, FieldSpec, fields_for
from .batch import batch_import_options
from .export import check_export_format
from .inputs import build_params

# A field's flag is `--` + its name with dashes, except these: `render` is --server-render, as --render already
# renders previews of the imported objects.
FLAG_NAMES = {"output_format": "format", "render": "server-render"}
METAVARS = {"int": "N", "float": "F", "url": "URL", "text": "TEXT"}
ID_FIELDS = ("track_id", "model_id")  # text fields whose value is an id (metavar ID)
# The flag groups: the seed revision's fields, the newer revision's, the text endpoint's (FIELD_SPECS order).
GROUPS = (
    ("the API's parameters (unset: the scene's settings)", lambda spec: not spec.optional),
    ("the newer revision's fields (sent only when given)", lambda spec: spec.optional and IMAGE in spec.kinds),
    ("text to 3D fields (sent only when given)", lambda spec: spec.optional and spec.kinds == (TEXT,)),
)


class UsageError(Exception):
    """A command line that cannot run: exit code 2, nothing submitted."""


class BatchArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so the caller decides how to leave Blender."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(message)


def flag_specs() -> list[FieldSpec]:
    """The fields with a flag of their own: every settable field but the prompt (--prompt/--prompts)."""
    return [spec for spec in FIELD_SPECS if spec.name != "prompt"]


def flag_dest(spec: FieldSpec) -> str:
    """The attribute of the parsed arguments that holds a field's flag."""
    return FLAG_NAMES.get(spec.name, spec.name).replace("-", "_")


def _range(spec: FieldSpec) -> str:
    if spec.low is None or spec.high is None:
        return ""
    if spec.kind == "int":
        return f" ({int(spec.low)}-{int(spec.high)})"
    return f" ({spec.low:g}-{spec.high:g})"


def add_parameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per settable field, in FIELD_SPECS order, grouped by revision; unset flags are None."""
    for title, belongs in GROUPS:
        group = parser.add_argument_group(title)
        for spec in filter(belongs, flag_specs()):
            flag = "--" + FLAG_NAMES.get(spec.name, spec.name.replace("_", "-"))
            options: dict[str, Any] = {"dest": flag_dest(spec), "help": spec.description + _range(spec)}
            if spec.kind in ("bool", "yesno") and not spec.optional:
                options.update(action="store_const", const=True, default=None)  # a switch: given means true
            elif spec.kind in ("bool", "yesno"):
                options.update(choices=("yes", "no"))  # sent only when given, so "no" must be sayable
            elif spec.kind == "choice":
                options.update(choices=spec.choices)
            else:
                metavar = "ID" if spec.name in ID_FIELDS else METAVARS[spec.kind]
                options.update(metavar=metavar, type={"int": int, "float": float}.get(spec.kind, str))
            group.add_argument(flag, **options)


def params_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The generation parameters given on the command line, by field name (unset ones are left out)."""
    values: dict[str, Any] = {}
    for spec in flag_specs():
        value = getattr(args, flag_dest(spec))
        if value is not None:
            values[spec.name] = value == "yes" if spec.optional and spec.kind in ("bool", "yesno") else value
    return values


def build_parser() -> BatchArgumentParser:
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
    add_parameter_flags(parser)
    return parser


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


def check_before_request(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check everything as the operator does, before any request; returns (parameters, import options).

    Sets args.prompt_list (--prompt and --prompts), opens the --camera .blend and normalises --export. Raises
    UsageError or ModelsLabError(invalid_input).
    """
    params = params_from_args(args)
    args.prompt_list = read_prompts(args)
    image_fields, text_fields = fields_for(IMAGE), fields_for(TEXT)
    if args.inputs or args.camera is not None:
        build_params({k: v for k, v in params.items() if k in image_fields})
    for prompt in args.prompt_list:
        text_values = {k: v for k, v in params.items() if k in text_fields}
        build_params({**text_values, "prompt": prompt}, kind=TEXT)
    if args.camera:
        open_blend(args.camera)
    elif args.camera is not None:
        check_camera_blend()
    import_options = batch_import_options(import_option_values(args), use_scene=True)
    if args.export:
        args.export = check_export_format(args.export)
    return params, import_options


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
    scene = bpy.context.scene
    if scene is None or scene.camera is None:
        raise UsageError(f"--camera: {bpy.data.filepath} has no active camera.")
