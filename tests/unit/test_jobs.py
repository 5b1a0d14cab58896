"""JobRunner against the real local server: lifecycle, concurrency, cancel, shutdown, failures, secrets."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api import Category, ClientConfig, GenerationParams, JobRunner, ModelsLabClient, ModelsLabError, register_secret
from api.cache import MeshCache
from api.jobs import JobEvent, JobRecord
from api.journal import JobJournal
from tests.helpers.folders import read_only
from tests.helpers.servers import ServerProcess, fresh, serve, slow_server_args, start_server, wait_until

REPO = Path(__file__).resolve().parents[2]
DUCK = str(REPO / "examples" / "duck_512.png")
VASE = str(REPO / "examples" / "vase_plain.png")
MUSHROOM = str(REPO / "examples" / "mushroom_rgba.png")
KEY = "sk-jobs-test-key-7c41d2e9"
SMALL = GenerationParams(resolution=48)

MakeRunner = Callable[..., JobRunner]


class EventLog:
    """Collects a runner's events; lets a test wait for one without sleeping blindly."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self.seen: list[JobEvent] = []

    def pump(self) -> list[JobEvent]:
        self.seen.extend(self.runner.drain_events())
        return self.seen

    def wait_for(self, local_id: str, state: str, timeout: float = 30.0) -> JobEvent:
        def found() -> JobEvent | None:
            self.pump()
            return next((e for e in self.seen if e.local_id == local_id and e.state == state), None)

        return wait_until(found, timeout=timeout, interval=0.01, message=f"{local_id} reaching {state}")

    def states(self, local_id: str) -> list[str]:
        self.pump()
        states: list[str] = []
        for event in self.seen:
            if event.local_id == local_id and (not states or states[-1] != event.state):
                states.append(event.state)
        return states


def runner_threads(runner: JobRunner) -> list[threading.Thread]:
    return [thread for thread in runner.threads() if thread.is_alive()]


def duck_record(local_id: str, base_url: str, **fields: Any) -> JobRecord:
    """A journal record of a small duck job (state, history and the rest from fields), as a Blender left it."""
    return JobRecord(
        local_id=local_id,
        name="duck",
        source=DUCK,
        params=SMALL.to_dict(),
        base_url=base_url,
        flavor="enterprise",
        **fields,
    )


def all_files_text(*directories: Path) -> bytes:
    return b"".join(p.read_bytes() for d in directories for p in d.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """Every job takes at least 4 s: long enough to cancel, shut down or time out in the middle of polling."""
    yield from serve(*slow_server_args(4, workers=4))


@pytest.fixture
def slow(slow_server: ServerProcess) -> Iterator[ServerProcess]:
    yield from fresh(slow_server)


@pytest.fixture
def make_runner(tmp_path: Path) -> Iterator[MakeRunner]:
    """Build runners on tmp_path/jobs + tmp_path/meshes; every one is shut down and must leave no thread."""
    register_secret(KEY)
    made: list[tuple[JobRunner, ModelsLabClient]] = []

    def make(server: ServerProcess, *, key: str = KEY, **options) -> JobRunner:
        client = ModelsLabClient(key, ClientConfig(base_url=server.url, max_retries=2, backoff_base=0.1))
        runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(tmp_path / "meshes"), **options)
        made.append((runner, client))
        return runner

    yield make
    for runner, client in made:
        runner.shutdown(timeout=15)
        client.close()
        assert runner_threads(runner) == []
    leftovers = [t.name for t in threading.enumerate() if t.name.startswith("modelslab-job")]
    assert leftovers == []


def test_full_job_from_a_local_image(fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path) -> None:
    runner = make_runner(fresh_server)
    events = EventLog(runner)
    record = runner.submit(DUCK, GenerationParams(resolution=64), extra={"import_scale": 1.0})
    assert record.state == "queued" and record.name == "duck_512"
    assert runner.journal.load(record.local_id).state == "queued"  # journaled before anything was sent

    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    path = Path(done.file_path)
    assert path.parent == tmp_path / "meshes" and path.suffix == ".obj"
    text = path.read_text(encoding="utf-8")
    assert "\nv " in "\n" + text and "\nf " in text
    assert done.file_bytes == path.stat().st_size
    assert done.image_url and "/uploads/" in done.image_url
    assert done.params["init_image"] == done.image_url
    assert done.remote_id is not None and done.output_urls and done.progress == 1.0

    states = [entry[0] for entry in done.history]
    assert states[:4] == ["queued", "uploading", "submitting", "submitted"]
    assert states[-2:] == ["downloading", "downloaded"]
    assert [t for _, t in done.history] == sorted(t for _, t in done.history)
    assert events.states(record.local_id)[0] == "queued" and events.states(record.local_id)[-1] == "downloaded"
    assert all(isinstance(e.record, JobRecord) and e.record is not done for e in events.seen)
    assert runner.journal.load(record.local_id).state == "downloaded"

    imported = runner.mark_imported(record.local_id, "duck_512")
    assert imported.state == "imported" and imported.object_name == "duck_512"
    assert runner.journal.load(record.local_id).state == "imported"
    assert runner.journal.unfinished() == []
    stats = fresh_server.stats()
    assert stats["submits"] == 1 and stats["requests"]["upload"] == 1 and stats["requests"]["download"] == 1


def test_url_source_is_not_uploaded_again(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    url = fresh_server.upload(VASE)
    runner = make_runner(fresh_server)
    record = runner.submit(url, SMALL)
    assert record.image_url == url and record.params["init_image"] == url
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert "uploading" not in [entry[0] for entry in done.history]
    assert fresh_server.stats()["requests"]["upload"] == 1  # only the test's own upload


def test_many_concurrent_jobs_with_a_bounded_pool(make_runner: MakeRunner) -> None:
    with start_server("--workers", "4", "--job-seconds", "1") as server:
        runner = make_runner(server, max_workers=3)
        images = [DUCK, VASE, MUSHROOM] * 3
        ids = [runner.submit(image, SMALL).local_id for image in images]
        assert len(runner_threads(runner)) <= 3
        done = [runner.wait(local_id, timeout=90) for local_id in ids]
        assert [job.state for job in done] == ["downloaded"] * len(ids), [job.error for job in done]
        assert len({job.file_path for job in done}) == len(ids)
        assert len(runner.threads()) == 3  # never more workers than max_workers
        stats = server.stats()
        assert stats["submits"] == len(ids)
        # Bounded: at no moment did the server hold more than 3 of this runner's jobs.
        spans = [(job["created_at"], job["finished_at"]) for job in stats["jobs"]]
        most = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
        assert most <= 3


def test_cancel_mid_poll_is_prompt_and_leaves_no_thread(slow: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(slow, poll_timeout=60)
    events = EventLog(runner)
    record = runner.submit(DUCK, SMALL)
    events.wait_for(record.local_id, "submitted")
    wait_until(lambda: slow.stats()["jobs"] and slow.stats()["jobs"][0]["status"] == "processing")

    started = time.monotonic()
    cancelled = runner.cancel(record.local_id)
    settled = runner.wait(record.local_id, timeout=5)
    event = events.wait_for(record.local_id, "cancelled", timeout=5)
    # The worker notices at once too (its wait is an Event): joining it right away is prompt.
    runner.shutdown(timeout=5)
    elapsed = time.monotonic() - started
    assert runner_threads(runner) == []
    assert elapsed < 1.0, elapsed
    assert cancelled.state == settled.state == event.state == "cancelled"
    assert settled.error["category"] == "cancelled"
    assert "may still charge" in settled.message
    assert runner.journal.load(record.local_id).state == "cancelled"
    assert slow.stats()["submits"] == 1
    assert runner.cancel(record.local_id).state == "cancelled"  # cancelling again changes nothing


def test_cancel_before_submit_costs_nothing(slow: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(slow, max_workers=1)
    first = runner.submit(DUCK, SMALL)
    waiting = runner.submit(VASE, SMALL)  # the only worker is busy with `first`
    cancelled = runner.cancel(waiting.local_id)
    assert cancelled.state == "cancelled" and "nothing was charged" in cancelled.message
    runner.cancel(first.local_id)
    runner.shutdown(timeout=10)
    assert slow.stats()["submits"] <= 1
    assert runner.journal.load(waiting.local_id).state == "cancelled"


def test_shutdown_mid_poll_joins_every_thread_and_keeps_jobs_resumable(
    slow: ServerProcess, make_runner: MakeRunner
) -> None:
    runner = make_runner(slow, max_workers=3)
    events = EventLog(runner)
    ids = [runner.submit(image, SMALL).local_id for image in (DUCK, VASE, MUSHROOM)]
    for local_id in ids:
        events.wait_for(local_id, "submitted")
    assert len(runner_threads(runner)) == 3
    runner.shutdown(wait=True, timeout=5)
    assert runner_threads(runner) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("modelslab-job")]
    journaled = {r.local_id: r.state for r in runner.journal.unfinished()}
    assert set(journaled) == set(ids)
    assert set(journaled.values()) <= {"submitted", "processing"}
    assert runner.wait(ids[0], timeout=1).state in ("submitted", "processing")  # no hang after shutdown
    with pytest.raises(ModelsLabError):
        runner.submit(DUCK, SMALL)


def test_crash_mid_poll_then_resume_finishes_without_a_second_submit(
    slow: ServerProcess, make_runner: MakeRunner
) -> None:
    first = make_runner(slow)
    events = EventLog(first)
    record = first.submit(DUCK, SMALL)
    events.wait_for(record.local_id, "submitted")
    first.shutdown(wait=True, timeout=5)  # the "crash": the poll is interrupted, the journal stays

    second = make_runner(slow)
    resumed = second.resume_unfinished()
    assert [r.local_id for r in resumed] == [record.local_id]
    done = second.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert slow.stats()["submits"] == 1
    assert second.resume_unfinished()[0].state == "downloaded"  # downloaded, waiting for import: left alone
    assert slow.stats()["requests"]["download"] == 1  # never fetched twice


SLOW_DOWNLOAD = [
    {"fault": "pad_output", "endpoint": "submit", "bytes": 400_000},
    {"fault": "slow_download", "endpoint": "download", "bytes_per_second": 100_000, "times": -1},
]


def test_cancel_during_download_is_prompt_and_leaves_no_partial_file(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    fresh_server.set_faults(SLOW_DOWNLOAD)
    runner = make_runner(fresh_server)
    events = EventLog(runner)
    record = runner.submit(DUCK, SMALL)
    wait_until(
        lambda: any(e.local_id == record.local_id and e.message.startswith("Downloading ") for e in events.pump()),
        timeout=30,
        interval=0.01,
    )
    started = time.monotonic()
    cancelled = runner.cancel(record.local_id)
    runner.shutdown(timeout=5)
    assert time.monotonic() - started < 1.0
    assert cancelled.state == "cancelled" and "may still charge" in cancelled.message
    assert list((tmp_path / "meshes").iterdir()) == []  # the partial download was removed


def test_download_progress_events_are_spaced_so_a_fast_download_sends_none(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    """Progress events come no sooner than 0.1 s into a transfer and then no closer together: a download of a
    small mesh (well under 0.1 s on loopback) publishes no "Downloading x MB" event, a slow one does."""
    runner = make_runner(fresh_server)
    events = EventLog(runner)
    fast = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert fast.state == "downloaded", fast.error
    progress = [e for e in events.pump() if e.local_id == fast.local_id and e.message.startswith("Downloading ")]
    assert progress == [], [e.message for e in progress]

    fresh_server.set_faults(SLOW_DOWNLOAD)
    slow = runner.submit(DUCK, SMALL)
    done = runner.wait(slow.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    timed = [
        e.record.updated_at
        for e in events.pump()
        if e.local_id == slow.local_id and e.message.startswith("Downloading ")
    ]
    assert timed, "a slow download published no progress"
    assert all(b - a >= 0.1 - 1e-3 for a, b in zip(timed, timed[1:], strict=False)), timed


def test_the_downloading_record_is_written_beside_the_transfer_and_never_after_a_later_state(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(fresh_server)
    journal_save = runner.journal.save
    seen: dict[str, Any] = {}

    def slow_downloading_save(record: JobRecord, *, durable: bool = True) -> None:
        if record.state == "downloading" and record.message == "Downloading":
            # Held until the transfer has begun: the download must not be waiting for this write.
            seen["transfer_began"] = bool(
                wait_until(lambda: list((tmp_path / "meshes").glob(".*.part")), timeout=10, interval=0.002)
            )
        journal_save(record, durable=durable)
        seen.setdefault("order", []).append(record.state)

    runner.journal.save = slow_downloading_save  # type: ignore[method-assign]
    fresh_server.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": 3_000_000}])
    record = runner.submit(DUCK, SMALL)
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert seen["transfer_began"]
    order = seen["order"]
    assert "downloading" in order and order.index("downloading") < order.index("downloaded")
    assert runner.journal.load(record.local_id).state == "downloaded"  # the late write did not come last


def test_shutdown_during_download_then_resume(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    fresh_server.set_faults(SLOW_DOWNLOAD)
    first = make_runner(fresh_server)
    events = EventLog(first)
    record = first.submit(DUCK, SMALL)
    wait_until(
        lambda: any(
            e.local_id == record.local_id and e.message.startswith("Downloading ") for e in events.pump()
        ),  # the transfer is under way: the DOWNLOADING state was journaled before it
        timeout=30,
        interval=0.01,
        message="the first download progress",
    )
    first.shutdown(timeout=5)
    assert first.journal.load(record.local_id).state == "downloading"

    fresh_server.clear_faults()
    second = make_runner(fresh_server)
    second.resume_unfinished()
    done = second.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert done.file_bytes >= 400_000
    assert fresh_server.stats()["submits"] == 1


def test_submitting_record_is_never_resubmitted(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(fresh_server)
    now = time.time()
    interrupted = duck_record(
        "d" * 32,
        fresh_server.url,
        state="submitting",
        history=[["queued", now], ["uploading", now], ["submitting", now]],
    )
    runner.journal.save(interrupted)
    (resumed,) = runner.resume_unfinished()
    assert resumed.state == "failed"
    assert resumed.error["category"] == "network"
    assert "not sent again" in resumed.error["fix"]
    assert runner.journal.load(interrupted.local_id).state == "failed"
    with pytest.raises(ModelsLabError) as caught:
        runner.resume(interrupted.local_id)
    assert caught.value.category is Category.INVALID_INPUT
    assert fresh_server.stats()["submits"] == 0
    assert runner_threads(runner) == []


def test_dropped_submit_is_failed_not_retried(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    fresh_server.set_faults([{"fault": "drop_connection", "endpoint": "submit"}])
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert done.state == "failed" and done.error["category"] == "network"
    assert fresh_server.stats()["submits"] == 1  # the server took it once; we never sent it again


def test_rate_limited_submit_waits_and_submits_once(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "submit", "retry_after": 1}])
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert done.state == "downloaded", done.error
    stats = fresh_server.stats()
    assert stats["submits"] == 1 and stats["requests"]["submit"] == 2


def test_queue_full_beyond_the_clients_patience_waits_in_the_runner(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    """The client gives up on 429 at once (max_retries=0); the runner waits retry_after and sends again: a 429 is a
    refusal, so this is never a double submit."""
    fresh_server.set_faults([{"fault": "rate_limit", "endpoint": "submit", "retry_after": 1, "times": 2}])
    client = ModelsLabClient(KEY, ClientConfig(base_url=fresh_server.url, max_retries=0))
    runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(tmp_path / "meshes"))
    events = EventLog(runner)
    try:
        done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    finally:
        runner.shutdown()
        client.close()
    assert done.state == "downloaded", done.error
    stats = fresh_server.stats()
    assert stats["submits"] == 1 and stats["requests"]["submit"] == 3
    assert any("rate limited" in e.message and "nothing was charged" in e.message for e in events.pump())
    assert [entry[0] for entry in done.history].count("submitting") == 3


def test_odd_fetch_answers_are_survived(slow: ServerProcess, make_runner: MakeRunner) -> None:
    """Malformed JSON and status-error answers (HTTP 200) while polling are retried, not taken as a failed job."""
    slow.set_faults(
        [
            {"fault": "malformed_json", "endpoint": "fetch", "times": 2},
            {"fault": "status_error", "endpoint": "fetch", "spelling": "messege", "text": "busy"},
        ]
    )
    runner = make_runner(slow, poll_interval_min=0.2, poll_interval_max=0.5)
    runner.client.probe = lambda url, timeout=None: None  # type: ignore[method-assign]  # as if HEAD were unsupported
    # so only fetches may tell: the odd answers must be met and survived
    record = runner.submit(DUCK, SMALL)
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert slow.stats()["faults_fired"]["total"] >= 3 and slow.stats()["submits"] == 1


def test_job_failed_on_the_server(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    fresh_server.set_faults([{"fault": "job_failed", "endpoint": "submit", "text": "GPU fell over"}])
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert done.state == "failed"
    assert done.error["category"] in {c.value for c in Category}
    assert "GPU fell over" in done.error["message"]
    assert done.file_path is None or not Path(done.file_path).exists()
    assert fresh_server.stats()["submits"] == 1


def test_expired_output_fails_as_expired(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    fresh_server.set_faults([{"fault": "expired", "endpoint": "download", "times": -1}])
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert done.state == "failed" and done.error["category"] == "expired"
    assert list(Path(runner.cache.directory).glob("*")) == []  # no partial file left


def test_resumed_job_the_server_forgot_fails_as_expired(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    record = duck_record(
        "c" * 32,
        fresh_server.url,
        state="timed_out",
        remote_id="987654",
        future_links=[fresh_server.url + "/out/00000000-gone.obj"],
        history=[["submitting", 1.0], ["submitted", 1.0], ["timed_out", 2.0]],
    )
    runner.journal.save(record)
    runner.resume_unfinished()
    done = runner.wait(record.local_id, timeout=30)
    assert done.state == "failed" and done.error["category"] == "expired", done.error
    assert fresh_server.stats()["submits"] == 0


def test_timed_out_then_resumed_to_downloaded(slow: ServerProcess, make_runner: MakeRunner) -> None:
    """processing_forever on fetch: fetch never says success, but the file appears at future_links; the poll
    timeout hits first (TIMED_OUT, resumable), a resume after clearing the fault finds the file."""
    slow.set_faults([{"fault": "processing_forever", "endpoint": "fetch", "times": -1}])
    runner = make_runner(slow, poll_timeout=1.0)
    events = EventLog(runner)
    record = runner.submit(DUCK, SMALL)
    timed_out = runner.wait(record.local_id, timeout=30)
    assert timed_out.state == "timed_out" and timed_out.is_settled and not timed_out.is_terminal
    assert "still processing on the server" in timed_out.message.lower() and "resume later" in timed_out.message
    assert timed_out.error is None
    assert runner.journal.load(record.local_id).state == "timed_out"
    assert "timed_out" in events.states(record.local_id)

    slow.clear_faults()
    runner.poll_timeout = 60.0
    runner.resume(record.local_id)
    done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded", done.error
    assert slow.stats()["submits"] == 1


def test_processing_forever_on_submit_times_out_with_one_submit(slow: ServerProcess, make_runner: MakeRunner) -> None:
    slow.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    runner = make_runner(slow, poll_timeout=1.5)
    record = runner.submit(DUCK, SMALL)
    done = runner.wait(record.local_id, timeout=30)
    assert done.state == "timed_out"
    stats = slow.stats()
    assert stats["submits"] == 1 and stats["requests"].get("fetch", 0) >= 1
    restarted = make_runner(slow, poll_timeout=0.5)
    (resumed,) = restarted.resume_unfinished()  # resumable after a restart too, and polling again at once
    assert resumed.local_id == record.local_id and resumed.state == "processing"
    assert restarted.wait(record.local_id, timeout=30).state == "timed_out"
    assert slow.stats()["submits"] == 1


def test_processing_polls_are_overtaken_by_the_future_link(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    """The file exists while fetch still says processing (processing_polls): the probe downloads it anyway."""
    fresh_server.set_faults([{"fault": "processing_polls", "endpoint": "submit", "polls": 50}])
    runner = make_runner(fresh_server, poll_interval_min=5.0, poll_interval_max=5.0)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=30)
    assert done.state == "downloaded", done.error
    stats = fresh_server.stats()
    assert stats["requests"].get("download", 0) == 1  # the probe at the eta was the download itself
    assert stats["requests"].get("fetch", 0) <= 3


def test_vanished_download_is_fetched_again_existing_one_never(
    fresh_server: ServerProcess, make_runner: MakeRunner
) -> None:
    first = make_runner(fresh_server)
    done = first.wait(first.submit(DUCK, SMALL).local_id, timeout=60)
    assert done.state == "downloaded"
    first.shutdown()

    second = make_runner(fresh_server)
    events = EventLog(second)
    (again,) = second.resume_unfinished()
    assert again.state == "downloaded" and fresh_server.stats()["requests"]["download"] == 1
    assert events.wait_for(done.local_id, "downloaded").message.startswith("Downloaded earlier")
    second.shutdown()

    Path(done.file_path).unlink()
    third = make_runner(fresh_server)
    third.resume_unfinished()
    redone = third.wait(done.local_id, timeout=60)
    assert redone.state == "downloaded" and Path(redone.file_path).is_file()
    stats = fresh_server.stats()
    assert stats["requests"]["download"] == 2 and stats["submits"] == 1


def test_wait_any_returns_the_first_settled_job(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    ids = [runner.submit(image, SMALL).local_id for image in (DUCK, VASE)]
    remaining = set(ids)
    while remaining:
        job = runner.wait_any(sorted(remaining), timeout=60)
        assert job is not None and job.local_id in remaining and job.state == "downloaded"
        remaining.discard(job.local_id)
    assert runner.wait_any([], timeout=0) is None


def test_wait_any_times_out(slow: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(slow)
    record = runner.submit(DUCK, SMALL)
    started = time.monotonic()
    assert runner.wait_any([record.local_id], timeout=0.3) is None
    assert time.monotonic() - started >= 0.3
    assert not runner.wait(record.local_id, timeout=0.1).is_settled


def test_bad_input_is_refused_before_anything_is_sent(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(fresh_server)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello", encoding="utf-8")
    for source, params in (
        (str(tmp_path / "missing.png"), SMALL),
        (str(not_an_image), SMALL),
        ("ftp://example.com/x.png", SMALL),
        ("http://[::1/duck.png", SMALL),
        ("http://127.0.0.1:99999/duck.png", SMALL),
        ("https:///nohost.png", SMALL),
        ("", SMALL),
        (DUCK, GenerationParams(resolution=4096)),
        (DUCK, GenerationParams(output_format="fbx")),
    ):
        with pytest.raises(ModelsLabError) as caught:
            runner.submit(source, params)
        assert caught.value.category is Category.INVALID_INPUT, source
    with pytest.raises(ModelsLabError):
        runner.submit(DUCK, SMALL, extra={"not json": object()})
    assert runner.records() == [] and runner.journal.all() == []
    assert runner_threads(runner) == []
    assert fresh_server.stats()["requests"].get("upload", 0) == 0


def test_read_only_journal_fails_clearly_and_sends_nothing(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(fresh_server)
    with read_only(tmp_path / "jobs"):
        with pytest.raises(ModelsLabError) as caught:
            runner.submit(DUCK, SMALL)
    error = caught.value
    assert error.category is Category.INVALID_INPUT
    assert "journal" in error.message and "writable" in error.fix
    assert runner.records() == [] and runner_threads(runner) == []
    assert fresh_server.stats()["submits"] == 0


def test_journal_failing_mid_job_is_reported_not_fatal(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    fresh_server.set_faults([{"fault": "processing_polls", "endpoint": "submit", "polls": 1}])
    runner = make_runner(fresh_server)
    events = EventLog(runner)
    record = runner.submit(DUCK, SMALL)
    events.wait_for(record.local_id, "submitted")
    with read_only(tmp_path / "jobs"):
        done = runner.wait(record.local_id, timeout=60)
    assert done.state == "downloaded"
    warnings = [e.message for e in events.pump() if e.message.startswith("Warning:")]
    assert warnings and "journal" in warnings[0]


def test_journal_lost_before_submit_fails_the_job_and_sends_nothing(
    slow: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(slow, max_workers=1)
    events = EventLog(runner)
    busy = runner.submit(DUCK, SMALL)
    waiting = runner.submit(VASE, SMALL)  # journaled as QUEUED while the only worker is busy
    events.wait_for(busy.local_id, "submitted")
    with read_only(tmp_path / "jobs"):
        runner.cancel(busy.local_id)  # frees the worker; its own journal write fails and is reported
        done = runner.wait(waiting.local_id, timeout=30)
    assert done.state == "failed" and done.error["category"] == "invalid_input"
    assert "journal" in done.error["message"]
    assert slow.stats()["submits"] == 1  # only the busy job: nothing is sent without a journal entry
    assert any(e.message.startswith("Warning:") for e in events.pump() if e.local_id == busy.local_id)


def test_standard_flavour_job(fresh_server: ServerProcess, tmp_path: Path) -> None:
    client = ModelsLabClient(KEY, ClientConfig(base_url=fresh_server.url, flavor="standard"))
    runner = JobRunner(client, JobJournal(tmp_path / "jobs"), MeshCache(tmp_path / "meshes"))
    try:
        done = runner.wait(runner.submit(MUSHROOM, GenerationParams(resolution=48, output_format="ply")).local_id, 60)
    finally:
        runner.shutdown()
        client.close()
    assert done.state == "downloaded" and done.flavor == "standard", done.error
    assert Path(done.file_path).suffix == ".ply" and Path(done.file_path).read_bytes().startswith(b"ply")
    assert fresh_server.stats()["jobs"][0]["flavor"] == "v6"


def test_read_only_cache_fails_clearly_and_resume_recovers_without_a_new_charge(
    fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path
) -> None:
    runner = make_runner(fresh_server)
    meshes = runner.cache.ensure()
    with read_only(meshes):
        failed = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    assert failed.state == "failed" and failed.error["category"] == "invalid_input", failed.error
    assert str(meshes) in failed.error["message"]
    assert "writable cache folder" in failed.error["fix"] and "charge" in failed.error["fix"]
    assert list(meshes.iterdir()) == []
    runner.resume(failed.local_id)
    done = runner.wait(failed.local_id, timeout=60)
    assert done.state == "downloaded" and Path(done.file_path).is_file()
    assert fresh_server.stats()["submits"] == 1


def test_no_key_in_any_journal_or_cache_file(fresh_server: ServerProcess, make_runner: MakeRunner, tmp_path: Path):
    runner = make_runner(fresh_server)
    done = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    fresh_server.set_faults([{"fault": "job_failed", "endpoint": "submit", "text": f"echo {KEY}"}])
    failed = runner.wait(runner.submit(VASE, SMALL).local_id, timeout=60)
    cancelled = runner.cancel(runner.submit(MUSHROOM, SMALL).local_id)
    assert (done.state, failed.state, cancelled.state) == ("downloaded", "failed", "cancelled")
    runner.shutdown()
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 3
    blob = all_files_text(tmp_path / "jobs", tmp_path / "meshes")
    assert KEY.encode() not in blob
    for event in runner.drain_events():
        assert KEY not in repr(event)


def test_replaced_client_is_used_for_new_work(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    first = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    runner.client = ModelsLabClient("sk-second-key-0000", ClientConfig(base_url=fresh_server.url))
    try:
        second = runner.wait(runner.submit(VASE, SMALL).local_id, timeout=60)
    finally:
        runner.client.close()
    assert first.state == second.state == "downloaded"
    assert len(fresh_server.stats()["submits_by_key"]) == 2


def test_resume_refuses_a_job_from_another_server(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    record = duck_record(
        "e" * 32,
        "http://127.0.0.1:9",
        state="processing",
        remote_id="1234",
        history=[["submitting", 1.0], ["submitted", 1.0], ["processing", 1.0]],
    )
    runner.journal.save(record)
    (resumed,) = runner.resume_unfinished()
    assert resumed.state == "processing" and "Switch back" in resumed.message
    assert runner_threads(runner) == [] and fresh_server.stats()["requests"].get("fetch", 0) == 0


def test_mark_failed_and_unknown_ids(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    record = runner.submit(DUCK, SMALL)
    runner.wait(record.local_id, timeout=60)
    failed = runner.mark_failed(record.local_id, ModelsLabError("bad_mesh", "The importer refused the file."))
    assert failed.state == "failed" and failed.error["category"] == "bad_mesh"
    assert runner.journal.load(record.local_id).error["message"] == "The importer refused the file."
    with pytest.raises(ModelsLabError):
        runner.mark_imported(record.local_id, "x")  # nothing downloaded to import any more
    for call in (runner.cancel, runner.wait, runner.resume):
        with pytest.raises(ModelsLabError):
            call("0" * 32)
    assert runner.get("0" * 32) is None
    runner.forget(record.local_id)
    assert runner.get(record.local_id) is None and runner.journal.all() == []


def test_prune_cache_keeps_meshes_waiting_for_import(fresh_server: ServerProcess, make_runner: MakeRunner) -> None:
    runner = make_runner(fresh_server)
    waiting = runner.wait(runner.submit(DUCK, SMALL).local_id, timeout=60)
    imported = runner.wait(runner.submit(VASE, SMALL).local_id, timeout=60)
    runner.mark_imported(imported.local_id, "vase")
    long_ago = time.time() - 30 * 86400
    for record in (waiting, imported):
        os.utime(record.file_path, (long_ago, long_ago))
    assert runner.prune_cache(7) == 1
    assert Path(waiting.file_path).is_file() and not Path(imported.file_path).exists()


def test_concurrent_cancels_waits_and_drains_stay_consistent(make_runner: MakeRunner) -> None:
    with start_server("--workers", "4", "--job-seconds", "0.5") as server:
        runner = make_runner(server, max_workers=4)
        ids = [runner.submit(image, SMALL).local_id for image in [DUCK, VASE, MUSHROOM] * 4]
        drained: list[JobEvent] = []
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set():
                drained.extend(runner.drain_events(5))
                stop.wait(0.005)

        def cancel_some() -> None:
            for local_id in ids[::3]:
                runner.cancel(local_id)
                stop.wait(0.05)

        helpers = [threading.Thread(target=drain), threading.Thread(target=cancel_some)]
        for helper in helpers:
            helper.start()
        try:
            finals = {local_id: runner.wait(local_id, timeout=60) for local_id in ids}
        finally:
            stop.set()
            for helper in helpers:
                helper.join()
        drained.extend(runner.drain_events())
        for local_id, record in finals.items():
            assert record.state in ("downloaded", "cancelled"), (record.state, record.error)
            assert runner.journal.load(local_id).state == record.state  # the journal tells the truth
            last = [e for e in drained if e.local_id == local_id][-1]
            assert last.state == record.state
            drained_record = last.record
            drained_record.history.clear()  # events carry copies: changing one changes nothing in the runner
            assert runner.get(local_id).history
        assert server.stats()["submits"] <= len(ids)
