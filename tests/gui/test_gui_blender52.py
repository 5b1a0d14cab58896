"""GUI layer, Blender 5.2: Debian sid's Blender 5.2 (Python 3.14) in a real window under Xvfb, inside the root
filesystem scripts/blender52_root.sh keeps under ~/.cache, with the extension zip installed through Blender's
own installer, against the local server on loopback (the chroot shares the host's network).

One session (module fixture) runs tests/gui/blender52_driver.py in that window: the sidebar with an image
chosen, Test Connection in the add-on's preferences, one job that fails, three that import, three more
running with their progress bars. Each test below checks one promise from what Blender itself reported
(the panels' layouts, the job rows, the scene, the extension platform's warnings), and the screenshots that
passed those checks replace docs/screenshot.png and docs/screenshot-preferences.png.

Skipped (with the reason) only when the root filesystem cannot exist here: not root, or no mmdebstrap.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.paths import EXAMPLE_IMAGES, REPO_ROOT
from tests.helpers.servers import start_server
from tests.helpers.shipping import newest_shipped_mtime

ROOT_SCRIPT = REPO_ROOT / "scripts" / "blender52_root.sh"
DRIVER = Path(__file__).resolve().with_name("blender52_driver.py")
DRIVER_COMMON = DRIVER.with_name("driver_common.py")  # the driver imports it from its own folder
EXTENSION_ID = "modelslab_3d"
CATEGORY = "ModelsLab"
JOB_SECONDS = 6.0  # every job takes this long on the server: long enough to see three of them running
SESSION_TIMEOUT = 240.0  # the driver exits by itself after DRIVER_DEADLINE
DRIVER_DEADLINE = 200.0
GUEST_EXAMPLES = "/srv/examples"  # a neutral folder: the screenshots show it, never a path of this machine
FAILURE_TEXT = "Generation failed: the model could not process this image"
FIRST_SIGHT_BOUND_S = 10.0  # measured: about 1 s after the last import (software OpenGL, Solid shading)
SCREENSHOT = REPO_ROOT / "docs" / "screenshot.png"
SCREENSHOT_PREFERENCES = REPO_ROOT / "docs" / "screenshot-preferences.png"
OUTPUT_TAIL = 8000


def _unavailable() -> str | None:
    """Why the 5.2 window cannot run here, or None (building the root filesystem first if it is missing)."""
    if os.geteuid() != 0:
        return "the Blender 5.2 window runs in a chroot, which needs root"
    status = subprocess.run([str(ROOT_SCRIPT), "status"], capture_output=True, text=True, check=False)
    if status.returncode == 0:
        return None
    if shutil.which("mmdebstrap") is None:
        return "no Blender 5.2 root filesystem and no mmdebstrap to build it (apt-get install mmdebstrap)"
    build = subprocess.run([str(ROOT_SCRIPT), "ensure"], capture_output=True, text=True, check=False)
    if build.returncode != 0:  # root and mmdebstrap are there: a failed build is a failure, not a skip
        pytest.fail(f"scripts/blender52_root.sh ensure failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}")
    return None


pytestmark = pytest.mark.timeout(SESSION_TIMEOUT + 180)  # one window session, plus the server and a build

REASON = _unavailable()
if REASON:
    pytest.skip(f"gui layer (Blender 5.2) skipped: {REASON}", allow_module_level=True)

ROOTFS = Path(subprocess.run([str(ROOT_SCRIPT), "path"], capture_output=True, text=True, check=True).stdout.strip())


def extension_zip(workdir: Path) -> tuple[Path, str]:
    """(zip, where it came from): MODELSLAB_GUI52_ZIP, else dist/'s extension zip when it is at least as new as
    every shipped file, else one built from the checkout with the chroot's blender_ext.py."""
    override = os.environ.get("MODELSLAB_GUI52_ZIP")
    if override:
        return Path(override).resolve(), "MODELSLAB_GUI52_ZIP"
    built = sorted((REPO_ROOT / "dist").glob(f"{EXTENSION_ID}-*[0-9].zip"))
    if built and built[-1].stat().st_mtime >= newest_shipped_mtime():
        return built[-1], f"dist/{built[-1].name} (make build)"
    tool = next(ROOTFS.glob("usr/share/blender/**/bl_pkg/cli/blender_ext.py"), None)
    assert tool is not None, f"no blender_ext.py in {ROOTFS}"
    out = workdir / "build"
    script = REPO_ROOT / "scripts" / "build_extension.py"
    env = dict(os.environ, BLENDER_EXT=str(tool))
    python = REPO_ROOT / ".venv" / "bin" / "python"
    run = subprocess.run(
        [str(python), str(script), "--output-dir", str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, f"building the extension zip failed:\n{run.stdout}\n{run.stderr}"
    made = [path for path in out.glob(f"{EXTENSION_ID}-*.zip") if not path.name.endswith("-legacy.zip")]
    assert made, f"the build wrote no extension zip into {out}"
    return made[0], "built from the checkout (dist/ has none at least as new as the sources)"


@dataclass
class Session:
    result: dict[str, Any] | None
    returncode: int | None
    output: str
    seconds: float
    api_key: str
    zip_origin: str
    guest_dir: Path  # the session's folder on the host side of the chroot
    server_stats: dict[str, Any]
    key_leaks: list[str]  # files of the session (user dir, journal, cache, quit.blend, result) holding the key

    def report(self) -> str:
        errors = (self.result or {}).get("errors") or []
        return "\n".join(
            [
                f"blender exit code {self.returncode}, {self.seconds:.1f} s, add-on zip: {self.zip_origin}",
                *(f"driver error: {message}" for message in errors),
                "--- output (tail) ---",
                self.output[-OUTPUT_TAIL:],
            ]
        )

    def checked(self) -> dict[str, Any]:
        """The driver's result; fails the calling test with Blender's output when the session went wrong."""
        if self.result is None or self.returncode != 0 or self.result.get("errors"):
            pytest.fail("the Blender 5.2 session failed\n" + self.report(), pytrace=False)
        return self.result


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process and everything it started (it leads its own process group): TERM, then KILL."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_in_window(args: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[int | None, str, float]:
    """Run a command in the chroot's Xvfb window (its own process group, killed whole on timeout); its output
    goes to `log` as it comes (and is returned)."""
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            [str(ROOT_SCRIPT), "run", *args],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except BaseException as exc:  # the timeout, or pytest's own timeout / Ctrl+C: never leave a window behind
            stop_group(proc)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            sink.write(f"\n[killed after {timeout:g} s]\n")
    return proc.returncode, log.read_text(encoding="utf-8", errors="replace"), time.monotonic() - started


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("gui52")
    zip_path, zip_origin = extension_zip(workdir)
    examples = ROOTFS / GUEST_EXAMPLES.lstrip("/")
    examples.mkdir(parents=True, exist_ok=True)
    for image in EXAMPLE_IMAGES:
        shutil.copyfile(image, examples / image.name)
    guest_dir = Path(tempfile.mkdtemp(prefix="gui52-", dir=ROOTFS / "srv"))
    guest = "/srv/" + guest_dir.name
    (guest_dir / "home" / "tmp").mkdir(parents=True)
    shutil.copyfile(zip_path, guest_dir / zip_path.name)
    for script in (DRIVER, DRIVER_COMMON):
        shutil.copyfile(script, guest_dir / script.name)
    api_key = "gui52-" + secrets.token_hex(16)
    failure = {"fault": "job_failed", "endpoint": "submit", "times": 1, "text": FAILURE_TEXT}
    args = ("--job-seconds", str(JOB_SECONDS), "--workers", "3", "--fault", json.dumps(failure))
    try:
        with start_server(*args) as server:
            config = {
                "zip": f"{guest}/{zip_path.name}",
                "extension_id": EXTENSION_ID,
                "images": [f"{GUEST_EXAMPLES}/{image.name}" for image in EXAMPLE_IMAGES[:3]],
                "failing_image": f"{GUEST_EXAMPLES}/{EXAMPLE_IMAGES[0].name}",
                "server_url": server.url,
                "category": CATEGORY,
                "result": f"{guest}/result.json",
                "screenshot": f"{guest}/screenshot.png",
                "screenshot_preferences": f"{guest}/screenshot-preferences.png",
                "timeout": 90,
                "deadline": DRIVER_DEADLINE,
            }
            (guest_dir / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
            home = f"{guest}/home"
            # The key travels in the environment only (never on a command line, where ps would show it).
            env = dict(os.environ, MODELSLAB_API_KEY=api_key, BLENDER52_PASS_ENV="MODELSLAB_API_KEY")
            command = [
                "env",
                f"HOME={home}",
                f"XDG_CONFIG_HOME={home}/.config",
                f"TMPDIR={home}/tmp",
                "NO_PROXY=127.0.0.1,localhost",
                "blender",
                "--python-exit-code",
                "3",
                "--python",
                f"{guest}/{DRIVER.name}",
                "--",
                f"{guest}/config.json",
            ]
            returncode, output, seconds = run_in_window(command, env, workdir / "blender.log", SESSION_TIMEOUT)
            stats = server.stats()
        for crash in sorted((guest_dir / "home" / "tmp").glob("*.crash.txt")):
            output += f"\n--- {crash.name} ---\n" + crash.read_text(encoding="utf-8", errors="replace")
        # Kept for a look afterwards: in the test's temporary folder, and in MODELSLAB_GUI52_ARTIFACTS if set.
        keep = [workdir] + (
            [Path(os.environ["MODELSLAB_GUI52_ARTIFACTS"])] if "MODELSLAB_GUI52_ARTIFACTS" in os.environ else []
        )
        for folder in keep:
            folder.mkdir(parents=True, exist_ok=True)
            for name in ("result.json", "screenshot.png", "screenshot-preferences.png", "blender.log"):
                source = guest_dir / name if name != "blender.log" else workdir / name
                if source.is_file() and source.parent != folder:
                    shutil.copyfile(source, folder / name)
        result_path = guest_dir / "result.json"
        result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.is_file() else None
        key = api_key.encode()
        leaks = [str(path) for path in guest_dir.rglob("*") if path.is_file() and key in path.read_bytes()]
        yield Session(result, returncode, output, seconds, api_key, zip_origin, guest_dir, stats, leaks)
    finally:
        shutil.rmtree(guest_dir, ignore_errors=True)


def test_extension_installs_through_blenders_installer_without_warnings(session: Session) -> None:
    result = session.checked()
    assert result["blender_version"].startswith("5.2"), result["blender_version"]
    assert result["python_version"].startswith("3.14"), result["python_version"]
    install = result["install"]
    assert install["return"] == ["FINISHED"], install
    assert install["enabled"] == [f"bl_ext.user_default.{EXTENSION_ID}"], install
    # What Preferences > Get Extensions marks with a warning sign (e.g. a top-level module in sys.modules).
    assert install["warnings"] == {}, install["warnings"]
    assert result["warnings_at_end"] == {}, result["warnings_at_end"]


def drawn(items: list[dict[str, Any]], call: str, **match: Any) -> list[dict[str, Any]]:
    """The recorded layout items of one kind (label, prop, operator, progress, ...) matching every given field."""
    return [item for item in items if item["call"] == call and all(item.get(k) == v for k, v in match.items())]


def test_sidebar_tab_shows_the_chosen_image_and_generate(session: Session) -> None:
    result = session.checked()
    assert result["tab_clicks"] >= 1, result["tab_log"]
    assert set(result["panel_classes"]) >= {"MODELSLAB_PT_generate", "MODELSLAB_PT_jobs"}, result["panel_classes"]
    items = result["panels"]["main"]["MODELSLAB_PT_generate"]["items"]
    image = drawn(items, "prop", prop="image_path")
    assert image and image[0]["value"] == f"{GUEST_EXAMPLES}/{EXAMPLE_IMAGES[0].name}", image
    assert drawn(items, "template_icon"), "no thumbnail of the chosen image"
    generate = drawn(items, "operator", operator="modelslab.image_to_3d")
    assert generate and generate[0]["text"] == "Generate" and generate[0]["enabled"], generate


def test_preferences_show_the_masked_key_and_the_connection(session: Session) -> None:
    result = session.checked()
    status = result["connection_status"]
    assert status.get("icon") == "CHECKMARK", status
    layout = result["panels"]["preferences"]
    assert "Test Connection" in layout["texts"], layout["texts"]
    assert status["text"] in layout["texts"], (status, layout["texts"])
    key_field = drawn(layout["items"], "prop", prop="api_key")
    assert key_field and key_field[0]["value"] == "<set>", key_field
    assert session.api_key not in json.dumps(result), "the driver's record holds the API key"
    assert result["preferences_section"] == "ADDONS"


def test_three_jobs_run_with_progress_bars(session: Session) -> None:
    result = session.checked()
    rows = result["screenshots"]["main"]["rows"]
    running = rows[4:]
    assert len(running) == 3, rows
    for row in running:
        assert row["state"] in ("submitted", "processing", "downloading"), row
        assert 0.0 < row["progress"] < 1.0, row
    drawn_rows = result["panels"]["main"]["MODELSLAB_UL_jobs"]["rows"]
    bars = [drawn(row["items"], "progress") for row in drawn_rows.values()]
    assert sum(1 for bar in bars if bar) == 3, drawn_rows
    for bar in filter(None, bars):
        assert 0.0 < bar[0]["factor"] < 1.0, bar
        # the list row's small ring carries the time left ("4s") or "late"; the name takes the rest of the row
        assert bar[0].get("type") == "RING" and re.fullmatch(r"(\d+s|late|)", bar[0].get("text", "")), bar


def test_time_left_counts_down_and_the_bar_moves(session: Session) -> None:
    samples = session.checked()["countdown"]
    assert len(samples) == 2, samples
    lefts = []
    for sample in samples:
        found = [re.fullmatch(r"About (\d+)s left", item.get("text", "")) for item in sample["bars"]]
        lefts += [int(match.group(1)) for match in found if match]
    assert len(lefts) == 2 and lefts[0] > lefts[1], samples
    factors = [sample["bars"][0]["factor"] for sample in samples]
    assert factors[0] < factors[1], factors
    assert all(re.search(r"Elapsed \d+s, expected \d+s", " ".join(sample["texts"])) for sample in samples), samples


def test_everything_fits_the_sidebar(session: Session) -> None:
    widths = session.checked()["widths"]
    assert widths["overflow"] == [], widths


def test_finished_and_failed_jobs_are_reported_in_the_status_bar(session: Session) -> None:
    # What the status bar showed, as Blender's Info log keeps it (copied with info.report_copy).
    log = session.checked()["info_log"]
    imported = [line for line in log if line.startswith("ModelsLab: ") and " imported as " in line]
    for image in EXAMPLE_IMAGES[:3]:  # the three imports; a repeated name is numbered ("duck_512 (2)")
        pattern = rf"ModelsLab: {re.escape(image.stem)}( \(\d+\))? imported as "
        assert any(re.match(pattern, line) for line in imported), (image, imported)
    assert all(re.search(r"\(took \d+s\)$", line) for line in imported), imported
    failed = [line for line in log if line.startswith("ModelsLab: ") and " failed: " in line]
    assert len(failed) == 1 and FAILURE_TEXT.split(":")[0] in failed[0], log


def test_failed_job_shows_its_message_and_fix(session: Session) -> None:
    result = session.checked()
    failed = result["failed_row"]
    assert failed["state"] == "failed", failed
    assert FAILURE_TEXT in failed["message"], failed
    assert failed["fix"], failed
    # The selected failed row's details box: the message and the fix as the sidebar shows them (wrapped).
    items = result["panels"]["main"]["MODELSLAB_PT_jobs"]["items"]
    shown = " ".join(result["panels"]["main"]["MODELSLAB_PT_jobs"]["texts"])
    assert " ".join(FAILURE_TEXT.split()[:4]) in shown, shown
    assert " ".join(failed["fix"].split()[:4]) in shown, (failed["fix"], shown)
    # people's words: a sentence, a separator, the fix naming the sidebar's labels; the category only in the record
    assert f"[{failed['category']}]" not in shown, shown
    assert '"Remove Background"' in shown and "remove_bg" not in shown, shown
    message, fix = drawn(items, "label", icon="ERROR"), drawn(items, "label", icon="HELP")
    assert message and fix, shown
    between = [item for item in items[items.index(message[0]) : items.index(fix[0])] if item["call"] == "separator"]
    assert between, "no separator between the message and the fix"


def test_imported_objects_are_in_the_scene_and_visible(session: Session) -> None:
    result = session.checked()
    objects = result["objects"]
    assert len(objects) == 3, objects
    server_ids = {str(job["id"]) for job in session.server_stats["jobs"] if job["status"] == "success"}
    for obj in objects:
        assert obj["vertices"] > 0 and obj["collections"] == ["ModelsLab"], obj
        assert obj["name"] in result["scene_objects"], obj
        assert obj["remote_id"] in server_ids, (obj, server_ids)
    # The viewport showed the imports by itself (nothing asked it to redraw), soon after the last one.
    first = result["first_sight"]
    assert first["visible"] and first["seconds_after_import"] < FIRST_SIGHT_BOUND_S, first
    shot = result["screenshots"]["main"]
    assert set(shot["objects"]) == {obj["name"] for obj in objects}, shot["objects"]
    for name, seen in shot["objects"].items():
        assert seen["visible"], (name, seen)


def test_screenshots_replace_the_documented_ones(session: Session) -> None:
    result = session.checked()
    main = session.guest_dir / Path(result["screenshots"]["main"]["path"]).name
    preferences = session.guest_dir / Path(result["screenshots"]["preferences"]["path"]).name
    for shot in (main, preferences):
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000, shot
        assert str(REPO_ROOT).encode() not in data
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(main, SCREENSHOT)
    shutil.copyfile(preferences, SCREENSHOT_PREFERENCES)


def test_api_key_is_in_no_file_and_no_output(session: Session) -> None:
    session.checked()
    assert session.api_key not in session.output, "the API key was printed"
    assert not session.key_leaks, f"the API key was written to {session.key_leaks}"
