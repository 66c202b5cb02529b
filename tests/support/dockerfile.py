"""A Dockerfile read as its instructions, so that tests check what the image does rather than how it is typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments (and hadolint pragmas) dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not pending and not line.strip()):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    return [Instruction(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def arguments_of(path: Path, keyword: str) -> list[str]:
    return [instruction.arguments for instruction in instructions(path) if instruction.keyword == keyword]


def only_argument(path: Path, keyword: str) -> str:
    """The arguments of the one `keyword` instruction, failing when there are none or several."""
    found = arguments_of(path, keyword)
    assert len(found) == 1, f"{keyword}: {found}"
    return found[0]
