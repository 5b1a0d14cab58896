"""What the add-on zip holds, stated once: scripts/build_extension.py's list of top-level entries that must never
ship (its own check of every zip it builds) is read from there; everything else at the repo root ships, except
hidden files and bytecode, as blender_manifest.toml's exclude patterns say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from tests.helpers.paths import BUILD_SCRIPT, REPO_ROOT


def _not_shipped() -> frozenset[str]:
    spec = importlib.util.spec_from_file_location("build_extension", BUILD_SCRIPT)
    assert spec and spec.loader, BUILD_SCRIPT
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return frozenset(module.FORBIDDEN_TOP_LEVEL)


NOT_SHIPPED = _not_shipped()  # top-level names: server, tests, docs, scripts, Makefile, ...


def ships(name: str) -> bool:
    """Whether a path relative to the repo root ("api/client.py") belongs in the add-on zip."""
    parts = name.split("/")
    return not (
        parts[0] in NOT_SHIPPED
        or parts[0].startswith(".")
        or parts[0].endswith(".zip")
        or "__pycache__" in parts
        or name.endswith(".pyc")
    )


def shipped_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every file of the checkout that the add-on zip holds, sorted."""
    found = []
    for entry in sorted(root.iterdir()):
        if not ships(entry.name):
            continue
        for path in [entry] if entry.is_file() else sorted(entry.rglob("*")):
            if path.is_file() and ships(path.relative_to(root).as_posix()):
                found.append(path)
    return found


def newest_shipped_mtime() -> float:
    """The modification time of the newest shipped file: a zip older than this is stale."""
    return max(path.stat().st_mtime for path in shipped_files())


def manifest() -> dict:
    """blender_manifest.toml as a dict."""
    import tomllib

    return tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))


def zip_name(*, legacy: bool = False) -> str:
    """The file name `make build` gives the extension zip (or the legacy add-on zip) in dist/."""
    data = manifest()
    return f"{data['id']}-{data['version']}{'-legacy' if legacy else ''}.zip"
