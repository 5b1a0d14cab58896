"""Child process of the download section: one ModelsLabClient.download() with its time and extra peak RSS.

`python -m bench.download_probe BASE_URL TARGET URL [URL...]` prints one JSON line:
{"seconds", "bytes", "rss_before_kb", "hwm_after_kb", "extra_peak_kb", "hwm_reset"}.
The peak is reset (/proc/self/clear_refs "5") after a warm-up download so that only this download counts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    """Warm up with the first URL list entry's small twin (if given via --warm URL), then time the download."""
    warm = None
    if argv and argv[0] == "--warm":
        warm, argv = argv[1], argv[2:]
    base_url, target, urls = argv[0], Path(argv[1]), argv[2:]
    from api import ClientConfig, ModelsLabClient

    client = ModelsLabClient("bench-key", ClientConfig(base_url=base_url))
    if warm:
        warm_target = target.with_name(target.stem + "-warm.obj")
        client.download([warm], warm_target, expected_format="obj")
        warm_target.unlink()
    reset = _reset_peak()
    rss_before = _status_kb("VmRSS")
    start = time.perf_counter()
    path = client.download(urls, target, expected_format="obj")
    seconds = time.perf_counter() - start
    hwm_after = _status_kb("VmHWM")
    client.close()
    size = Path(path).stat().st_size
    print(
        json.dumps(
            {
                "seconds": seconds,
                "bytes": size,
                "rss_before_kb": rss_before,
                "hwm_after_kb": hwm_after,
                "extra_peak_kb": hwm_after - rss_before,
                "hwm_reset": reset,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
