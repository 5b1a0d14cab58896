"""Build the extension zip with Blender's own tool, validate it, and write the legacy add-on zip next to it.

Run with a Python that has the `bpy` module (make build and make repo use .venv-bpy53):

    .venv-bpy53/bin/python scripts/build_extension.py [--source-dir .] [--output-dir dist] [--repo-dir dist/repo]

Writes dist/<id>-<version>.zip (Blender 4.2+ extension, files at the zip root, checked with
`blender_ext.py validate`) and dist/<id>-<version>-legacy.zip (the same files under `<id>/`, for
Edit > Preferences > Add-ons > Install on Blender 3.4-4.1). With --repo-dir it also publishes the extension
zip into a static remote repository: the zip replaces any other version of this extension there, and Blender's
`blender_ext.py server-generate` writes index.json (and index.html) for it. Prints the paths; exits non-zero on
failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Top-level entries that must never ship: a leak here means the manifest's exclude patterns are wrong.
FORBIDDEN_TOP_LEVEL = {
    "server",
    "tests",
    "bench",
    "docs",
    "examples",
    "scripts",
    "requirements",
    "dist",
    "demo-output",
    "Makefile",
    "pyproject.toml",
}


class BuildError(Exception):
    """A build step failed; the message says which and why."""


def find_blender_ext() -> Path:
    """Blender's extension CLI (blender_ext.py) inside the bpy package of this interpreter, or $BLENDER_EXT."""
    override = os.environ.get("BLENDER_EXT")
    if override:
        path = Path(override)
        if not path.is_file():
            raise BuildError(f"BLENDER_EXT={override} is not a file")
        return path
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError(f"the bpy module is not installed for {sys.executable}; run `make setup-bpy` first")
    candidates: list[Path] = []
    for location in spec.submodule_search_locations:
        candidates.extend(Path(location).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not candidates:
        raise BuildError(f"blender_ext.py not found under the bpy package at {list(spec.submodule_search_locations)}")
    # One version directory per bpy install; if there were several, the newest Blender's tool wins.
    return max(candidates, key=lambda p: tuple(int(x) for x in p.parents[4].name.split(".") if x.isdigit()))


def read_manifest(source_dir: Path) -> tuple[str, str]:
    """(id, version) from blender_manifest.toml."""
    manifest_path = source_dir / "blender_manifest.toml"
    try:
        manifest = tomllib.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {manifest_path}: {exc}") from exc
    try:
        return str(manifest["id"]), str(manifest["version"])
    except KeyError as exc:
        raise BuildError(f"{manifest_path} has no {exc.args[0]!r}") from exc


def run_tool(blender_ext: Path, *args: str) -> str:
    """Run blender_ext.py with this interpreter; its output is returned, a non-zero exit raises BuildError."""
    command = [sys.executable, str(blender_ext), *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BuildError(f"`blender_ext.py {' '.join(args)}` failed (exit {result.returncode}):\n{output}")
    return output


def check_contents(zip_path: Path, module: str) -> list[zipfile.ZipInfo]:
    """The zip's file entries, after checking that nothing from the development tree leaked into it."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
    names = {info.filename for info in entries}
    leaked = sorted(
        name
        for name in names
        if name.split("/", 1)[0] in FORBIDDEN_TOP_LEVEL
        or name.split("/", 1)[0].startswith(".")
        or "__pycache__/" in name
        or name.endswith(".pyc")
    )
    if leaked:
        raise BuildError(f"{zip_path.name} contains files that must not ship: {leaked[:10]}")
    for required in ("__init__.py", "blender_manifest.toml"):
        if required not in names:
            raise BuildError(f"{zip_path.name} has no {required} at its root")
    return entries


def write_legacy_zip(extension_zip: Path, legacy_zip: Path, module: str, entries: list[zipfile.ZipInfo]) -> None:
    """Copy every file of the extension zip into legacy_zip under `<module>/`."""
    partial = legacy_zip.with_name(legacy_zip.name + ".part")
    with zipfile.ZipFile(extension_zip) as source, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as target:
        for info in entries:
            copy = zipfile.ZipInfo(f"{module}/{info.filename}", date_time=info.date_time)
            copy.external_attr = info.external_attr
            copy.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(copy, source.read(info))
    os.replace(partial, legacy_zip)


def publish_to_repository(blender_ext: Path, extension_zip: Path, repo_dir: Path, ext_id: str, version: str) -> Path:
    """Put extension_zip into repo_dir as the only version of ext_id there and regenerate its index.json.

    A repository may list one id several times only for disjoint Blender/Python/platform ranges, so an
    older zip of this id is replaced rather than kept. Returns the index.json path.
    """
    repo_dir.mkdir(parents=True, exist_ok=True)
    partial = repo_dir / f".{extension_zip.name}.part"  # not a *.zip: server-generate never sees a half copy
    shutil.copyfile(extension_zip, partial)
    os.replace(partial, repo_dir / extension_zip.name)
    for older in repo_dir.glob(f"{ext_id}-*.zip"):
        if older.name != extension_zip.name:
            older.unlink()
    run_tool(blender_ext, "server-generate", "--repo-dir", str(repo_dir), "--html")
    index_path = repo_dir / "index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"server-generate wrote no readable {index_path}: {exc}") from exc
    listed = [(item.get("id"), item.get("version")) for item in index.get("data", [])]
    if (ext_id, version) not in listed:
        raise BuildError(f"{index_path} does not list {ext_id} {version} (it lists {listed})")
    return index_path


def build(source_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    """Build, validate and repackage; returns (extension zip, legacy zip)."""
    blender_ext = find_blender_ext()
    ext_id, version = read_manifest(source_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    extension_zip = output_dir / f"{ext_id}-{version}.zip"
    legacy_zip = output_dir / f"{ext_id}-{version}-legacy.zip"
    for stale in (extension_zip, legacy_zip):
        stale.unlink(missing_ok=True)

    run_tool(blender_ext, "validate", str(source_dir))
    run_tool(blender_ext, "build", "--source-dir", str(source_dir), "--output-filepath", str(extension_zip))
    if not extension_zip.is_file():
        raise BuildError(f"blender_ext.py build reported success but wrote no {extension_zip}")
    run_tool(blender_ext, "validate", str(extension_zip))

    entries = check_contents(extension_zip, ext_id)
    write_legacy_zip(extension_zip, legacy_zip, ext_id, entries)
    return extension_zip, legacy_zip


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--source-dir", type=Path, default=REPO_ROOT, help="extension source (default: repo root)")
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist", help="where the zips go (dist/)")
    parser.add_argument("--repo-dir", type=Path, help="also publish the extension zip into this remote repository")
    args = parser.parse_args(argv)
    source_dir = args.source_dir.resolve()
    index_path = None
    try:
        extension_zip, legacy_zip = build(source_dir, args.output_dir.resolve())
        ext_id, version = read_manifest(source_dir)
        if args.repo_dir is not None:
            repo_dir = args.repo_dir.resolve()
            index_path = publish_to_repository(find_blender_ext(), extension_zip, repo_dir, ext_id, version)
    except BuildError as exc:
        print(f"build_extension: FAILED: {exc}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(extension_zip) as archive:
        count = sum(1 for info in archive.infolist() if not info.is_dir())
    print(f"extension zip: {extension_zip} ({count} files, validated by Blender's extension tool)")
    print(f"legacy zip:    {legacy_zip} (same files under {ext_id}/)")
    if index_path is not None:
        print(f"repository:    {index_path.parent} (index.json by Blender's server-generate; serve it as it is)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
