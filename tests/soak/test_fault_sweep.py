"""Network, TLS and disk faults through the two user-facing entry points, with real bpy: the
`modelslab.image_to_3d` operator (the checkout enabled as an add-on, background mode) and scripts/batch.py.

The server-answer faults (401/402/429/5xx/expired/failed jobs/HTML or corrupt meshes/processing forever) are
covered at the operator level by tests/blender/test_blender_faults.py and at the api level by
tests/unit/test_reliability_faults.py; this sweep adds what only a real process shows: an unreachable host,
TLS with and without the CA bundle, a truncated download, a read-only or full disk, hostile file names.
Each ends with the category in the operator's report / the batch row, no object in the scene, a journal that
says the same, no temp file, no worker thread left, the key nowhere.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.keys import SWEEP_KEY
from tests.helpers.paths import BATCH_SCRIPT, EXAMPLE_IMAGE, REPO_ROOT
from tests.helpers.servers import ServerProcess, default_python, serve, slow_server_args
from tests.helpers.sockets import closed_port

SWEEP_DRIVER = REPO_ROOT / "tests" / "soak" / "sweep_driver.py"


@pytest.fixture(scope="module")
def http_server() -> Iterator[ServerProcess]:
    yield from serve("--workers", "2")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate, made by the dev venv (it has `cryptography`)."""
    folder = tmp_path_factory.mktemp("tls")
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.helpers.tls import make_ca_and_server_cert as make;"
        "print('\\n'.join(map(str, make(Path(sys.argv[2])))))"
    )
    done = subprocess.run(
        [default_python(), "-c", code, str(REPO_ROOT), str(folder)], capture_output=True, text=True, check=True
    )
    ca, cert, key = (Path(line) for line in done.stdout.split())
    return ca, cert, key


@pytest.fixture(scope="module")
def https_server(tls_files: tuple[Path, Path, Path]) -> Iterator[ServerProcess]:
    ca, cert, key = tls_files
    yield from serve("--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key), ca_bundle=ca)


class Home:
    """A private HOME, add-on user dir and --out folder for one run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.user_dir = root / "user dir"
        self.out = root / "out"
        for folder in (self.home, self.user_dir):
            folder.mkdir(parents=True)

    def env(self, base_url: str, extra: dict[str, str]) -> dict[str, str]:
        scrub = ("MODELSLAB_", "BLENDER_USER_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY")
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(scrub)}
        env.update(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "MODELSLAB_API_KEY": SWEEP_KEY,
                "MODELSLAB_BASE_URL": base_url,
                "MODELSLAB_USER_DIR": str(self.user_dir),
                "NO_PROXY": "127.0.0.1,localhost",
                **extra,
            }
        )
        return env

    def journal(self) -> list[dict]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.user_dir.rglob("jobs/*.json"))]

    def files(self) -> list[Path]:
        return [
            p for base in (self.home, self.user_dir, self.out) if base.exists() for p in base.rglob("*") if p.is_file()
        ]


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    return apply


def run_operator(
    home: Home,
    base_url: str,
    *,
    prefs: dict | None = None,
    online: bool = False,
    fsize: int | None = None,
    image: str | Path = EXAMPLE_IMAGE,
) -> dict:
    spec = home.root / "spec.json"
    result = home.root / "result.json"
    values = {"image": str(image), "props": {"resolution": 32}, "prefs": prefs or {}, "online_access": online}
    spec.write_text(json.dumps(values))
    done = subprocess.run(
        [sys.executable, str(SWEEP_DRIVER), str(spec), str(result)],
        cwd=home.root,
        env=home.env(base_url, {}),
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_limit_file_size(fsize) if fsize else None,
    )
    assert result.exists(), f"the Blender process died (exit {done.returncode}):\n{done.stderr[-4000:]}"
    data = json.loads(result.read_text())
    data["printed"] = done.stdout + done.stderr
    return data


def run_batch(
    home: Home, base_url: str, *, env: dict | None = None, fsize: int | None = None, image: str | Path = EXAMPLE_IMAGE
) -> dict:
    command = [sys.executable, str(BATCH_SCRIPT), "--base-url", base_url]
    command += ["--out", str(home.out), "--resolution", "32", str(image)]
    done = subprocess.run(
        command,
        cwd=home.root,
        env=home.env(base_url, env or {}),
        capture_output=True,
        text=True,
        timeout=180,
        preexec_fn=_limit_file_size(fsize) if fsize else None,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, f"expected one row (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}"
    return {"row": rows[0], "exit": done.returncode, "printed": done.stdout + done.stderr}


def check_failed(mode: str, home: Home, run: dict, category: str, *words: str) -> None:
    if mode == "operator":
        assert run["outcome"] == ["CANCELLED"] and run["error"], run
        text = run["error"]
        assert f"[{category}]" in text, text
        assert run["new_objects"] == [] and run["modelslab_collection"] == [], "a partial object reached the scene"
        assert run["threads_after"] == run["threads_before"], (run["threads_before"], run["threads_after"])
    else:
        row = run["row"]
        assert run["exit"] == 1 and row["status"] == "failed", row
        assert row["error"]["category"] == category and row["error"]["message"] and row["error"]["fix"], row
        text = f"{row['error']['message']} {row['error']['fix']}"
    assert "Traceback" not in text and "bug in the add-on" not in text, text
    for word in words:
        assert word.lower() in text.lower(), f"{word!r} not in {text!r}"
    for record in home.journal():
        assert record["state"] == "failed" and record["error"]["category"] == category, record
    check_clean(home, run)


def check_imported(mode: str, home: Home, run: dict) -> None:
    if mode == "operator":
        assert run["outcome"] == ["FINISHED"], run
        assert len(run["new_objects"]) == 1 and run["modelslab_collection"] == run["new_objects"], run
        assert run["threads_after"] == run["threads_before"], (run["threads_before"], run["threads_after"])
    else:
        assert run["exit"] == 0 and run["row"]["status"] == "imported", run["row"]
    assert [r["state"] for r in home.journal()] == ["imported"]
    meshes = list(home.user_dir.rglob("meshes/*"))
    assert meshes and all(p.resolve().is_relative_to(home.user_dir.resolve()) for p in meshes)
    check_clean(home, run)


def check_clean(home: Home, run: dict) -> None:
    files = home.files()
    temp = [p for p in files if p.suffix in (".part", ".tmp") or p.name.startswith(".")]
    assert temp == [], temp
    assert SWEEP_KEY not in run["printed"]
    leaked = [p for p in files if SWEEP_KEY.encode() in p.read_bytes()]
    assert leaked == [], leaked


MODES = ["operator", "batch"]


@pytest.mark.parametrize("mode", MODES)
def test_connection_refused(mode: str, tmp_path: Path) -> None:
    home = Home(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}"
    run = run_operator(home, url) if mode == "operator" else run_batch(home, url)
    check_failed(mode, home, run, "network", "refused")


def test_dns_failure_with_online_access_allowed(tmp_path: Path) -> None:
    home = Home(tmp_path)
    run = run_operator(home, "http://nonexistent.invalid", online=True)
    check_failed("operator", home, run, "network", "nonexistent.invalid")


@pytest.mark.parametrize("mode", MODES)
def test_remote_host_while_online_access_is_off(mode: str, tmp_path: Path) -> None:
    """The bpy module (and `blender -b` without --online-mode) has online access off: a remote host is refused
    before any DNS lookup or request, as `offline`, with the way out in the fix."""
    home = Home(tmp_path)
    url = "http://nonexistent.invalid"
    run = run_operator(home, url) if mode == "operator" else run_batch(home, url)
    check_failed(mode, home, run, "offline", "online")


@pytest.mark.parametrize("mode", MODES)
def test_tls_without_the_ca_bundle(mode: str, tmp_path: Path, https_server: ServerProcess) -> None:
    https_server.reset()
    home = Home(tmp_path)
    run = run_operator(home, https_server.url) if mode == "operator" else run_batch(home, https_server.url)
    check_failed(mode, home, run, "network", "CA bundle")
    assert https_server.stats()["requests"] == {}


@pytest.mark.parametrize("mode", MODES)
def test_tls_with_the_ca_bundle(
    mode: str, tmp_path: Path, https_server: ServerProcess, tls_files: tuple[Path, Path, Path]
) -> None:
    """The operator takes the preference; a batch on a farm sets REQUESTS_CA_BUNDLE (honoured, never disabling)."""
    https_server.reset()
    home = Home(tmp_path)
    if mode == "operator":
        run = run_operator(home, https_server.url, prefs={"ca_bundle": str(tls_files[0])})
    else:
        run = run_batch(home, https_server.url, env={"REQUESTS_CA_BUNDLE": str(tls_files[0])})
    check_imported(mode, home, run)
    assert https_server.stats()["submits"] == 1


def _case(
    rule: dict, category: str, submits: int, modes: tuple[str, ...] = ("operator", "batch"), name: str = ""
) -> list:
    name = name or f"{rule['fault']}-{rule.get('status', rule['endpoint'])}"
    return [pytest.param(rule, category, submits, mode, id=f"{name}-{mode}") for mode in modes]


# (rule, category, jobs the server charges, modes). Operator-level cases tests/blender already has
# (402, 500 on submit, failed job, expired fetch, HTML/corrupt mesh) run here for the batch only. A server that
# answers 429 forever is waited on (never charged) up to the poll timeout, then the batch slows down and re-sends:
# minutes by design, so that case is proven at the api level (test_reliability_faults.py, short timeouts).
FAULT_CASES = [
    *_case({"fault": "truncate", "endpoint": "download", "times": -1}, "network", 1),
    *_case({"fault": "corrupt_mesh", "endpoint": "download", "bytes": 0, "times": -1}, "bad_mesh", 1, name="empty"),
    *_case({"fault": "corrupt_mesh", "endpoint": "download", "times": -1}, "bad_mesh", 1, ("batch",), "corrupt"),
    *_case({"fault": "html_mesh", "endpoint": "download", "times": -1}, "bad_mesh", 1, ("batch",)),
    *_case({"fault": "expired", "endpoint": "download", "times": -1}, "expired", 1),
    *_case({"fault": "malformed_json", "endpoint": "submit"}, "server", 0),
    *_case({"fault": "status_error", "endpoint": "submit", "spelling": "messege"}, "server", 0),
    *_case({"fault": "http_error", "endpoint": "submit", "status": 401}, "auth", 0, ("batch",)),
    *_case({"fault": "http_error", "endpoint": "submit", "status": 402}, "credits", 0, ("batch",)),
    *_case({"fault": "http_error", "endpoint": "submit", "status": 403}, "auth", 0),
    *_case({"fault": "http_error", "endpoint": "submit", "status": 502, "body": "html"}, "server", 0),
    *_case({"fault": "http_error", "endpoint": "submit", "status": 503, "body": "html"}, "server", 0, ("batch",)),
]


@pytest.mark.parametrize(("rule", "category", "submits", "mode"), FAULT_CASES)
def test_server_fault(
    mode: str, rule: dict, category: str, submits: int, tmp_path: Path, http_server: ServerProcess
) -> None:
    http_server.reset()
    http_server.set_faults([rule])
    home = Home(tmp_path)
    run = run_operator(home, http_server.url) if mode == "operator" else run_batch(home, http_server.url)
    check_failed(mode, home, run, category)
    assert http_server.stats()["submits"] == submits


@pytest.mark.parametrize("mode", MODES)
def test_lost_submit_answer_is_never_sent_again(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    """The server takes (and charges) the job but the answer is lost: one charge, never a second, and the user is
    told the job may have been charged."""
    http_server.reset()
    http_server.set_faults([{"fault": "drop_connection", "endpoint": "submit"}])
    home = Home(tmp_path)
    run = run_operator(home, http_server.url) if mode == "operator" else run_batch(home, http_server.url)
    check_failed(mode, home, run, "network", "charged")
    stats = http_server.stats()
    assert stats["submits"] == 1 and stats["requests"]["submit"] == 1


def test_processing_forever_through_the_batch_is_resumable(tmp_path: Path, http_server: ServerProcess) -> None:
    """(The operator's case is tests/blender's.) --timeout gives up waiting, never the job: a resumable row."""
    http_server.reset()
    http_server.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    home = Home(tmp_path)
    command = [sys.executable, str(BATCH_SCRIPT), "--base-url", http_server.url]
    command += ["--out", str(home.out), "--resolution", "32", "--timeout", "2", str(EXAMPLE_IMAGE)]
    done = subprocess.run(
        command, cwd=home.root, env=home.env(http_server.url, {}), capture_output=True, text=True, timeout=180
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert done.returncode == 1 and len(rows) == 1, done.stderr[-3000:]
    row = rows[0]
    assert row["status"] == "timed_out" and row.get("resumable") is True and row.get("remote_id"), row
    assert [r["state"] for r in home.journal()] == ["timed_out"]
    assert http_server.stats()["submits"] == 1
    check_clean(home, {"printed": done.stdout + done.stderr})


@pytest.mark.parametrize("mode", MODES)
def test_read_only_cache_folder(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    http_server.reset()
    home = Home(tmp_path)
    cache = home.user_dir / "meshes"
    cache.mkdir()
    os.chmod(cache, 0o555)
    immutable = subprocess.run(["chattr", "+i", str(cache)], capture_output=True).returncode == 0
    try:
        probe = cache / "probe"
        try:
            probe.write_bytes(b"x")
            probe.unlink()
            pytest.skip("cannot make a folder read-only on this machine (documented in docs/RELIABILITY.md)")
        except OSError:
            pass
        run = run_operator(home, http_server.url) if mode == "operator" else run_batch(home, http_server.url)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(cache)], capture_output=True)
        os.chmod(cache, 0o755)
    check_failed(mode, home, run, "invalid_input", "meshes")
    assert http_server.stats()["submits"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_disk_full_while_downloading(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    http_server.reset()
    home = Home(tmp_path)
    limit = 100 * 1024  # the mesh is ~145 KB; journals and Blender's own files stay far below this
    if mode == "operator":
        run = run_operator(home, http_server.url, fsize=limit)
    else:
        run = run_batch(home, http_server.url, fsize=limit)
    check_failed(mode, home, run, "invalid_input")
    assert http_server.stats()["submits"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_hostile_names_stay_in_the_cache(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    http_server.reset()
    http_server.set_faults([{"fault": "hostile_names", "endpoint": "submit"}])
    home = Home(tmp_path)
    run = run_operator(home, http_server.url) if mode == "operator" else run_batch(home, http_server.url)
    check_imported(mode, home, run)
    assert http_server.stats()["faults_fired"]["total"] == 1
    # The hostile names point at ../../etc/x<id>.obj (from the cache: tmp_path/etc), /etc/modelslab/... and a
    # Windows path with shell characters; none of them may exist afterwards.
    for outside in (tmp_path / "etc", home.user_dir / "etc", Path("/etc/modelslab"), home.root / "C:\\Windows"):
        assert not outside.exists(), outside
    assert {p.name for p in tmp_path.iterdir()} <= {"home", "user dir", "out", "spec.json", "result.json"}


def _noise_png(path: Path, side: int, *, valid: bool = True) -> Path:
    """A PNG of random pixels (incompressible: about 3 bytes a pixel), or a file that only starts like one."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    if not valid:
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(side * side * 3))
        return path
    rows = b"".join(b"\x00" + os.urandom(side * 3) for _ in range(side))
    header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("mode", MODES)
def test_blend_relative_path_in_an_unsaved_file(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    http_server.reset()
    home = Home(tmp_path)
    image = "//duck_512.png"
    run = (
        run_operator(home, http_server.url, image=image)
        if mode == "operator"
        else run_batch(home, http_server.url, image=image)
    )
    check_failed(mode, home, run, "invalid_input", "saved")
    assert http_server.stats()["requests"] == {}


@pytest.mark.parametrize("mode", MODES)
def test_oversize_image_is_shrunk_and_works(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    """Over the 5 MB upload limit but readable: Blender re-encodes it smaller and the job goes through."""
    http_server.reset()
    home = Home(tmp_path)
    image = _noise_png(tmp_path / "big photo.png", 1400)
    assert image.stat().st_size > 5 * 1024 * 1024
    run = (
        run_operator(home, http_server.url, image=image)
        if mode == "operator"
        else run_batch(home, http_server.url, image=image)
    )
    check_imported(mode, home, run)
    assert http_server.stats()["submits"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_oversize_image_that_cannot_be_shrunk(mode: str, tmp_path: Path, http_server: ServerProcess) -> None:
    http_server.reset()
    home = Home(tmp_path)
    image = _noise_png(tmp_path / "broken big.png", 1400, valid=False)
    assert image.stat().st_size > 5 * 1024 * 1024
    run = (
        run_operator(home, http_server.url, image=image)
        if mode == "operator"
        else run_batch(home, http_server.url, image=image)
    )
    check_failed(mode, home, run, "invalid_input")
    assert http_server.stats()["requests"] == {}


# --- legacy Blender: Debian's 3.4 with the system's Python packages (urllib3 1.26, requests 2.28) -------------------
# Blender 3.4-4.1 users install the legacy zip; their Python brings older requests/urllib3 than the dev venv, so the
# client's error handling must work with those too.
LEGACY_BLENDER = shutil.which("blender")


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Jobs take 1.5 s, so the runner polls (fetch) before the result exists."""
    yield from serve(*slow_server_args(1.5))


def run_legacy_batch(home: Home, base_url: str) -> dict:
    if LEGACY_BLENDER is None:
        pytest.skip("Debian's Blender (`blender` on PATH) is not installed; `make setup-gui` installs it")
    command = [LEGACY_BLENDER, "-b", "--factory-startup", "--python", str(BATCH_SCRIPT), "--"]
    command += ["--base-url", base_url, "--out", str(home.out), "--resolution", "32", str(EXAMPLE_IMAGE)]
    done = subprocess.run(
        command, cwd=home.root, env=home.env(base_url, {}), capture_output=True, text=True, timeout=180
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1, f"expected one row (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return {"row": rows[0], "exit": done.returncode, "printed": done.stdout + done.stderr}


@pytest.mark.parametrize(
    ("where", "words"),
    [("refused", ("refused",)), ("dns", ("nonexistent.invalid",))],
    ids=["refused", "dns"],
)
def test_legacy_blender_network_failures(where: str, words: tuple[str, ...], tmp_path: Path) -> None:
    home = Home(tmp_path)
    url = f"http://127.0.0.1:{closed_port()}" if where == "refused" else "http://nonexistent.invalid"
    check_failed("batch", home, run_legacy_batch(home, url), "network", *words)


@pytest.mark.parametrize(
    "rule",
    [
        {"fault": "drop_connection", "endpoint": "fetch", "times": 2},
        {"fault": "drop_connection", "endpoint": "download", "times": 1},
        {"fault": "http_error", "endpoint": "fetch", "status": 502, "body": "html", "times": 2},
    ],
    ids=["fetch-dropped", "download-dropped", "fetch-502"],
)
def test_legacy_blender_survives_transient_errors(rule: dict, tmp_path: Path, slow_server: ServerProcess) -> None:
    slow_server.reset()
    slow_server.set_faults([rule])
    home = Home(tmp_path)
    run = run_legacy_batch(home, slow_server.url)
    assert run["exit"] == 0 and run["row"]["status"] == "imported", run["row"]
    stats = slow_server.stats()
    assert stats["faults_fired"]["total"] >= 1 and stats["submits"] == 1
    check_clean(home, run)
