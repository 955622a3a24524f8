"""`python -m app`: uvicorn with a worker per core the process may use (what the image runs).

`WEB_CONCURRENCY` sets the workers; unset, they are the CPUs this process may run on: its
affinity, bounded by its cgroup's CPU quota (a container's `limits.cpu`), rounded up. With
more than one, prometheus-client's multiprocess mode gets a fresh directory (unless
`PROMETHEUS_MULTIPROC_DIR` names one), so `/metrics` counts every worker's streams. Each
worker drains on SIGTERM as a single process does (uvicorn passes the signal on).
"""

import math
import os
import shutil
import tempfile
from pathlib import Path

import uvicorn

# Seconds uvicorn's own graceful shutdown may take, after the relay's drain.
UVICORN_GRACE = 5
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>", or "max <period>"


def cpus(cpu_max: Path = CPU_MAX) -> int:
    """The CPUs this process may use: its affinity, bounded by the cgroup's quota."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, math.ceil(int(quota) / int(period))))


def workers() -> int:
    given = os.environ.get("WEB_CONCURRENCY", "").strip()
    return int(given) if given else cpus()


def main() -> None:
    count = workers()
    if count > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Set before the workers start: they inherit it. Emptied when the relay stops.
        directory = tempfile.mkdtemp(prefix="chat-relay-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    else:
        directory = None
    try:
        uvicorn.run(
            "app.main:app",
            host=os.environ.get("HOST", "0.0.0.0"),
            port=int(os.environ.get("PORT", "8000")),
            workers=count,
            # The app rewrites the client from X-Forwarded-For itself (app/identity.py),
            # after noting the socket's peer, which TRUSTED_USER_HEADER depends on.
            proxy_headers=False,
            # The relay drains for SHUTDOWN_GRACE_SECONDS on SIGTERM first (app/lifecycle.py).
            timeout_graceful_shutdown=UVICORN_GRACE,
        )
    finally:
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
