"""The local server as a real subprocess on a loopback port (the launcher lives in server/process.py, which the
demo and the benchmarks use too), and the bodies of the server fixtures every layer defines: a fixture that
runs a server is `yield from serve(...)`, one that hands a reset server to a test is `yield from fresh(server)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from server.process import ServerProcess, default_python, start_server, wait_until

__all__ = [
    "ServerProcess",
    "default_python",
    "fresh",
    "only_job",
    "serve",
    "slow_server_args",
    "start_server",
    "wait_until",
]


def serve(*args: str, **options: Any) -> Iterator[ServerProcess]:
    """Run one server with these command-line options (and start_server's options) while the fixture lives."""
    with start_server(*args, **options) as srv:
        yield srv


def fresh(server: ServerProcess) -> Iterator[ServerProcess]:
    """The server with no jobs, uploads, faults or counters, and a full wallet; its faults cleared afterwards."""
    server.reset()
    yield server
    server.clear_faults()


def slow_server_args(job_seconds: float, workers: int = 2) -> tuple[str, ...]:
    """Options of a server whose every job takes job_seconds: time to poll, cancel or kill in the middle."""
    return ("--workers", str(workers), "--job-seconds", f"{job_seconds:g}")


def only_job(server: ServerProcess) -> dict[str, Any]:
    """The server's one job, as its stats show it (an empty dict before the submit arrives)."""
    jobs = server.stats()["jobs"]
    assert len(jobs) <= 1, jobs
    return jobs[0] if jobs else {}
