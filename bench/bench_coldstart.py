"""Lambda cold start: the service's `handlers.generate` against a bare `Mangum(FastAPI)` app, side by side.

    .venv/bin/python -m bench.bench_coldstart [--runs 9] [--json PATH]

Each run is a fresh interpreter (`python -c`) that starts its clock on its first line, imports the handler
module, and invokes it once with the API Gateway HTTP API sample event (infra/events). The service runs its
default settings (files backend on ./pokemon); the baseline is a FastAPI app with one route returning a JSON
body of the service's size, wrapped in Mangum, with a Powertools `Logger` injecting the Lambda context and
logging one line. Runs alternate bare, service, bare, service, … after one unmeasured warm-up each (it warms
the page cache and the bytecode cache), and each service run is divided by the bare run just before it. The
headline is the median of those ratios for import + first invoke, timed inside the child; the wall time of
the whole subprocess (interpreter start-up and exit included) is shown too. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import BenchError, base_env, pin_to
from bench.report import finish, outcome_of, versions
from tests.support.paths import REPO, SHIPPED_IMAGES

TARGET_RATIO = 1.2
EVENT = REPO / "infra" / "events" / "apigateway-http-generate.json"
RESULT_PREFIX = "COLDSTART "
RUN_TIMEOUT_S = 60.0

# The child's result goes to stderr on one marked line: stdout carries the log lines, as on Lambda.
_REPORT = """
_t2 = time.perf_counter()
import sys as _sys
_sys.stderr.write("COLDSTART " + json.dumps({
    "import_ms": (_t1 - _t0) * 1000, "invoke_ms": (_t2 - _t1b) * 1000,
    "status": _result["statusCode"], "body_bytes": len(_result["body"]),
}) + "\\n")
"""

# Read after the clock stops for the import and before the invoke starts: both children read it alike.
_INVOKE = """
import json
with open(os.environ["BENCH_EVENT"], encoding="utf-8") as _file:
    _event = json.load(_file)

class _Context:
    function_name = "pokemon-generate"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pokemon-generate"
    aws_request_id = "bench-request"

_t1b = time.perf_counter()
_result = handler(_event, _Context())
"""

SERVICE_CODE = (
    """
import time
_t0 = time.perf_counter()
import os
from handlers.generate import handler
_t1 = time.perf_counter()
"""
    + _INVOKE
    + _REPORT
)

BARE_CODE = (
    """
import time
_t0 = time.perf_counter()
import os
from aws_lambda_powertools import Logger
from fastapi import FastAPI
from fastapi.responses import Response
from mangum import Mangum

logger = Logger(service="bare")
app = FastAPI()
_body = b'{"imageBase64":"' + b"A" * int(os.environ["BENCH_BODY_BYTES"]) + b'"}'

@app.get("/v1/generate")
async def generate() -> Response:
    logger.info("generate")
    return Response(_body, media_type="application/json")

_adapter = Mangum(app, lifespan="off")

@logger.inject_lambda_context
def handler(event, context):
    return _adapter(event, context)

_t1 = time.perf_counter()
"""
    + _INVOKE
    + _REPORT
)


@dataclass(frozen=True, slots=True)
class ColdStart:
    import_ms: float
    invoke_ms: float
    wall_ms: float
    status: int
    body_bytes: int

    @property
    def total_ms(self) -> float:
        return self.import_ms + self.invoke_ms


def child_env(body_bytes: int) -> dict[str, str]:
    env = {key: value for key, value in base_env().items() if not key.startswith(("POWERTOOLS_", "AWS_"))}
    env.update(BENCH_EVENT=str(EVENT), BENCH_BODY_BYTES=str(body_bytes), POKEMON_IMAGES_DIR=str(SHIPPED_IMAGES))
    # Both read the bytecode cache, as a deployed package with compiled files would.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cold_start(code: str, env: dict[str, str], cpu: int | None) -> ColdStart:
    began = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RUN_TIMEOUT_S,
            preexec_fn=None if cpu is None else pin_to(cpu),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"a cold start took more than {RUN_TIMEOUT_S:.0f} s") from None
    wall_ms = (time.perf_counter() - began) * 1000
    stderr = completed.stderr.decode(errors="replace")
    lines = [line for line in stderr.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise BenchError(f"a cold start failed with status {completed.returncode}:\n{stderr[-2000:]}")
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    if result["status"] != 200:
        raise BenchError(f"a cold start answered {result['status']}, not 200")
    return ColdStart(wall_ms=wall_ms, **result)


def median_of(runs: Sequence[ColdStart], attribute: str) -> float:
    return statistics.median(float(getattr(run, attribute)) for run in runs)


def measure(args: argparse.Namespace) -> dict[str, object]:
    if not EVENT.is_file():
        raise BenchError(f"the sample event {EVENT} is missing")
    # The service's own response size, from an unmeasured run, so that the baseline sends as much.
    warm = cold_start(SERVICE_CODE, child_env(1), args.cpu)
    env = child_env(warm.body_bytes)
    cold_start(BARE_CODE, env, args.cpu)
    bare: list[ColdStart] = []
    service: list[ColdStart] = []
    for index in range(1, args.runs + 1):
        for name, code, runs in (("bare", BARE_CODE, bare), ("service", SERVICE_CODE, service)):
            run = cold_start(code, env, args.cpu)
            runs.append(run)
            print(
                f"  run {index}/{args.runs} {name:<7} import {run.import_ms:7.1f} ms  invoke {run.invoke_ms:6.1f} ms"
                f"  total {run.total_ms:7.1f} ms  wall {run.wall_ms:7.1f} ms",
                flush=True,
            )
    ratios = [s.total_ms / b.total_ms for b, s in zip(bare, service, strict=True)]
    wall_ratios = [s.wall_ms / b.wall_ms for b, s in zip(bare, service, strict=True)]
    ratio = statistics.median(ratios)
    return {
        "valid": True,  # every run answered 200 (anything else ends the benchmark)
        "target_ratio": TARGET_RATIO,
        "ratio": ratio,
        "ratio_of_medians": median_of(service, "total_ms") / median_of(bare, "total_ms"),
        "per_run_ratios": ratios,
        "wall_ratio": statistics.median(wall_ratios),
        "verdict": "PASS" if ratio <= TARGET_RATIO else "MISS",
        "runs": {"bare": [asdict(run) for run in bare], "service": [asdict(run) for run in service]},
        "body_bytes": {"bare": bare[0].body_bytes, "service": warm.body_bytes},
        "python": sys.version.split()[0],
        "versions": versions("fastapi", "mangum", "aws-lambda-powertools", "pydantic", "pillow", "orjson"),
        "cpu": args.cpu,
    }


def render(report: dict[str, object]) -> str:
    runs: dict[str, list[dict[str, float]]] = report["runs"]  # type: ignore[assignment]
    medians = {
        name: {key: statistics.median(run[key] for run in rows) for key in ("import_ms", "invoke_ms", "wall_ms")}
        for name, rows in runs.items()
    }
    for row in medians.values():
        row["total_ms"] = row["import_ms"] + row["invoke_ms"]
    lines = [
        "",
        f"{'':<8} {'import ms':>10} {'1st invoke ms':>14} {'import+invoke':>14} {'wall ms':>9}   (medians)",
    ]
    for name in ("bare", "service"):
        row = medians[name]
        lines.append(
            f"{name:<8} {row['import_ms']:>10.1f} {row['invoke_ms']:>14.1f} {row['total_ms']:>14.1f}"
            f" {row['wall_ms']:>9.1f}"
        )
    ratios: list[float] = report["per_run_ratios"]  # type: ignore[assignment]
    lines += [
        "",
        f"service/bare, import + first invoke: {report['ratio']:.2f}× median of per-pair ratios"
        f" (ratio of medians {report['ratio_of_medians']:.2f}×; range {min(ratios):.2f}–{max(ratios):.2f}×)"
        f"  target ≤ {TARGET_RATIO:.1f}×  {report['verdict']}",
        f"service/bare, subprocess wall time: {report['wall_ratio']:.2f}× (median of per-pair ratios)",
        f"{len(ratios)} alternating pairs after one warm-up each; response bodies {report['body_bytes']} bytes;"
        f" Python {report['python']}" + ("" if report["cpu"] is None else f"; children pinned to CPU {report['cpu']}"),
        "versions: " + ", ".join(f"{name} {version}" for name, version in report["versions"].items()),  # type: ignore[attr-defined]
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_coldstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="alternating bare/service pairs (default 9; ≥ 7)")
    parser.add_argument("--cpu", type=int, help="pin every child to this CPU (default: not pinned)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when the ratio misses the target")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be ≥ 1")
    if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):
        parser.error(f"CPU {args.cpu} is not available: {sorted(os.sched_getaffinity(0))}")
    return finish(
        "bench_coldstart",
        lambda: outcome_of(measure(args), render),
        json_path=args.json,
        fail_on_miss=args.fail_on_miss,
    )


if __name__ == "__main__":
    raise SystemExit(main())
