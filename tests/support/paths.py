"""Where the repository and its shipped images are, for tests and benchmarks that start processes in it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SHIPPED_IMAGES = REPO / "pokemon"
