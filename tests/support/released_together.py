"""Many processes × many threads released at one moment on one shared thing (a rate-limit bucket in a store).

The parent starts the processes; each starts its threads, which wait at a barrier, and says `READY`. Only when
every process is ready does the parent write a line to each, so that the takes overlap as much as the machine
allows instead of the first process finishing before the last has imported anything. Each process ends by
printing one JSON line with its totals.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from tests.support.paths import REPO

T = TypeVar("T")


def run_processes_together(command: list[str], processes: int, timeout: float) -> list[dict[str, Any]]:
    """Starts `processes` copies of `command` (from the repository root), releases them together once all are
    ready, and returns the JSON line each prints at the end. A process still running at the end is killed."""
    started = [
        subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    try:
        for process in started:
            assert process.stdout is not None and process.stdout.readline() == "READY\n"
        for process in started:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        return [json.loads(process.communicate(timeout=timeout)[0]) for process in started]
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def release_threads_together(threads: int, work: Callable[[], T]) -> list[T]:
    """In a process started by `run_processes_together`: `work` in `threads` threads, all started when the
    parent says go; returns their results (in the order they finished)."""
    results: list[T] = []
    start = threading.Barrier(threads + 1)

    def run() -> None:
        start.wait()
        results.append(work())

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    print("READY", flush=True)
    sys.stdin.readline()
    start.wait()
    for worker in workers:
        worker.join()
    return results
