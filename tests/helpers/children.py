"""Child processes a test steers: the body of a fixture that lets a test start several (Blenders, windows, runner
children) — `yield from closing_each(make)` hands the test start(...) = make(...) and closes every one it made
afterwards — and how one is stopped: asked to quit, else killed with everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> Any: ...


Child = TypeVar("Child", bound=Closable)


def closing_each(make: Callable[..., Child]) -> Iterator[Callable[..., Child]]:
    """Yield start(...), which makes a child with make(...); after the test, close every child made, in order."""
    made: list[Child] = []

    def start(*args: Any, **kwargs: Any) -> Child:
        child = make(*args, **kwargs)
        made.append(child)
        return child

    yield start
    for child in made:
        child.close()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a child that leads its own process group, and everything it started: no handler, no atexit, no lock
    released by the processes themselves."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def quit_or_kill(process: subprocess.Popen, quit: Callable[[], Any], grace: float) -> None:
    """Ask a running child to quit (quit() sends the request) and wait `grace` seconds; when that fails, kill_group."""
    if process.poll() is not None:
        return
    try:
        quit()
        process.wait(grace)
    except (AssertionError, OSError, subprocess.TimeoutExpired):
        kill_group(process)
