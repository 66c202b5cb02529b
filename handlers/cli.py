"""The `pokemon` command line: generate creatures (in-process or from a server), batches, serve, certs."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, Protocol

import httpx

from core.creature import MAX_SEED, parse_seed

if TYPE_CHECKING:
    from core.service import CreatureService

PROG = "pokemon"
RARITY_ORDER = ("F", "E", "D", "C", "B", "A", "S", "S+")
GENERATE_PATH = "/v1/generate"
# Statuses that will fail every request of a batch the same way: stop sending rather than repeat them.
FATAL_STATUSES = frozenset({401, 403, 404, 405})


class CliError(Exception):
    """A failure reported as one line on stderr; `exit_code` 2 is a usage/settings error, 1 anything else.

    `fatal` marks failures that every further request would repeat (unreachable server, wrong token).
    """

    def __init__(self, message: str, *, exit_code: int = 1, fatal: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.fatal = fatal


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: the full usage is one `--help` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


# --------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Generated:
    """One creature as the API returns it: the raw JSON (printed verbatim by --json) and its parts."""

    raw: bytes
    png: bytes
    metadata: dict[str, Any]
    generated_at: str

    @property
    def id(self) -> str:
        return str(self.metadata.get("id", "?"))

    @property
    def rarity(self) -> str:
        return str(self.metadata.get("rarity", "?"))


def parse_generated(raw: bytes) -> Generated:
    """Check the API's shape before anything is written: a bad answer is one clear error, not a KeyError."""
    try:
        payload = json.loads(raw)
    except ValueError:
        raise CliError("the answer is not JSON") from None
    if not isinstance(payload, dict):
        raise CliError("the answer is not a JSON object")
    image, metadata, generated_at = payload.get("imageBase64"), payload.get("metadata"), payload.get("generatedAt")
    if not isinstance(image, str) or not isinstance(metadata, dict) or not isinstance(generated_at, str):
        raise CliError("the answer lacks imageBase64, metadata or generatedAt")
    try:
        png = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise CliError("imageBase64 is not valid base64") from None
    return Generated(raw=raw, png=png, metadata=metadata, generated_at=generated_at)


# --------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    async def generate(self, seed: int | None) -> Generated: ...

    async def aclose(self) -> None: ...


class RemoteSource:
    """`GET /v1/generate` on a running server; one pooled client shared by every concurrent request."""

    def __init__(self, url: str, *, token: str | None, insecure: bool, timeout: float) -> None:
        self.endpoint = _endpoint(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(headers=headers, verify=not insecure, timeout=timeout)

    async def generate(self, seed: int | None) -> Generated:
        params = {"seed": str(seed)} if seed is not None else None
        try:
            response = await self._client.get(self.endpoint, params=params)
        except httpx.ConnectError as exc:
            hint = " (a self-signed certificate? try --insecure)" if "CERTIFICATE" in str(exc).upper() else ""
            raise CliError(f"cannot connect to {self.endpoint}: {_describe(exc)}{hint}", fatal=True) from None
        except httpx.TimeoutException as exc:
            raise CliError(f"{self.endpoint} did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.endpoint} failed: {_describe(exc)}", fatal=True) from None
        if response.status_code >= 400:
            raise _api_error(response)
        return parse_generated(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def _endpoint(url: str) -> str:
    """Accept the server's base URL (as in the README) or the full endpoint URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        raise CliError(f"invalid --url {url!r}", exit_code=2) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise CliError(f"invalid --url {url!r}: expected http(s)://host[:port]", exit_code=2)
    base = url.rstrip("/")
    return base if base.endswith(GENERATE_PATH) else base + GENERATE_PATH


def _describe(exc: Exception) -> str:
    # httpx errors can be empty or span lines (TLS); the command promises one line.
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _api_error(response: httpx.Response) -> CliError:
    """The API's `{"error": {"code", "message"}}`, or the bare status when the answer is not the API's."""
    code, message = "", ""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            code, message = str(error.get("code", "")), str(error.get("message", ""))
    except ValueError:
        pass
    text = f"{message or response.reason_phrase or 'request failed'} ({code + ', ' if code else ''}"
    text += f"HTTP {response.status_code})"
    retry_after = response.headers.get("Retry-After")
    if response.status_code in (429, 503) and retry_after:
        text += f"; retry after {retry_after}s (Retry-After)"
    return CliError(text, fatal=response.status_code in FATAL_STATUSES)


class LocalSource:
    """The service in this process, built from the environment exactly as the server builds it."""

    def __init__(self) -> None:
        # Imported here: `pokemon --help` and the remote commands should not pay for the backends.
        from core import wiring
        from core.config import load_settings
        from core.errors import ConfigError
        from core.eventlog import configure_logging

        try:
            settings = load_settings()
            # Logs go to stderr so stdout stays the summary or pure JSON; without an explicit LOG_LEVEL the
            # per-creature INFO lines would drown a batch's output, so a CLI run shows warnings and up.
            level = settings.log_level if "LOG_LEVEL" in os.environ else "WARNING"
            configure_logging(level=level, json_lines=settings.log_json, stream=sys.stderr, background=False)
            self._service: CreatureService = wiring.build_service(settings)
        except ConfigError as exc:
            raise CliError(str(exc), exit_code=2) from None

    async def generate(self, seed: int | None) -> Generated:
        from core.errors import ConfigError, GenerationFailed, ServiceUnavailable

        try:
            creature = await self._service.generate(seed)
        except ConfigError as exc:  # a backend can still refuse its settings when it starts
            raise CliError(str(exc), exit_code=2, fatal=True) from None
        except (GenerationFailed, ServiceUnavailable) as exc:
            raise CliError(f"generation failed: {exc}") from None
        return parse_generated(creature.to_json_bytes())

    async def aclose(self) -> None:
        await self._service.aclose()


def open_source(args: argparse.Namespace) -> Source:
    if args.url is None:
        return LocalSource()
    token = args.token if args.token is not None else os.environ.get("POKEMON_TOKEN")
    return RemoteSource(args.url, token=token, insecure=args.insecure, timeout=args.timeout)


# --------------------------------------------------------------------------------------------- generate


def summary_lines(creature: Generated) -> list[str]:
    meta = creature.metadata
    return [
        f"{meta.get('name', '?')}  [{creature.rarity}]",
        f"  id       {creature.id}",
        f"  seed     {meta.get('seed', '?')}",
        f"  sources  name={meta.get('nameSource', '?')} image={meta.get('imageSource', '?')}",
        f"  created  {creature.generated_at}",
    ]


async def _generate(args: argparse.Namespace) -> int:
    source = open_source(args)
    try:
        creature = await source.generate(args.seed)
    finally:
        await source.aclose()
    if args.out is not None:
        _write_bytes(args.out, creature.png)
    if args.json:
        sys.stdout.write(creature.raw.decode("utf-8") + "\n")
        if args.out is not None:  # stderr: stdout must stay one parsable JSON document
            print(f"{PROG}: wrote {args.out}", file=sys.stderr)
        return 0
    lines = summary_lines(creature)
    if args.out is not None:
        lines.append(f"  image    {args.out} ({len(creature.png)} bytes)")
    print("\n".join(lines))
    return 0


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", fatal=True) from None


# --------------------------------------------------------------------------------------------- batch


class Progress:
    """A redrawn bar on a terminal; on a pipe or file, a plain line every tenth so logs stay readable."""

    def __init__(self, total: int, stream: IO[str], width: int = 30) -> None:
        self.total, self.stream, self.width = total, stream, width
        self.done = self.failed = 0
        self.tty = stream.isatty()
        self._step = max(1, -(-total // 10))  # ceil: at most ten lines however small the batch

    def advance(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        failed = f" ({self.failed} failed)" if self.failed else ""
        if self.tty:
            filled = self.width * self.done // self.total
            bar = "#" * filled + " " * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total}{failed}")
            if self.done == self.total:
                self.stream.write("\n")
        elif self.done % self._step == 0 or self.done == self.total:
            self.stream.write(f"{PROG}: {self.done}/{self.total}{failed}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done < self.total:  # an aborted batch must not leave the cursor mid-line
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class BatchResult:
    rarities: Counter[str]
    name_sources: Counter[str]
    image_sources: Counter[str]
    errors: Counter[str]
    created: int = 0
    failed: int = 0
    not_attempted: int = 0


def _save(directory: Path, creature: Generated) -> None:
    stem = creature.id
    # The id comes from the server: refuse anything that could step outside the output folder.
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise CliError(f"unexpected creature id {stem!r}")
    sidecar = {"metadata": creature.metadata, "generatedAt": creature.generated_at}
    _write_bytes(directory / f"{stem}.png", creature.png)
    _write_bytes(directory / f"{stem}.json", (json.dumps(sidecar, ensure_ascii=False, indent=2) + "\n").encode())


async def run_batch(
    source: Source, *, count: int, directory: Path, concurrency: int, seed_start: int | None, progress: Progress
) -> BatchResult:
    result = BatchResult(Counter(), Counter(), Counter(), Counter())
    next_index = 0
    stop = False

    async def worker() -> None:
        nonlocal next_index, stop
        while not stop and next_index < count:
            # Single-threaded event loop: taking the index before the first await hands each one out once.
            index, next_index = next_index, next_index + 1
            seed = None if seed_start is None else seed_start + index
            try:
                creature = await source.generate(seed)
                await asyncio.to_thread(_save, directory, creature)
            except CliError as exc:
                result.failed += 1
                result.errors[str(exc)] += 1
                stop = stop or exc.fatal
                progress.advance(ok=False)
                continue
            result.created += 1
            result.rarities[creature.rarity] += 1
            result.name_sources[str(creature.metadata.get("nameSource", "?"))] += 1
            result.image_sources[str(creature.metadata.get("imageSource", "?"))] += 1
            progress.advance(ok=True)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    result.not_attempted = count - next_index
    return result


def _counts(counter: Counter[str], order: Sequence[str] = ()) -> str:
    keys = list(order) + sorted(key for key in counter if key not in order)
    return "  ".join(f"{key} {counter[key]}" for key in keys) or "-"


def _batch(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Check the arguments and the folder before any backend starts or request leaves: fail fast, not per item."""
    directory: Path = args.out
    if directory.exists() and not directory.is_dir():
        raise CliError(f"--out {directory} exists and is not a folder", exit_code=2)
    if args.seed_start is not None and args.seed_start + args.count > MAX_SEED:
        raise CliError(f"--seed-start + -n must stay below 2^63 ({MAX_SEED})", exit_code=2)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create {directory}: {exc.strerror or exc}") from None
    return _run_batch(args, directory)


async def _run_batch(args: argparse.Namespace, directory: Path) -> int:
    source = open_source(args)
    progress = Progress(args.count, sys.stderr)
    began = time.perf_counter()
    try:
        result = await run_batch(
            source,
            count=args.count,
            directory=directory,
            concurrency=args.concurrency,
            seed_start=args.seed_start,
            progress=progress,
        )
    finally:
        progress.close()
        await source.aclose()
    elapsed = time.perf_counter() - began
    rate = result.created / elapsed if elapsed > 0 else 0.0
    head = f"{PROG}: {result.created} created, {result.failed} failed"
    if result.not_attempted:
        head += f", {result.not_attempted} not attempted"
    print(f"{head} in {elapsed:.2f}s ({rate:.1f} creatures/s) -> {directory}")
    print(f"  rarity   {_counts(result.rarities, RARITY_ORDER)}")
    print(f"  names    {_counts(result.name_sources)}")
    print(f"  images   {_counts(result.image_sources)}")
    for message, times in result.errors.most_common():
        print(f"{PROG}: {times} x {message}", file=sys.stderr)
    return 1 if result.failed or result.not_attempted else 0


# --------------------------------------------------------------------------------------------- delegates


def _serve(args: argparse.Namespace) -> int:
    from handlers.server import main as server_main

    argv: list[str] = []
    if args.host is not None:
        argv += ["--host", args.host]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    return server_main(argv)


def _certs(args: argparse.Namespace) -> int:
    from handlers.certs import main as certs_main

    argv: list[str] = ["--force"] if args.force else []
    for host in args.hosts or ():
        argv += ["--host", host]
    for flag, value in (("--cert", args.cert), ("--key", args.key), ("--days", args.days)):
        if value is not None:
            argv += [flag, str(value)]
    return certs_main(argv)


# --------------------------------------------------------------------------------------------- parser


def _seed(text: str) -> int:
    # The API's own rule, so that a seed the CLI accepts is one the server accepts too.
    try:
        return parse_seed(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return value


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _add_remote_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server (without --url the creatures are generated in this process)")
    group.add_argument("--url", help="server base URL, e.g. https://localhost:22222")
    group.add_argument("--token", help="bearer token (default: $POKEMON_TOKEN)")
    group.add_argument("--insecure", action="store_true", help="skip TLS verification (self-signed dev certificate)")
    group.add_argument("--timeout", type=_timeout, default=30.0, help="seconds per request (default: 30)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Generate creatures with the Pokémon Generator API.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate one creature", description="Generate one creature.")
    generate.add_argument("--seed", type=_seed, help="reproducible creature: 0 <= seed < 2^63")
    generate.add_argument("--out", type=Path, metavar="PNG", help="write the image to this file")
    generate.add_argument("--json", action="store_true", help="print the API's JSON instead of a summary")
    _add_remote_options(generate)
    generate.set_defaults(handler=_generate)

    batch = commands.add_parser(
        "batch",
        help="generate many creatures into a folder",
        description="Generate creatures into DIR/<id>.png and DIR/<id>.json, then summarise them.",
    )
    batch.add_argument("-n", "--count", type=_positive, default=10, help="how many creatures (default: 10)")
    batch.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    batch.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (default: 4)")
    batch.add_argument("--seed-start", type=_seed, metavar="N", help="use seeds N, N+1, ... (reproducible batch)")
    _add_remote_options(batch)
    batch.set_defaults(handler=_batch)

    serve = commands.add_parser("serve", help="run the API server", description="Run the API server.")
    serve.add_argument("--host", help="overrides POKEMON_HOST")
    serve.add_argument("--port", type=_port, help="overrides POKEMON_PORT")
    serve.set_defaults(handler=_serve)

    certs = commands.add_parser(
        "certs", help="write the development certificate", description="Write a self-signed development certificate."
    )
    certs.add_argument("--force", action="store_true", help="overwrite existing files")
    certs.add_argument("--host", action="append", dest="hosts", help="a DNS name or IP (repeatable)")
    certs.add_argument("--cert", type=Path, help="certificate file (default: $POKEMON_TLS_CERT or certs/cert.pem)")
    certs.add_argument("--key", type=Path, help="key file (default: $POKEMON_TLS_KEY or certs/key.pem)")
    certs.add_argument("--days", type=_positive, help="validity in days (default: 365)")
    certs.set_defaults(handler=_certs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("generate", "batch") and args.url is None and (args.token is not None or args.insecure):
        parser.error("--token and --insecure apply to a server: add --url")
    try:
        outcome = args.handler(args)
        code = asyncio.run(outcome) if asyncio.iscoroutine(outcome) else outcome
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort behind the promise of one line and never a traceback
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {_describe(exc)}", file=sys.stderr)
        return 1
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
