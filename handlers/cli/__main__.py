"""`python -m handlers.cli`: the `pokemon` command without the installed script."""

from __future__ import annotations

from handlers.cli import main

raise SystemExit(main())
