"""`pokemon batch`'s engine: creatures generated concurrently into a folder, a progress bar, the counts."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.creature import Rarity
from handlers.cli.client import CreatureClient, GeneratedCreature
from handlers.cli.errors import PROG, CliError
from handlers.cli.imagefiles import image_file_name


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
    rarities: Counter[str] = field(default_factory=Counter)
    name_sources: Counter[str] = field(default_factory=Counter)
    image_sources: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    created: int = 0
    failed: int = 0
    not_attempted: int = 0

    @property
    def complete(self) -> bool:
        return not self.failed and not self.not_attempted

    def count(self, creature: GeneratedCreature) -> None:
        self.created += 1
        self.rarities[creature.rarity] += 1
        self.name_sources[str(creature.metadata.get("nameSource", "?"))] += 1
        self.image_sources[str(creature.metadata.get("imageSource", "?"))] += 1


def write_bytes(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}", fatal=True) from None


def save(directory: Path, creature: GeneratedCreature) -> None:
    """`<id>.png` (or `.webp`, `.jpg`) and a `<id>.json` sidecar with the rest of the answer."""
    stem = creature.id
    # The id comes from the server: refuse anything that could step outside the output folder.
    if not stem or "/" in stem or "\\" in stem or stem.startswith("."):
        raise CliError(f"unexpected creature id {stem!r}")
    sidecar = {"metadata": creature.metadata, "generatedAt": creature.generated_at}
    # default=str as on the wire (core.jsonfast): in-process metadata has not been through JSON yet.
    text = json.dumps(sidecar, ensure_ascii=False, indent=2, default=str)
    write_bytes(directory / image_file_name(stem, creature.image_format), creature.image)
    write_bytes(directory / f"{stem}.json", (text + "\n").encode())


async def run_batch(
    client: CreatureClient,
    *,
    count: int,
    directory: Path,
    concurrency: int,
    seed_start: int | None,
    progress: Progress,
) -> BatchResult:
    result = BatchResult()
    next_index = 0
    stop = False

    async def worker() -> None:
        nonlocal next_index, stop
        while not stop and next_index < count:
            # Single-threaded event loop: taking the index before the first await hands each one out once.
            index, next_index = next_index, next_index + 1
            seed = None if seed_start is None else seed_start + index
            try:
                creature = await client.generate(seed)
                await asyncio.to_thread(save, directory, creature)
            except CliError as exc:
                result.failed += 1
                result.errors[str(exc)] += 1
                stop = stop or exc.fatal
                progress.advance(ok=False)
                continue
            result.count(creature)
            progress.advance(ok=True)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    result.not_attempted = count - next_index
    return result


def format_counts(counter: Counter[str], order: Sequence[str] = ()) -> str:
    """`key count` pairs: the keys of `order` first (even at 0), then any others alphabetically."""
    keys = list(order) + sorted(key for key in counter if key not in order)
    return "  ".join(f"{key} {counter[key]}" for key in keys) or "-"


def summary_lines(result: BatchResult, *, elapsed: float, directory: Path) -> list[str]:
    """What the batch made, for stdout; the failures go to stderr (`error_lines`)."""
    rate = result.created / elapsed if elapsed > 0 else 0.0
    head = f"{PROG}: {result.created} created, {result.failed} failed"
    if result.not_attempted:
        head += f", {result.not_attempted} not attempted"
    return [
        f"{head} in {elapsed:.2f}s ({rate:.1f} creatures/s) -> {directory}",
        f"  rarity   {format_counts(result.rarities, [rarity.value for rarity in Rarity])}",
        f"  names    {format_counts(result.name_sources)}",
        f"  images   {format_counts(result.image_sources)}",
    ]


def error_lines(result: BatchResult) -> list[str]:
    """Each distinct failure once, the most frequent first."""
    return [f"{PROG}: {times} x {message}" for message, times in result.errors.most_common()]
