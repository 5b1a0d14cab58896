"""server_res256_s and the server time at resolutions 64/128/256/512 (through the HTTP server, one job at a time)."""

from __future__ import annotations

from collections.abc import Callable

from server.process import ServerProcess, start_server

from .common import API_KEY, EXAMPLE_IMAGE, Outcome, log, median, rounded, wait_for

RESOLUTIONS = (64, 128, 256, 512)
REPEATS = {64: 3, 128: 3, 256: 5, 512: 3}


def _finished(srv: ServerProcess, job_id: int) -> Callable[[], dict | None]:
    """A condition for wait_for: the job's stats entry once the server has finished it."""

    def condition() -> dict | None:
        job = srv.job(job_id)
        return job if job and job["finished_at"] else None

    return condition


def run(quick: bool = False) -> Outcome:
    """Submit the 512×512 example at each resolution, one job at a time; seconds = finished_at − started_at."""
    outcome = Outcome()
    samples: dict[int, list[float]] = {}
    with start_server("--workers", "1", "--job-seconds", "0") as srv:
        image_url = srv.upload(EXAMPLE_IMAGE, key=API_KEY)
        for resolution in RESOLUTIONS:
            repeats = 1 if quick and resolution != 256 else REPEATS[resolution]
            for _ in range(repeats):
                response = srv.post(
                    "/api/v1/enterprise/3d/image_to_3d",
                    {"key": API_KEY, "init_image": image_url, "resolution": resolution},
                )
                response.raise_for_status()
                job_id = response.json()["id"]
                job = wait_for(_finished(srv, job_id), timeout=120, interval=0.05, what=f"server job {job_id}")
                if job["status"] != "success":
                    raise RuntimeError(f"server job at resolution {resolution} failed: {job.get('error')}")
                samples.setdefault(resolution, []).append(job["finished_at"] - job["started_at"])
            log(f"server res {resolution}: {', '.join(f'{s:.3f}' for s in samples[resolution])} s")
    outcome.values["server_res256_s"] = rounded(median(samples[256]))
    outcome.extra["server_seconds_by_resolution"] = {str(r): rounded(median(s)) for r, s in samples.items()}
    outcome.extra["server_samples"] = {str(r): [rounded(v) for v in s] for r, s in samples.items()}
    outcome.notes.append(
        "Server time = job `finished_at − started_at` from `/__admin/stats` (reconstruction + OBJ write), "
        "one job at a time on a 1-worker server (`--job-seconds 0`), "
        f"repeats {', '.join(f'{r}: {n}' for r, n in REPEATS.items())}."
    )
    return outcome
