"""Throughput of the real service against a bare FastAPI app serving the same bytes, measured with wrk.

    .venv/bin/python -m bench.bench_server [--rounds 5] [--duration 5] [--connections 32] [--json PATH]

Both servers run on CPU 0 and wrk (`-t1`) on CPU 1, so the client never competes with the server for
a core. Rounds alternate bare, real, bare, real, … and each real round is compared with the bare round
just before it, which cancels most of the drift (thermal, noisy neighbours) a long run picks up.
Only 127.0.0.1 is ever contacted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from bench.harness import (
    HOST,
    BenchError,
    Processes,
    Server,
    base_env,
    http_get,
    require_cpus,
    setting,
    start_server,
)
from bench.report import Outcome, environment, finish, load_figures, outcome_of, ratio_figures, ratio_lines, wrk_table
from bench.wrk import Target, WrkResult, alternate_as_asked, require_wrk, summarize
from tests.support.paths import SHIPPED_IMAGES

TARGET_RATIO = 0.85
# High enough that no client is ever refused, low enough that the limiter still runs on every request.
RATE_LIMIT_PER_MIN = 1_000_000_000
IMAGE_COUNT = 6  # POKEMON_MIN_INDEX=0 .. POKEMON_MAX_INDEX=5, the service's defaults


# --- the two servers ----------------------------------------------------------------------------


def synthesize_images(folder: Path) -> Path:
    """Six seeded 512×512 PNGs of about 30 KB, so the response is as large as with real art (~40 KB).

    A coarse noisy gradient, upscaled: random pixels would not compress at all, a plain gradient to
    almost nothing; cells of 6 px land on the size of the drawn creatures.
    """
    from PIL import Image  # the service's own dependency; imported here so `--help` works without it

    folder.mkdir(parents=True, exist_ok=True)
    cells = 512 // 6
    for index in range(IMAGE_COUNT):
        rng = random.Random(f"bench-image:{index}")
        small = Image.new("RGB", (cells, cells))
        small.putdata(
            [
                (
                    (x * 255 // cells + rng.randrange(40)) % 256,
                    (y * 255 // cells + rng.randrange(40)) % 256,
                    (index * 40 + rng.randrange(60)) % 256,
                )
                for y in range(cells)
                for x in range(cells)
            ]
        )
        small.resize((512, 512), Image.Resampling.NEAREST).save(folder / f"image_{index:02d}.png")
    return folder


def choose_images(args: argparse.Namespace, scratch: Path) -> tuple[Path, str]:
    """The art in ./pokemon when it is all there, else synthetic stand-ins; says which."""
    if args.images is not None:
        return args.images, f"{args.images} (--images)"
    drawn = SHIPPED_IMAGES
    if not args.synthetic_images and all((drawn / f"image_{i:02d}.png").is_file() for i in range(IMAGE_COUNT)):
        return drawn, "./pokemon (the drawn art)"
    reason = "--synthetic-images" if args.synthetic_images else "./pokemon has no image_00..05.png yet"
    return synthesize_images(scratch / "images"), f"synthetic 512×512 PNGs of ~30 KB ({reason})"


def real_env(port: int, images: Path, scratch: Path, overrides: dict[str, str]) -> dict[str, str]:
    return {
        **base_env(),
        "POKEMON_HOST": HOST,
        "POKEMON_PORT": str(port),
        "POKEMON_IMAGES_DIR": str(images),
        "POKEMON_RATE_LIMIT_PER_MIN": str(RATE_LIMIT_PER_MIN),
        # Paths that do not exist: the server then serves plain HTTP, which is what wrk speaks here.
        "POKEMON_TLS_CERT": str(scratch / "no-cert.pem"),
        "POKEMON_TLS_KEY": str(scratch / "no-key.pem"),
        "LOG_JSON": "1",
        "LOG_LEVEL": "INFO",
        **overrides,
    }


def start_real(processes: Processes, images: Path, scratch: Path, cpu: int, overrides: dict[str, str]) -> Server:
    argv = [sys.executable, "-m", "handlers.server"]
    return start_server(
        processes, "real", argv, lambda port: real_env(port, images, scratch, overrides), scratch=scratch, cpu=cpu
    )


def start_bare(processes: Processes, body_dir: Path, scratch: Path, cpu: int) -> Server:
    def env(port: int) -> dict[str, str]:
        return {**base_env(), "BENCH_BODY_DIR": str(body_dir), "BENCH_HOST": HOST, "BENCH_PORT": str(port)}

    return start_server(processes, "bare", [sys.executable, "-m", "bench.bare_app"], env, scratch=scratch, cpu=cpu)


def fetch_bodies(server: Server, *, attempts: int = 300) -> list[bytes]:
    """One real response per distinct image, so the baseline sends the same mix of sizes as the service."""
    by_image: dict[bytes, bytes] = {}
    for _ in range(attempts):
        status, body = http_get(server.port, "/v1/generate")
        if status != 200:
            raise BenchError(f"GET /v1/generate on the real server answered {status}: {body[:300]!r}")
        image = json.loads(body)["imageBase64"].encode()
        by_image.setdefault(image, body)
        if len(by_image) == IMAGE_COUNT:
            break
    return list(by_image.values())


# --- load ---------------------------------------------------------------------------------------


def measure(bare: Server, real: Server, args: argparse.Namespace) -> dict[str, list[WrkResult]]:
    return alternate_as_asked([Target("bare", bare.port), Target("real", real.port)], args)


# --- report -------------------------------------------------------------------------------------


def summarize_real(results: list[WrkResult]) -> dict[str, float | int]:
    return {**summarize(results), "non_2xx": sum(r.non_2xx for r in results)}


def count_log_lines(log_path: Path) -> tuple[int, int]:
    """Lines the real server wrote, and how many it says it dropped (its queue drops when stdout lags)."""
    lines = dropped = 0
    with log_path.open("rb") as stream:
        for line in stream:
            lines += 1
            if b'"log.dropped"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    dropped += int(json.loads(line)["extra"]["lines"])
    return lines, dropped


def build_report(
    rounds: dict[str, list[WrkResult]], body_size: int, images_note: str, log_path: Path, args: argparse.Namespace
) -> dict[str, object]:
    bare, real = rounds["bare"], rounds["real"]
    requests = sum(r.requests for r in real)
    log_lines, dropped = count_log_lines(log_path)
    return {
        **ratio_figures("ratio_real_over_bare", bare, real, TARGET_RATIO),
        "servers": {"bare": summarize_real(bare), "real": summarize_real(real)},
        "rounds": {"bare": [asdict(r) for r in bare], "real": [asdict(r) for r in real]},
        "response_bytes": body_size,
        "images": images_note,
        "real_server": {
            "rate_limit_per_min": RATE_LIMIT_PER_MIN,
            "log_lines_written": log_lines,
            "log_lines_dropped": dropped,
            "requests_measured": requests,  # timed rounds only, warm-up excluded
            "setting_overrides": dict(args.env),
        },
        "load": load_figures(args, connections=args.connections, wrk_threads=1),
        "environment": environment(),
    }


def render(report: dict[str, object]) -> str:
    servers: dict[str, dict[str, float]] = report["servers"]  # type: ignore[assignment]
    load: dict[str, object] = report["load"]  # type: ignore[assignment]
    env: dict[str, object] = report["environment"]  # type: ignore[assignment]
    real: dict[str, object] = report["real_server"]  # type: ignore[assignment]
    out = io.StringIO()
    out.write("\n")
    out.write(wrk_table("server", 6, {name: servers[name] for name in ("bare", "real")}))
    out.write(ratio_lines("real/bare", float(report["ratio_real_over_bare"]), report))  # type: ignore[arg-type]
    out.write(
        f"\nresponse size: {report['response_bytes']} bytes on average (the baseline cycles through one real"
        f" response per image); images: {report['images']}\n"
    )
    out.write(
        f"load: wrk -t1 -c{load['connections']} --latency, {load['rounds']} rounds × {load['duration_s']} s per server"
        f" (+{load['warmup_s']} s warm-up), servers on CPU {load['server_cpu']}, wrk on CPU {load['wrk_cpu']}\n"
    )
    out.write(
        f"real server: rate limiter on at {RATE_LIMIT_PER_MIN} req/min per client (runs on every request,"
        f" admits all); JSON INFO logs to a file: {real['log_lines_written']} lines written,"
        f" {real['log_lines_dropped']} dropped\n"
    )
    if real["setting_overrides"]:
        out.write(f"real server settings overridden: {real['setting_overrides']}\n")
    out.write(
        f"environment: Python {env['python']}, uvicorn {env['uvicorn']}, FastAPI {env['fastapi']},"
        f" Starlette {env['starlette']}, uvloop {env['uvloop']}, httptools {env['httptools']}, {env['wrk']}\n"
        f"             {env['cpu_count']} cores ({env['cpu_model']}), {env['platform']}\n"
    )
    return out.getvalue()


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_server", description="Real service vs a bare FastAPI app on GET /v1/generate, with wrk."
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternating bare/real rounds (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per round and server (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per server (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--images", type=Path, help="images for the real server (default ./pokemon, else synthetic)")
    parser.add_argument(
        "--synthetic-images", action="store_true", help="use generated ~30 KB PNGs even when ./pokemon has art"
    )
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    parser.add_argument("--wrk-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        type=setting,
        metavar="KEY=VALUE",
        help="an extra setting for the real server, e.g. LOG_LEVEL=WARNING to see what logging costs (repeatable)",
    )
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 3 when the ratio misses the target")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.warmup < 1 or args.connections < 1:
        parser.error("--rounds, --duration, --warmup and --connections must be ≥ 1")
    return args


def check_prerequisites(args: argparse.Namespace) -> None:
    require_wrk()
    require_cpus(args.server_cpu, args.wrk_cpu)


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pokemon-bench-") as name:
        yield Path(name)


def run(args: argparse.Namespace) -> dict[str, object]:
    processes = Processes()
    with scratch_dir() as scratch:
        try:
            images, images_note = choose_images(args, scratch)
            real = start_real(processes, images, scratch, args.server_cpu, dict(args.env))
            bodies = fetch_bodies(real)
            body_dir = scratch / "bodies"
            body_dir.mkdir()
            for index, body in enumerate(bodies):
                (body_dir / f"{index}.json").write_bytes(body)
            bare = start_bare(processes, body_dir, scratch, args.server_cpu)
            print(f"servers up: real :{real.port} (pid {real.process.pid}), bare :{bare.port} (pid {bare.process.pid})")
            rounds = measure(bare, real, args)
        finally:
            processes.stop_all()
        # After the stop, so that the real server has flushed its last log lines.
        mean_size = sum(len(body) for body in bodies) // len(bodies)
        return build_report(rounds, mean_size, images_note, real.log_path, args)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def measure() -> Outcome:
        check_prerequisites(args)
        return outcome_of(run(args), render)

    return finish("bench", measure, json_path=args.json, fail_on_miss=args.fail_on_miss)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
