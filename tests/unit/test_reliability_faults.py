"""The fault matrix, end to end: a real JobRunner (api/jobs.py) against the real local server with its fault
injection, and real sockets that refuse, stall or never answer.

Every case ends with the job either DOWNLOADED (the fault was survived, with exactly one submit on the server) or
FAILED in its named category with a message and a fix; the journal on disk says the same; no temp file is left;
no runner thread survives shutdown; the key is nowhere. Post-submit failures stay resumable: once the fault is
gone, an explicit resume finishes the job without a second submit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.folders import make_unwritable, make_writable
from tests.helpers.paths import EXAMPLE_IMAGE, REPO_ROOT
from tests.helpers.reliability import (
    API_KEY,
    Workspace,
    assert_downloaded,
    assert_failed,
    assert_no_key,
    assert_no_temp_files,
    event_texts,
    journal_settles,
    no_new_threads,
)
from tests.helpers.servers import ServerProcess, fresh, serve, slow_server_args, wait_until
from tests.helpers.sockets import closed_port, silent_listener, unaccepting_listener

JOB_SECONDS = 1.5  # the slow server: jobs take this long, so the runner really polls (fetch) before the result


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerProcess]:
    """A second server whose jobs take JOB_SECONDS, for faults that must hit fetch, and for mid-poll interruptions."""
    yield from serve(*slow_server_args(JOB_SECONDS, workers=4))


@pytest.fixture
def fresh_slow(slow_server: ServerProcess) -> Iterator[ServerProcess]:
    yield from fresh(slow_server)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace whose runner is shut down at the end, after which no thread it started may survive."""
    workspace = Workspace(tmp_path / "user dir")
    with no_new_threads():
        yield workspace
        workspace.close()
    assert_no_temp_files(workspace.journal_dir, workspace.cache_dir)
    assert_no_key(event_texts(workspace), workspace.files())


def _submits(srv: ServerProcess) -> tuple[int, int]:
    """(jobs the server created and charged, submit requests it received)."""
    stats = srv.stats()
    return stats["submits"], stats["requests"].get("submit", 0)


def assert_resumed_once(srv: ServerProcess, ws: Workspace, local_id: str) -> None:
    """A stopped job left no temporary file; with the faults gone, the next runner resumes it and downloads it,
    and it was submitted (and created on the server) once in all."""
    assert_no_temp_files(ws.cache_dir, ws.journal_dir)
    srv.clear_faults()
    ws.open(srv.url)
    assert [r.local_id for r in ws.runner.resume_unfinished()] == [local_id]
    assert_downloaded(ws, ws.runner.wait(local_id, 60))
    assert _submits(srv) == (1, 1)


def submit_small(runner: Any) -> str:
    """Submit the example image at resolution 32; the job's local id."""
    from api.params import GenerationParams

    return str(runner.submit(str(EXAMPLE_IMAGE), GenerationParams(resolution=32)).local_id)


def slow_big_download(srv: ServerProcess, bytes_per_second: int) -> None:
    """Every mesh is padded to 2 MB and trickles down at bytes_per_second: time to stop a job mid-download."""
    srv.set_faults(
        [
            {"fault": "pad_output", "endpoint": "submit", "bytes": 2_000_000},
            {"fault": "slow_download", "endpoint": "download", "bytes_per_second": bytes_per_second},
        ]
    )


def _fired(srv: ServerProcess) -> int:
    return srv.stats()["faults_fired"]["total"]


# --- faults the job survives -----------------------------------------------------------------------------------------

RECOVERABLE_FAST = [
    pytest.param({"fault": "rate_limit", "endpoint": "submit", "retry_after": 1}, 2, id="submit-429-retry_after"),
    pytest.param({"fault": "http_error", "endpoint": "upload", "status": 503, "body": "html"}, 1, id="upload-503-html"),
    pytest.param({"fault": "malformed_json", "endpoint": "upload"}, 1, id="upload-malformed-json"),
    pytest.param({"fault": "drop_connection", "endpoint": "upload"}, 1, id="upload-dropped"),
    pytest.param({"fault": "http_error", "endpoint": "download", "status": 502, "body": "html"}, 1, id="dl-502-html"),
    pytest.param({"fault": "http_error", "endpoint": "download", "status": 500}, 1, id="dl-500-json"),
    pytest.param({"fault": "rate_limit", "endpoint": "download", "retry_after": 1}, 1, id="dl-429"),
    pytest.param({"fault": "truncate", "endpoint": "download"}, 1, id="dl-truncated-once"),
    pytest.param({"fault": "html_mesh", "endpoint": "download"}, 1, id="dl-html-once-mirror"),
    pytest.param({"fault": "corrupt_mesh", "endpoint": "download"}, 1, id="dl-corrupt-once-mirror"),
    pytest.param({"fault": "drop_connection", "endpoint": "download"}, 1, id="dl-dropped"),
    pytest.param({"fault": "delay", "endpoint": "download", "seconds": 2.5}, 1, id="dl-read-timeout"),
    pytest.param({"fault": "slow_download", "endpoint": "download", "bytes_per_second": 400_000}, 1, id="dl-slow"),
    pytest.param({"fault": "pad_output", "endpoint": "submit", "bytes": 3_000_000}, 1, id="big-output"),
]


@pytest.mark.parametrize(("rule", "submit_requests"), RECOVERABLE_FAST)
def test_fault_is_survived(fresh_server: ServerProcess, ws: Workspace, rule: dict, submit_requests: int) -> None:
    fresh_server.set_faults([rule])
    ws.open(fresh_server.url, client={"read_timeout": 1.0})
    record = ws.run(EXAMPLE_IMAGE)
    assert_downloaded(ws, record)
    assert _fired(fresh_server) >= 1, "the fault never fired: the case proves nothing"
    assert _submits(fresh_server) == (1, submit_requests)
    job = fresh_server.stats()["jobs"][0]
    assert record.file_bytes == job["file_bytes"], "the cached mesh is not the whole file"


RECOVERABLE_POLL = [
    pytest.param({"fault": "http_error", "endpoint": "fetch", "status": 500, "body": "html", "times": 2}, id="500"),
    pytest.param({"fault": "http_error", "endpoint": "fetch", "status": 502, "body": "html", "times": 2}, id="502"),
    pytest.param({"fault": "http_error", "endpoint": "fetch", "status": 503, "body": "html", "times": 2}, id="503"),
    pytest.param({"fault": "malformed_json", "endpoint": "fetch", "times": 3}, id="malformed-json-x3"),
    pytest.param({"fault": "status_error", "endpoint": "fetch", "spelling": "message"}, id="status-error-message"),
    pytest.param({"fault": "status_error", "endpoint": "fetch", "spelling": "messege"}, id="status-error-messege"),
    pytest.param({"fault": "rate_limit", "endpoint": "fetch", "retry_after": 1}, id="429"),
    pytest.param({"fault": "delay", "endpoint": "fetch", "seconds": 2.5}, id="read-timeout"),
    pytest.param({"fault": "drop_connection", "endpoint": "fetch", "times": 2}, id="dropped"),
    pytest.param({"fault": "processing_polls", "endpoint": "fetch", "polls": 3}, id="extra-processing"),
]


@pytest.mark.parametrize("rule", RECOVERABLE_POLL)
def test_fault_while_polling_is_survived(fresh_slow: ServerProcess, ws: Workspace, rule: dict) -> None:
    fresh_slow.set_faults([rule])
    ws.open(fresh_slow.url, client={"read_timeout": 1.0})
    record = ws.run(EXAMPLE_IMAGE)
    assert_downloaded(ws, record)
    assert _fired(fresh_slow) >= 1, "the fault never fired: the case proves nothing"
    assert _submits(fresh_slow) == (1, 1)


# --- faults that end the job in a category ------------------------------------------------------------------------

FAILING_BEFORE_CHARGE = [
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 401}, "auth", id="401"),
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 402}, "credits", id="402"),
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 403}, "auth", id="403"),
    pytest.param({"fault": "http_error", "endpoint": "upload", "status": 401}, "auth", id="upload-401"),
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 500, "body": "html"}, "server", id="500-html"),
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 502, "body": "html"}, "server", id="502-html"),
    pytest.param({"fault": "http_error", "endpoint": "submit", "status": 503, "body": "html"}, "server", id="503-html"),
    pytest.param({"fault": "malformed_json", "endpoint": "submit"}, "server", id="malformed-json"),
    pytest.param(
        {"fault": "status_error", "endpoint": "submit", "spelling": "message", "text": "Server is busy now"},
        "server",
        id="status-error-200-message",
    ),
    pytest.param(
        {"fault": "status_error", "endpoint": "submit", "spelling": "messege", "text": "Server is busy now"},
        "server",
        id="status-error-200-messege",
    ),
    pytest.param(
        {"fault": "rate_limit", "endpoint": "submit", "retry_after": 1000, "times": -1}, "rate_limited", id="429-long"
    ),
    pytest.param(
        {"fault": "rate_limit", "endpoint": "submit", "retry_after": 1, "times": -1}, "rate_limited", id="429-forever"
    ),
]


@pytest.mark.parametrize(("rule", "category"), FAILING_BEFORE_CHARGE)
def test_refused_submit_fails_in_its_category(
    fresh_server: ServerProcess, ws: Workspace, rule: dict, category: str
) -> None:
    fresh_server.set_faults([rule])
    balance = fresh_server.stats()["wallet"]["balance"]
    ws.open(fresh_server.url, runner={"poll_timeout": 3.0})  # how long a refused (429) submit is tried again
    record = ws.run(EXAMPLE_IMAGE)
    error = assert_failed(ws, record, category)
    if rule["fault"] == "status_error":
        assert "Server is busy now" in error["message"], "the server's own words are lost"
    stats = fresh_server.stats()
    assert stats["submits"] == 0 and stats["wallet"]["balance"] == balance, "charged for nothing"
    assert record.remote_id is None


FAILING_AFTER_CHARGE = [
    pytest.param({"fault": "expired", "endpoint": "download", "times": -1}, "expired", ("24",), id="dl-404-expired"),
    pytest.param({"fault": "truncate", "endpoint": "download", "times": -1}, "network", (), id="dl-truncated"),
    pytest.param({"fault": "html_mesh", "endpoint": "download", "times": -1}, "bad_mesh", (), id="dl-html"),
    pytest.param(
        {"fault": "corrupt_mesh", "endpoint": "download", "bytes": 0, "times": -1}, "bad_mesh", ("empty",), id="empty"
    ),
    pytest.param({"fault": "corrupt_mesh", "endpoint": "download", "times": -1}, "bad_mesh", (), id="corrupt-obj"),
    pytest.param(
        {"fault": "http_error", "endpoint": "download", "status": 503, "body": "html", "times": -1},
        "server",
        (),
        id="dl-503-forever",
    ),
]


@pytest.mark.parametrize(("rule", "category", "words"), FAILING_AFTER_CHARGE)
def test_failed_download_is_categorised_and_resumable(
    fresh_server: ServerProcess, ws: Workspace, rule: dict, category: str, words: tuple[str, ...]
) -> None:
    fresh_server.set_faults([rule])
    ws.open(fresh_server.url)
    record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, category, *words)
    assert record.remote_id and record.output_urls, "a paid job lost what is needed to fetch it again"
    assert not list(ws.cache_dir.glob("*.obj")), "a bad mesh was left in the cache"
    # The fault goes away (the CDN recovers): resuming the paid job downloads it, never submitting again.
    fresh_server.clear_faults()
    ws.runner.resume(record.local_id)
    assert_downloaded(ws, ws.runner.wait(record.local_id, 30))
    assert _submits(fresh_server) == (1, 1)


def test_failed_job_ends_failed_with_the_servers_reason(fresh_server: ServerProcess, ws: Workspace) -> None:
    """status "failed" is final: FAILED(server) with the server's words, not polling on until 'timed out'."""
    fresh_server.set_faults([{"fault": "job_failed", "endpoint": "submit", "text": "Generation failed: no object"}])
    ws.open(fresh_server.url, runner={"poll_timeout": 8.0})
    record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, "server", "Generation failed: no object")
    assert _submits(fresh_server) == (1, 1)


def test_expired_on_fetch(fresh_slow: ServerProcess, ws: Workspace) -> None:
    fresh_slow.set_faults([{"fault": "expired", "endpoint": "fetch", "times": -1}])
    ws.open(fresh_slow.url)
    record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, "expired")
    assert _submits(fresh_slow) == (1, 1)


def test_unknown_outcome_of_submit_is_never_resent(fresh_server: ServerProcess, ws: Workspace) -> None:
    """The answer to a submit is lost (read timeout, dropped connection): FAILED(network), said to maybe be charged,
    and never sent again, not by the client and not by a resume."""
    for rule in (
        {"fault": "delay", "endpoint": "submit", "seconds": 2.5},
        {"fault": "drop_connection", "endpoint": "submit"},
    ):
        fresh_server.reset()
        fresh_server.set_faults([rule])
        ws.open(fresh_server.url, client={"read_timeout": 1.0})
        record = ws.run(EXAMPLE_IMAGE)
        error = assert_failed(ws, record, "network")
        assert "charge" in error["fix"].lower() or "accepted" in error["fix"].lower(), error
        assert _submits(fresh_server) == (1, 1), f"{rule['fault']}: the submit was sent again"
        ws.open(fresh_server.url)  # a restart: resuming must not send it again either
        for resumed in ws.runner.resume_unfinished():
            ws.runner.wait(resumed.local_id, 30)
        assert _journal_state(ws, record.local_id) == "failed"
        assert _submits(fresh_server) == (1, 1)


def test_processing_forever_times_out_resumable(fresh_server: ServerProcess, ws: Workspace) -> None:
    fresh_server.set_faults([{"fault": "processing_forever", "endpoint": "submit"}])
    ws.open(fresh_server.url, runner={"poll_timeout": 1.5})
    record = ws.run(EXAMPLE_IMAGE)
    assert record.state == "timed_out", (record.state, record.message)
    assert "resume" in record.message.lower() and record.remote_id
    journaled = journal_settles(ws, record.local_id, "timed_out")
    assert journaled["remote_id"] == record.remote_id
    assert [r.local_id for r in ws.runner.journal.unfinished()] == [record.local_id]
    assert _submits(fresh_server) == (1, 1)


def test_timed_out_job_is_finished_by_a_later_session(fresh_slow: ServerProcess, ws: Workspace) -> None:
    ws.open(fresh_slow.url, runner={"poll_timeout": 0.3})
    record = ws.run(EXAMPLE_IMAGE)
    assert record.state == "timed_out"
    ws.open(fresh_slow.url)  # Blender restarted: a new runner over the same journal
    resumed = ws.runner.resume_unfinished()
    assert [r.local_id for r in resumed] == [record.local_id]
    assert_downloaded(ws, ws.runner.wait(record.local_id, 30))
    assert _submits(fresh_slow) == (1, 1)


# --- the network itself ----------------------------------------------------------------------------------------------


def test_connection_refused(ws: Workspace) -> None:
    ws.open(f"http://127.0.0.1:{closed_port()}")
    for source in (str(EXAMPLE_IMAGE), "http://127.0.0.1:9/duck.png"):
        record = ws.run(source)
        assert_failed(ws, record, "network", "refused")


def test_dns_failure(ws: Workspace) -> None:
    ws.open("http://nonexistent.invalid")
    record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, "network", "nonexistent.invalid")


def test_connect_timeout(ws: Workspace) -> None:
    with unaccepting_listener() as port:
        ws.open(f"http://127.0.0.1:{port}", client={"connect_timeout": 0.5})
        record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, "network", "timed out")


def test_read_timeout_on_a_silent_server(ws: Workspace) -> None:
    with silent_listener() as port:
        ws.open(f"http://127.0.0.1:{port}", client={"read_timeout": 0.5})
        upload = ws.run(EXAMPLE_IMAGE)  # idempotent: retried, then given up
        submit = ws.run(f"http://127.0.0.1:{port}/duck.png")  # may have been taken: not retried
        ws.close()
    assert_failed(ws, upload, "network")
    error = assert_failed(ws, submit, "network")
    assert "charge" in error["fix"].lower() or "accepted" in error["fix"].lower(), error


# --- the local disk ------------------------------------------------------------------------------------------------


def test_read_only_cache_folder(fresh_server: ServerProcess, ws: Workspace) -> None:
    how = make_unwritable(ws.cache_dir)
    if how is None:
        pytest.skip("cannot make a folder read-only on this machine (documented in docs/RELIABILITY.md)")
    try:
        ws.open(fresh_server.url)
        record = ws.run(EXAMPLE_IMAGE)
    finally:
        make_writable(ws.cache_dir)
    assert_failed(ws, record, "invalid_input", str(ws.cache_dir.name))
    assert record.remote_id, "the paid job must stay resumable"
    ws.runner.resume(record.local_id)
    assert_downloaded(ws, ws.runner.wait(record.local_id, 30))
    assert _submits(fresh_server) == (1, 1)


def test_read_only_journal_folder_refuses_before_sending(fresh_server: ServerProcess, ws: Workspace) -> None:
    from api.errors import ModelsLabError
    from api.params import GenerationParams

    ws.open(fresh_server.url)
    how = make_unwritable(ws.journal_dir)
    if how is None:
        pytest.skip("cannot make a folder read-only on this machine (documented in docs/RELIABILITY.md)")
    try:
        with pytest.raises(ModelsLabError) as caught:
            ws.runner.submit(str(EXAMPLE_IMAGE), GenerationParams(resolution=32))
    finally:
        make_writable(ws.journal_dir)
    assert caught.value.category.value == "invalid_input" and ws.journal_dir.name in caught.value.message
    assert fresh_server.stats()["requests"] == {}, "something was sent although the job cannot be journaled"


CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    sys.path.insert(0, {repo!r})
    from tests.helpers.reliability import Workspace
    from pathlib import Path
    from api.params import GenerationParams
    mode = {mode!r}
    if mode == "disk-full":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
    ws = Workspace(Path({root!r}))
    runner = ws.open({url!r}, runner={{"max_workers": 1}})
    record = runner.submit({image!r}, GenerationParams(resolution=32, output_format="obj"))
    print("SUBMITTED", record.local_id, flush=True)
    final = runner.wait(record.local_id, 60)
    print("FINAL", json.dumps(final.to_dict()), flush=True)
    ws.close()
    """
)


def _child(mode: str, url: str, root: Path, limit: int = 0) -> subprocess.Popen:
    code = CHILD.format(repo=str(REPO_ROOT), mode=mode, limit=limit, root=str(root), url=url, image=str(EXAMPLE_IMAGE))
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("where", ["early", "last-bytes"])
def test_disk_full_while_downloading(fresh_server: ServerProcess, ws: Workspace, where: str) -> None:
    """Writes past a size limit fail (RLIMIT_FSIZE in a child process: EFBIG, and a short write at the limit, as on a
    full disk). Never a truncated mesh accepted as whole; a categorised failure about the local disk; no partial
    file; once there is room again, resuming finishes the job without a second submit."""
    ws.open(fresh_server.url)
    size = ws.run(EXAMPLE_IMAGE).file_bytes  # the same image and settings give the same mesh size
    ws.close()
    fresh_server.reset()
    full = Workspace(ws.root.parent / "full disk")
    limit = 64 * 1024 if where == "early" else size - 10
    child = _child("disk-full", fresh_server.url, full.root, limit=limit)
    out, err = child.communicate(timeout=90)
    final_line = [line for line in out.splitlines() if line.startswith("FINAL ")]
    assert final_line, f"child crashed:\n{out}\n{err}"
    record = json.loads(final_line[0][6:])
    assert record["state"] == "failed", (
        f"a mesh written to a full disk was accepted: {record['state']}, {record['file_bytes']} of {size} bytes"
    )
    error = record["error"]
    assert error["category"] == "invalid_input", f"disk full is not a {error['category']} problem: {error}"
    said = (error["message"] + " " + error["fix"]).lower()
    assert "bug" not in said and any(word in said for word in ("space", "disk", "folder", "cache")), error
    assert_no_temp_files(full.cache_dir, full.journal_dir)
    full.open(fresh_server.url)
    try:
        full.runner.resume(record["local_id"])
        assert_downloaded(full, full.runner.wait(record["local_id"], 30))
    finally:
        full.close()
    assert_no_temp_files(full.cache_dir, full.journal_dir)
    assert _submits(fresh_server) == (1, 1)


# --- interruptions: killed, shut down, cancelled -------------------------------------------------------------------


def _journal_state(ws: Workspace, local_id: str) -> str | None:
    try:
        return ws.journal_record(local_id)["state"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.mark.parametrize("moment", ["mid-poll", "mid-download"])
def test_process_killed_then_resumed(
    fresh_server: ServerProcess, fresh_slow: ServerProcess, ws: Workspace, moment: str
) -> None:
    """kill -9 in the middle of polling / downloading; a new process resumes from the journal: one submit, the whole
    mesh, no partial file left from the killed process."""
    srv = fresh_slow if moment == "mid-poll" else fresh_server
    if moment == "mid-download":
        slow_big_download(srv, 500_000)
    child = _child("plain", srv.url, ws.root)
    try:
        line = wait_until(lambda: child.stdout.readline(), 30, message="child never submitted")
        local_id = line.split()[1]
        wanted = {"submitted", "processing"} if moment == "mid-poll" else {"downloading"}
        wait_until(lambda: _journal_state(ws, local_id) in wanted, 30, message=f"never {wanted}")
        if moment == "mid-download":
            wait_until(lambda: list(ws.cache_dir.glob("*.part")), 30, message="no partial download seen")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate(timeout=30)
    assert _journal_state(ws, local_id) in wanted
    srv.clear_faults()
    ws.open(srv.url)
    resumed = ws.runner.resume_unfinished()
    assert [r.local_id for r in resumed] == [local_id]
    path = assert_downloaded(ws, ws.runner.wait(local_id, 60))
    assert path.stat().st_size == srv.stats()["jobs"][0]["file_bytes"]
    assert _submits(srv) == (1, 1)


@pytest.mark.parametrize("moment", ["mid-poll", "mid-download"])
def test_shutdown_mid_job_then_resume(
    fresh_server: ServerProcess, fresh_slow: ServerProcess, ws: Workspace, moment: str
) -> None:
    """The add-on is disabled (runner.shutdown) mid-job: threads end promptly, the journal keeps a resumable state,
    the next session finishes the job with the same single submit."""
    srv = fresh_slow if moment == "mid-poll" else fresh_server
    if moment == "mid-download":
        slow_big_download(srv, 500_000)

    runner = ws.open(srv.url)
    local_id = submit_small(runner)
    wanted = {"submitted", "processing"} if moment == "mid-poll" else {"downloading"}
    wait_until(lambda: runner.get(local_id).state in wanted, 30)
    if moment == "mid-download":
        wait_until(lambda: list(ws.cache_dir.glob("*.part")), 30, message="no partial download seen")
    started = time.monotonic()
    ws.close()
    assert time.monotonic() - started < 5.0, "shutdown waited for the job instead of stopping it"
    assert _journal_state(ws, local_id) in wanted
    assert_resumed_once(srv, ws, local_id)


def test_cancel_mid_poll(fresh_slow: ServerProcess, ws: Workspace) -> None:

    runner = ws.open(fresh_slow.url)
    local_id = submit_small(runner)
    wait_until(lambda: runner.get(local_id).state in ("submitted", "processing"), 30)
    record = runner.cancel(local_id)
    assert record.state == "cancelled" and "charge" in record.message.lower()
    settled = runner.wait(local_id, 5)
    assert settled.state == "cancelled" and _journal_state(ws, local_id) == "cancelled"
    assert settled.error and settled.error["category"] == "cancelled"


# --- hostile server-supplied names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["submit", "fetch"])
def test_hostile_names_never_escape_the_cache(
    fresh_server: ServerProcess, fresh_slow: ServerProcess, ws: Workspace, tmp_path: Path, endpoint: str
) -> None:
    srv = fresh_server if endpoint == "submit" else fresh_slow  # the slow server's jobs are fetched before ready
    srv.set_faults([{"fault": "hostile_names", "endpoint": endpoint}])
    ws.open(srv.url)
    before = {p for p in tmp_path.rglob("*")}
    cwd_before = set(os.listdir(os.getcwd()))
    record = ws.run(EXAMPLE_IMAGE)
    path = assert_downloaded(ws, record)
    assert _fired(srv) == 1
    assert record.meta.get("file_prefix", "").startswith("../"), "the server did not send hostile names"
    assert ".." not in path.name and "/" not in path.name and "\\" not in path.name
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(p.resolve().is_relative_to(ws.root.resolve()) for p in created), created
    assert set(os.listdir(os.getcwd())) == cwd_before, "a file appeared in the working directory"
    for outside in (Path("/etc/modelslab"), Path("/etc") / f"x{record.remote_id}.obj", Path("C:\\Windows")):
        assert not outside.exists(), outside


def test_everything_written_and_said_is_free_of_the_key(fresh_server: ServerProcess, ws: Workspace) -> None:
    """A mix of outcomes in one workspace; then every file and every event text is scanned for the key."""
    ws.open(fresh_server.url)
    fresh_server.set_faults([{"fault": "status_error", "endpoint": "submit", "text": f"bad key {API_KEY}"}])
    failed = ws.run(EXAMPLE_IMAGE)
    assert failed.state == "failed" and API_KEY not in json.dumps(failed.to_dict())
    fresh_server.set_faults([])
    ws.run(EXAMPLE_IMAGE)
    files = ws.files()
    assert any(p.suffix == ".json" for p in files) and any(p.suffix == ".obj" for p in files)
    assert assert_no_key(event_texts(ws), files) == len(files)


def test_cancel_mid_download_leaves_no_partial_file(fresh_server: ServerProcess, ws: Workspace) -> None:

    slow_big_download(fresh_server, 400_000)
    runner = ws.open(fresh_server.url)
    local_id = submit_small(runner)
    wait_until(lambda: list(ws.cache_dir.glob("*.part")), 30, message="no partial download seen")
    runner.cancel(local_id)
    settled = runner.wait(local_id, 10)
    assert settled.state == "cancelled" and journal_settles(ws, local_id, "cancelled")
    wait_until(lambda: not list(ws.cache_dir.glob("*.part")), 5, message="the partial download stayed")
    assert not list(ws.cache_dir.glob("*.obj")), "a partial mesh was kept as if complete"


def test_download_over_the_size_cap_is_refused(fresh_server: ServerProcess, ws: Workspace) -> None:
    fresh_server.set_faults([{"fault": "pad_output", "endpoint": "submit", "bytes": 3_000_000}])
    ws.open(fresh_server.url, client={"max_download_bytes": 1_000_000})
    record = ws.run(EXAMPLE_IMAGE)
    assert_failed(ws, record, "bad_mesh", "limit")
    assert not list(ws.cache_dir.iterdir()), "bytes over the cap were kept"


def test_shutdown_during_a_hanging_request_leaves_no_trace(fresh_slow: ServerProcess, ws: Workspace) -> None:
    """A worker blocked in a request the server never answers cannot be interrupted (requests has no way to abort
    a read); the bound is the read timeout. Prove that bound and that the late thread changes nothing."""

    fresh_slow.set_faults([{"fault": "delay", "endpoint": "fetch", "seconds": 30, "times": -1}])
    runner = ws.open(fresh_slow.url, client={"read_timeout": 3.0, "max_retries": 0})
    local_id = submit_small(runner)
    wait_until(lambda: fresh_slow.stats()["requests"].get("fetch", 0) >= 1, 30, message="never fetched")
    journal_before = ws.journal_record(local_id)
    started = time.monotonic()
    runner.shutdown(wait=True, timeout=0.5)
    workers = runner.threads()
    wait_until(lambda: not any(t.is_alive() for t in workers), 3.0 + 2.0, message="worker outlived its read timeout")
    assert time.monotonic() - started < 3.0 + 2.0
    journal_after = ws.journal_record(local_id)
    assert journal_after["state"] == journal_before["state"] in ("submitted", "processing"), journal_after["state"]
    assert journal_after["history"] == journal_before["history"], "a stopped worker kept writing the journal"
    assert_resumed_once(fresh_slow, ws, local_id)
