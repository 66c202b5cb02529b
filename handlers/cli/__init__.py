"""The `pokemon` command line: generate creatures (in-process or from a server), batches, serve, certs."""

from __future__ import annotations

from handlers.cli.commands import main

__all__ = ["main"]
