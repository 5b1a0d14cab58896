"""Soak: 200 jobs through scripts/batch.py (real bpy, the checkout's extension) against the local server with random
faults at a fixed seed, concurrency 8.

Proves: 0 lost results (every input ends imported, or failed with a category and a message), 0 duplicate submits
(every job the server created and charged is accounted for by exactly one input), Python threads and open files
back to their baseline after the batch, no temp files, the key nowhere; reports time and memory growth.

Run with `make soak` (.venv-bpy50/bin/python -m pytest -q tests/soak). Figures: docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.keys import SOAK_KEY
from tests.helpers.paths import EXAMPLE_IMAGES, REPO_ROOT
from tests.helpers.servers import ServerProcess, serve

SOAK_DRIVER = REPO_ROOT / "tests" / "soak" / "soak_driver.py"

JOBS = int(os.environ.get("SOAK_JOBS", "200"))
CONCURRENCY = 8
FAULT_SEED = 20261125
CATEGORIES = {"auth", "credits", "rate_limited", "offline", "network", "server", "invalid_input", "expired"}
CATEGORIES |= {"bad_mesh", "cancelled"}
# Every endpoint misbehaves now and then; the job-level faults too. times -1: for the whole run.
FAULTS = [
    {"fault": "http_error", "endpoint": "upload", "status": 500, "probability": 0.06},
    {"fault": "drop_connection", "endpoint": "upload", "probability": 0.04},
    {"fault": "rate_limit", "endpoint": "submit", "retry_after": 1, "probability": 0.1},
    {"fault": "http_error", "endpoint": "submit", "status": 503, "body": "html", "probability": 0.04},
    {"fault": "drop_connection", "endpoint": "submit", "probability": 0.02},
    {"fault": "job_failed", "endpoint": "submit", "probability": 0.04},
    {"fault": "processing_polls", "endpoint": "submit", "polls": 2, "probability": 0.1},
    {"fault": "http_error", "endpoint": "fetch", "status": 502, "body": "html", "probability": 0.1},
    {"fault": "drop_connection", "endpoint": "fetch", "probability": 0.06},
    {"fault": "delay", "endpoint": "fetch", "seconds": 1.0, "probability": 0.06},
    {"fault": "truncate", "endpoint": "download", "probability": 0.1},
    {"fault": "http_error", "endpoint": "download", "status": 503, "body": "html", "probability": 0.06},
    {"fault": "drop_connection", "endpoint": "download", "probability": 0.04},
    {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 300_000, "probability": 0.1},
    {"fault": "expired", "endpoint": "download", "probability": 0.01},
]
for _rule in FAULTS:
    _rule["times"] = -1


@pytest.fixture(scope="module")
def soak_server() -> Iterator[ServerProcess]:
    # Jobs take >= 1 s, so the runner really polls (fetch) instead of only catching the file with HEAD.
    args = ["--workers", "8", "--job-seconds", "1", "--fault-seed", str(FAULT_SEED)]
    for rule in FAULTS:
        args += ["--fault", json.dumps(rule)]
    yield from serve(*args)


def _env(home: Path) -> dict[str, str]:
    scrub = ("MODELSLAB_", "BLENDER_USER_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
    env = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "MODELSLAB_API_KEY": SOAK_KEY,
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _inputs(folder: Path) -> list[Path]:
    """JOBS distinct image files (copies of the examples), so every result maps to one input."""
    folder.mkdir(parents=True)
    images = []
    for index in range(JOBS):
        source = EXAMPLE_IMAGES[index % len(EXAMPLE_IMAGES)]
        target = folder / f"soak {index:03d} {source.stem}.png"
        shutil.copyfile(source, target)
        images.append(target)
    return images


@pytest.fixture(scope="module")
def soak(soak_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the batch once for the whole module; everything the tests look at."""
    root = tmp_path_factory.mktemp("soak")
    home, out, stats_path = root / "home", root / "out", root / "stats.json"
    home.mkdir()
    images = _inputs(root / "inputs")
    command = [sys.executable, str(SOAK_DRIVER), str(stats_path), "--"]
    command += ["--base-url", soak_server.url, "--out", str(out), "--concurrency", str(CONCURRENCY)]
    command += ["--resolution", "32", "--timeout", "120", *map(str, images)]
    done = subprocess.run(command, cwd=root, env=_env(home), capture_output=True, text=True, timeout=900)
    assert stats_path.exists(), f"the batch crashed (exit {done.returncode}):\n{done.stderr[-4000:]}"
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {
        "images": images,
        "home": home,
        "out": out,
        "run": done,
        "rows": rows,
        "stats": json.loads(stats_path.read_text()),
        "server": soak_server.stats(),
    }


def test_faults_really_happened(soak: dict) -> None:
    fired = soak["server"]["faults_fired"]
    assert fired["total"] >= JOBS // 4, fired
    assert len(fired["by_kind"]) >= 8, fired


def test_no_lost_results(soak: dict) -> None:
    rows, images = soak["rows"], soak["images"]
    by_image = Counter(row["image"] for row in rows)
    assert sorted(by_image) == sorted(map(str, images)), "an input has no result row"
    assert set(by_image.values()) == {1}, [image for image, n in by_image.items() if n != 1]
    results_file = [json.loads(line) for line in (soak["out"] / "results.jsonl").read_text().splitlines()]
    assert sorted(r["image"] for r in results_file) == sorted(map(str, images)), "results.jsonl disagrees with stdout"
    for row in rows:
        if row["status"] == "imported":
            assert row.get("object") and Path(row["file"]).is_file() and row.get("vertices", 0) > 0, row
        else:
            assert row["status"] == "failed", row
            error = row["error"]
            assert error["category"] in CATEGORIES and error["message"] and error["fix"], row
            assert "Traceback" not in error["message"] and "bug in the add-on" not in error["fix"], row
    statuses = Counter(row["status"] for row in rows)
    assert statuses["imported"] >= JOBS * 0.6, statuses
    assert soak["run"].returncode == (0 if statuses["imported"] == JOBS else 1)


def test_no_duplicate_submits(soak: dict) -> None:
    """Every server job is one input's: the imported/failed rows' remote ids, plus submits whose answer was lost
    (failed as network errors that say the job may have been charged)."""
    rows, server = soak["rows"], soak["server"]
    remote_ids = [str(row["remote_id"]) for row in rows if row.get("remote_id")]
    assert len(remote_ids) == len(set(remote_ids)), "two inputs claim the same server job"
    unknown = [
        row
        for row in rows
        if row["status"] == "failed"
        and not row.get("remote_id")
        and row["error"]["category"] == "network"
        and ("charge" in row["error"]["fix"].lower() or "accepted" in row["error"]["fix"].lower())
    ]
    server_ids = {str(job["id"]) for job in server["jobs"]}
    assert set(remote_ids) <= server_ids
    assert server["submits"] == len(server_ids) == len(remote_ids) + len(unknown), (
        server["submits"],
        len(remote_ids),
        len(unknown),
    )
    for row in rows:
        if row["status"] == "imported":
            job = next(job for job in server["jobs"] if str(job["id"]) == str(row["remote_id"]))
            assert job["status"] == "success"


def test_threads_and_open_files_back_to_baseline(soak: dict) -> None:
    before, after = soak["stats"]["before"], soak["stats"]["after"]
    assert after["python_threads"] == before["python_threads"], (before["python_threads"], after["python_threads"])
    extra = {fd: target for fd, target in after["open_files"].items() if fd not in before["open_files"]}
    # batch.py keeps a duplicate of the original stdout for its JSON lines (it exits right after main()).
    extra = {fd: target for fd, target in extra.items() if target != soak["stats"]["stdout_target"]}
    assert extra == {}, f"files/sockets left open after the batch: {extra}"


def test_nothing_left_behind_and_no_key(soak: dict) -> None:
    leftovers = [
        p
        for base in (soak["home"], soak["out"])
        for p in base.rglob("*")
        if p.is_file() and p.suffix in (".part", ".tmp")
    ]
    assert leftovers == []
    journal = [json.loads(p.read_text()) for p in soak["home"].rglob("jobs/*.json")]
    assert len(journal) >= JOBS
    assert {record["state"] for record in journal} <= {"imported", "failed"}, Counter(r["state"] for r in journal)
    needle = SOAK_KEY.encode()
    hits = [
        p for base in (soak["home"], soak["out"]) for p in base.rglob("*") if p.is_file() and needle in p.read_bytes()
    ]
    assert hits == []
    assert SOAK_KEY not in soak["run"].stdout and SOAK_KEY not in soak["run"].stderr


def test_report_figures(soak: dict, capsys: pytest.CaptureFixture) -> None:
    """Print the figures docs/RELIABILITY.md quotes (memory: resident size at 25 % of the results vs the end)."""
    stats, rows, server = soak["stats"], soak["rows"], soak["server"]
    samples = stats["samples"]
    quarter = next((s for s in samples if s[1] >= JOBS // 4), samples[0])
    end = samples[-1]
    figures = {
        "jobs": JOBS,
        "concurrency": CONCURRENCY,
        "fault_seed": FAULT_SEED,
        "seconds": stats["seconds"],
        "statuses": dict(Counter(row["status"] for row in rows)),
        "failed_by_category": dict(Counter(row["error"]["category"] for row in rows if row["status"] != "imported")),
        "faults_fired": server["faults_fired"],
        "server_submits": server["submits"],
        "vertices_in_scene": sum(row.get("vertices", 0) for row in rows if row["status"] == "imported"),
        "requests": server["requests"],
        "python_threads": [len(stats["before"]["python_threads"]), len(stats["after"]["python_threads"])],
        "os_threads": [stats["before"]["os_threads"], stats["after"]["os_threads"]],
        "open_files": [len(stats["before"]["open_files"]), len(stats["after"]["open_files"])],
        "rss_mib": {
            "baseline": round(stats["before"]["rss_kib"] / 1024, 1),
            f"at {quarter[1]} results": round(quarter[2] / 1024, 1),
            f"at {end[1]} results": round(end[2] / 1024, 1),
            "after": round(stats["after"]["rss_kib"] / 1024, 1),
            "peak": round(stats["max_rss_kib"] / 1024, 1),
        },
        "python_heap_mib": {
            f"at {quarter[1]} results": round(quarter[3] / 1024, 2),
            f"at {end[1]} results": round(end[3] / 1024, 2),
            "after": round(stats["after"]["python_heap_kib"] / 1024, 2),
        },
        "python_heap_growth_mib_per_100_jobs": round(
            (end[3] - quarter[3]) / 1024 / max(1, end[1] - quarter[1]) * 100, 2
        ),
        "rss_growth_mib_per_100_jobs": round((end[2] - quarter[2]) / 1024 / max(1, end[1] - quarter[1]) * 100, 2),
    }
    report = Path(os.environ.get("SOAK_REPORT", REPO_ROOT / "bench" / "out" / "soak.json"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(figures, indent=1), encoding="utf-8")
    with capsys.disabled():
        print("\nsoak figures:", json.dumps(figures))
