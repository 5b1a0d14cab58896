"""Start the local ModelsLab-compatible server (`python -m server`) as a subprocess for tests, the demo and benchmarks.

Only stdlib + requests, so it also works inside the bpy venvs. The server itself always runs with the dev
venv's Python (it needs numpy 2 / scikit-image): MODELSLAB_SERVER_PYTHON, else <repo>/.venv/bin/python,
else sys.executable.

    with start_server("--workers", "2") as srv:
        requests.post(srv.url + "/api/wallet_balance", json={"key": "k"})
        srv.set_faults([{"fault": "rate_limit", "endpoint": "submit", "retry_after": 1}])
        print(srv.stats()["submits"])
"""

from __future__ import annotations

import atexit
import collections
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import requests

from .keys import key_hash

REPO_ROOT = Path(__file__).resolve().parent.parent  # server/ sits at the repo root
START_DEADLINE = 30.0
_LISTEN_RE = re.compile(r"listening on (https?://\S+)")
_LIVE: set[ServerProcess] = set()

T = TypeVar("T")


def default_python() -> str:
    """The interpreter that runs the server: env MODELSLAB_SERVER_PYTHON, the dev venv, or this one."""
    env_python = os.environ.get("MODELSLAB_SERVER_PYTHON")
    if env_python:
        return env_python
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    if venv_python.exists():
        return str(venv_python)
    return sys.executable


def wait_until(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: str = "") -> T:
    """Poll condition() until it returns something truthy (returned) or raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout:g} s{': ' + message if message else ''}")
        time.sleep(interval)


class ServerProcess:
    """A running `python -m server --port 0 ...`; also a context manager that stops it on exit."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        python: str | None = None,
        ca_bundle: str | os.PathLike | None = None,
    ):
        self.args = [python or default_python(), "-m", "server", "--port", "0", *args]
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self._stdout: collections.deque[str] = collections.deque(maxlen=400)
        self._stderr: collections.deque[str] = collections.deque(maxlen=400)
        self._ready = threading.Event()
        self.url = ""
        self._session = requests.Session()
        self._session.trust_env = False  # never send loopback admin calls through a configured proxy
        if ca_bundle is not None:  # an HTTPS server (--tls-cert) signed by a test CA
            self._session.verify = str(ca_bundle)
        self.proc = subprocess.Popen(
            self.args,
            cwd=str(REPO_ROOT),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._stderr, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        deadline = time.monotonic() + START_DEADLINE
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                code = self.proc.poll()
                self.stop()
                for reader in self._readers:
                    reader.join(2)
                why = f"exited with code {code}" if code is not None else f"not ready after {START_DEADLINE:g} s"
                raise RuntimeError(f"local server {why}: {' '.join(self.args[1:])}\nstderr:\n{self.stderr_text()}")
        _LIVE.add(self)

    def _pump(self, stream: Any, sink: collections.deque[str], watch: bool) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))
            if watch and not self._ready.is_set():
                match = _LISTEN_RE.search(line)
                if match:
                    self.url = match.group(1).rstrip("/")
                    self._ready.set()
        stream.close()

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.url.rsplit(":", 1)[1])

    def stdout_text(self) -> str:
        """The last lines the server printed on stdout."""
        return "\n".join(self._stdout)

    def stderr_text(self) -> str:
        """The last lines the server printed on stderr (tracebacks end up here)."""
        return "\n".join(self._stderr)

    def _admin(self, method: str, path: str, body: dict | None = None) -> dict:
        response = self._session.request(method, self.url + path, json=body, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"admin {path} answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def post(self, path: str, body: dict | None = None, timeout: float = 30, **kwargs: Any) -> requests.Response:
        """POST JSON to path (e.g. "/api/wallet_balance") straight, without any client logic."""
        return self._session.post(self.url + path, json=body or {}, timeout=timeout, **kwargs)

    def upload(self, image: str | os.PathLike, key: str = "test-key") -> str:
        """Upload an image file through /api/v6/base64_to_url and return its URL."""
        import base64

        data = base64.b64encode(Path(image).read_bytes()).decode("ascii")
        response = self.post("/api/v6/base64_to_url", {"key": key, "base64_string": data})
        response.raise_for_status()
        return response.json()["output"][0]

    def set_faults(self, rules: Sequence[dict]) -> dict:
        """Replace all fault rules (see server/README.md for the rule format and the kinds)."""
        return self._admin("POST", "/__admin/faults", {"rules": list(rules)})

    def add_faults(self, rules: Sequence[dict]) -> dict:
        """Append fault rules after the existing ones."""
        return self._admin("POST", "/__admin/faults", {"add": list(rules)})

    def clear_faults(self) -> dict:
        """Remove every fault rule."""
        return self._admin("POST", "/__admin/faults", {"clear": True})

    def faults(self) -> list[dict]:
        """The current fault rules with their remaining `times`."""
        return self._admin("GET", "/__admin/faults")["rules"]

    def stats(self) -> dict:
        """GET /__admin/stats: submits, per-endpoint request counts, faults fired, jobs with timestamps."""
        return self._admin("GET", "/__admin/stats")

    def job(self, job_id: int | str) -> dict | None:
        """The stats entry of one job (None if unknown)."""
        for job in self.stats()["jobs"]:
            if str(job["id"]) == str(job_id):
                return job
        return None

    def submits_for(self, key: str) -> int:
        """How many jobs this key created since the last reset."""
        return int(self.stats()["submits_by_key"].get(key_hash(key), 0))

    def downloads(self, job_id: int | str) -> dict[str, int]:
        """{"started": N, "completed": N}: GETs of the job's mesh that began sending, and that sent the whole body."""
        job = self.job(job_id)
        if job is None:
            raise KeyError(f"the server has no job {job_id}")
        return {"started": job["downloads_started"], "completed": job["downloads_completed"]}

    def release(self, ids: Sequence[int] | None = None) -> list[int]:
        """Let jobs held by the hold_job fault finish (these ids, or all); returns the ids released."""
        body = {} if ids is None else {"ids": [int(i) for i in ids]}
        return list(self._admin("POST", "/__admin/release", body)["released"])

    def reset(self) -> dict:
        """Forget jobs, uploads, outputs, faults and counters; refill the wallet."""
        return self._admin("POST", "/__admin/reset", {})

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (kill if it does not exit within timeout) and wait for it."""
        _LIVE.discard(self)
        self._session.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)

    @property
    def running(self) -> bool:
        """True while the subprocess is alive."""
        return self.proc.poll() is None

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServerProcess(url={self.url!r}, pid={self.proc.pid}, running={self.running})"


def start_server(
    *args: str,
    env: dict[str, str] | None = None,
    python: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
) -> ServerProcess:
    """Launch `python -m server --port 0 *args` from the repo root and wait for its listening line.

    With `--tls-cert/--tls-key` the server speaks HTTPS; pass the CA that signed the certificate as ca_bundle.
    """
    return ServerProcess(*args, env=env, python=python, ca_bundle=ca_bundle)


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_LIVE):
        server.stop()
