"""wrk, the load generator every HTTP benchmark here uses: run it pinned to a CPU and read its `--latency` output."""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bench.harness import HOST, BenchError, pin_to

WRK_GRACE_S = 20.0  # on top of the run's duration before a hung wrk is killed
_UNIT_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]

    @property
    def errors(self) -> int:
        return self.non_2xx + sum(self.socket_errors.values())


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed; install it with: apt-get update && apt-get install -y wrk")


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise BenchError(f"unexpected wrk duration {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1000.0


def _required(pattern: str, output: str) -> re.Match[str]:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise BenchError(f"wrk output lacks {pattern!r}:\n{output}")
    return match


def parse_wrk(output: str) -> WrkResult:
    """Read `wrk --latency` text; absent error lines mean zero errors."""
    percentiles = {
        int(m.group(1)): _duration_ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise BenchError(f"wrk output lacks the latency distribution (was --latency passed?):\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if sockets is not None:
        socket_errors = dict(zip(socket_errors, (int(g) for g in sockets.groups()), strict=True))
    return WrkResult(
        requests=int(_required(r"^\s+(\d+) requests in", output).group(1)),
        requests_per_s=float(_required(r"^Requests/sec:\s+([\d.]+)", output).group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=socket_errors,
    )


def run_wrk(port: int, *, connections: int, seconds: float, cpu: int, path: str = "/v1/generate") -> WrkResult:
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        f"http://{HOST}:{port}{path}",
    ]
    try:
        completed = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_GRACE_S,
            preexec_fn=pin_to(cpu),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {seconds + WRK_GRACE_S:.0f} s") from None
    if completed.returncode != 0:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    return parse_wrk(completed.stdout)


@dataclass(frozen=True, slots=True)
class Target:
    """One thing wrk loads in the rounds: a server's port and the path asked for; `name` labels its results."""

    name: str
    port: int
    path: str = "/v1/generate"


def alternate_rounds(
    targets: Sequence[Target],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int,
    cpu: int,
    fail_on_errors: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, list[WrkResult]]:
    """Every target warmed up, then `rounds` rounds that load each target in turn; results by target name.

    Alternating within a round, rather than one target's rounds after the other's, spreads the drift a long
    run picks up (thermal, noisy neighbours) over all targets alike, so a round compares fairly with the round
    of another target just before it. With `fail_on_errors` a failed request ends the run (BenchError) instead
    of being flagged in the progress line and counted. Progress lines go to stdout at once unless `progress`
    takes them.
    """
    say = progress or _say
    results: dict[str, list[WrkResult]] = {target.name: [] for target in targets}
    width = max(len(target.name) for target in targets)
    for target in targets:
        # Warm-up: lets the allocator, CPU caches and lazily built state settle before anything counts.
        run_wrk(target.port, connections=connections, seconds=warmup, cpu=cpu, path=target.path)
    for index in range(1, rounds + 1):
        for target in targets:
            result = run_wrk(target.port, connections=connections, seconds=duration, cpu=cpu, path=target.path)
            if fail_on_errors and result.errors:
                raise BenchError(f"{target.name}: {result.errors} failed requests")
            results[target.name].append(result)
            flag = f"  ERRORS {result.errors}" if result.errors else ""
            say(
                f"  round {index}/{rounds} {target.name:<{width}} {result.requests_per_s:9.1f} req/s"
                f"  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms{flag}"
            )
    return results


def alternate_as_asked(
    targets: Sequence[Target], args: argparse.Namespace, *, warmup: float | None = None, fail_on_errors: bool = False
) -> dict[str, list[WrkResult]]:
    """`alternate_rounds` as a run's `--rounds`, `--duration`, `--warmup` (unless `warmup` is given),
    `--connections` and `--wrk-cpu` say."""
    return alternate_rounds(
        targets,
        rounds=args.rounds,
        duration=args.duration,
        warmup=args.warmup if warmup is None else warmup,
        connections=args.connections,
        cpu=args.wrk_cpu,
        fail_on_errors=fail_on_errors,
    )


def alternate_services(ports: Mapping[str, int], args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    """`GET /v1/generate` on each service after 1 s of warm-up each, for runs that have no `--warmup`; a failed
    request ends the run (a latency of failures would not count)."""
    return alternate_as_asked([Target(name, port) for name, port in ports.items()], args, warmup=1, fail_on_errors=True)


def _say(line: str) -> None:
    print(line, flush=True)  # at once, so that a long run shows where it is


def round_ratios(before: Sequence[WrkResult], after: Sequence[WrkResult]) -> list[float]:
    """Each `after` round's throughput over that of the `before` round run just before it."""
    return [later.requests_per_s / earlier.requests_per_s for earlier, later in zip(before, after, strict=True)]


def median(results: Sequence[WrkResult], field: str) -> float:
    return float(statistics.median(getattr(result, field) for result in results))


def summarize(results: Sequence[WrkResult]) -> dict[str, float | int]:
    """The figures a report keeps per target: medians over the rounds, and every failed request."""
    return {
        "median_requests_per_s": median(results, "requests_per_s"),
        "median_p50_ms": median(results, "p50_ms"),
        "median_p99_ms": median(results, "p99_ms"),
        "errors": sum(result.errors for result in results),
    }


def wrk_version() -> str:
    # `wrk -v` prints a banner and exits 1; the first line carries the version.
    completed = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    lines = (completed.stdout + completed.stderr).strip().splitlines()
    return lines[0].split(" [")[0] if lines else "wrk (unknown version)"
