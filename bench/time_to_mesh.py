"""time_to_mesh_overhead_s: (mesh on disk / in the scene) − (server's finished_at), per client, same server, same run.

Clients: the official `modelslab` CLI (standard /api/v6 flavour), a fixed 10 s polling loop like the SDK
examples, and this project's JobRunner (api/). Each client gets its own phase of JOBS jobs started STAGGER s
apart, on one server with 8 workers and --job-seconds JOB_SECONDS (so nothing queues and the server's `eta` is
honest). Also reported: the project's time-to-mesh at 1/4/8/16 concurrent jobs.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from server.process import ServerProcess

from .common import API_KEY, EXAMPLE_IMAGE, REPO_ROOT, Missing, Outcome, log, median, rounded
from .file_events import FileEvents
from .ui_window import lower_priority

JOBS = 9
JOB_SECONDS = 3.0
STAGGER = 0.6
NAIVE_SLEEP = 10.0
SCALING_COUNTS = (1, 4, 8, 16)
IN_SCENE_JOBS = 5
CLI = REPO_ROOT / ".venv" / "bin" / "modelslab"


@dataclass
class Sample:
    """One job of one client: how to find it in the server stats and when its mesh was usable locally."""

    client: str
    remote_id: str | None
    file_prefix: str | None
    submitted_at: float
    on_disk_at: float
    extra: dict[str, Any] | None = None


@functools.cache
def file_events() -> FileEvents | None:
    """The one observer that stamps when each client's mesh file became complete (None where inotify is missing:
    then each client's own record is used, see the notes)."""
    try:
        return FileEvents()
    except OSError as exc:
        log(f"time-to-mesh: no inotify ({exc}); falling back to file mtimes and the JobRunner's clock")
        return None


_REQUEST_LINE = re.compile(r'"(GET|HEAD|POST) (\S+) HTTP/[\d.]+" (\d{3})')


class TimedServer(ServerProcess):
    """The local server started with --log-requests; every request line is kept with the time it was logged.

    The server logs a request when it sends the status line, so for a fetch or a HEAD that is the moment the
    answer was decided, and for a download the moment the transfer began.
    """

    def __init__(self, *args: str) -> None:
        self.request_log: list[tuple[float, str, str, int]] = []  # (time.time(), method, path, status)
        super().__init__(*args, "--log-requests")

    def _pump(self, stream: Any, sink: Any, watch: bool) -> None:
        if watch:
            super()._pump(stream, sink, watch)
            return
        for line in stream:
            at = time.time()
            match = _REQUEST_LINE.search(line)
            if match:
                self.request_log.append((at, match.group(1), match.group(2), int(match.group(3))))
            else:
                sink.append(line.rstrip("\n"))
        stream.close()


def _noticed(srv: TimedServer, job: dict) -> tuple[float | None, float | None]:
    """(first check that could have seen the result, first download start) for one server job, from the log."""
    file_part = f"/out/{job['file_prefix']}."
    fetch_path = re.compile(rf"/fetch/{job['id']}$")
    noticed = started = None
    for at, method, path, status in srv.request_log:
        if at < job["finished_at"]:
            continue
        if noticed is None and (
            (method == "POST" and fetch_path.search(path))
            or (method in ("HEAD", "GET") and file_part in path and status == 200)
        ):
            noticed = at
        if started is None and method == "GET" and file_part in path and status == 200:
            started = at
    return noticed, started


def _server_job(stats: dict, sample: Sample) -> dict:
    for job in stats["jobs"]:
        if sample.file_prefix and job["file_prefix"] == sample.file_prefix:
            return job
        if sample.remote_id is not None and str(job["id"]) == str(sample.remote_id):
            return job
    raise RuntimeError(f"{sample.client}: no server job for {sample}")


def overheads(srv: ServerProcess, samples: list[Sample]) -> list[dict[str, Any]]:
    """Per job: server finished_at, on-disk time, their difference (the overhead), submit→disk wall time, and
    (from the request log) when the client's first check after the finish was answered."""
    stats = srv.stats()
    rows = []
    for sample in samples:
        job = _server_job(stats, sample)
        if job["status"] != "success" or not job["finished_at"]:
            raise RuntimeError(f"{sample.client}: server job {job['id']} ended {job['status']}")
        noticed, started = _noticed(srv, job) if isinstance(srv, TimedServer) else (None, None)
        rows.append(
            {
                "client": sample.client,
                "server_id": job["id"],
                "created_at": job["created_at"],
                "finished_at": job["finished_at"],
                "on_disk_at": sample.on_disk_at,
                "overhead_s": sample.on_disk_at - job["finished_at"],
                "time_to_mesh_s": sample.on_disk_at - sample.submitted_at,
                "noticed_s": None if noticed is None else noticed - job["finished_at"],
                "download_started_s": None if started is None else started - job["finished_at"],
                **(sample.extra or {}),
            }
        )
    return rows


def _request_counts(srv: ServerProcess) -> dict[str, int]:
    return dict(srv.stats()["requests"])


# What a client spends on one job after its submit; download_wait = a GET sent before the file existed.
CHECK_REQUESTS = ("fetch", "download_head", "download_wait", "download")


def _requests_between(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(after.get(kind, 0) - before.get(kind, 0) for kind in CHECK_REQUESTS)


def _median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return rounded(median(values)) if values else None


# --- the official CLI ------------------------------------------------------------------------------------------
def run_cli(srv: ServerProcess, image_url: str, count: int, workdir: Path, stagger: float = STAGGER) -> list[Sample]:
    """`modelslab generate image-to-3d` processes; on disk = when the output file was closed after writing (its
    mtime and the process end are kept too)."""
    if not CLI.exists():
        raise Missing("the modelslab CLI is not installed in .venv (pip install modelslab-cli==0.2.2)")
    home = workdir / "cli-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    env.pop("MODELSLAB_API_KEY", None)
    results: list[Sample | Exception] = []
    lock = threading.Lock()
    events = file_events()

    def one(index: int) -> None:
        out_dir = Path(tempfile.mkdtemp(prefix=f"cli-{index}-", dir=workdir))
        if events is not None:
            events.watch(out_dir)
        args = [
            str(CLI),
            "--no-update-check",
            "--api-key",
            API_KEY,
            "--base-url",
            srv.url,
            "generate",
            "image-to-3d",
            "--init-image",
            image_url,
            "--output-dir",
            str(out_dir),
            "-o",
            "json",
        ]
        submitted = time.time()
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=400, env=env, stdin=subprocess.DEVNULL)
            ended = time.time()
            if proc.returncode != 0:
                raise RuntimeError(f"modelslab CLI exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}")
            payload = json.loads(proc.stdout[proc.stdout.index("{") :])
            files = [p for p in out_dir.iterdir() if p.is_file()]
            if len(files) != 1 or files[0].stat().st_size == 0:
                raise RuntimeError(f"modelslab CLI left {[p.name for p in files]} in its output dir")
            mtime = files[0].stat().st_mtime
            closed = events.completed(files[0]) if events is not None else None
            sample = Sample(
                "modelslab_cli",
                None,
                payload.get("meta", {}).get("file_prefix"),
                submitted,
                closed if closed is not None else mtime,
                {"process_end_at": ended, "mtime_at": mtime, "on_disk_by": "close" if closed else "mtime"},
            )
            with lock:
                results.append(sample)
        except Exception as exc:  # reported by the caller with the others
            with lock:
                results.append(exc)

    threads = []
    for index in range(count):
        thread = threading.Thread(target=one, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(stagger)
    for thread in threads:
        thread.join()
    return _collect(results)


def _collect(results: list[Any]) -> list[Sample]:
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(results)} jobs failed; first: {errors[0]!r}") from errors[0]
    return list(results)


# --- the SDK examples' loop ---------------------------------------------------------------------------------------
def run_naive(srv: ServerProcess, image_url: str, count: int, workdir: Path, stagger: float = STAGGER) -> list[Sample]:
    """Submit, then `sleep(10)` + fetch until success, then GET the output and write it (like the SDK examples)."""
    results: list[Sample | Exception] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        session = requests.Session()
        session.trust_env = False
        try:
            submitted = time.time()
            data = session.post(
                srv.url + "/api/v1/enterprise/3d/image_to_3d",
                json={"key": API_KEY, "init_image": image_url},
                timeout=60,
            ).json()
            job_id = data["id"]
            while data["status"] != "success":
                if data["status"] not in ("processing",):
                    raise RuntimeError(f"naive loop got {data}")
                time.sleep(NAIVE_SLEEP)
                data = session.post(
                    f"{srv.url}/api/v1/enterprise/3d/fetch/{job_id}", json={"key": API_KEY}, timeout=60
                ).json()
            target = Path(tempfile.mkdtemp(prefix=f"naive-{index}-", dir=workdir)) / "mesh.obj"
            target.write_bytes(session.get(data["output"][0], timeout=60).content)
            sample = Sample("naive_poll", str(job_id), data["meta"]["file_prefix"], submitted, time.time())
            with lock:
                results.append(sample)
        except Exception as exc:
            with lock:
                results.append(exc)
        finally:
            session.close()

    threads = []
    for index in range(count):
        thread = threading.Thread(target=one, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)
        time.sleep(stagger)
    for thread in threads:
        thread.join()
    return _collect(results)


# --- this project's JobRunner -----------------------------------------------------------------------------------
def _project_api() -> Any:
    for relative, owner in (("api/client.py", "the client"), ("api/jobs.py", "the JobRunner")):
        if not (REPO_ROOT / relative).exists():
            raise Missing(f"{relative} is missing ({owner})")
    import api

    return api


def _downloaded_at(record: Any) -> float:
    if getattr(record, "downloaded_at", None):
        return float(record.downloaded_at)
    for state, at in reversed(record.history):
        if state == "downloaded":
            return float(at)
    raise RuntimeError(f"job {record.local_id} has no downloaded time: {record.history}")


def run_project(
    srv: ServerProcess,
    image_url: str,
    count: int,
    workdir: Path,
    stagger: float = STAGGER,
    client_name: str = "project",
) -> list[Sample]:
    """Our JobRunner (api/): on disk = when the verified file was renamed into the cache folder (the JobRunner's
    DOWNLOADED time is kept too)."""
    api = _project_api()
    client = api.ModelsLabClient(API_KEY, api.ClientConfig(base_url=srv.url))
    directory = Path(tempfile.mkdtemp(prefix="runner-", dir=workdir))
    meshes = directory / "meshes"
    meshes.mkdir()
    events = file_events()
    if events is not None:
        events.watch(meshes)
    runner = api.JobRunner(
        client,
        api.JobJournal(directory / "jobs"),
        api.MeshCache(meshes),
        max_workers=max(1, count),
    )
    try:
        records = []
        submitted = []
        for index in range(count):
            submitted.append(time.time())
            params = api.GenerationParams(init_image=image_url)
            records.append(runner.submit(image_url, params, name=f"bench-{index}"))
            if stagger and index + 1 < count:
                time.sleep(stagger)
        samples = []
        for record, at in zip(records, submitted, strict=True):
            done = runner.wait(record.local_id, timeout=180)
            if done.state != "downloaded":
                raise RuntimeError(f"JobRunner job ended {done.state}: {done.error}")
            downloaded = _downloaded_at(done)
            renamed = events.completed(done.file_path) if events is not None and done.file_path else None
            samples.append(
                Sample(
                    client_name,
                    done.remote_id,
                    (done.meta or {}).get("file_prefix"),
                    at,
                    renamed if renamed is not None else downloaded,
                    {"downloaded_at": downloaded, "on_disk_by": "rename" if renamed else "runner"},
                )
            )
        return samples
    finally:
        runner.shutdown(wait=True)
        client.close()


# --- the section ---------------------------------------------------------------------------------------------------
CLIENTS = {"modelslab_cli": run_cli, "naive_poll": run_naive, "project": run_project}


def _phase(
    outcome: Outcome, srv: TimedServer, name: str, image_url: str, count: int, workdir: Path, stagger: float
) -> tuple[list[dict[str, Any]], int] | None:
    """One client's jobs: (rows, requests spent after the submits), or None when it could not run (recorded)."""
    phase = "time_to_mesh_overhead_s" if stagger else "burst_overhead_s"
    before = _request_counts(srv)
    try:
        rows = overheads(srv, CLIENTS[name](srv, image_url, count, workdir, stagger=stagger))
    except Missing as exc:
        outcome.reasons[f"{phase}.{name}"] = str(exc)
        log(f"time-to-mesh {name}: skipped: {exc}")
        return None
    except Exception as exc:
        outcome.reasons[f"{phase}.{name}"] = f"failed: {type(exc).__name__}: {exc}"[:1500]
        log(f"time-to-mesh {name} ({'staggered' if stagger else 'burst'}): FAILED: {exc!r}")
        return None
    return rows, _requests_between(before, _request_counts(srv))


def run(quick: bool = False) -> Outcome:
    """All three clients on one server (exact eta), the CLI and the project again all at once (late eta), then
    the project's scaling with concurrent jobs and the add-on in bpy."""
    outcome = Outcome()
    count = 3 if quick else JOBS
    workdir = Path(tempfile.mkdtemp(prefix="bench-ttm-"))
    rows_by_client: dict[str, list[dict[str, Any]]] = {}
    burst_rows: dict[str, list[dict[str, Any]]] = {}
    spent: dict[str, dict[str, float]] = {}  # phase -> client -> requests per job
    try:
        with TimedServer("--workers", "8", "--job-seconds", str(JOB_SECONDS)) as srv:
            # The server stands in for a service on another machine: its reconstructions must not take the two
            # cores from the clients being timed (the CLI's Go process and our Python threads alike).
            lower_priority(srv.proc.pid)
            image_url = srv.upload(EXAMPLE_IMAGE, key=API_KEY)
            for name in CLIENTS:
                result = _phase(outcome, srv, name, image_url, count, workdir, STAGGER)
                if result is None:
                    outcome.values[f"time_to_mesh_overhead_s.{name}"] = None
                    continue
                rows, requests_spent = result
                rows_by_client[name] = rows
                outcome.values[f"time_to_mesh_overhead_s.{name}"] = rounded(median([r["overhead_s"] for r in rows]))
                spent.setdefault("exact_eta", {})[name] = rounded(requests_spent / len(rows), 2)
                shown = ", ".join(f"{r['overhead_s']:.2f}" for r in rows)
                log(f"time-to-mesh {name}: overheads {shown} s; {requests_spent / len(rows):.2f} requests per job")
            if "project" in rows_by_client:
                outcome.extra["project_time_to_mesh_by_concurrency"] = _scaling(srv, image_url, workdir, quick)
            burst: dict[str, dict[str, Any]] = {}
            for name in ("modelslab_cli", "project"):
                if name not in rows_by_client:
                    continue
                result = _phase(outcome, srv, name, image_url, count, workdir, 0.0)
                if result is None:
                    continue
                rows, requests_spent = result
                burst_rows[name] = rows
                values = [r["overhead_s"] for r in rows]
                late = [r["finished_at"] - r["created_at"] - JOB_SECONDS for r in rows]
                burst[name] = {
                    "median_s": rounded(median(values)),
                    "max_s": rounded(max(values)),
                    "samples": [rounded(v) for v in values],
                    "server_job_late_vs_job_seconds_median_s": rounded(median(late)),
                }
                outcome.values[f"burst_overhead_s.{name}"] = burst[name]["median_s"]
                spent.setdefault("burst", {})[name] = rounded(requests_spent / len(rows), 2)
                log(f"time-to-mesh burst {name}: {burst[name]}; {requests_spent / len(rows):.2f} requests per job")
            outcome.extra["burst_overhead_s"] = burst
            for name in ("modelslab_cli", "project"):
                phases = [p for p in spent.values() if name in p]
                if len(phases) == 2:  # both phases, weighted alike (they have the same number of jobs)
                    outcome.values[f"requests_per_job.{name}"] = rounded(sum(p[name] for p in phases) / 2, 2)
            outcome.extra["requests_per_job_by_phase"] = spent
            try:
                outcome.extra["project_in_scene_bpy_s"] = _in_scene_bpy(srv, image_url, 3 if quick else IN_SCENE_JOBS)
            except Exception as exc:  # reported, not gated: its absence must not void the section
                outcome.extra["project_in_scene_bpy_s"] = f"failed: {type(exc).__name__}: {exc}"[:800]
                log(f"time-to-mesh in scene (bpy): FAILED: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    outcome.series["time_to_mesh_rows"] = rows_by_client
    outcome.series["burst_rows"] = burst_rows
    outcome.extra["time_to_mesh_samples"] = {
        name: [rounded(r["overhead_s"]) for r in rows] for name, rows in rows_by_client.items()
    }
    outcome.extra["distance_from_the_limit_s"] = {
        f"{phase} {name}": {
            "finished_to_noticed_median": _median_of(rows, "noticed_s"),
            "noticed_to_on_disk_median": _median_of(
                [{"t": r["overhead_s"] - r["noticed_s"]} for r in rows if r.get("noticed_s") is not None], "t"
            ),
            "overhead_median": _median_of(rows, "overhead_s"),
        }
        for phase, table in (("exact eta", rows_by_client), ("burst", burst_rows))
        for name, rows in table.items()
        if name != "naive_poll" or phase == "exact eta"
    }
    _findings(outcome)
    cli_rows = rows_by_client.get("modelslab_cli")
    if cli_rows:
        outcome.extra["modelslab_cli_process_end_overhead_s"] = rounded(
            median([r["process_end_at"] - r["finished_at"] for r in cli_rows])
        )
    # How far each client's own record is from the shared observer's (positive: the observer saw it later).
    observer_minus_own: dict[str, float] = {}
    for name, own in (("modelslab_cli", "mtime_at"), ("project", "downloaded_at")):
        gaps = [r["on_disk_at"] - r[own] for r in rows_by_client.get(name) or [] if r.get(own)]
        if gaps:
            observer_minus_own[f"{name} ({own})"] = rounded(median(gaps))
    outcome.extra["observer_minus_own_record_median_s"] = observer_minus_own
    outcome.notes.append(
        f"{count} jobs per client, started {STAGGER:g} s apart, on one local server (lowest CPU priority: it stands "
        "in for a service on another machine) with 8 workers and "
        f"`--job-seconds {JOB_SECONDS:g}` (the server's `eta` is honest). Overhead = moment the mesh file was "
        "complete on disk − the server's `finished_at` for that job (matched by `meta.file_prefix` / remote id). "
        "One observer times both the CLI and the project (bench/file_events.py: an inotify watch on each client's "
        "output folder, stamped with time.time() by one thread of the bench process): the CLI's file is complete "
        "when the CLI closes it after writing, ours when the verified file is renamed into the cache folder. "
        "A file's mtime is not used: the kernel stamps it with its coarse clock (4 ms ticks here), so it reads up "
        "to a tick early; `observer_minus_own_record_median_s` shows the CLI's mtime and the JobRunner's own "
        "DOWNLOADED time beside the observer's (the CLI's process exit is reported too); naive loop: after its "
        "write. "
        "`burst_overhead_s`: the CLI and the project again with all jobs submitted at "
        "once, so the server's reconstructions contend for the CPU and its `eta` turns out optimistic "
        "(`server_job_late_vs_job_seconds_median_s`), as a real service's estimate can be. "
        "`requests_per_job`: fetches + probes (HEAD, or a GET before the file existed) + downloads the server counted "
        "per job (submits and uploads "
        "excluded), the mean of the two phases (`requests_per_job_by_phase`). "
        "`distance_from_the_limit_s`: the limit is the moment the file is downloadable (`finished_at`) plus the "
        "transfer; `finished_to_noticed` is the time from `finished_at` to the client's first fetch or successful "
        "HEAD answered after it (from the server's request log), `noticed_to_on_disk` the rest (download request, "
        "transfer, the project's verification and rename). "
        f"`project_in_scene_bpy_s` (reported): the add-on's own operator in bpy 5.0, {IN_SCENE_JOBS} jobs one after "
        "the other (background mode returns with the object in the scene): object in the scene − server "
        "`finished_at`."
    )
    outcome.notes.append(SCHEDULE_NOTE)
    return outcome


SCHEDULE_NOTE = (
    "How the project polls (api/polling.py, the same schedule for the operator, the script API and the batch; "
    "submits are never repeated): before the predicted finish (the submit answer's time + its `eta`) HEAD probes "
    "of the first `future_links` URL follow the official CLI's own timetable (1, 3, 7, 15 s after the submit, "
    "then every 10 s), so a pessimistic eta never makes us later than the CLI; a fetch is sent every 30 s while "
    "the prediction is far away and one 0.3 s before it (at most half the eta), which catches a failed job or a "
    "new eta (before the prediction the newest eta wins). An eta is a rounded number, so the prediction is the end "
    'of its rounding interval ("2.99" -> 2.995 s; at most 5 ms later). From the prediction on, a probe is the '
    "download request itself (a GET of the future link: 404 until the file exists, and when it is there its bytes "
    "are already coming: no second round trip): one at the prediction, one 50 ms later (the fast window), then "
    "the gap grows to 15 % of the job's age (time since the submit), capped at 5 s; the first of those gaps is "
    "shortened by a random phase per job, so jobs sent together do not reach the server at the same instants nor "
    "all miss a cluster of late finishes by the same gap. A late job is noticed within about 15 % of the time it "
    "took, and a job clearly not near done is asked less and less. A fetch takes a check's place 1 s after the "
    "predicted finish and then at doubling intervals. The DOWNLOADING state is journaled without an fsync on a "
    "helper thread beside the transfer's first milliseconds (every later change of the job waits for it). The "
    "official CLI sleeps 1 s, 2 s, 4 s, 8 s, "
    "then 10 s between fetches whatever the eta: with `--job-seconds 3` its second fetch (at 1 + 2 s) happens to "
    "land just after "
    "the finish, and with a late job it waits up to 4 s, then 8 s, past it."
)


def _in_scene_bpy(srv: ServerProcess, image_url: str, count: int) -> dict[str, Any]:
    """The add-on itself in bpy 5.0 (background mode: the operator returns with the object in the scene), jobs one
    after the other: object in the scene − the server's finished_at."""
    from .blender_bpy import EXTENSION_MODULE, UserDir
    from .common import BPY50_PYTHON, EXTENSION_ZIP, require_file

    require_file(BPY50_PYTHON, "make setup-bpy")
    require_file(EXTENSION_ZIP, "make build")
    root = Path(tempfile.mkdtemp(prefix="bench-inscene-"))
    try:
        user = UserDir(root)
        user.probe("install", str(EXTENSION_ZIP))
        env = {"MODELSLAB_API_KEY": API_KEY, "MODELSLAB_BASE_URL": srv.url}
        result = user.probe("generate", EXTENSION_MODULE, image_url, str(count), timeout=300, env=env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    finished = {str(j["id"]): j["finished_at"] for j in srv.stats()["jobs"] if j.get("finished_at")}
    values = [row["in_scene_at"] - finished[row["remote_id"]] for row in result["jobs"]]
    log(f"time-to-mesh in scene (bpy, one at a time): {', '.join(f'{v:.2f}' for v in values)} s")
    return {"median": rounded(median(values)), "max": rounded(max(values)), "samples": [rounded(v) for v in values]}


def _scaling(srv: ServerProcess, image_url: str, workdir: Path, quick: bool) -> dict[str, dict[str, float | None]]:
    """The project's JobRunner with N jobs submitted at once (no stagger): overhead and submit→disk times."""
    table: dict[str, dict[str, float | None]] = {}
    for count in SCALING_COUNTS[:2] if quick else SCALING_COUNTS:
        started = time.time()
        samples = run_project(srv, image_url, count, workdir, stagger=0.0)
        wall = time.time() - started
        rows = overheads(srv, samples)
        table[str(count)] = {
            "overhead_median_s": rounded(median([r["overhead_s"] for r in rows])),
            "overhead_max_s": rounded(max(r["overhead_s"] for r in rows)),
            "time_to_mesh_median_s": rounded(median([r["time_to_mesh_s"] for r in rows])),
            "time_to_mesh_max_s": rounded(max(r["time_to_mesh_s"] for r in rows)),
            "wall_s": rounded(wall),
            "server_job_late_median_s": rounded(
                median([r["finished_at"] - r["created_at"] - JOB_SECONDS for r in rows])
            ),
        }
        log(f"time-to-mesh scaling {count} jobs: {table[str(count)]}")
    return table


def _findings(outcome: Outcome) -> None:
    """Plain-language reading of the time-to-mesh figures, from this run's numbers only."""
    values = outcome.values
    ours, cli = values.get("time_to_mesh_overhead_s.project"), values.get("time_to_mesh_overhead_s.modelslab_cli")
    naive = values.get("time_to_mesh_overhead_s.naive_poll")
    if ours is None:
        return
    text = f"Time-to-mesh with an exact eta: our JobRunner had the mesh on disk {ours} s (median) after the finish"
    if cli is not None:
        text += f", the official CLI {cli} s" + (f", a 10 s polling loop {naive} s" if naive is not None else "")
    burst = outcome.extra.get("burst_overhead_s") or {}
    if "project" in burst and "modelslab_cli" in burst:
        late = burst["project"]["server_job_late_vs_job_seconds_median_s"]
        text += (
            f". With all jobs started at once (the server's jobs then took {late} s longer than the nominal "
            f"{JOB_SECONDS:g} s its first eta announced, median) ours took {burst['project']['median_s']} s and the "
            f"CLI {burst['modelslab_cli']['median_s']} s"
        )
    ours_requests, cli_requests = values.get("requests_per_job.project"), values.get("requests_per_job.modelslab_cli")
    if ours_requests is not None and cli_requests is not None:
        text += f"; requests per job (fetch + probe + download): ours {ours_requests}, the CLI's {cli_requests}"
    distance = outcome.extra.get("distance_from_the_limit_s") or {}
    parts = [
        f"{key}: noticed {row['finished_to_noticed_median']} s after the finish, on disk "
        f"{row['noticed_to_on_disk_median']} s later"
        for key, row in distance.items()
        if row.get("finished_to_noticed_median") is not None and "naive" not in key
    ]
    if parts:
        text += ". Distance from the limit (medians): " + "; ".join(parts)
    in_scene = outcome.extra.get("project_in_scene_bpy_s")
    if isinstance(in_scene, dict):
        text += (
            f". The add-on's operator in bpy 5.0 had the object in the scene {in_scene['median']} s (median) after "
            "the server finished (download, verification and import included)"
        )
    outcome.findings.append(text + ".")
