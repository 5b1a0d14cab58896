"""Updates through Blender's own extension platform: a studio hosts the repository that `make repo` writes.

The repository is built the way `make repo` builds it (scripts/build_extension.py --repo-dir, whose index.json
comes from Blender's own `blender_ext.py server-generate` of bpy 5.3, like make repo's) and served over HTTP on
loopback. The Blender of this layer's venv adds it as a remote repository in a clean user dir, syncs, installs
and uses the add-on; then a higher version is published (a copy of the shipped files with a bumped manifest
version) and Blender, started again, syncs, offers the update and applies it in place. The journal and mesh cache that
the first version wrote must survive and be used by the new version. Each step is its own Blender process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.blender import UserDir
from tests.helpers.servers import ServerProcess

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DRIVER = HERE / "repo_driver.py"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_extension.py"
RESULT_MARKER = "@@MODELSLAB_REPO_RESULT@@ "
PACKAGE_ID = "modelslab_3d"
REPO_MODULE = "studio"
# make repo runs the build with bpy 5.3's extension tool; a studio on an older Blender syncs that index.json.
REPO_TOOL_PYTHON = Path(os.environ.get("MODELSLAB_REPO_PYTHON", REPO_ROOT / ".venv-bpy53" / "bin" / "python"))
API_KEY = "mlk-test-repo-0123456789abcdef"


class StaticRepository:
    """A folder served over HTTP on loopback, recording every path requested."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                requests.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(directory)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="static-repo", daemon=True)

    @property
    def index_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/index.json"

    def fetched(self, name: str) -> int:
        return sum(1 for path in self.requests if path.split("?", 1)[0] == f"/{name}")


@pytest.fixture
def static_repo(tmp_path: Path) -> Iterator[StaticRepository]:
    repo = StaticRepository(tmp_path / "repo")
    repo.directory.mkdir()
    repo.thread.start()
    yield repo
    repo.httpd.shutdown()
    repo.httpd.server_close()
    repo.thread.join(timeout=10)


def publish(source_dir: Path, output_dir: Path, repo_dir: Path) -> str:
    """Build source_dir and publish it into repo_dir as make repo does; returns the build's output."""
    if not REPO_TOOL_PYTHON.is_file():
        pytest.fail(f"{REPO_TOOL_PYTHON} is missing: make repo builds with bpy 5.3 (run `make repo` to set it up)")
    build = subprocess.run(
        [str(REPO_TOOL_PYTHON), str(BUILD_SCRIPT), "--source-dir", str(source_dir)]
        + ["--output-dir", str(output_dir), "--repo-dir", str(repo_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"publishing failed:\n{build.stdout}\n{build.stderr}"
    return build.stdout


def bumped(version: str) -> str:
    major, minor, patch = (int(part) for part in version.split("."))
    return f"{major}.{minor}.{patch + 1}"


def next_version_source(extension_zip: Path, target: Path) -> str:
    """The shipped files of extension_zip, unpacked into target with the manifest's patch version raised."""
    with zipfile.ZipFile(extension_zip) as archive:
        archive.extractall(target)
    manifest = target / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    new_version = bumped(tomllib.loads(text)["version"])
    text, count = re.subn(r'(?m)^version = "[^"]*"$', f'version = "{new_version}"', text, count=1)
    assert count == 1, "blender_manifest.toml has no top-level version line"
    manifest.write_text(text, encoding="utf-8")
    return new_version


def listed_versions(repo_dir: Path) -> dict[str, str]:
    index = json.loads((repo_dir / "index.json").read_text(encoding="utf-8"))
    return {item["id"]: item["version"] for item in index["data"]}


class Machine:
    """A studio workstation: one temporary Blender user dir, each step a fresh Blender process."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.user_dir = UserDir(root)
        self.spec = spec

    def run(self, step: str, **extra: Any) -> dict[str, Any]:
        spec_path = self.user_dir.specs / f"{step}.json"
        spec_path.write_text(json.dumps({**self.spec, **extra}), encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, str(DRIVER), step, str(spec_path)],
            cwd=str(self.user_dir.root),
            env=self.user_dir.env({"MODELSLAB_API_KEY": API_KEY}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=180,
            check=False,
        )
        lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        payload = json.loads(lines[-1][len(RESULT_MARKER) :]) if lines else {"ok": False, "traceback": "no result"}
        assert payload["ok"], (
            f"step {step} failed (exit {completed.returncode}):\n{payload.get('traceback')}\n"
            f"--- stdout (tail) ---\n{completed.stdout[-3000:]}\n--- stderr (tail) ---\n{completed.stderr[-3000:]}"
        )
        return payload["result"]


def test_studio_repository_installs_then_offers_and_applies_the_next_version_keeping_journal_and_cache(
    tmp_path: Path, static_repo: StaticRepository, fresh_server: ServerProcess
) -> None:
    first_version = tomllib.loads((REPO_ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))["version"]
    publish(REPO_ROOT, tmp_path / "dist-1", static_repo.directory)
    assert listed_versions(static_repo.directory) == {PACKAGE_ID: first_version}

    machine = Machine(
        tmp_path / "machine",
        {
            "repo_module": REPO_MODULE,
            "remote_url": static_repo.index_url,
            "base_url": fresh_server.url,
            "image": str(REPO_ROOT / "examples" / "duck_512.png"),
            "resolution": 48,
        },
    )

    # 1. Add the repository, sync, install from it, generate once (journal + cache written).
    first = machine.run("install")
    assert first["online_access"] is True
    assert first["sync"] == ["FINISHED"] and first["install"] == ["FINISHED"]
    assert (first["installed_before"], first["installed_version"]) == (None, first_version)
    assert static_repo.fetched(f"{PACKAGE_ID}-{first_version}.zip") == 1
    assert first["updates_offered"] == 0
    assert first["addon"]["enabled"] and first["addon"]["operator_registered"], first["addon"]
    assert first["generate"] == ["FINISHED"]
    (job_id,) = first["job_ids"]
    journal = {name for name in first["user_files"] if name.startswith("jobs/")}
    cache = {name for name in first["user_files"] if name.startswith("meshes/")}
    assert journal and cache, f"the first version wrote no journal or no mesh cache: {sorted(first['user_files'])}"
    downloads = fresh_server.stats()["requests"].get("download", 0)
    assert downloads == 1

    # 2. Publish the next version into the same repository.
    next_version = next_version_source(tmp_path / "dist-1" / f"{PACKAGE_ID}-{first_version}.zip", tmp_path / "src-2")
    publish(tmp_path / "src-2", tmp_path / "dist-2", static_repo.directory)
    assert listed_versions(static_repo.directory) == {PACKAGE_ID: next_version}
    assert sorted(p.name for p in static_repo.directory.glob("*.zip")) == [f"{PACKAGE_ID}-{next_version}.zip"]

    # 3. Blender starts again: nothing offered until it syncs; then one update, applied in place.
    second = machine.run("upgrade", job_id=job_id)
    assert second["addon_before"]["enabled"] and second["addon_before"]["loaded"], second["addon_before"]
    assert second["installed_before"] == first_version
    assert second["updates_before_sync"] == 0
    assert second["sync"] == ["FINISHED"]
    assert second["updates_offered"] == 1
    assert second["upgrade"] == ["FINISHED"]
    assert second["installed_version"] == next_version
    assert static_repo.fetched(f"{PACKAGE_ID}-{next_version}.zip") == 1
    assert second["updates_after"] == 0
    assert second["addon"]["enabled"] and second["addon"]["operator_registered"], second["addon"]
    assert second["addon"]["base_url"] == fresh_server.url, "the add-on's preferences did not survive the upgrade"
    # The journal and the cache the first version wrote are still there, byte for byte ...
    for name in sorted(journal | cache):
        assert second["user_files"].get(name) == first["user_files"][name], f"{name} changed or vanished"
    # ... and the new version uses them: the re-import comes from the cache, not from a new download.
    assert second["reimport"]["result"] == ["FINISHED"], second["reimport"]
    assert len(second["reimport"]["objects"]) == 1 and second["reimport"]["vertices"][0] > 0

    # 4. Started once more: the upgraded add-on loads and still serves the old job from its cache.
    third = machine.run("restart", job_id=job_id)
    assert third["installed_version"] == next_version
    assert third["addon"]["enabled"] and third["addon"]["operator_registered"], third["addon"]
    assert third["reimport"]["result"] == ["FINISHED"], third["reimport"]
    for name in sorted(cache):
        assert third["user_files"].get(name) == first["user_files"][name], f"{name} changed or vanished"
    assert fresh_server.stats()["requests"].get("download", 0) == downloads
    assert fresh_server.stats()["submits"] == 1
