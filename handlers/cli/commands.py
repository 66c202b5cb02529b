"""The `pokemon` commands: the argument parser, one handler per sub-command, and `main`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from core.creature import MAX_IMAGE_SIZE, MAX_SEED, MIN_IMAGE_SIZE, ImageFormat, parse_format, parse_seed, parse_size
from handlers.cli.batch import Progress, error_lines, run_batch, summary_lines, write_bytes
from handlers.cli.client import CreatureClient, GeneratedCreature, HttpClient, ImageChoice, InProcessClient
from handlers.cli.errors import PROG, CliError, one_line
from handlers.cli.imagefiles import OutputTarget, choose_output


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: the full usage is one `--help` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class _VersionAction(argparse.Action):
    """argparse's own `version` action wants the text up front: reading the installed metadata would then
    slow every command, not just `--version`."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> NoReturn:
        from core.version import version

        sys.stdout.write(f"{PROG} {version()}\n")  # stdout, as argparse's own --version and --help do
        parser.exit()


def open_client(args: argparse.Namespace, image: ImageChoice, *, raw: bool = False) -> CreatureClient:
    if args.url is None:
        return InProcessClient.from_environment(image)
    token = args.token if args.token is not None else os.environ.get("POKEMON_TOKEN")
    return HttpClient(args.url, token=token, insecure=args.insecure, timeout=args.timeout, image=image, raw=raw)


# --------------------------------------------------------------------------------------------- generate


def creature_lines(creature: GeneratedCreature) -> list[str]:
    meta = creature.metadata
    return [
        f"{meta.get('name', '?')}  [{creature.rarity}]",
        f"  id       {creature.id}",
        f"  seed     {meta.get('seed', '?')}",
        f"  sources  name={meta.get('nameSource', '?')} image={meta.get('imageSource', '?')}",
        f"  created  {creature.generated_at}",
    ]


def image_line(path: Path, creature: GeneratedCreature) -> str:
    meta = creature.metadata
    width, height = meta.get("imageWidth"), meta.get("imageHeight")
    # The raw answer's headers carry no pixel size; the JSON's metadata does.
    pixels = f" {width}x{height}" if width is not None and height is not None else ""
    return f"  image    {path} ({creature.image_format}{pixels}, {len(creature.image)} bytes)"


def _generate(args: argparse.Namespace) -> Coroutine[Any, Any, int]:
    """Check the arguments against each other before any backend starts or request leaves."""
    if args.raw and args.json:
        raise CliError("--raw saves the image only: drop --json (or --raw)", exit_code=2)
    fmt, target = choose_output(args.out, args.format, default_folder=args.raw)
    return _run_generate(args, ImageChoice(fmt, args.size), target)


async def _run_generate(args: argparse.Namespace, image: ImageChoice, target: OutputTarget | None) -> int:
    client = open_client(args, image, raw=args.raw)
    try:
        creature = await client.generate(args.seed)
    finally:
        await client.aclose()
    path = None if target is None else target.path_for(creature.id, creature.image_format)
    if path is not None:
        write_bytes(path, creature.image)
    if args.json and creature.wire is not None:
        sys.stdout.write(creature.wire.decode("utf-8") + "\n")
        if path is not None:  # stderr: stdout must stay one parsable JSON document
            print(f"{PROG}: wrote {path}", file=sys.stderr)
        return 0
    lines = creature_lines(creature)
    if path is not None:
        lines.append(image_line(path, creature))
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------------------------- batch


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
    client = open_client(args, ImageChoice(args.format or ImageFormat.PNG, args.size))
    progress = Progress(args.count, sys.stderr)
    began = time.perf_counter()
    try:
        result = await run_batch(
            client,
            count=args.count,
            directory=directory,
            concurrency=args.concurrency,
            seed_start=args.seed_start,
            progress=progress,
        )
    finally:
        progress.close()
        await client.aclose()
    elapsed = time.perf_counter() - began
    print("\n".join(summary_lines(result, elapsed=elapsed, directory=directory)))
    for line in error_lines(result):
        print(line, file=sys.stderr)
    return 0 if result.complete else 1


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


def _format(text: str) -> ImageFormat:
    # The API's own rules (and message) for format and size: what the CLI accepts, the server accepts.
    try:
        return parse_format(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
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


def _add_image_options(parser: argparse.ArgumentParser, default_format: str) -> None:
    group = parser.add_argument_group("image")
    formats = ",".join(fmt.value for fmt in ImageFormat)
    group.add_argument(
        "--format", type=_format, metavar=f"{{{formats}}}", help=f"image format (default: {default_format})"
    )
    group.add_argument(
        "--size",
        type=_size,
        metavar="PX",
        help=f"longest edge in pixels, {MIN_IMAGE_SIZE}-{MAX_IMAGE_SIZE} (default: the backend's own)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Generate creatures with the Pokémon Generator API.")
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate one creature", description="Generate one creature.")
    generate.add_argument("--seed", type=_seed, help="reproducible creature: 0 <= seed < 2^63")
    generate.add_argument(
        "--out",
        metavar="FILE|DIR",
        help="write the image here: a file (.png, .webp, .jpg; its extension picks the format when --format is "
        "not given, and is added when missing) or a folder (existing, or ending with /) for <id>.<ext>",
    )
    generate.add_argument("--json", action="store_true", help="print the API's JSON instead of a summary")
    generate.add_argument(
        "--raw",
        action="store_true",
        help="ask for the image itself, not JSON (with --url: Accept: image/<format>, the creature in headers) "
        "and save it, by default as ./<id>.<ext>",
    )
    _add_image_options(generate, "png, or the --out file's extension")
    _add_remote_options(generate)
    generate.set_defaults(handler=_generate)

    batch = commands.add_parser(
        "batch",
        help="generate many creatures into a folder",
        description="Generate creatures into DIR/<id>.<ext> (png, webp or jpg) and DIR/<id>.json, then summarise them.",
    )
    batch.add_argument("-n", "--count", type=_positive, default=10, help="how many creatures (default: 10)")
    batch.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    batch.add_argument("--concurrency", type=_positive, default=4, help="requests in flight (default: 4)")
    batch.add_argument("--seed-start", type=_seed, metavar="N", help="use seeds N, N+1, ... (reproducible batch)")
    _add_image_options(batch, "png")
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
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        return 1
    return int(code)
