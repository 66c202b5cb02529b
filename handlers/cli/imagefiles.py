"""Image file names for the command line: which extension each format gets, and where `generate --out` writes.

A file's extension must say what it holds: an explicit `--out creature.png` with `--format webp` is a usage
error rather than a WebP behind a `.png` name, and without `--format` the extension picks the format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.creature import ImageFormat
from handlers.cli.errors import CliError

# The first extension of each format is the one written; the others are accepted in --out.
EXTENSIONS: dict[ImageFormat, tuple[str, ...]] = {
    ImageFormat.PNG: (".png",),
    ImageFormat.WEBP: (".webp",),
    ImageFormat.JPEG: (".jpg", ".jpeg"),
}
_BY_EXTENSION = {extension: fmt for fmt, extensions in EXTENSIONS.items() for extension in extensions}
KNOWN_EXTENSIONS = ", ".join(extension for extensions in EXTENSIONS.values() for extension in extensions)


def extension(fmt: ImageFormat) -> str:
    return EXTENSIONS[fmt][0]


def image_file_name(stem: str, fmt: ImageFormat) -> str:
    return stem + extension(fmt)


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """Where one image goes: a file named up front, or `<id>.<ext>` in a folder (the id is known only later)."""

    file: Path | None = None
    folder: Path | None = None

    def path_for(self, creature_id: str, fmt: ImageFormat) -> Path:
        if self.file is not None:
            return self.file
        # The id comes from the server: it must not step outside the folder.
        if not creature_id or "/" in creature_id or "\\" in creature_id or creature_id.startswith("."):
            raise CliError(f"unexpected creature id {creature_id!r}")
        return (self.folder or Path()) / image_file_name(creature_id, fmt)


def choose_output(
    out: str | None, fmt: ImageFormat | None, *, default_folder: bool
) -> tuple[ImageFormat, OutputTarget | None]:
    """The format and the target of `generate`, checked before any creature is made.

    `out` is a folder when it exists as one or ends with a path separator; a file name without an extension
    gets the format's; one with an extension must match `--format` (or, without it, chooses the format).
    Without `out`, `default_folder` (`--raw`) writes `<id>.<ext>` in the current folder; otherwise nothing.
    """
    if out is None:
        return fmt or ImageFormat.PNG, OutputTarget(folder=Path()) if default_folder else None
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        return fmt or ImageFormat.PNG, OutputTarget(folder=path)
    suffix = path.suffix.lower()
    if not suffix:
        chosen = fmt or ImageFormat.PNG
        return chosen, OutputTarget(file=path.with_name(path.name + extension(chosen)))
    named = _BY_EXTENSION.get(suffix)
    if named is None:
        raise CliError(f"--out {out}: an image file ends with one of {KNOWN_EXTENSIONS}", exit_code=2)
    if fmt is not None and named is not fmt:
        raise CliError(f"--out {out} does not match --format {fmt} (use {' or '.join(EXTENSIONS[fmt])})", exit_code=2)
    return named, OutputTarget(file=path)
