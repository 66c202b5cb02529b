"""How the command line fails: one line on stderr, after the program's name, and an exit status."""

from __future__ import annotations

PROG = "pokemon"


class CliError(Exception):
    """A failure reported as one line on stderr; `exit_code` 2 is a usage/settings error, 1 anything else.

    `fatal` marks failures that every further request would repeat (unreachable server, wrong token).
    """

    def __init__(self, message: str, *, exit_code: int = 1, fatal: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.fatal = fatal


def one_line(exc: Exception) -> str:
    # httpx errors can be empty or span lines (TLS); the command promises one line.
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
