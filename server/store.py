"""Server state: jobs, the worker pool that builds meshes, uploads, wallet and counters."""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import os
import secrets
import threading
import time
import urllib.request
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from . import hostile, reconstruct, textimage
from .faults import MESH_KINDS
from .keys import key_digest, key_hash

log = logging.getLogger("server")

PRICE_PER_JOB = 0.2
SERVER_VERSION = "1.2.0"  # what update_server reports
HOSTILE_PREFIX = "../../etc/x"
ID_LOW, ID_HIGH = 100_000_000, 999_999_999  # job ids: random 9-digit integers, never reused
# The newer revision's diffusion settings: accepted and echoed in meta when sent (they steer no model here).
REVISION_ECHOED = (
    "ss_guidance_strength",
    "ss_sampling_steps",
    "slat_guidance_strength",
    "slat_sampling_steps",
    "mesh_simplify",
)


@dataclass
class Config:
    """Command-line settings."""

    host: str = "127.0.0.1"
    port: int = 8765
    workers: int = 2
    keys: frozenset[str] | None = None
    expire_seconds: float = 86400.0
    job_seconds: float = 0.0
    data_dir: Path = Path(".")
    allow_remote_images: bool = False
    balance: float = 100.0
    max_queue: int = 0
    log_requests: bool = False
    # Loopback addresses whose clients count as on another machine: lets tests play a remote client on loopback.
    remote_peers: frozenset[str] = frozenset()


@dataclass
class Job:
    """One accepted image_to_3d or text_to_3d request (params["kind"] is "image" or "text")."""

    id: int
    seq: int  # submit order; its parity picks the answer variants
    flavor: str  # "enterprise" | "v6"
    params: dict[str, Any]  # normalised request fields (no key)
    images: list[bytes]  # the view(s) of an image job: one, or 2-4 (front, right side, back, left side)
    file_prefix: str
    key_hash: str
    owner: str  # full digest of the submitting key: only that key can fetch the job
    base_url: str  # the address the submitting client used (webhook links)
    client_loopback: bool  # whether the submitting client was on this machine (may it name loopback webhooks)
    created_at: float
    estimate: float
    started_at: float | None = None
    finished_at: float | None = None
    status: str = "queued"  # queued | processing | success | failed
    error: str | None = None
    fail_text: str | None = None  # job_failed fault
    extra_polls: int = 0  # processing_polls fault
    forever: bool = False  # processing_forever fault
    hostile: bool = False  # hostile_names fault
    pad_bytes: int | None = None  # pad_output fault
    mesh_fault: tuple[str, dict[str, Any]] | None = None  # glb_buffer_uri / glb_image_uri / obj_mtllib fault
    held: bool = False  # hold_job fault: stays processing until released
    release: threading.Event = field(default_factory=threading.Event)
    fetches: int = 0
    downloads_started: int = 0
    downloads_completed: int = 0
    file_size: int | None = None
    vertices: int | None = None
    faces: int | None = None
    recon_seconds: float | None = None
    webhook_status: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    run: int = 0  # which scheduling of the job may finish it (restart_server schedules it again)
    cleared: bool = False  # clear_cache removed its output

    @property
    def kind(self) -> str:
        return str(self.params.get("kind", "image"))

    @property
    def fmt(self) -> str:
        return str(self.params["output_format"])

    @property
    def file_name(self) -> str:
        return f"{self.file_prefix}.{self.fmt}"

    def hostile_names(self) -> list[str]:
        """Server-supplied names a client must sanitise; all of them serve this job's file."""
        return [
            f"{HOSTILE_PREFIX}{self.id}.{self.fmt}",
            f"/etc/modelslab/x{self.id}.{self.fmt}",
            f"C:\\Windows\\x{self.id} ;$(rm -rf ~)|é.{self.fmt}",
        ]

    def summary(self) -> dict[str, Any]:
        """The job as /__admin/stats shows it."""
        return {
            "id": self.id,
            "flavor": self.flavor,
            "kind": self.kind,
            "views": len(self.params.get("views") or [None]),
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "track_id": self.params.get("track_id"),
            "key_hash": self.key_hash,
            "resolution": self.params["resolution"],
            "output_format": self.fmt,
            "file_prefix": self.file_prefix,
            "file_bytes": self.file_size,
            "vertices": self.vertices,
            "faces": self.faces,
            "recon_seconds": self.recon_seconds,
            "error": self.error,
            "webhook_status": self.webhook_status,
            "held": self.held and not self.release.is_set(),
            "mesh_fault": self.mesh_fault[0] if self.mesh_fault else None,
            "fetches": self.fetches,
            "downloads_started": self.downloads_started,
            "downloads_completed": self.downloads_completed,
        }


def is_loopback_host(host: str | None) -> bool:
    """True for localhost names and loopback IP literals (no DNS lookup)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Store:
    """All mutable server state behind one lock, plus the worker pool."""

    def __init__(self, config: Config):
        self.config = config
        self.lock = threading.RLock()
        self.out_dir = config.data_dir / "out"
        self.upload_dir = config.data_dir / "uploads"
        self.tmp_dir = config.data_dir / "tmp"
        for directory in (self.out_dir, self.upload_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.pool = ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="job")
        self.next_seq = 1
        self.issued_ids: set[int] = set()
        self.next_upload_id = 500
        self._coef = 1.0  # seconds for a res-256 reconstruction, learned from finished jobs
        self._init_counters()

    def _init_counters(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.futures: dict[int, Future] = {}
        self.files: dict[str, int] = {}  # served name -> job id (real and hostile names)
        self.uploads: dict[str, float] = {}  # upload file name -> created_at
        self.balance = self.config.balance
        self.requests: collections.Counter[str] = collections.Counter()
        self.submits = 0
        self.submits_by_key: collections.Counter[str] = collections.Counter()
        self.submits_by_track: collections.Counter[str] = collections.Counter()
        self.webhooks: list[dict[str, Any]] = []

    # --- counters ----------------------------------------------------------------------------
    def count_request(self, endpoint: str) -> None:
        with self.lock:
            self.requests[endpoint] += 1

    def stats(self, faults: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
        """The /__admin/stats document."""
        with self.lock:
            jobs = [job.summary() for job in self.jobs.values()]
            return {
                "submits": self.submits,
                "submits_by_key": dict(self.submits_by_key),
                "submits_by_track_id": dict(self.submits_by_track),
                "requests": dict(self.requests),
                "faults_fired": faults,
                "faults": rules,
                "jobs": jobs,
                "queue_depth": sum(1 for job in self.jobs.values() if job.status == "queued"),
                "running": sum(1 for job in self.jobs.values() if job.status == "processing" and not job.forever),
                "uploads": len(self.uploads),
                "webhooks": list(self.webhooks),
                "wallet": {"balance": round(self.balance, 4), "currency": "USD"},
                "config": {
                    "workers": self.config.workers,
                    "job_seconds": self.config.job_seconds,
                    "expire_seconds": self.config.expire_seconds,
                    "price_per_job": PRICE_PER_JOB,
                },
            }

    def reset(self) -> None:
        """Forget everything except the id counters; running jobs are abandoned."""
        with self.lock:
            for job_id, job in self.jobs.items():
                job.cancel.set()
                job.release.set()
                future = self.futures.get(job_id)
                if future is not None:
                    future.cancel()
            self._init_counters()
        for directory in (self.out_dir, self.upload_dir, self.tmp_dir):
            for path in directory.iterdir():
                try:
                    path.unlink()
                except OSError:
                    pass

    def shutdown(self) -> None:
        """Stop the workers (running reconstructions finish in the background)."""
        with self.lock:
            for job in self.jobs.values():
                job.cancel.set()
                job.release.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    # --- wallet ------------------------------------------------------------------------------
    def can_pay(self) -> bool:
        with self.lock:
            return self.balance + 1e-9 >= PRICE_PER_JOB

    # --- jobs --------------------------------------------------------------------------------
    def estimate(self, resolution: int) -> float:
        """Expected seconds for one job at this resolution (the learned reconstruction cost, or --job-seconds)."""
        recon = 0.15 + self._coef * (resolution / 256.0) ** 3
        return max(self.config.job_seconds, recon)

    def active_jobs(self) -> int:
        with self.lock:
            return sum(1 for job in self.jobs.values() if job.status in ("queued", "processing") and not job.forever)

    def _new_id(self) -> int:
        while True:
            job_id = ID_LOW + secrets.randbelow(ID_HIGH - ID_LOW + 1)
            if job_id not in self.issued_ids:
                self.issued_ids.add(job_id)
                return job_id

    def create_job(
        self,
        flavor: str,
        params: dict[str, Any],
        images: list[bytes],
        key: str,
        faults: dict[str, Any],
        base_url: str,
        client_loopback: bool,
    ) -> Job:
        """Register, charge and schedule a job (faults: the submit's job-level faults that fired)."""
        with self.lock:
            job_id = self._new_id()
            job = Job(
                id=job_id,
                seq=self.next_seq,
                flavor=flavor,
                params=params,
                images=list(images),
                file_prefix=str(uuid.uuid4()),
                key_hash=key_hash(key),
                owner=key_digest(key),
                base_url=base_url,
                client_loopback=client_loopback,
                created_at=time.time(),
                estimate=self.estimate(params["resolution"]),
            )
            self.next_seq += 1
            self.jobs[job_id] = job
            self.files[job.file_name] = job_id
            self.apply_job_faults(job, faults)
            if "pad_output" in faults:
                job.pad_bytes = int(faults["pad_output"].get("bytes", 0))
            if "hold_job" in faults:
                job.held = True
            for kind in MESH_KINDS:
                if kind in faults:
                    job.mesh_fault = (kind, dict(faults[kind].params))
            self.balance -= PRICE_PER_JOB
            self.submits += 1
            self.submits_by_key[job.key_hash] += 1
            if params.get("track_id") is not None:
                self.submits_by_track[str(params["track_id"])] += 1
            if job.forever:
                job.status = "processing"
                job.started_at = job.created_at
            else:
                self.futures[job_id] = self.pool.submit(self._run, job, job.run)
            return job

    def apply_job_faults(self, job: Job, faults: dict[str, Any]) -> None:
        """Job-level faults fired on submit or fetch change how this job answers from now on."""
        if "job_failed" in faults:
            job.fail_text = str(faults["job_failed"].get("text"))
            if job.status == "success":
                job.status = "failed"
                job.error = job.fail_text
        if "processing_polls" in faults:
            job.extra_polls += int(faults["processing_polls"].get("polls", 0))
        if "processing_forever" in faults:
            job.forever = True
        if "hostile_names" in faults and not job.hostile:
            job.hostile = True
            with self.lock:  # these names embed the id: only a job that hands them out answers to them
                for name in job.hostile_names():
                    self.files[name] = job.id

    def get_job(self, job_id: int) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def job_for(self, job_id: int, key: str) -> Job | None:
        """The job if `key` submitted it; None for unknown ids and other keys' jobs alike."""
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or not secrets.compare_digest(job.owner, key_digest(key)):
                return None
            job.fetches += 1
            return job

    def release(self, ids: list[int] | None) -> list[int]:
        """Let held jobs (hold_job fault) finish: these ids, or all of them; returns the ids released."""
        with self.lock:
            released = []
            for job in self.jobs.values():
                if job.held and not job.release.is_set() and (ids is None or job.id in ids):
                    job.release.set()
                    released.append(job.id)
            return sorted(released)

    def count_download(self, job: Job, completed: bool) -> None:
        """A GET of the job's file began sending (completed=False) or sent the whole body (completed=True)."""
        with self.lock:
            if completed:
                job.downloads_completed += 1
            else:
                job.downloads_started += 1

    def expired(self, job: Job) -> bool:
        """Outputs (and the fetch answer) disappear --expire-seconds after the job finished, or on clear_cache."""
        if job.cleared:
            return True
        return job.finished_at is not None and time.time() - job.finished_at > self.config.expire_seconds

    # --- the enterprise server's admin actions -----------------------------------------------
    def clear_queue(self, key: str) -> list[int]:
        """Drop the key's jobs that wait for a worker: they fail with a message and are refunded; returns their ids."""
        owner = key_digest(key)
        with self.lock:
            dropped = []
            for job in self.jobs.values():
                if job.owner == owner and job.status == "queued" and not job.forever:
                    future = self.futures.pop(job.id, None)
                    if future is not None:
                        future.cancel()
                    job.run += 1  # a run that already started never finishes it
                    job.status = "failed"
                    job.error = "Removed from the queue by clear_queue (not charged)"
                    job.finished_at = time.time()
                    job.images = []
                    self.balance += PRICE_PER_JOB
                    dropped.append(job.id)
            return sorted(dropped)

    def clear_cache(self, key: str) -> dict[str, int]:
        """Delete the key's finished jobs' outputs (their links and fetches then answer 404, like expired ones)."""
        owner = key_digest(key)
        removed, freed = 0, 0
        with self.lock:
            for job in self.jobs.values():
                if job.owner == owner and job.status in ("success", "failed") and not job.cleared:
                    job.cleared = True
                    path = self.out_dir / job.file_name
                    try:
                        freed += path.stat().st_size
                        path.unlink()
                        removed += 1
                    except OSError:
                        pass
        return {"files_removed": removed, "bytes_freed": freed}

    def restart_workers(self) -> dict[str, int]:
        """A fresh worker pool: jobs queued or running (not held) start again on it; their runs in progress are
        abandoned. Returns {"workers": N, "restarted_jobs": N}."""
        with self.lock:
            old, self.pool = (
                self.pool,
                ThreadPoolExecutor(max_workers=max(1, self.config.workers), thread_name_prefix="job"),
            )
            again = [
                job
                for job in sorted(self.jobs.values(), key=lambda j: j.seq)
                if job.status in ("queued", "processing") and not job.forever and not job.held
            ]
            for job in again:
                job.run += 1
                job.status = "queued"
                job.started_at = None
                self.futures[job.id] = self.pool.submit(self._run, job, job.run)
        old.shutdown(wait=False, cancel_futures=True)
        return {"workers": max(1, self.config.workers), "restarted_jobs": len(again)}

    def eta(self, job: Job) -> float:
        """Seconds until this job should be done, counting the jobs ahead of it in the queue."""
        now = time.time()
        with self.lock:
            if job.forever:
                return round(max(job.estimate, 1.0), 2)
            if job.status == "success":
                return 1.0 if job.extra_polls else 0.0
            if job.status == "processing":
                return round(max(0.2, job.estimate - (now - (job.started_at or now))), 2)
            # Simulate the pool: each queued job ahead of this one takes the worker that frees up first.
            slots = max(1, self.config.workers)
            free = sorted(
                max(0.0, other.estimate - (now - (other.started_at or now)))
                for other in self.jobs.values()
                if other.status == "processing" and not other.forever
            )[:slots]
            free += [0.0] * (slots - len(free))
            for other in sorted(self.jobs.values(), key=lambda j: j.id):
                if other.id >= job.id:
                    break
                if other.status == "queued" and not other.forever:
                    free.sort()
                    free[0] += other.estimate
            return round(max(0.2, min(free) + job.estimate), 2)

    def _alive(self, job: Job, run: int | None = None) -> bool:
        with self.lock:
            current = run is None or job.run == run
            return self.jobs.get(job.id) is job and not job.cancel.is_set() and current

    def _build_mesh(self, job: Job, images: list[bytes]) -> reconstruct.Mesh:
        params = job.params
        options = {
            "resolution": reconstruct.simplified_resolution(params["resolution"], params.get("mesh_simplify")),
            "foreground_ratio": params["foreground_ratio"],
            "remove_bg": params["remove_bg"],
            "chunk_size": params["chunk_size"],
            "seed": params["seed"],
        }
        if job.kind == "text":
            return reconstruct.reconstruct(textimage.render_prompt(params["prompt"], seed=params["seed"]), **options)
        if len(images) > 1:
            return reconstruct.reconstruct_views(images, **options)
        return reconstruct.reconstruct(images[0], **options)

    def _run(self, job: Job, run: int) -> None:
        if not self._alive(job, run):
            return
        with self.lock:
            job.status = "processing"
            job.started_at = time.time()
            images = list(job.images)
        tmp = self.tmp_dir / f"{job.file_prefix}.{job.fmt}.{run}.part"
        try:
            if job.fail_text is None:
                t0 = time.perf_counter()
                mesh = self._build_mesh(job, images)
                reconstruct.write_mesh(mesh, tmp, job.fmt)
                if job.pad_bytes:
                    reconstruct.pad_file(tmp, job.fmt, job.pad_bytes)
                if job.mesh_fault is not None:
                    hostile.apply(tmp, *job.mesh_fault)
                recon = time.perf_counter() - t0
                with self.lock:
                    job.recon_seconds = round(recon, 4)
                    job.vertices = len(mesh.vertices)
                    job.faces = len(mesh.faces)
                    scale = (job.params["resolution"] / 256.0) ** 3
                    self._coef = min(60.0, max(0.05, 0.6 * self._coef + 0.4 * max(0.0, recon - 0.15) / scale))
            remaining = self.config.job_seconds - (time.time() - (job.started_at or 0.0))
            if remaining > 0 and job.cancel.wait(remaining):
                return
            if job.held:
                job.release.wait()
            with self.lock:
                if not self._alive(job, run):
                    return
                if job.fail_text is not None:
                    job.status = "failed"
                    job.error = job.fail_text
                else:
                    os.replace(tmp, self.out_dir / job.file_name)
                    job.file_size = (self.out_dir / job.file_name).stat().st_size
                    job.status = "success"
                job.finished_at = time.time()
        except Exception as exc:  # a bad image or a reconstruction bug fails the job, not the server
            log.exception("job %s failed", job.id)
            with self.lock:
                if not self._alive(job, run):
                    return
                job.status = "failed"
                job.error = f"Generation failed: {exc}"
                job.finished_at = time.time()
        finally:
            tmp.unlink(missing_ok=True)
            with self.lock:
                if job.run == run:
                    job.images = []
        self._send_webhook(job)

    def _send_webhook(self, job: Job) -> None:
        url = job.params.get("webhook")
        if not url or not self._alive(job):
            return
        payload = self.result_payload(job, job.base_url)
        payload["track_id"] = job.params.get("track_id")
        if not is_loopback_host(urlparse(url).hostname):
            status = "skipped (this local server only calls loopback webhooks)"
        elif not job.client_loopback:
            status = "skipped (loopback webhooks only for clients on this machine)"
        else:
            data = json.dumps(payload).encode()
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(request, timeout=3) as response:
                    status = f"sent ({response.status})"
            except Exception as exc:  # best effort: the client can always fetch
                status = f"failed ({type(exc).__name__})"
        with self.lock:
            job.webhook_status = status
            self.webhooks.append({"id": job.id, "url": url, "status": status, "at": time.time()})

    # --- answers -----------------------------------------------------------------------------
    def meta(self, job: Job, hostile: bool | None = None) -> dict[str, Any]:
        """The `meta` object of processing/success answers (foreground_ratio as a string like ".85")."""
        params = job.params
        ratio = f"{params['foreground_ratio']:g}"
        if ratio.startswith("0."):
            ratio = ratio[1:]
        hostile = job.hostile if hostile is None else hostile
        meta: dict[str, Any] = {
            "file_prefix": HOSTILE_PREFIX + str(job.id) if hostile else job.file_prefix,
            "foreground_ratio": ratio,
            "remove_bg": params["remove_bg"],
            "seed": params["seed"],
            "output_format": job.fmt,
        }
        if job.kind == "text":
            meta["prompt"] = params["prompt"]
            for name in ("negative_prompt", "guidance_scale", "num_inference_steps", "model_id"):
                if params.get(name) is not None:
                    meta[name] = params[name]
            meta["stand_in"] = "offline stand-in: the prompt's words, reconstructed (real text to 3D needs the service)"
            return meta
        views = params.get("views")
        meta.update(
            chunk_size=params["chunk_size"],
            image=list(views) if views else params["init_image"],
            render=params.get("render", False),
            resolution=params["resolution"],
            temp=params.get("temp", "no"),
        )
        if views:
            meta["multi_image"] = True
        for name in REVISION_ECHOED:
            if params.get(name) is not None:
                meta[name] = params[name]
        return meta

    def links(self, job: Job, base: str) -> tuple[list[str], list[str]]:
        """(primary URLs, proxy mirror URLs) of the job's mesh."""
        if job.hostile:
            names = job.hostile_names()
            return (
                [f"{base}/out/{quote(names[0], safe='')}"],
                [f"{base}/cdn/out/{quote(names[1], safe='')}", f"{base}/cdn/out/{quote(names[2], safe='')}"],
            )
        return [f"{base}/out/{job.file_name}"], [f"{base}/cdn/out/{job.file_name}"]

    def result_payload(self, job: Job, base: str) -> dict[str, Any]:
        """The success (or failed) answer of fetch and of the webhook."""
        if job.status == "failed":
            return {"status": "failed", "id": job.id, "message": job.error or "Generation failed", "output": []}
        output, proxy = self.links(job, base)
        generation = (job.finished_at or 0.0) - (job.started_at or job.created_at)
        return {
            "status": "success",
            "generationTime": round(generation, 3),
            # The seed example of the real service answers "id": null; odd ids do the same here.
            "id": None if job.seq % 2 else job.id,
            "output": output,
            "proxy_links": proxy,
            "nsfw_content_detected": False,
            "webhook_status": job.webhook_status,
            "meta": self.meta(job),
            "tip": "Your 3D model is ready. Outputs are deleted after 24 hours; download them promptly.",
        }

    # --- uploads -----------------------------------------------------------------------------
    def add_upload(self, data: bytes, ext: str) -> tuple[int, str]:
        with self.lock:
            upload_id = self.next_upload_id
            self.next_upload_id += 1
            name = f"{uuid.uuid4().hex}.{ext}"
            (self.upload_dir / name).write_bytes(data)
            self.uploads[name] = time.time()
            return upload_id, name

    def upload_path(self, name: str) -> Path | None:
        """The stored upload, or None if unknown or expired."""
        with self.lock:
            created = self.uploads.get(name)
        if created is None or time.time() - created > self.config.expire_seconds:
            return None
        path = self.upload_dir / name
        return path if path.is_file() else None

    def output_for(self, name: str) -> tuple[Job | None, Path | None]:
        """(job, file) for a served output name; file is None while not ready, after expiry or failure."""
        with self.lock:
            job_id = self.files.get(name)
            job = self.jobs.get(job_id) if job_id is not None else None
        if job is None or job.status not in ("success",) or job.file_size is None:
            return job, None
        path = self.out_dir / job.file_name
        if self.expired(job):
            path.unlink(missing_ok=True)
            return job, None
        return job, (path if path.is_file() else None)
