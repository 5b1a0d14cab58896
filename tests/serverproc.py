"""Tests' name for the server launcher, which lives in server/process.py (also used by the demo and benchmarks)."""

from server.process import REPO_ROOT, ServerProcess, default_python, start_server, wait_until

__all__ = ["REPO_ROOT", "ServerProcess", "default_python", "start_server", "wait_until"]
