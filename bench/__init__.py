"""Benchmarks (`make bench` = `.venv/bin/python -m bench`): the add-on beside the official ModelsLab clients.

Everything runs against the local server (server/) on loopback, in one run. Each section is independent: a
missing piece (no client yet, no Blender) records null with the reason instead of stopping the run.
Results: bench/results.json (the gated keys, numbers), bench/extra.json (the reported-only
figures and raw samples), docs/BENCHMARKS.md and docs/bench_*.png.
"""
