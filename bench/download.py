"""download_peak_rss_mb and download_speed_vs_curl: a 200 MB mesh (server fault pad_output) fetched by our client
(ModelsLabClient.download in a child process) and by `curl -o`, alternating, same server, same file."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from server.process import start_server

from .common import (
    API_KEY,
    EXAMPLE_IMAGE,
    REPO_ROOT,
    VENV_PYTHON,
    Missing,
    Outcome,
    log,
    median,
    rounded,
    run_process,
    wait_for,
)

MESH_BYTES = 200 * 1000 * 1000
ROUNDS = 5


def _finished_job(srv, job_id: int) -> dict:
    return wait_for(
        lambda: (j := srv.job(job_id)) and j["finished_at"] and j, timeout=180, interval=0.1, what=f"job {job_id}"
    )


def _submit(srv, image_url: str) -> tuple[list[str], int]:
    response = srv.post("/api/v1/enterprise/3d/image_to_3d", {"key": API_KEY, "init_image": image_url})
    response.raise_for_status()
    body = response.json()
    job = _finished_job(srv, body["id"])
    if job["status"] != "success":
        raise RuntimeError(f"padded job failed: {job.get('error')}")
    fetched = srv.post(f"/api/v1/enterprise/3d/fetch/{body['id']}", {"key": API_KEY}).json()
    return list(fetched["output"]) + list(fetched.get("proxy_links", [])), int(job["file_bytes"] or 0)


def run(quick: bool = False) -> Outcome:
    """ROUNDS alternations client/curl; ratio = median over rounds of curl seconds / client seconds."""
    outcome = Outcome()
    if not (REPO_ROOT / "api" / "client.py").exists():
        raise Missing("api/client.py is missing")
    if not shutil.which("curl"):
        raise Missing("curl is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="bench-download-"))
    rounds = 1 if quick else ROUNDS
    probes: list[dict] = []
    curl_seconds: list[float] = []
    try:
        with start_server("--workers", "2", "--job-seconds", "0") as srv:
            image_url = srv.upload(EXAMPLE_IMAGE, key=API_KEY)
            small_urls, _ = _submit(srv, image_url)
            srv.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": MESH_BYTES}])
            urls, size = _submit(srv, image_url)
            log(f"download: {size / 1e6:.1f} MB mesh ready at {urls[0]}")
            for index in range(rounds):
                target = workdir / f"client-{index}.obj"
                proc = run_process(
                    [VENV_PYTHON, "-m", "bench.download_probe", "--warm", small_urls[0], srv.url, str(target), *urls],
                    timeout=300,
                    what="download probe",
                )
                probe = json.loads(proc.stdout.strip().splitlines()[-1])
                if probe["bytes"] != size:
                    raise RuntimeError(f"client wrote {probe['bytes']} bytes, server has {size}")
                probes.append(probe)
                target.unlink()
                curl_target = workdir / f"curl-{index}.obj"
                start = time.perf_counter()
                subprocess.run(
                    ["curl", "--silent", "--show-error", "--fail", "--noproxy", "*", "-o", str(curl_target), urls[0]],
                    check=True,
                    timeout=300,
                    stdin=subprocess.DEVNULL,
                )
                curl_seconds.append(time.perf_counter() - start)
                if curl_target.stat().st_size != size:
                    raise RuntimeError("curl wrote a different size")
                curl_target.unlink()
                log(
                    f"download round {index + 1}: client {probe['seconds']:.3f} s "
                    f"(+{probe['extra_peak_kb'] / 1024:.1f} MB peak RSS), curl {curl_seconds[-1]:.3f} s"
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratios = [c / p["seconds"] for c, p in zip(curl_seconds, probes, strict=True)]
    extra_mb = [p["extra_peak_kb"] / 1024.0 for p in probes]
    outcome.values["download_peak_rss_mb"] = rounded(max(extra_mb), 2)
    outcome.values["download_speed_vs_curl"] = rounded(median(ratios))
    outcome.extra["download"] = {
        "mesh_bytes": size,
        "client_seconds": [rounded(p["seconds"]) for p in probes],
        "curl_seconds": [rounded(s) for s in curl_seconds],
        "client_mb_per_s": rounded(size / 1e6 / median([p["seconds"] for p in probes]), 1),
        "curl_mb_per_s": rounded(size / 1e6 / median(curl_seconds), 1),
        "ratios": [rounded(r) for r in ratios],
        "extra_peak_rss_mb": [rounded(m, 2) for m in extra_mb],
        "peak_reset_via_clear_refs": all(p["hwm_reset"] for p in probes),
    }
    outcome.notes.append(
        f"A {MESH_BYTES / 1e6:.0f} MB OBJ (server fault `pad_output`), {rounds} alternations of our client "
        "(`ModelsLabClient.download`, a child process, after a warm-up download) and `curl -o`. Speed ratio = median "
        "of curl seconds / client seconds per round. Extra peak RSS = VmHWM after the download − VmRSS before it "
        "(the peak is reset through /proc/self/clear_refs first); the largest of the rounds is reported."
    )
    return outcome
